package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/notify"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// notifications are one command's [[notify]] deliveries: fired in the
// background, logged in the run log as they end, and waited for (each
// bounded by its timeout) before the command exits, when their failures
// are printed as warnings. A notification never changes how the command
// ends.
type notifications struct {
	proj    *playbooks.Project
	n       *notify.Notifier
	errOut  io.Writer
	log     *transport.RunLog
	secrets *playbooks.Secrets
	// ctx outlives the first interrupt (a run's last word is sent even
	// then), not the second: "aborting now" means it.
	ctx context.Context

	mu       sync.Mutex
	resolved map[string]error // secret name -> why it could not be resolved (nil: it was)
	warnings []error
	pending  sync.WaitGroup
}

// newNotifications are the notifications of a command on sess (nil: no
// session yet; secrets of their own, no run log).
func newNotifications(ctx context.Context, errOut io.Writer, proj *playbooks.Project, sess *session) *notifications {
	cfg := proj.Config
	ns := &notifications{proj: proj, errOut: errOut, ctx: outlivingStop(ctx), resolved: map[string]error{}}
	if sess != nil {
		ns.log, ns.secrets = sess.log, sess.secrets
	} else {
		ns.secrets = playbooks.NewSecrets(cfg)
	}
	var secretEnv []string
	for _, s := range cfg.Secrets {
		if s != nil && s.Env != "" {
			secretEnv = append(secretEnv, s.Env)
		}
	}
	ns.n = notify.New(cfg.Notify, notify.Options{
		Secret: ns.secret, Redact: ns.secrets.Redact, Dir: cfg.Dir, DropEnv: secretEnv,
		UserAgent: "relctl/" + version, Delivered: ns.delivered,
	})
	return ns
}

// secret resolves a webhook's secret once per command (a failure too:
// `pass` is not asked again), one at a time.
func (ns *notifications) secret(_ context.Context, name string) (string, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	err, done := ns.resolved[name]
	if !done {
		// Under the notifications' context, bounded by the secret's own
		// timeout: not by the delivery that asked first, whose timeout may
		// be shorter than another's that shares the secret.
		err = ns.secrets.Resolve(ns.ctx, []string{name})
		ns.resolved[name] = err
	}
	if err != nil {
		return "", err
	}
	v, _ := ns.secrets.Value(name)
	return v, nil
}

// delivered writes each delivery's outcome to the run log.
func (ns *notifications) delivered(name, event string, took time.Duration, err error) {
	if err != nil {
		ns.log.Event("", "notify %s: %s NOT delivered after %v: %v", name, event, took.Round(time.Millisecond), err)
		return
	}
	ns.log.Event("", "notify %s: %s delivered in %v", name, event, took.Round(time.Millisecond))
}

// fire delivers ev in the background; wait waits for it.
func (ns *notifications) fire(ev notify.Event) {
	if !ns.wanted(ev) {
		return
	}
	ns.pending.Add(1)
	fanout.Go(ns.ctx, "notify", func() {
		defer ns.pending.Done()
		errs := ns.n.Fire(ns.ctx, ev)
		ns.mu.Lock()
		ns.warnings = append(ns.warnings, errs...)
		ns.mu.Unlock()
	}, func(p *fanout.PanicError) {
		defer ns.pending.Done()
		ns.mu.Lock()
		ns.warnings = append(ns.warnings, p)
		ns.mu.Unlock()
	})
}

func (ns *notifications) wanted(ev notify.Event) bool {
	return slices.ContainsFunc(append([]string{ev.Type}, ev.Also...), func(t string) bool { return ns.n.Wants(t, ev.Env) })
}

// wait waits for every delivery and prints each failure as a warning.
func (ns *notifications) wait() {
	ns.pending.Wait()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, err := range ns.warnings {
		fmt.Fprintf(ns.errOut, "warning: %v\n", err)
	}
	ns.warnings = nil
}

// runNotes are a deploy's or a rollback's notifications: start when it
// starts changing hosts, then how it ended.
type runNotes struct {
	*notifications
	p *deploy.Plan
}

// notifyRunStart says that p starts (in the background); the run's end
// goes to finish or ended.
func notifyRunStart(ctx context.Context, proj *playbooks.Project, sess *session, p *deploy.Plan) *runNotes {
	r := &runNotes{notifications: newNotifications(ctx, sess.errOut, proj, sess), p: p}
	ev := r.event()
	ev.Type, ev.Result = playbooks.NotifyStart, notify.ResultStarted
	ev.Hosts = map[string][]string{"targeted": planHosts(p)}
	r.fire(ev)
	return r
}

// finish is ended for a deferred call: *errp is how the run ended.
func (r *runNotes) finish(errp *error) { r.ended(*errp) }

// ended says how the run ended (err: the run's error), waits for every
// notification and returns err unchanged.
func (r *runNotes) ended(err error) error {
	r.fire(runEndEvent(r.event(), r.p, err))
	r.wait()
	return err
}

// event is what every notification of the run says.
func (r *runNotes) event() notify.Event {
	p := r.p
	return notify.Event{Run: p.RunID, Kind: p.Kind, Project: r.proj.Config.Project, Env: p.Env, Playbook: p.Playbook,
		Release: p.Version, From: p.From, Operator: state.Operator(), Controller: state.Controller()}
}

// runEndEvent is ev for a run that ended with err: how it ended, its
// hosts by outcome, relctl's exit code.
func runEndEvent(ev notify.Event, p *deploy.Plan, err error) notify.Event {
	ev.ExitCode = notify.IntPtr(quietExitCode(err))
	rolledBackRun := p.Kind == deploy.KindRollback
	var failure *deploy.Failure
	var locked *state.LockedError
	switch {
	case err == nil:
		ev.Type, ev.Result = playbooks.NotifySuccess, notify.ResultSucceeded
		ev.Hosts = map[string][]string{notify.HostOK: planHosts(p)}
	case errors.As(err, &failure) && failure.Report != nil:
		ev.Type = playbooks.NotifyFailure
		ev.Result, ev.Hosts, ev.Detail = failureOutcome(failure)
		rolledBackRun = rolledBackRun || failure.Report.RolledBack
		if ev.From == "" {
			ev.From = commonBefore(failure.Report)
		}
	case errors.As(err, &locked):
		ev.Type, ev.Result, ev.Detail = playbooks.NotifyFailure, notify.ResultRefused, notify.OneLine(err.Error(), 300)
	case errors.Is(err, context.Canceled):
		ev.Type, ev.Result, ev.Detail = playbooks.NotifyFailure, notify.ResultInterrupted, notify.OneLine(err.Error(), 300)
	default:
		ev.Type, ev.Result, ev.Detail = playbooks.NotifyFailure, notify.ResultFailed, notify.OneLine(err.Error(), 300)
	}
	if rolledBackRun {
		ev.Also = []string{playbooks.NotifyRollback}
	}
	return ev
}

// failureOutcome is how a failed run ended (the journal's words), its hosts
// by outcome, and what failed where.
func failureOutcome(f *deploy.Failure) (result string, hosts map[string][]string, detail string) {
	rep := f.Report
	hosts = map[string][]string{}
	failed := map[string][]string{} // step -> hosts it failed on
	var steps []string
	for _, h := range rep.Hosts {
		hosts[hostOutcome(h)] = append(hosts[hostOutcome(h)], h.Name)
		for _, s := range h.Steps {
			if s.Status == deploy.StatusFailed {
				if failed[s.ID()] == nil {
					steps = append(steps, s.ID())
				}
				failed[s.ID()] = append(failed[s.ID()], h.Name)
			}
		}
	}
	var cause string
	for _, s := range steps {
		cause += fmt.Sprintf("; %s failed on %s", s, allHosts(failed[s]))
	}
	if cause == "" {
		cause = "; " + notify.OneLine(f.Err.Error(), 300)
	}
	cause = cause[2:]
	switch {
	case rep.RolledBack && len(rep.Unresolved()) == 0:
		return notify.ResultRolledBack, hosts, "every touched host healthy; " + cause
	case rep.RolledBack:
		return notify.ResultRollbackFailed, hosts, cause
	case f.Interrupted:
		return notify.ResultInterrupted, hosts, cause
	}
	return notify.ResultFailed, hosts, cause
}

// hostOutcome is where a failed run left h.
func hostOutcome(h *deploy.HostReport) string {
	switch {
	case h.Skipped:
		return notify.HostSkipped
	case h.Unresolved():
		return notify.HostUnresolved
	case h.Rollback != nil:
		return notify.HostRolledBack
	case h.Changed():
		return notify.HostOK
	}
	return notify.HostUnchanged
}

// commonBefore is the release every host of rep ran before the run, if
// they ran one and the same.
func commonBefore(rep *deploy.Report) string {
	before := ""
	for i, h := range rep.Hosts {
		if i > 0 && h.Before != before {
			return ""
		}
		before = h.Before
	}
	return before
}

func planHosts(p *deploy.Plan) []string {
	var out []string
	for _, h := range p.Hosts() {
		out = append(out, h.Name)
	}
	return out
}

// quietExitCode is the exit code err makes relctl exit with.
func quietExitCode(err error) int {
	code, _ := exitCodeOf(err)
	return code
}

// notifyGate tells gate-refused entries that the rehearsal gate refused
// p's deploy (err a *rollback.GateError), or that --skip-rehearsal
// overrode its refusal, and waits for them. conn is the deploy's session.
func notifyGate(ctx context.Context, errOut io.Writer, proj *playbooks.Project, conn deploy.Connector, p *deploy.Plan, out *rollback.GateOutcome, err error) {
	var refused *rollback.GateError
	ev := notify.Event{Type: playbooks.NotifyGateRefused, Run: p.RunID, Kind: p.Kind, Project: proj.Config.Project, Env: p.Env,
		Playbook: p.Playbook, Release: p.Version, From: p.From, Operator: state.Operator(), Controller: state.Controller()}
	switch {
	case errors.As(err, &refused):
		ev.Result, ev.Detail, ev.ExitCode = notify.ResultRefused, refused.Reason, notify.IntPtr(quietExitCode(err))
	case err == nil && out != nil && out.Overridden != nil:
		ev.Result, ev.Detail = notify.ResultOverridden, "refusal: "+out.Overridden.Reason+"; reason: "+out.Decision.Skipped
	default:
		return
	}
	var sess *session
	if l, ok := conn.(*lazySession); ok {
		sess, _ = l.get() // open: the gate read the hosts through it
	}
	ns := newNotifications(ctx, errOut, proj, sess)
	ns.fire(ev)
	ns.wait()
}

// notifyRehearsal tells rehearsal-recorded entries that the rehearsal id
// stored its signed record rec (err: how the rehearsal ended), and waits
// for them.
func notifyRehearsal(ctx context.Context, proj *playbooks.Project, sess *session, id string, rec *rollback.Record, err error) {
	ev := notify.Event{Type: playbooks.NotifyRehearsalRecorded, Run: id, Kind: "rehearse", Project: proj.Config.Project, Env: rec.Environment,
		Playbook: rec.Playbook, Release: rec.Release, From: rec.From, Result: rec.Result, ExitCode: notify.IntPtr(quietExitCode(err)),
		Operator: rec.Operator, Controller: rec.Controller}
	cycles := fmt.Sprintf("%d cycle%s", len(rec.Cycles), plural(len(rec.Cycles)))
	if rec.Passed() {
		ev.Detail = fmt.Sprintf("rolled back to %s and deployed again (%s; release digest %s)", rec.From, cycles, rec.ReleaseDigest)
	} else {
		ev.Detail = notify.OneLine(rec.Reason, 300)
	}
	ns := newNotifications(ctx, sess.errOut, proj, sess)
	ns.fire(ev)
	ns.wait()
}
