package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
)

// rollBack undoes the run on every host it touched: each completed step is
// undone in reverse order, then, where current was switched back, the
// playbook's [rollback] steps run and the health checks are run against the
// restored release. A host that cannot be reached is retried with backoff;
// it is never dropped from the rollback.
//
// The hosts come back in waves (rollbackWaves): without [traffic], all at
// once; with it, the deploy's batches in reverse order, the canary last, so
// a batch leaves the load balancer only once the later ones are back in it.
// A wave that would take the last hosts still in the load balancer out is
// held back (holdBack): those hosts keep serving the new release, reported.
func (r *run) rollBack(ctx context.Context) {
	e := r.engine
	var touched []*HostPlan
	for _, hp := range r.plan.Hosts() {
		if h := r.runs[hp.Name]; h != nil && h.report.Touched {
			touched = append(touched, hp)
		}
	}
	after := r.afterToUndo()
	if len(touched) == 0 && len(after) == 0 {
		return
	}
	r.report.RolledBack = true
	if len(after) > 0 {
		// Traffic and dependents back on the old hosts first, before the
		// new hosts are switched back. If that fails, the new hosts may be
		// carrying the traffic: they are left as they are, and reported.
		if err := r.undoAfter(ctx, after); err != nil {
			r.report.MoveUnresolved = err.Error()
			e.logEvent("", "move not undone (%v): the new hosts stay as they are", err)
			return
		}
	}
	names := hostNames(touched)
	e.emit(Event{Kind: RollbackStarted, Plan: r.plan, Hosts: names})
	e.journal(state.JournalEvent{Kind: "rollback-start", Detail: fmt.Sprint(names)})
	e.logEvent("", "rollback of %d touched hosts: %v", len(touched), names)
	waves := rollbackWaves(r.plan, touched, r.changedTraffic)
	for i, wave := range waves {
		if i > 0 && ctx.Err() == nil {
			if out := r.lastInLB(wave); out != nil {
				r.holdBack(wave, out)
				continue
			}
		}
		if len(waves) > 1 {
			e.logEvent("", "rollback wave %d/%d: %s", i+1, len(waves), strings.Join(hostNames(wave), ", "))
		}
		_ = e.forEach(ctx, wave, e.MaxParallel, r.rollBackHost)
	}
	e.emit(Event{Kind: RollbackDone, Plan: r.plan, Hosts: names})
}

// rollBackHost rolls one touched host back and reports how that went.
func (r *run) rollBackHost(ctx context.Context, hp *HostPlan) error {
	h := r.runs[hp.Name]
	err := h.rollBack(ctx)
	var merr *multierror.Error
	if errors.As(err, &merr) {
		merr.ErrorFormat = joinErrors
	}
	if err != nil {
		h.report.Rollback.Error = err.Error()
	}
	r.engine.emit(Event{Kind: RollbackHostDone, Plan: r.plan, Host: hp.Name, Err: err})
	return err
}

// rollbackWaves orders the touched hosts for the rollback. Hosts whose
// load-balancer state the run changed (changedTraffic) come back batch by
// batch, the deploy's latest batch first and the canary last: the latest
// batch is the one out of the load balancer (or the one that just failed),
// and each batch is healthy and back in before an earlier one, still
// serving, leaves. The other hosts (no [traffic], or stopped before their
// traffic step) never leave the load balancer in the rollback: they join
// the first wave, so without [traffic] every touched host is in one wave,
// all at once.
func rollbackWaves(p *Plan, touched []*HostPlan, changedTraffic func(*HostPlan) bool) [][]*HostPlan {
	isTouched := map[string]bool{}
	for _, hp := range touched {
		isTouched[hp.Name] = true
	}
	var first []*HostPlan
	var byBatch [][]*HostPlan // latest batch first
	for i := len(p.Batches) - 1; i >= 0; i-- {
		var wave []*HostPlan
		for _, hp := range p.Batches[i].Hosts {
			switch {
			case !isTouched[hp.Name]:
			case changedTraffic(hp):
				wave = append(wave, hp)
			default:
				first = append(first, hp)
			}
		}
		if len(wave) > 0 {
			byBatch = append(byBatch, wave)
		}
	}
	if len(byBatch) == 0 {
		return [][]*HostPlan{touched}
	}
	// In plan order within the wave, as the progress output lists hosts.
	byBatch[0] = inPlanOrder(p, append(byBatch[0], first...))
	return byBatch
}

// inPlanOrder sorts hosts as the plan lists them.
func inPlanOrder(p *Plan, hosts []*HostPlan) []*HostPlan {
	in := map[string]bool{}
	for _, hp := range hosts {
		in[hp.Name] = true
	}
	var out []*HostPlan
	for _, hp := range p.Hosts() {
		if in[hp.Name] {
			out = append(out, hp)
		}
	}
	return out
}

// changedTraffic says whether the run changed the host's server in the load
// balancer (took it out, or was taking it out): its rollback takes it out,
// or puts it back.
func (r *run) changedTraffic(hp *HostPlan) bool { return trafficOf(hp) != nil }

// inLB says whether the host is in the load balancer as far as this run
// knows: it did not take it out, or it put it back.
func (r *run) inLB(hp *HostPlan) bool {
	t := trafficOf(hp)
	return t == nil || !t.off
}

// lastInLB returns the hosts this run took out of the load balancer and
// could not put back when rolling the wave back would take out every other
// host of the plan still in it; nil when some host stays in to serve.
func (r *run) lastInLB(wave []*HostPlan) []string {
	inWave := map[string]bool{}
	leaving := false
	for _, hp := range wave {
		inWave[hp.Name] = true
		leaving = leaving || (r.changedTraffic(hp) && r.inLB(hp))
	}
	if !leaving {
		return nil // nobody leaves: the wave changes nothing about capacity
	}
	if r.othersServe() {
		return nil
	}
	var out []string
	for _, hp := range r.plan.Hosts() {
		switch {
		case inWave[hp.Name]:
		case r.inLB(hp):
			return nil
		default:
			out = append(out, hp.Name)
		}
	}
	return out
}

// othersServe reports whether the playbook targets hosts outside this run
// (--hosts chose some): the run never took them out of the load balancer,
// so, as far as it knows, they serve.
func (r *run) othersServe() bool {
	p := r.plan
	if p.pb == nil || p.env == nil {
		return false
	}
	in := map[string]bool{}
	for _, hp := range p.Hosts() {
		in[hp.Name] = true
	}
	for _, h := range p.pb.TargetHosts(p.env) {
		if !in[h.Name] {
			return true
		}
	}
	return false
}

// holdBack leaves a wave as it is, because rolling it back would empty the
// load balancer: its hosts are the last in it, and the hosts named in out
// (taken out by this run, not put back) are still out. Each host of the
// wave is reported, none dropped.
func (r *run) holdBack(wave []*HostPlan, out []string) {
	e := r.engine
	e.logEvent("", "rollback of %s held back: %s out of the load balancer, and these are the last hosts in it",
		strings.Join(hostNames(wave), ", "), strings.Join(out, ", "))
	for _, hp := range wave {
		h := r.runs[hp.Name]
		err := fmt.Errorf("%s: not rolled back, left serving %s: %s could not be put back in the load balancer, and taking this host out too would leave no host in it",
			hp.Name, h.report.After, strings.Join(out, ", "))
		h.report.Rollback = &HostRollback{Error: err.Error()}
		e.logEvent(hp.Name, "%v", err)
		e.emit(Event{Kind: RollbackHostDone, Plan: r.plan, Host: hp.Name, Err: err})
	}
}

func (h *hostRun) rollBack(ctx context.Context) error {
	rb := &HostRollback{}
	h.report.Rollback = rb
	undoErrs, halted := h.undoCompleted(ctx)
	if halted {
		return undoErrs.ErrorOrNil()
	}
	started, switchedBack := h.switchState()
	switch {
	case h.report.Before == "" && !started:
		// A first deploy that stopped before switching: nothing to restore
		// but what waits for health (the load balancer's state).
		if err := h.lateUndos(ctx); err != nil {
			undoErrs = multierror.Append(undoErrs, err)
		}
		rb.Healthy = undoErrs.ErrorOrNil() == nil
		return undoErrs.ErrorOrNil()
	case h.report.Before == "" && h.plan.Move != nil:
		// A move's new host: it never served (traffic went back to the old
		// hosts first); with current removed it is as before the run.
		h.recordRemoval(ctx)
		rb.Healthy = undoErrs.ErrorOrNil() == nil
		return undoErrs.ErrorOrNil()
	case h.report.Before == "":
		// Nothing ran here before this run: there is no release to return
		// to, and what this run started may still be running.
		err := fmt.Errorf("%s: no release before this run to return to: current was removed, but what the run started may still be running", h.host.Name)
		h.recordRemoval(ctx)
		return multierror.Append(undoErrs, err).ErrorOrNil()
	case h.report.After != h.report.Before:
		// current could not be switched back: nothing else can help here.
		return undoErrs.ErrorOrNil()
	}
	if err := h.restore(ctx, switchedBack); err != nil {
		return multierror.Append(undoErrs, err).ErrorOrNil()
	}
	if undoErrs.ErrorOrNil() != nil {
		return undoErrs.ErrorOrNil()
	}
	rb.Healthy = true
	return nil
}

// undoCompleted undoes the host's completed steps in reverse. Every undo
// runs even when one before it failed (a failed undo of a run step must not
// keep current from being switched back), unless the host is still serving
// (halted): switching it back then would serve a half-switched host.
func (h *hostRun) undoCompleted(ctx context.Context) (errs *multierror.Error, halted bool) {
	for i := len(h.completed) - 1; i >= 0; i-- {
		s := h.completed[i]
		u, ok := s.Action.(Undoer)
		if !ok || s.Phase == "preflight" {
			continue
		}
		undo := &Step{Phase: "rollback", Name: undoName(s), Kind: s.Kind}
		if err := h.rollbackStep(ctx, undo, u.Undo); err != nil {
			errs = multierror.Append(errs, err)
			var serving *stillServingError
			if errors.As(err, &serving) {
				return errs, true
			}
		}
	}
	return errs, false
}

// restore brings a host whose current is back on its release before the
// run into service: the playbook's [rollback] steps and every health check
// (only the checks when current never moved), then what waits for health.
func (h *hostRun) restore(ctx context.Context, switchedBack bool) error {
	var steps []*Step
	var err error
	if switchedBack {
		steps, err = h.plan.restoreSteps(h.host, h.report.Before)
	} else {
		// current never moved: prove the release still serving is healthy.
		var hp *HostPlan
		if hp, err = h.withVersion(h.report.Before); err == nil {
			steps, err = h.plan.checkSteps(hp, "rollback")
		}
	}
	if err != nil {
		return err
	}
	for _, s := range steps {
		if err := h.rollbackStep(ctx, s, s.Action.Do); err != nil {
			if note := h.pendingLateUndo(); note != "" {
				err = fmt.Errorf("%w (%s: its release is not healthy)", err, note)
			}
			return err
		}
	}
	// Healthy again: only now does traffic come back, exactly as it was.
	return h.lateUndos(ctx)
}

// lateUndoer is an undo that waits until the host is healthy again on its
// restored release (traffic back in): the reverse walk reports it skipped
// (its Undo says errRestoredLater), and the rollback runs it last, named
// name, while pending says what is left undone ("" when nothing is).
type lateUndoer interface {
	lateUndo() (name, pending string)
	UndoWhenHealthy(ctx context.Context, h *hostRun) (string, error)
}

// lateUndos runs the pending late undos of the host's completed steps.
func (h *hostRun) lateUndos(ctx context.Context) error {
	var errs *multierror.Error
	for i := len(h.completed) - 1; i >= 0; i-- {
		l, ok := h.completed[i].Action.(lateUndoer)
		if !ok {
			continue
		}
		if name, pending := l.lateUndo(); pending != "" {
			step := &Step{Phase: "rollback", Name: name, Kind: name}
			if err := h.rollbackStep(ctx, step, l.UndoWhenHealthy); err != nil {
				errs = multierror.Append(errs, err)
			}
		}
	}
	return errs.ErrorOrNil()
}

// pendingLateUndo says what a late undo still has to do on the host ("").
func (h *hostRun) pendingLateUndo() string {
	for _, s := range h.completed {
		if l, ok := s.Action.(lateUndoer); ok {
			if _, pending := l.lateUndo(); pending != "" {
				return pending
			}
		}
	}
	return ""
}

// switcher is the step that moves current: whether it started (current may
// have moved), and whether its undo switched current back.
type switcher interface {
	switchState() (started, switchedBack bool)
}

func (h *hostRun) switchState() (started, switchedBack bool) {
	for _, s := range h.completed {
		if sw, ok := s.Action.(switcher); ok {
			a, b := sw.switchState()
			started, switchedBack = started || a, switchedBack || b
		}
	}
	return started, switchedBack
}

// recordRemoval notes in the host's history that a rollback removed current
// (a first deploy that failed): history must not claim the release is active.
func (h *hostRun) recordRemoval(ctx context.Context) {
	ev := state.HistoryEvent{Time: h.now().UTC(), Kind: "current-removed", Operator: h.engine.Operator,
		Controller: h.engine.Controller, RunID: h.plan.RunID,
		Reason: "rollback of a failed first deploy of " + h.plan.Version}
	h.forgetState()
	if err := state.AppendHistoryEvent(ctx, h.conn, h.host.Layout, ev); err != nil {
		h.engine.logEvent(h.host.Name, "recording the removal of current in history: %v", err)
	}
}

// withVersion is this host's plan rendered for another release.
func (h *hostRun) withVersion(version string) (*HostPlan, error) {
	data, err := h.plan.proj.Data(h.plan.pb, h.plan.env, h.host.host, version, h.plan.RunID)
	if err != nil {
		return nil, err
	}
	hp := *h.host
	hp.Data = data
	return &hp, nil
}

// rollbackStep runs one rollback step, reconnecting with backoff while the
// host is unreachable.
func (h *hostRun) rollbackStep(ctx context.Context, s *Step, do func(context.Context, *hostRun) (string, error)) error {
	backoff := h.engine.backoff()
	for attempt := 0; ; attempt++ {
		var res *StepResult
		conn, err := h.engine.Connector.Get(ctx, h.host.Target)
		if err == nil {
			h.conn = conn
			h.engine.emit(Event{Kind: RollbackStepStarted, Plan: h.plan, Host: h.host.Name, Step: s})
			res, err = h.execute(ctx, s, do)
			h.report.Rollback.Steps = append(h.report.Rollback.Steps, res)
			h.engine.emit(Event{Kind: RollbackStepDone, Plan: h.plan, Host: h.host.Name, Result: res})
		}
		if err == nil {
			return nil
		}
		if !unreachable(err) || attempt >= len(backoff) || ctx.Err() != nil {
			if unreachable(err) {
				return fmt.Errorf("%s: %s: still unreachable after %d attempts: %w", h.host.Name, s.ID(), attempt+1, err)
			}
			return &stepError{host: h.host.Name, step: s.ID(), err: err}
		}
		h.engine.logEvent(h.host.Name, "%s: host unreachable (%v); retrying in %s", s.ID(), err, backoff[attempt])
		select {
		case <-ctx.Done():
		case <-time.After(backoff[attempt]):
		}
	}
}

// unreachable says whether err means the host could not be talked to (as
// opposed to a command that ran and failed).
func unreachable(err error) bool {
	var dial *transport.DialError
	return errors.As(err, &dial) || errors.Is(err, transport.ErrConnectionLost)
}

// joinErrors writes a multierror on one line.
func joinErrors(errs []error) string {
	parts := make([]string, len(errs))
	for i, err := range errs {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}
