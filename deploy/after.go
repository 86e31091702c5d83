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

// HostStep is a step the plan runs after its batches, on one host that is
// not one of its targets (a load balancer, a dependent, an old host) or,
// with no Target, on the run's own connections to its targets (Host then
// says which, e.g. "new hosts"). A host move is planned as such steps.
type HostStep struct {
	Host   string           `json:"host"`
	Role   string           `json:"role"`
	Step   *Step            `json:"step"`
	Target transport.Target `json:"-"`
}

// errNotChanged: an undo that finds nothing of its step's to put back (the
// step never changed this host).
var errNotChanged = errors.New("never changed: nothing to undo")

// skippedError is a step (an undo) that had nothing to do, and says why.
type skippedError struct{ why string }

func (e *skippedError) Error() string { return e.why }

// undoNamer names a step's undo in reports when "undo-<name>" would not say
// what it does ("config-back", "lb-back").
type undoNamer interface{ UndoName() string }

// undoNeeder is a step whose undo may have nothing to do (what it would
// put back was never changed); then it is reported skipped, why saying
// why, without connecting to its host.
type undoNeeder interface {
	undoNeeded() (needed bool, why string)
}

// recordKeeper is a step that only keeps a record of the others (the move
// record): undoing it changes no host's service.
type recordKeeper interface{ keepsRecord() }

func undoName(s *Step) string {
	if n, ok := s.Action.(undoNamer); ok {
		return n.UndoName()
	}
	return "undo-" + s.Name
}

// runAfter runs the plan's steps after the batches, one at a time, in
// order; each is recorded as done before it starts, so a step that fails
// halfway is undone too.
func (r *run) runAfter(ctx context.Context) error {
	for _, hs := range r.plan.After {
		if r.stopped() {
			err, _ := r.stopError("stopped during the move")
			return err
		}
		r.mu.Lock()
		r.afterDone = append(r.afterDone, hs)
		r.mu.Unlock()
		if err := r.sideStep(ctx, hs, hs.Step.Name, hs.Step.Action.Do, false); err != nil {
			return err
		}
	}
	return nil
}

// undoAfter is the reverse walk over steps after the batches: the automatic
// rollback's, and a move back's. Every undo runs even when one after it (in
// plan order) failed; a host that cannot be reached is retried with the
// rollback's backoff.
func (r *run) undoAfter(ctx context.Context, done []*HostStep) error {
	var errs *multierror.Error
	for i := len(done) - 1; i >= 0; i-- {
		hs := done[i]
		u, ok := hs.Step.Action.(Undoer)
		if !ok {
			continue
		}
		if needed, why := hs.Step.UndoNeeded(); !needed {
			r.reportSkipped(hs, undoName(hs.Step), why)
			continue
		}
		r.mu.Lock()
		r.undoFailed = errs != nil
		r.mu.Unlock()
		if err := r.sideStep(ctx, hs, undoName(hs.Step), u.Undo, true); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
}

// afterToUndo are the steps after the batches the automatic rollback
// undoes: those this run started, and, when the plan finishes an
// unfinished run's (a resumed cutover), up to the last whose undo has
// something the unfinished run recorded to put back.
func (r *run) afterToUndo() []*HostStep {
	r.mu.Lock()
	n := len(r.afterDone)
	r.mu.Unlock()
	if r.plan.afterResumed {
		for i, hs := range r.plan.After {
			if needed, _ := hs.Step.UndoNeeded(); needed {
				n = max(n, i+1)
			}
		}
	}
	return r.plan.After[:n]
}

// reportSkipped reports an undo that had nothing to do.
func (r *run) reportSkipped(hs *HostStep, name, why string) {
	res := &StepResult{Host: hs.Host, Phase: hs.Step.Phase, Name: name, Kind: hs.Step.Kind, Status: StatusSkipped, Detail: why}
	r.engine.journal(state.JournalEvent{Kind: "step-end", Host: hs.Host, Step: res.ID(), Status: res.Status, Detail: why})
	r.mu.Lock()
	r.report.MoveSteps = append(r.report.MoveSteps, res)
	r.mu.Unlock()
	r.engine.emit(Event{Kind: StepDone, Plan: r.plan, Host: hs.Host, Result: res})
}

// earlierUndoFailed says whether an undo of this walk failed before the
// current one: a step whose undo only makes sense once everything after it
// is back (the move record saying moved-back) leaves things as they are.
func (h *hostRun) earlierUndoFailed() bool {
	h.run.mu.Lock()
	defer h.run.mu.Unlock()
	return h.run.undoFailed
}

// sideStep runs one of hs's actions (do or undo) as a reported step; when
// retry is set (undoing), an unreachable host is retried with backoff.
func (r *run) sideStep(ctx context.Context, hs *HostStep, name string, do func(context.Context, *hostRun) (string, error), retry bool) error {
	backoff := r.engine.backoff()
	for attempt := 0; ; attempt++ {
		err := r.sideStepOnce(ctx, hs, name, do)
		if err == nil || !retry || !unreachable(err) || attempt >= len(backoff) || ctx.Err() != nil {
			return err
		}
		r.engine.logEvent(hs.Host, "%s/%s: host unreachable (%v); retrying in %s", hs.Step.Phase, name, err, backoff[attempt])
		select {
		case <-ctx.Done():
		case <-time.After(backoff[attempt]):
		}
	}
}

func (r *run) sideStepOnce(ctx context.Context, hs *HostStep, name string, do func(context.Context, *hostRun) (string, error)) error {
	step := &Step{Phase: hs.Step.Phase, Name: name, Kind: hs.Step.Kind}
	h := &hostRun{engine: r.engine, run: r, plan: r.plan, report: &HostReport{Name: hs.Host}, host: &HostPlan{Name: hs.Host, Target: hs.Target}}
	var res *StepResult
	var err error
	if hs.Target.Name != "" {
		h.conn, err = r.engine.Connector.Get(ctx, hs.Target)
	}
	if err != nil {
		// Reported like a step, so the table says where it stopped.
		err = fmt.Errorf("%s: %w", hs.Host, err)
		res = &StepResult{Host: hs.Host, Phase: step.Phase, Name: step.Name, Kind: step.Kind, Status: StatusFailed, Error: err.Error()}
	} else {
		r.engine.emit(Event{Kind: StepStarted, Plan: r.plan, Host: hs.Host, Step: step})
		res, err = h.execute(ctx, step, do)
	}
	r.mu.Lock()
	r.report.MoveSteps = append(r.report.MoveSteps, res)
	r.mu.Unlock()
	r.engine.emit(Event{Kind: StepDone, Plan: r.plan, Host: hs.Host, Result: res})
	if err != nil && res.Status == StatusFailed {
		return &stepError{host: hs.Host, step: step.ID(), err: err}
	}
	return nil
}

// after runs (or, moving back, undoes) the plan's steps after the batches.
func (r *run) after(ctx context.Context) *Failure {
	p := r.plan
	r.phase, r.batch = "move", len(p.Batches)
	var err error
	if p.UndoAfter {
		err = r.undoAfter(ctx, p.After)
	} else {
		err = r.runAfter(ctx)
	}
	if err == nil {
		return nil
	}
	f := &Failure{Phase: "move", Batch: len(p.Batches), Report: r.report, Err: err}
	switch {
	case p.AutoRollback && ctx.Err() != nil && r.afterChanged():
		// Aborted (the second interrupt): nothing will undo what the
		// move changed, so it is left as it is, and said so.
		f.Interrupted = true
		r.report.MoveUnresolved = fmt.Sprintf("aborted during the move, not undone: %v", firstLineOf(err))
	case p.AutoRollback:
		f.Interrupted = r.stopped() || ctx.Err() != nil
	case !errors.Is(err, ErrMoveState): // a refusal changed nothing
		r.report.MoveUnresolved = err.Error()
	}
	return f
}

// afterChanged says whether a step after the batches that this run (or an
// unfinished one it resumes) did may have changed something its undo
// would put back.
func (r *run) afterChanged() bool {
	for _, hs := range r.afterToUndo() {
		if _, ok := hs.Step.Action.(recordKeeper); ok {
			continue
		}
		if needed, _ := hs.Step.UndoNeeded(); needed {
			return true
		}
	}
	return false
}

// finishAfter ends a run whose steps after the batches failed: rolled back
// when the plan says so (a cutover), reported as it is otherwise.
func (r *run) finishAfter(ctx context.Context, f *Failure) (*Report, error) {
	if r.plan.AutoRollback {
		return r.fail(ctx, f)
	}
	return r.finish(ctx, f)
}

func firstLineOf(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
