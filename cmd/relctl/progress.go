package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
)

// progress is a run's console on stderr, a line at a time: the run, the
// preflight, each batch as it starts, a line per batch and phase as it
// ends, the automatic rollback and its end, every failure in full as it
// happens and, when verbose, every host's every step. It never prints a
// line per host per step otherwise: a deploy of 1,000 hosts stays under a
// hundred lines. Under a live view, its lines are printed above the bars.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	logPath string
	verbose bool
	// tally counts the run; the one who made it feeds it events (ownTally:
	// this progress).
	tally    *tally
	ownTally bool
}

func newProgress(w io.Writer, logPath string) *progress {
	return &progress{w: w, logPath: logPath}
}

// observe is the engine's Observer; it is called from many goroutines.
func (p *progress) observe(ev deploy.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tally == nil && ev.Plan != nil {
		// Not shared with a live view: counted here.
		p.tally, p.ownTally = newTally(ev.Plan, nil), true
	}
	if p.ownTally {
		p.tally.observe(ev)
	}
	switch ev.Kind {
	case deploy.RunStarted:
		p.runStarted(ev.Plan)
	case deploy.PreflightDone:
		fmt.Fprintf(p.w, "Preflight: %d hosts reachable, preflight steps passed\n", len(ev.Plan.Hosts()))
	case deploy.BatchStarted:
		p.batchStarted(ev.Plan, ev.Batch)
	case deploy.LocksTaken:
		p.locksTaken(ev.Locks)
	case deploy.Stopping:
		fmt.Fprintf(p.w, "Stopping: no new steps; running steps finish, then touched hosts roll back\n")
	case deploy.RollbackStarted:
		fmt.Fprintf(p.w, "Rolling back %d touched host%s: %s\n", len(ev.Hosts), plural(len(ev.Hosts)), someHosts(ev.Hosts))
	case deploy.RollbackHostDone:
		if ev.Err != nil {
			fmt.Fprintf(p.w, "  %-14s ROLLBACK FAILED: %s\n", ev.Host, firstLine(ev.Err.Error()))
		}
	case deploy.StepDone, deploy.RollbackStepDone:
		p.stepDone(ev.Result)
	case deploy.PhaseDone:
		p.tallyLine(p.tally.phaseLine(ev.Batch, ev.Phase))
	case deploy.RollbackDone:
		p.tallyLine(p.tally.rollbackLine())
	case deploy.Pausing:
		fmt.Fprintf(p.w, "Pausing %s before batch %d\n", ev.Pause, ev.Batch.Index)
	case deploy.RunDone:
		p.runDone(ev)
	}
}

func (p *progress) runStarted(pl *deploy.Plan) {
	verb := map[string]string{
		deploy.VerbMoveBack: "Moving traffic and dependents back to the old hosts of",
		deploy.KindFinalize: "Retiring the old hosts of",
		deploy.KindRollback: "Rolling back to",
	}[pl.Verb()]
	if verb == "" {
		verb = "Deploying"
	}
	hosts := len(pl.Hosts())
	fmt.Fprintf(p.w, "%s %s %s on %s: %d host%s in %d batch%s (run %s)\n", verb, pl.Playbook, pl.Version, pl.Env,
		hosts, plural(hosts), len(pl.Batches), pluralES(len(pl.Batches)), pl.RunID)
	fmt.Fprintf(p.w, "Run log: %s\n", p.logPath)
}

func (p *progress) batchStarted(pl *deploy.Plan, b *deploy.Batch) {
	fmt.Fprintln(p.w, batchHeading(b, len(pl.Batches)))
}

// locksTaken names every host not locked, and every stale lock taken over,
// one line per error or per owner.
func (p *progress) locksTaken(locks []state.HostLockState) {
	groups := groupHosts(len(locks), func(i int) (string, []string) {
		l := locks[i]
		if l.Err != "" {
			return l.Host, []string{"err", l.Err}
		}
		return l.Host, []string{"owner", describeOwner(l)}
	})
	for _, g := range groups {
		if g.cols[0] == "err" {
			fmt.Fprintf(p.w, "Not locked: %s %s\n", allHosts(g.hosts), g.cols[1])
			continue
		}
		fmt.Fprintf(p.w, "Took over the stale lock on %s: %s\n", allHosts(g.hosts), g.cols[1])
	}
}

// stepDone prints a failed step in full (its error's every line), and,
// when verbose, every other step too.
func (p *progress) stepDone(r *deploy.StepResult) {
	failed := r.Status == deploy.StatusFailed
	if !failed && !p.verbose {
		return
	}
	fmt.Fprint(p.w, stepLine(r))
}

// stepLine is a step's line: host, step, status, time, detail; a failed
// step's error in full, its further lines indented below.
func stepLine(r *deploy.StepResult) string {
	status, detail, more := r.Status, r.Detail, ""
	if r.Status == deploy.StatusFailed {
		status = "FAILED"
		detail, more, _ = strings.Cut(strings.TrimRight(r.Error, "\n"), "\n")
	}
	line := fmt.Sprintf("  %-14s %-26s %-7s %6s  %s\n", r.Host, r.ID(), status, shortDuration(r.Elapsed), detail)
	if more != "" {
		line += "  " + strings.ReplaceAll(more, "\n", "\n  ") + "\n"
	}
	return line
}

// tallyLine is the line a batch's phase, or the rollback, ends with.
func (p *progress) tallyLine(pt *phaseTally) {
	if pt == nil {
		return
	}
	p.tally.mu.Lock()
	line := pt.summary()
	p.tally.mu.Unlock()
	fmt.Fprintln(p.w, line)
}

func (p *progress) runDone(ev deploy.Event) {
	var locked *state.LockedError
	if errors.As(ev.Err, &locked) {
		return // refused before anything ran; the error says by whom
	}
	rep := ev.Report
	elapsed := shortDuration(rep.Finished.Sub(rep.Started))
	verb := ev.Plan.Verb()
	isMove := verb == deploy.VerbMoveBack || verb == deploy.KindFinalize
	what := runDoneSubject(rep, verb)
	switch {
	case ev.Err == nil && isMove:
		fmt.Fprintf(p.w, "%s done (%s)\n", what, elapsed)
	case ev.Err == nil:
		fmt.Fprintf(p.w, "%s done: %d/%d hosts on %s (%s)\n", what, len(rep.Hosts), len(rep.Hosts), rep.Version, elapsed)
	case rep.RolledBack && len(rep.Unresolved()) == 0:
		fmt.Fprintf(p.w, "%s FAILED and was rolled back: every touched host is healthy on its previous release (%s)\n", what, elapsed)
	default:
		fmt.Fprintf(p.w, "%s FAILED after %s\n", what, elapsed)
	}
}

// runDoneSubject names the finished run: "Deploy of 1.1.0 to staging", ...
func runDoneSubject(rep *deploy.Report, verb string) string {
	switch verb {
	case deploy.VerbMoveBack:
		return fmt.Sprintf("Move back of %s in %s", rep.Version, rep.Env)
	case deploy.KindFinalize:
		return fmt.Sprintf("Move finalize of %s in %s", rep.Version, rep.Env)
	case deploy.KindRollback:
		return fmt.Sprintf("Rollback of %s to %s", rep.Env, rep.Version)
	}
	return fmt.Sprintf("Deploy of %s to %s", rep.Version, rep.Env)
}
