package rollback

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// ErrRehearsalRefused: the rehearsal did not start (exit 6): the rehearsal
// environment is not where production is, or cannot be read.
var ErrRehearsalRefused = errors.New("rehearsal refused")

// RehearsalFailed is a rehearsal that ran and failed; its record (marked
// failed) is in Record.
type RehearsalFailed struct {
	Record *Record
	// Report is the run that failed the rehearsal; Err its error.
	Report *deploy.Report
	Err    error
}

func (e *RehearsalFailed) Unwrap() error { return e.Err }

func (e *RehearsalFailed) Error() string {
	return fmt.Sprintf("rehearsal of %s in %s failed: %s", e.Record.Release, e.Record.Environment, e.Record.Reason)
}

// Unresolved lists the hosts the failing run left not known to be healthy
// on one release.
func (e *RehearsalFailed) Unresolved() []string {
	if e.Report == nil {
		return nil
	}
	return e.Report.Unresolved()
}

// Runner executes plans for a rehearsal the way `relctl deploy` does (one
// journal per run, progress on the terminal); observe sees every event too.
type Runner interface {
	Run(ctx context.Context, p *deploy.Plan, observe deploy.Observer) (*deploy.Report, error)
	Check(ctx context.Context, opts deploy.CheckOptions) (*deploy.CheckReport, error)
}

// RehearseOptions say what to rehearse where.
type RehearseOptions struct {
	Project  *playbooks.Project
	Env      string // the rehearsal environment (staging)
	Playbook string
	Release  string
	// FailAt is --fail-at: a phase, a step "phase/name", or "all"; default
	// the end of cutover.
	FailAt string
	// For is the gated environment whose current release the rehearsal must
	// start from; empty: every environment requiring a rehearsal in Env
	// (there must be at most one).
	For string

	Connector     deploy.Connector
	MaxParallel   int
	NewRunID      func() string
	Now           func() time.Time
	Operator      string
	Controller    string
	Signer        string
	RelctlVersion string
	// Say prints a line of progress.
	Say func(format string, args ...any)
}

// GatedBy lists the environments whose deploys require a rehearsal in env.
func GatedBy(proj *playbooks.Project, env string) []string {
	var out []string
	for name, e := range proj.Config.Environments {
		if e.RequireRehearsal == env {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Rehearse deploys the release to the rehearsal environment with a failure
// forced at each fail point, lets the ordinary automatic rollback undo it,
// checks the previous release is healthy and supervised, and finally
// deploys the release again. It returns the record (unsigned), and
// *RehearsalFailed when any of that failed.
func Rehearse(ctx context.Context, r Runner, o RehearseOptions) (*Record, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	say := o.Say
	if say == nil {
		say = func(string, ...any) {}
	}
	base, err := deploy.BuildPlan(o.Project, deploy.PlanOptions{Env: o.Env, Version: o.Release, Playbook: o.Playbook, RunID: o.NewRunID(), ProveSupervision: true})
	if err != nil {
		return nil, err
	}
	points, err := deploy.ParseFailPoints(base, o.FailAt)
	if err != nil {
		return nil, err
	}
	forEnv, err := gatedEnvironment(o)
	if err != nil {
		return nil, err
	}
	from, err := startingRelease(ctx, o, forEnv, base.Playbook)
	if err != nil {
		return nil, err
	}
	fp, err := ReadFingerprint(ctx, o.Connector, o.Project, o.Env, base.Playbook, o.MaxParallel)
	if err != nil {
		return nil, err
	}
	rec := &Record{
		Format: RecordFormat, Project: o.Project.Config.Project, Environment: o.Env, For: forEnv,
		Playbook: base.Playbook, Release: o.Release, ReleaseDigest: base.Digest, ArtifactSHA256: base.Artifact.SHA256,
		From: from, To: o.Release, Fingerprint: fp, FingerprintDigest: fp.Digest(),
		RelctlVersion: o.RelctlVersion, Started: now().UTC(), Operator: o.Operator, Controller: o.Controller, Signer: o.Signer,
	}
	for _, at := range points {
		rec.FailPoints = append(rec.FailPoints, at.String())
	}
	fail := func(reason string, rep *deploy.Report, runErr error) (*Record, error) {
		if !releaseFailed(ctx, rep, runErr) {
			// An interrupt, a lock held by another run, an unreachable host:
			// no evidence about the release either way, so no record.
			return nil, runErr
		}
		rec.Result, rec.Reason, rec.Finished = ResultFailed, reason, now().UTC()
		return rec, &RehearsalFailed{Record: rec, Report: rep, Err: runErr}
	}

	for i, at := range points {
		say("Cycle %d/%d: deploy %s to %s, fail %s, roll back to %s", i+1, len(points), o.Release, o.Env, at.Clause(), from)
		c, rep, runErr := rehearseCycle(ctx, r, o, at, from, now)
		rec.Cycles = append(rec.Cycles, c)
		if !c.Passed {
			return fail(fmt.Sprintf("cycle %d (fail %s): %s", i+1, at.Clause(), c.Error), rep, runErr)
		}
		say("Cycle %d/%d passed: rollback %.1fs, healthy again %.1fs after the failure, %d steps undone on %d hosts",
			i+1, len(points), c.RollbackSeconds, c.TimeToHealthySeconds, c.StepsUndone, c.HostsRolledBack)
	}

	say("Forward: deploy %s to %s again, so %s ends on it", o.Release, o.Env, o.Env)
	p, err := deploy.BuildPlan(o.Project, deploy.PlanOptions{Env: o.Env, Version: o.Release, Playbook: base.Playbook, RunID: o.NewRunID(), ProveSupervision: true})
	if err != nil {
		return nil, err
	}
	started := now()
	rep, err := r.Run(ctx, p, nil)
	rec.Forward = &RunOutcome{RunID: p.RunID, Passed: err == nil, Seconds: now().Sub(started).Seconds()}
	if err != nil {
		rec.Forward.Error = err.Error()
		return fail("deploying "+o.Release+" again after the rollbacks failed: "+failureSummary(rep, err), rep, err)
	}
	rec.Result, rec.Finished = ResultPassed, now().UTC()
	return rec, nil
}

func interrupted(ctx context.Context, err error) bool {
	var f *deploy.Failure
	return ctx.Err() != nil || (errors.As(err, &f) && f.Interrupted)
}

// releaseFailed says whether a failed run says something about the release
// (a step, a check or the rollback failed), as opposed to the run not
// getting to try: interrupted, locked out or unable to lock, a host
// unreachable before any host changed.
func releaseFailed(ctx context.Context, rep *deploy.Report, err error) bool {
	var locked *state.LockedError
	if err == nil || interrupted(ctx, err) || errors.As(err, &locked) || errors.Is(err, deploy.ErrNotLocked) || rep == nil {
		return false
	}
	for _, h := range rep.Hosts {
		if !h.Reached {
			return false
		}
	}
	return true
}

// rehearseCycle runs one deploy with a forced failure and checks what the
// automatic rollback left behind.
func rehearseCycle(ctx context.Context, r Runner, o RehearseOptions, at deploy.FailPoint, from string, now func() time.Time) (Cycle, *deploy.Report, error) {
	c := Cycle{FailAt: at.String()}
	p, err := deploy.BuildPlan(o.Project, deploy.PlanOptions{Env: o.Env, Version: o.Release, Playbook: o.Playbook, RunID: o.NewRunID(), ProveSupervision: true})
	if err == nil {
		err = p.InjectFailure(at)
	}
	if err != nil {
		c.Error = err.Error()
		return c, nil, err
	}
	c.RunID = p.RunID
	clock := &cycleClock{now: now}
	started := now()
	rep, runErr := r.Run(ctx, p, clock.observe)
	c.Seconds = now().Sub(started).Seconds()
	c.RollbackSeconds, c.TimeToHealthySeconds = clock.durations()
	if rep != nil {
		for _, h := range rep.Hosts {
			if h.Rollback == nil {
				continue
			}
			c.HostsRolledBack++
			for _, s := range h.Rollback.Steps {
				if s.Status == deploy.StatusOK && strings.HasPrefix(s.Name, "undo-") {
					c.StepsUndone++
				}
			}
		}
	}
	switch {
	case runErr == nil:
		c.Error = "the run did not fail at the fail point: the forced failure never ran"
	case !releaseFailed(ctx, rep, runErr):
		c.Error = firstLine(runErr.Error())
	case rep == nil:
		c.Error = firstLine(runErr.Error())
	case !rep.ForcedFailureOnly():
		c.Error = "the release failed before the fail point: " + failureSummary(rep, runErr)
	case len(rep.Unresolved()) > 0:
		c.Error = "the rollback left hosts not known to be healthy on " + from + ": " + strings.Join(rep.Unresolved(), ", ") + ": " + rollbackErrors(rep)
	case !allOn(rep, from):
		c.Error = "after the rollback not every host runs " + from
	}
	if c.Error != "" {
		return c, rep, runErr
	}
	// The rollback's own health checks passed; check the restored release
	// the way `relctl check` does: readiness, watchdog config, health.
	c.CheckRunID = "check-" + o.NewRunID()
	if _, err := r.Check(ctx, deploy.CheckOptions{Env: o.Env, Playbook: p.Playbook, RunID: c.CheckRunID}); err != nil {
		c.Error = "after the rollback, relctl check failed: " + firstLine(err.Error())
		return c, rep, err
	}
	c.Passed = true
	return c, rep, nil
}

// failureSummary says which step failed where, once per step: the first
// host's error and the other hosts it failed on.
func failureSummary(rep *deploy.Report, runErr error) string {
	var order []string
	hosts := map[string][]string{}
	first := map[string]string{}
	for _, h := range rep.Hosts {
		for _, s := range h.Steps {
			if s.Status != deploy.StatusFailed {
				continue
			}
			id := s.ID()
			if hosts[id] == nil {
				order = append(order, id)
				first[id] = oneLine(s.Error)
			}
			hosts[id] = append(hosts[id], h.Name)
		}
	}
	if len(order) == 0 {
		return oneLine(runErr.Error())
	}
	parts := make([]string, len(order))
	for i, id := range order {
		parts[i] = fmt.Sprintf("%s failed on %s: %s", id, strings.Join(hosts[id], ", "), first[id])
		if n := len(hosts[id]); n > 1 {
			parts[i] += fmt.Sprintf(" (as said by %s)", hosts[id][0])
		}
	}
	return strings.Join(parts, "; ")
}

func allOn(rep *deploy.Report, version string) bool {
	for _, h := range rep.Hosts {
		if h.After != version {
			return false
		}
	}
	return true
}

func rollbackErrors(rep *deploy.Report) string {
	var parts []string
	for _, h := range rep.Hosts {
		if h.Rollback != nil && h.Rollback.Error != "" {
			parts = append(parts, oneLine(h.Rollback.Error))
		}
	}
	if len(parts) == 0 {
		return "see the run report"
	}
	return strings.Join(parts, "; ")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// oneLine joins a multi-line error (a command's status, then its stderr)
// into one line, for a record's reason.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// cycleClock times a cycle's rollback from the engine's events.
type cycleClock struct {
	now                          func() time.Time
	mu                           sync.Mutex
	failed, rbStart, lastHostEnd time.Time
}

func (c *cycleClock) observe(ev deploy.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Kind {
	case deploy.StepDone:
		if ev.Result != nil && ev.Result.Status == deploy.StatusFailed && c.failed.IsZero() {
			c.failed = c.now()
		}
	case deploy.RollbackStarted:
		c.rbStart = c.now()
	case deploy.RollbackHostDone:
		c.lastHostEnd = c.now()
	}
}

func (c *cycleClock) durations() (rollback, toHealthy float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rbStart.IsZero() || c.lastHostEnd.IsZero() {
		return 0, 0
	}
	rollback = c.lastHostEnd.Sub(c.rbStart).Seconds()
	if !c.failed.IsZero() {
		toHealthy = c.lastHostEnd.Sub(c.failed).Seconds()
	}
	return rollback, toHealthy
}

// gatedEnvironment is the environment whose release the rehearsal starts from.
func gatedEnvironment(o RehearseOptions) (string, error) {
	if o.For != "" {
		e, err := o.Project.Environment(o.For)
		if err != nil {
			return "", fmt.Errorf("%w: --for: %v", deploy.ErrBadInput, err)
		}
		if e.RequireRehearsal != o.Env {
			return "", fmt.Errorf("%w: --for %s: that environment does not require a rehearsal in %s (require_rehearsal = %q)", deploy.ErrBadInput, o.For, o.Env, e.RequireRehearsal)
		}
		return o.For, nil
	}
	gated := GatedBy(o.Project, o.Env)
	switch len(gated) {
	case 0:
		return "", nil
	case 1:
		return gated[0], nil
	}
	return "", fmt.Errorf("%w: environments %s all require a rehearsal in %s: say which one this rehearsal is for with --for", deploy.ErrBadInput, strings.Join(gated, ", "), o.Env)
}

// startingRelease is the release the rehearsal rolls back to: the one the
// gated environment runs now, which the rehearsal environment must run too.
func startingRelease(ctx context.Context, o RehearseOptions, forEnv, playbook string) (string, error) {
	staging, err := fleetReleases(ctx, o, o.Env, playbook)
	if err != nil {
		return "", err
	}
	if len(staging) > 1 {
		return "", fmt.Errorf("%w: the hosts of %s run different releases (%s): a rehearsal starts from one release everywhere", ErrRehearsalRefused, o.Env, describeReleases(staging))
	}
	var cur string
	for v := range staging {
		cur = v
	}
	want, gatedRuns := cur, false
	if forEnv != "" {
		prod, err := fleetReleases(ctx, o, forEnv, playbook)
		if err != nil {
			return "", err
		}
		delete(prod, "")
		switch len(prod) {
		case 0:
			// A first deploy there has no rollback to rehearse; start from
			// what the rehearsal environment runs.
		case 1:
			for v := range prod {
				want, gatedRuns = v, true
			}
		default:
			return "", fmt.Errorf("%w: the hosts of %s run different releases (%s): finish or roll back its rollout first, then rehearse from the release it runs", ErrRehearsalRefused, forEnv, describeReleases(prod))
		}
	}
	switch {
	case want == o.Release && gatedRuns:
		return "", fmt.Errorf("%w: %s already runs %s: there is nothing to rehearse for it", ErrRehearsalRefused, forEnv, o.Release)
	case want == o.Release:
		return "", fmt.Errorf("%w: %s already runs %s; a rehearsal must start from the release before it. Put %s there first: relctl rollback --env %s --to prev",
			ErrRehearsalRefused, o.Env, o.Release, o.Env, o.Env)
	case want == "":
		return "", fmt.Errorf("%w: %s runs no release yet, so there is nothing to roll back to. Deploy the release before %s there first: relctl deploy --env %s --release <previous>",
			ErrRehearsalRefused, o.Env, o.Release, o.Env)
	case cur != want:
		return "", fmt.Errorf("%w: %s runs %s but %s runs %s, and the rehearsal must roll back to what %s runs. Put %s there first: relctl deploy --env %s --release %s",
			ErrRehearsalRefused, o.Env, orNone(cur), forEnv, want, forEnv, o.Env, o.Env, want)
	}
	return want, nil
}

// fleetReleases maps each release the environment's hosts run to the hosts
// running it ("" = no release); an unreadable host refuses the rehearsal.
func fleetReleases(ctx context.Context, o RehearseOptions, env, playbook string) (map[string][]string, error) {
	f, err := ReadFleet(ctx, o.Connector, o.Project, env, playbook, nil, o.MaxParallel)
	if err != nil {
		return nil, err
	}
	if bad := f.Unreachable(); len(bad) > 0 {
		return nil, fmt.Errorf("%w: cannot read every host of %s: %s", ErrRehearsalRefused, env, strings.Join(bad, "; "))
	}
	out := map[string][]string{}
	for _, h := range f.Hosts {
		out[h.State.Current] = append(out[h.State.Current], h.Name)
	}
	return out, nil
}

func describeReleases(m map[string][]string) string {
	var vs []string
	for v := range m {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = orNone(v) + " on " + strings.Join(m[v], ", ")
	}
	return strings.Join(parts, "; ")
}

func orNone(v string) string {
	if v == "" {
		return "no release"
	}
	return v
}
