package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
)

func pid() int { return os.Getpid() }

// hostRun is one host's part of a run.
type hostRun struct {
	engine *Engine
	run    *run
	plan   *Plan
	host   *HostPlan
	conn   transport.Conn
	report *HostReport
	// state is the host's release state as read under the lock and kept
	// up to date by this run's own switches while stateFresh; a write the
	// run cannot account for (a history event) clears stateFresh.
	state      *state.HostState
	stateFresh bool
	// lockRead is the state the lock's session read, until learnState.
	lockRead *state.HostState

	// completed lists the steps that ran on the host, in order, including
	// the one that failed: the automatic rollback undoes them in reverse.
	// What each changed (its undo state) is kept on its action.
	completed []*Step
}

func (h *hostRun) now() time.Time { return h.engine.now() }

func (h *hostRun) setCurrent(v string) { h.report.After = v }

func (h *hostRun) readState(ctx context.Context) (*state.HostState, error) {
	return state.ReadHostState(ctx, h.conn, h.host.Layout, "read-state")
}

// gotLockRead takes the state the lock's session read (its own goroutine).
// Output it cannot parse is dropped: learnState reads the host again.
func (h *hostRun) gotLockRead(out []byte) {
	if st, err := h.host.Layout.ParseHostState(string(out)); err == nil {
		h.lockRead = st
	}
}

// knownState is the host's state as this run last knew it: the read under
// the lock kept up to date by its own switches, or a fresh read when the
// run wrote something else since (a history event).
func (h *hostRun) knownState(ctx context.Context) (st *state.HostState, cached bool, err error) {
	if h.stateFresh && h.state != nil {
		return h.state, true, nil
	}
	if st, err = h.readState(ctx); err == nil {
		h.state, h.stateFresh = st, true
	}
	return st, false, err
}

// forgetState: the run wrote to the host's history itself; read it again
// before the next switch.
func (h *hostRun) forgetState() { h.stateFresh = false }

// runPhase runs this host's steps of one phase in order. It starts no step
// once the batch saw a failure (failed) or the run was asked to stop.
func (h *hostRun) runPhase(ctx context.Context, phase string, failed *stopFlag) error {
	for _, s := range h.host.Steps {
		if s.Phase != phase {
			continue
		}
		if failed.raised() {
			return nil
		}
		if h.run.stopped() {
			return errStopped
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: step %s not started: %w", h.host.Name, s.ID(), err)
		}
		if err := h.runStep(ctx, s); err != nil {
			failed.raise()
			return err
		}
	}
	return nil
}

func (h *hostRun) runStep(ctx context.Context, s *Step) error {
	if s.Phase != "preflight" {
		h.report.Touched = true
	}
	h.completed = append(h.completed, s)
	backoff := h.engine.backoff()
	attempt := 0
	for {
		h.engine.emit(Event{Kind: StepStarted, Plan: h.plan, Host: h.host.Name, Step: s})
		res, err := h.execute(ctx, s, s.Action.Do)
		h.report.Steps = append(h.report.Steps, res)
		h.engine.emit(Event{Kind: StepDone, Plan: h.plan, Host: h.host.Name, Result: res})
		if err == nil {
			return nil
		}
		// A rollback is the way back: a host lost in the middle of one of
		// its steps (its connection, or its bastion's, dropped) is dialled
		// again and the step run again, as the automatic rollback does.
		// Each step of a rollback can run twice: activate compares the
		// host's history first, the others restart or check.
		for h.plan.Kind == KindRollback && unreachable(err) && attempt < len(backoff) && ctx.Err() == nil && !h.run.stopped() {
			h.engine.logEvent(h.host.Name, "%s: host unreachable (%v); retrying in %s", s.ID(), err, backoff[attempt])
			select {
			case <-ctx.Done():
			case <-time.After(backoff[attempt]):
			}
			attempt++
			var conn transport.Conn
			if conn, err = h.engine.Connector.Get(ctx, h.host.Target); err == nil {
				h.conn = conn
			}
		}
		if err != nil {
			if attempt > 0 && unreachable(err) {
				err = fmt.Errorf("still unreachable after %d attempts: %w", attempt+1, err)
			}
			h.report.Error = err.Error()
			return &stepError{host: h.host.Name, step: s.ID(), err: err}
		}
	}
}

// stepError names host and step once, even when the cause names the host too.
type stepError struct {
	host, step string
	err        error
}

func (e *stepError) Error() string {
	return fmt.Sprintf("%s: step %s: %s", e.host, e.step, strings.TrimPrefix(e.err.Error(), e.host+": "))
}

func (e *stepError) Unwrap() error { return e.err }

// execute runs one action with logging and journaling and returns its result.
func (h *hostRun) execute(ctx context.Context, s *Step, do func(context.Context, *hostRun) (string, error)) (*StepResult, error) {
	log := zerolog.Ctx(ctx).With().Str("step", s.ID()).Logger()
	started := h.now()
	h.engine.logEvent(h.host.Name, "step %s started", s.ID())
	h.engine.journal(state.JournalEvent{Kind: "step-start", Host: h.host.Name, Step: s.ID()})
	// A panic in the step (a bug in relctl) is the step's failure on this
	// host: the run goes on to roll back, with the stack in the run log.
	var detail string
	err := fanout.Guard(fanout.WithRecorder(ctx, h.run.recordPanic), h.host.Name, func() error {
		injectedPanic(h.host.Name, s.ID())
		var err error
		detail, err = do(log.WithContext(ctx), h)
		return err
	})
	res := &StepResult{
		Host: h.host.Name, Phase: s.Phase, Name: s.Name, Kind: s.Kind,
		Status: StatusOK, Detail: detail, Elapsed: h.now().Sub(started),
	}
	switch {
	case errors.Is(err, errNoUndo):
		res.Status, res.Detail, err = StatusSkipped, "no undo command", nil
	case errors.Is(err, errNotChanged):
		res.Status, res.Detail, err = StatusSkipped, errNotChanged.Error(), nil
	case errors.As(err, new(*skippedError)):
		res.Status, res.Detail, err = StatusSkipped, err.Error(), nil
	case errors.Is(err, errRestoredLater):
		res.Status, res.Detail, err = StatusSkipped, errRestoredLater.Error(), nil
	case err != nil:
		res.Status, res.Error = StatusFailed, err.Error()
		log.Debug().Err(err).Msg("step failed")
	}
	if err != nil {
		h.engine.logEvent(h.host.Name, "step %s failed: %v", s.ID(), err)
	} else {
		h.engine.logEvent(h.host.Name, "step %s %s %s", s.ID(), res.Status, detail)
	}
	h.engine.journal(state.JournalEvent{Kind: "step-end", Host: h.host.Name, Step: s.ID(), Status: res.Status, Detail: detail, Error: res.Error})
	return res, err
}

// allResults is every step and rollback step result, in order.
func (h *hostRun) allResults() []*StepResult {
	out := append([]*StepResult{}, h.report.Steps...)
	if h.report.Rollback != nil {
		out = append(out, h.report.Rollback.Steps...)
	}
	return out
}
