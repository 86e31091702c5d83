package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

func newDeployCmd(g *globalOptions) *cobra.Command {
	opts := &releaseOptions{}
	var yes, resume, prove, skipRehearsal bool
	var reason string
	cmd := &cobra.Command{
		Use:   "deploy --env ENV --release VERSION",
		Short: "Push a release to an environment: preflight, canary, then batches; roll back on failure",
		Long: `Deploy connects to every targeted host (one SSH connection each for the whole
run), takes the environment lock on every host, and runs the preflight phase
everywhere (including a check that the release now current is intact, so it
can be rolled back to) before any host changes. Then it works through the
batches, canary first; in each batch every host runs the stage, activate,
verify, cutover and post phases in step.

If a step or health check fails, or on the first interrupt, no new step
starts, running steps finish, and every host this run touched is rolled back:
its completed steps are undone in reverse order (current switched back, run
steps' undo commands), the playbook's [rollback] steps run, and the health
checks run against the restored release. A second interrupt aborts at once.

--resume finishes a deploy that was interrupted (e.g. relctl was killed): it
takes over the dead run's lock and deploys its release again, skipping hosts
the local journal shows finished.

An environment with require_rehearsal (e.g. production requiring staging)
takes only a release that passed ` + "`relctl rehearse`" + ` there: a signed record,
verified against allowed_signers, for the same release digest, started from
the release the environment runs now, passed, younger than
rehearsal_max_age. Otherwise deploy exits 6 naming the failed condition and
the command that fixes it. --skip-rehearsal --reason TEXT overrides the
gate; the override is written to every host's history.

On a terminal, deploy shows the plan and asks for confirmation unless --yes.`,
		Example: `  relctl deploy --env staging --release 1.1.0
  relctl deploy --env production --release 1.1.0 --yes
  relctl deploy --env production --release 1.1.0 --hosts production-1 --yes
  relctl deploy --env production --resume --yes
  relctl deploy --env production --release 1.1.1 --skip-rehearsal --reason "hotfix for INC-123"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.env); err != nil {
				return err
			}
			if !resume {
				if err := requireFlag(cmd, "release", opts.release); err != nil {
					return err
				}
			}
			if skipRehearsal != (reason != "") {
				return usageErrorf("--skip-rehearsal and --reason go together: say why the rehearsal gate is skipped (it is written to every host's history)")
			}
			proj, err := g.loadProject()
			if err != nil {
				return err
			}
			var skip map[string]bool
			var resumeRun string
			if resume {
				if skip, resumeRun, err = resumeTarget(cmd.Context(), g, proj, opts); err != nil {
					return err
				}
			}
			po := opts.planOptions()
			po.ProveSupervision = prove
			p, err := deploy.BuildPlan(proj, po)
			if err != nil {
				return err
			}
			// One session for everything before and during the run: one SSH
			// connection per host.
			sess, err := openSession(g, proj.Config, p.RunID, true)
			if err != nil {
				return err
			}
			defer sess.Close()
			if p.Move != nil {
				if po.MoveDone, po.MoveResume, err = moveState(cmd.Context(), g, proj, sess, opts.env, p.Playbook); err != nil {
					return err
				}
				if po.MoveDone || po.MoveResume != nil {
					if p, err = deploy.BuildPlan(proj, po); err != nil {
						return err
					}
				}
			}
			if err := rehearsalGate(cmd.Context(), g, proj, sess, p, reason); err != nil {
				return err
			}
			if err := compatibilityGate(cmd.Context(), g, proj, sess.pool, rollback.CompatRequest{
				Env: p.Env, Kind: deploy.KindDeploy, Playbook: p.Playbook, Version: p.Version,
				Requires: proj.Playbooks[p.Playbook].Requires, RequiresKnown: true,
				Retry: fmt.Sprintf("relctl deploy --env %s --playbook %s --release %s", p.Env, p.Playbook, p.Version),
			}); err != nil {
				return err
			}
			if !yes && g.io.CanPrompt() {
				printPlan(g.io.ErrOut, p, false)
				ok, err := g.io.Confirm(fmt.Sprintf("\nDeploy %s %s to %s?", p.Playbook, p.Version, p.Env), g.stop)
				if err != nil {
					return err
				}
				if !ok {
					return usageErrorf("deploy cancelled: nothing was changed")
				}
			}
			_, err = sess.execute(cmd.Context(), g, proj, p, g.io.Out, func(e *deploy.Engine) {
				e.Skip, e.ResumeRun = skip, resumeRun
				e.TakeOverStaleLocks = resume
			})
			return err
		},
	}
	opts.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&resume, "resume", false, "finish the environment's interrupted deploy")
	cmd.Flags().BoolVar(&skipRehearsal, "skip-rehearsal", false, "deploy although the environment's rehearsal gate refuses (needs --reason)")
	cmd.Flags().StringVar(&reason, "reason", "", "with --skip-rehearsal: why; written to every host's history")
	cmd.Flags().BoolVar(&prove, "prove-supervision", false, "with a [watchdog]: after monit runs the service, kill it and require monit to restart it")
	return cmd
}

// compatibilityGate refuses a release that would break a constraint
// between the environment's components, before any host changes, and shows
// what it checked when the environment uses constraints.
func compatibilityGate(ctx context.Context, g *globalOptions, proj *playbooks.Project, conn deploy.Connector, req rollback.CompatRequest) error {
	rep, err := rollback.CheckRelease(ctx, conn, proj, proj.Config.SSH.MaxParallel, req)
	if err != nil {
		return err
	}
	if !rep.InUse || len(rep.Checked)+len(rep.Notes) == 0 {
		return nil
	}
	w := g.io.ErrOut
	fmt.Fprintf(w, "Compatibility with what %s runs: ok\n", req.Env)
	for _, c := range rep.Checked {
		fmt.Fprintf(w, "  %s\n", c)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	return nil
}

// moveState reads the playbook's [move] record: a move already cut over (or
// finalized) makes a deploy a release of the new hosts, not another move;
// an unfinished one is resumed with the states it saved.
func moveState(ctx context.Context, g *globalOptions, proj *playbooks.Project, sess *session, env, playbook string) (done bool, resume *deploy.MoveRecord, err error) {
	rec, err := deploy.ReadMoveRecords(ctx, sess.pool, proj, env, playbook)
	if err != nil || rec == nil {
		return false, nil, err
	}
	switch rec.State {
	case deploy.MoveCutOver, deploy.MoveFinalized:
		fmt.Fprintf(g.io.ErrOut, "The move of %s by run %s is %s: deploying to the new hosts only\n", rec.Playbook, rec.RunID, rec.State)
		return true, nil, nil
	case deploy.MoveCuttingOver:
		fmt.Fprintf(g.io.ErrOut, "The move of %s by run %s did not finish: this deploy finishes it, keeping the states it saved\n", rec.Playbook, rec.RunID)
		return false, rec, nil
	}
	return false, nil, nil
}

// session is what a run against hosts needs: run log, journal, connections.
type session struct {
	logPath string
	log     *transport.RunLog
	journal *state.Journal
	pool    *transport.Pool
}

func openSession(g *globalOptions, cfg *playbooks.Config, runID string, withJournal bool) (*session, error) {
	stateDir := g.resolveStateDir(cfg)
	s := &session{logPath: state.RunLogPath(stateDir, runID)}
	var err error
	if s.log, err = transport.OpenRunLog(s.logPath); err != nil {
		return nil, fmt.Errorf("opening run log: %w", err)
	}
	if withJournal {
		if s.journal, err = state.OpenJournal(stateDir, runID); err != nil {
			s.log.Close()
			return nil, fmt.Errorf("opening journal: %w", err)
		}
	}
	if s.pool, err = transport.NewPool(transportOptions(cfg, s.log)); err != nil {
		s.Close()
		return nil, &usageError{err}
	}
	return s, nil
}

func (s *session) Close() {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.journal != nil {
		s.journal.Close()
	}
	s.log.Close()
}

// runPlan executes a deploy or rollback plan and prints its outcome.
func runPlan(ctx context.Context, g *globalOptions, proj *playbooks.Project, p *deploy.Plan, configure func(*deploy.Engine)) error {
	sess, err := openSession(g, proj.Config, p.RunID, true)
	if err != nil {
		return err
	}
	defer sess.Close()
	_, err = sess.execute(ctx, g, proj, p, g.io.Out, configure)
	return err
}

// newEngine is an engine on the session's connections, configured from relctl.toml.
func (s *session) newEngine(g *globalOptions, proj *playbooks.Project) *deploy.Engine {
	return &deploy.Engine{
		Connector: s.pool, Log: s.log, Journal: s.journal,
		Operator: state.Operator(), Controller: state.Controller(),
		MaxParallel: proj.Config.SSH.MaxParallel, Stop: g.stop, LockTTL: proj.Config.LockTTL.Duration,
		Backoff: reconnectBackoff(proj.Config.SSH),
	}
}

// execute runs p on the session's connections, shows progress on stderr,
// and writes the result table to out (and what to do next on a failure).
func (s *session) execute(ctx context.Context, g *globalOptions, proj *playbooks.Project, p *deploy.Plan, out io.Writer, configure func(*deploy.Engine)) (*deploy.Report, error) {
	progress := newProgress(g.io.ErrOut, s.logPath)
	engine := s.newEngine(g, proj)
	engine.Observe = progress.observe
	if configure != nil {
		configure(engine)
	}
	rep, err := engine.Deploy(ctx, p)
	var locked *state.LockedError
	if errors.As(err, &locked) {
		return rep, err
	}
	printReport(out, rep)
	var failure *deploy.Failure
	if errors.As(err, &failure) {
		printFailureHelp(g.io.ErrOut, p, rep, s.logPath)
	}
	return rep, err
}

// resumeTarget finds the environment's interrupted deploy, points opts at
// its release and returns the hosts it had finished.
func resumeTarget(ctx context.Context, g *globalOptions, proj *playbooks.Project, opts *releaseOptions) (map[string]bool, string, error) {
	interrupted, err := interruptedRun(ctx, g, proj, opts.env)
	if err != nil {
		return nil, "", err
	}
	if opts.release != "" && opts.release != interrupted.Release {
		return nil, "", usageErrorf("the interrupted run %s deployed %s, not %s", interrupted.RunID, interrupted.Release, opts.release)
	}
	opts.release = interrupted.Release
	fmt.Fprintf(g.io.ErrOut, "Resuming run %s: deploy %s to %s (started %s by %s)\n", interrupted.RunID, interrupted.Release,
		opts.env, interrupted.Started.Local().Format(time.DateTime), interrupted.Operator)
	skip := map[string]bool{}
	if full, err := state.LoadRun(g.resolveStateDir(proj.Config), interrupted.RunID); err == nil {
		last := map[string]state.JournalEvent{}
		for _, ev := range full.Steps {
			if ev.Kind == "step-end" {
				last[ev.Host] = ev
			}
		}
		for host, ev := range last {
			if ev.Step == "post/prune" && ev.Status == deploy.StatusOK {
				skip[host] = true
			}
		}
	}
	if len(skip) > 0 {
		names := make([]string, 0, len(skip))
		for h := range skip {
			names = append(names, h)
		}
		sort.Strings(names)
		fmt.Fprintf(g.io.ErrOut, "Already finished by that run, skipped: %s\n", strings.Join(names, ", "))
	}
	return skip, interrupted.RunID, nil
}

// interruptedRun is the run deploy --resume finishes: env's newest deploy in
// the local journals when it was interrupted, else the deploy run a stale
// lock on the hosts names. A damaged journal is warned about, naming the
// file; it blocks the resume only when it may hide the answer and the
// hosts' stale lock does not give it either.
func interruptedRun(ctx context.Context, g *globalOptions, proj *playbooks.Project, env string) (*state.RunRecord, error) {
	runs, unreadable, err := state.ReadRuns(g.resolveStateDir(proj.Config))
	if err != nil {
		return nil, err
	}
	j := sortResumeJournals(runs, unreadable, env, fileModTime)
	// One warning per damaged journal, saying why it did not decide (or,
	// when nothing did, what it may hide).
	warn := func(decidedBy string) {
		doubt, ownEnd := "; it may hold a later deploy of "+env, "; a damaged line may be the end of that run, so it may not have been interrupted"
		if decidedBy != "" {
			doubt, ownEnd = decidedBy, decidedBy
		}
		if j.newest != nil {
			warnJournals(g, j.older, fmt.Sprintf("; last written before run %s started, so it holds no later deploy of %s", j.newest.RunID, env))
			if j.newestDamaged {
				warnJournals(g, j.newest.Problems, ownEnd)
			}
		}
		warnJournals(g, j.doubtful, doubt)
	}
	if !j.inDoubt() && j.newest != nil && j.newest.Result == state.ResultInterrupted {
		warn("")
		return j.newest, nil
	}
	held, err := interruptedOnHosts(ctx, g, proj, env)
	if err != nil {
		return nil, err
	}
	switch {
	case held != nil:
		if j.newest != nil && j.newest.RunID == held.RunID {
			held = j.newest // the journal also says when and by whom
		}
		warn("; the hosts' stale deploy lock names the run to resume, " + held.RunID)
		return held, nil
	case j.inDoubt():
		warn("")
		return nil, j.cannotTell(env)
	}
	warn("")
	return nil, usageErrorf("no interrupted deploy of %s to resume (the newest deploy finished, and no host holds a stale deploy lock)", env)
}

// resumeJournals sorts the local journals for deploy --resume.
type resumeJournals struct {
	// newest is env's newest deploy that was not refused; nil when none is.
	newest *state.RunRecord
	// newestDamaged: newest looks interrupted but has damaged lines, one of
	// which may be its end.
	newestDamaged bool
	// doubtful are the problems of journals that cannot be read and may
	// hold a later deploy of env than newest; older those of journals last
	// written before newest started, which cannot.
	doubtful, older []state.JournalProblem
}

// modTimeMargin absorbs file systems that keep modification times coarsely
// (FAT: 2 s), so a journal counts as older only when it surely is.
const modTimeMargin = 2 * time.Second

// sortResumeJournals finds env's newest deploy among runs (newest first, as
// state.ReadRuns returns them) and sorts the journals it could not read: a
// run's journal is written from its start on, so one last modified before
// newest started holds an older run; any other may be a later deploy.
func sortResumeJournals(runs []state.RunRecord, unreadable []state.JournalProblem, env string, modTime func(file string) (time.Time, error)) resumeJournals {
	var j resumeJournals
	for i := range runs {
		r := &runs[i]
		if r.Env == env && r.Command == deploy.KindDeploy && r.Result != "refused" {
			j.newest = r
			j.newestDamaged = r.Result == state.ResultInterrupted && len(r.Problems) > 0
			break
		}
	}
	older := map[string]bool{}
	for _, p := range unreadable {
		ok, seen := older[p.File]
		if !seen && j.newest != nil {
			t, err := modTime(p.File)
			ok = err == nil && t.Add(modTimeMargin).Before(j.newest.Started)
			older[p.File] = ok
		}
		if ok {
			j.older = append(j.older, p)
		} else {
			j.doubtful = append(j.doubtful, p)
		}
	}
	return j
}

func (j *resumeJournals) inDoubt() bool { return len(j.doubtful) > 0 || j.newestDamaged }

// cannotTell is the refusal when the damaged journals may hide the run to
// resume and no host names it: what is in doubt, and the two ways out.
func (j *resumeJournals) cannotTell(env string) error {
	var why []string
	var files []string
	for _, p := range j.doubtful {
		if !slices.Contains(files, p.File) {
			files = append(files, p.File)
		}
	}
	if len(files) > 0 {
		why = append(why, fmt.Sprintf("%s cannot be read and may hold a later deploy", strings.Join(files, ", ")))
	}
	if j.newestDamaged {
		why = append(why, fmt.Sprintf("the journal of run %s, which looks interrupted, has damaged lines, one of which may be its end", j.newest.RunID))
		files = append(files, j.newest.Problems[0].File)
	}
	return fmt.Errorf("cannot tell which deploy of %s to resume: %s; and no host holds a stale deploy lock that names the interrupted run. "+
		"Move a journal that holds no deploy of %s aside (mv %s %s) and run deploy --resume again, or deploy a release explicitly: relctl deploy --env %s --release VERSION",
		env, strings.Join(why, "; "), env, state.Quote(files[0]), state.Quote(files[0]+".broken"), env)
}

func fileModTime(file string) (time.Time, error) {
	fi, err := os.Lstat(file)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// interruptedOnHosts reads the environment's locks: a stale deploy lock names
// the interrupted run, so resume works from a machine that has no journal.
func interruptedOnHosts(ctx context.Context, g *globalOptions, proj *playbooks.Project, env string) (*state.RunRecord, error) {
	locks, err := readLocks(ctx, g, proj, env)
	if err != nil {
		return nil, err
	}
	for _, l := range locks {
		if l.Held && l.Stale && l.Owner != nil && l.Owner.Command == deploy.KindDeploy {
			o := l.Owner
			return &state.RunRecord{RunID: o.RunID, Env: o.Env, Command: o.Command, Release: o.Release, Operator: o.Operator, Started: o.Started}, nil
		}
	}
	return nil, nil
}

// printReport is the result table: where each host was and is now.
func printReport(w io.Writer, rep *deploy.Report) {
	if rep == nil {
		return
	}
	t := newTable(w, "HOST", "BEFORE", "AFTER", "RESULT")
	for _, h := range rep.Hosts {
		t.row(h.Name, orDash(h.Before), orDash(h.After), hostResult(h))
	}
	t.flush()
	if len(rep.MoveSteps) > 0 {
		fmt.Fprintln(w, "\nMove (load balancers, dependents, old hosts):")
		t := newTable(w, "HOST", "STEP", "RESULT", "DETAIL")
		for _, s := range rep.MoveSteps {
			detail := s.Detail
			if s.Error != "" {
				detail = firstLine(s.Error)
			}
			t.row(s.Host, s.Name, s.Status, detail)
		}
		t.flush()
	}
	if rep.MoveUnresolved != "" {
		fmt.Fprintf(w, "MOVE NOT UNDONE: traffic or dependents may still point at the new hosts: %s\n", firstLine(rep.MoveUnresolved))
	}
}

func hostResult(h *deploy.HostReport) string {
	failedAt := ""
	for _, s := range h.Steps {
		if s.Status == deploy.StatusFailed {
			failedAt = " at " + s.ID()
		}
	}
	switch {
	case h.Skipped:
		return "skipped (finished by the interrupted run)"
	case !h.Reached && h.Error != "":
		return "unreachable"
	case h.Rollback != nil && h.Rollback.Error != "":
		return "ROLLBACK FAILED"
	case h.Rollback != nil && h.Rollback.Healthy:
		if failedAt != "" {
			return "failed" + failedAt + ", rolled back, healthy"
		}
		return "rolled back, healthy"
	case h.Rollback != nil:
		return "rolled back, NOT healthy"
	case failedAt != "":
		return "failed" + failedAt
	case len(h.Steps) == 0:
		return "not changed"
	case !h.Touched:
		return "not changed (stopped after preflight)"
	case h.Error != "":
		return "failed"
	}
	return "ok"
}

// printFailureHelp says, per host, which steps ran, what the rollback did,
// and what to do next.
func printFailureHelp(w io.Writer, p *deploy.Plan, rep *deploy.Report, logPath string) {
	fmt.Fprintln(w, "\nSteps run per host:")
	for _, h := range rep.Hosts {
		if len(h.Steps) == 0 {
			continue
		}
		var parts []string
		for _, s := range h.Steps {
			parts = append(parts, s.ID()+" "+s.Status)
		}
		fmt.Fprintf(w, "  %s: %s\n", h.Name, strings.Join(parts, ", "))
		if h.Rollback != nil {
			parts = parts[:0]
			for _, s := range h.Rollback.Steps {
				parts = append(parts, s.Name+" "+s.Status)
			}
			health := "healthy"
			if !h.Rollback.Healthy {
				health = "NOT healthy"
			}
			fmt.Fprintf(w, "  %s rollback: %s -> on %s, %s\n", h.Name, strings.Join(parts, ", "), orDash(h.After), health)
		}
	}
	bad := rep.Unresolved()
	switch {
	case len(bad) == 0 && rep.RolledBack:
		fmt.Fprintf(w, "Every touched host is back on its previous release and healthy.\n")
	case len(bad) == 0:
		fmt.Fprintf(w, "No host's current release was changed.\n")
	default:
		fmt.Fprintf(w, "Hosts NOT known to be back on their previous release and healthy: %s\n", strings.Join(bad, ", "))
		for _, name := range bad {
			h := rep.Host(name)
			if h == nil { // the move's undo, not a host
				fmt.Fprintf(w, "  move: not undone: %s\n", firstLine(rep.MoveUnresolved))
				continue
			}
			why := "on " + orDash(h.After)
			if h.Rollback != nil && h.Rollback.Error != "" {
				why += ": " + firstLine(h.Rollback.Error)
			}
			fmt.Fprintf(w, "  %s: %s\n", name, why)
		}
		back := map[string][]string{}
		var versions []string
		for _, name := range bad {
			if rep.Host(name) == nil {
				continue
			}
			v := rep.Host(name).Before
			if p.Kind == deploy.KindRollback {
				v = p.Version // finish the rollback
			}
			if v == "" {
				continue
			}
			if back[v] == nil {
				versions = append(versions, v)
			}
			back[v] = append(back[v], name)
		}
		fmt.Fprintf(w, "Next: relctl status --env %s\n", p.Env)
		if rep.MoveUnresolved != "" {
			fmt.Fprintf(w, "Then: relctl rollback --env %s --playbook %s --to prev (moves traffic and dependents back)\n", p.Env, p.Playbook)
		}
		for _, v := range versions {
			fmt.Fprintf(w, "Then: relctl rollback --env %s --playbook %s --to %s --hosts %s\n", p.Env, p.Playbook, v, strings.Join(back[v], ","))
		}
	}
	fmt.Fprintf(w, "Run log: %s\n", logPath)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// reconnectBackoff is the wait before each reconnect attempt: base, doubling.
func reconnectBackoff(s playbooks.SSHConfig) []time.Duration {
	out := make([]time.Duration, s.ReconnectAttempts)
	d := s.ReconnectBackoff.Duration
	for i := range out {
		out[i] = d
		d *= 2
	}
	return out
}
