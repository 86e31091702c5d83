package deploy

import (
	"context"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Connector hands out the one connection per host a run uses (and a new one
// after a connection was lost).
type Connector = fleet.Connector

// EventKind says what happened.
type EventKind int

const (
	RunStarted EventKind = iota
	LocksTaken
	PreflightDone
	BatchStarted
	StepDone
	BatchDone
	Pausing
	Stopping
	RollbackStarted
	RollbackStepDone
	RollbackHostDone
	RunDone
	// StepStarted: Step starts on Host (a batch's step, a preflight or
	// check step, or a step after the batches); its StepDone follows.
	StepStarted
	// RollbackStepStarted: the automatic rollback starts Step on Host; its
	// RollbackStepDone follows.
	RollbackStepStarted
	// PhaseStarted and PhaseDone frame one phase (Phase) of Batch's hosts;
	// PhaseDone's Err is the phase's failure, or why it stopped.
	PhaseStarted
	PhaseDone
	// RollbackDone: the automatic rollback that RollbackStarted announced
	// ended (Hosts: the same hosts; RollbackHostDone said how each went).
	RollbackDone
)

// Event is one thing that happened during a run, for progress output.
type Event struct {
	Kind   EventKind
	Time   time.Time // when it happened (the engine's clock)
	Plan   *Plan
	Batch  *Batch
	Phase  string // PhaseStarted, PhaseDone
	Host   string
	Hosts  []string
	Step   *Step // StepStarted, RollbackStepStarted
	Result *StepResult
	Pause  time.Duration
	Report *Report
	Locks  []state.HostLockState // LocksTaken: stale locks taken over, and hosts not locked (Err says why)
	Err    error
}

// Observer receives events; it is called from many goroutines at once.
type Observer func(Event)

// Engine executes plans: deploys and rollbacks alike.
type Engine struct {
	Connector Connector
	Observe   Observer
	Log       *transport.RunLog // per-run command log; may be nil
	Journal   *state.Journal    // durable per-run journal; may be nil
	// Operator and Controller are recorded in every host's history and lock.
	Operator   string
	Controller string
	// MaxParallel caps the hosts worked on at once across the run (ssh.max_parallel).
	MaxParallel int
	Now         func() time.Time
	// Stop, once closed, asks the run to start no new step and roll back
	// (the first SIGINT). Cancelling the context aborts at once (the second).
	Stop <-chan struct{}
	// LockTTL is how old a lock heartbeat may be before the lock is stale.
	LockTTL time.Duration
	// Backoff is the wait between reconnect attempts while rolling back an
	// unreachable host; default 1s, 2s, 4s, 8s, 16s.
	Backoff []time.Duration
}

var errNoUndo = errors.New("no undo")

// errStopped marks work not started because the run was asked to stop.
var errStopped = errors.New("stopped: no new work after interrupt")

// Run runs the plan - a deploy, a rollback, a move back or a finalize -
// with the run's decisions. Every host is connected to, read and locked,
// and runs its preflight steps (including the rollback-readiness check)
// before any host changes; then each batch runs, canary first, phase by
// phase, then the steps after the batches. On a failure (or the first
// interrupt) no new step starts, running steps finish, and, for deploys,
// everything the run touched is undone (the reverse walk).
func (e *Engine) Run(ctx context.Context, p *Plan, opts RunOptions) (*Report, error) {
	if names := p.SecretNames(); len(names) > 0 {
		if opts.Secrets == nil {
			opts.Secrets = playbooks.NewSecrets(p.proj.Config)
		}
		// Before any host is contacted: a secret that cannot be read
		// changes nothing.
		if err := opts.Secrets.Resolve(ctx, names); err != nil {
			return nil, err
		}
	}
	r := &run{engine: e, plan: p, opts: opts, runs: map[string]*hostRun{}, stop: make(chan struct{}), done: make(chan struct{})}
	r.report = &Report{RunID: p.RunID, Kind: p.Kind, Env: p.Env, Version: p.Version, Started: e.now()}
	for _, b := range p.Batches {
		for _, hp := range b.Hosts {
			hr := &HostReport{Name: hp.Name, Address: hp.Address, Batch: b.Index, Skipped: opts.Skip[hp.Name]}
			r.report.Hosts = append(r.report.Hosts, hr)
		}
	}
	return r.guarded(ctx)
}

// run is one execution of a plan.
type run struct {
	engine *Engine
	plan   *Plan
	opts   RunOptions
	report *Report
	runs   map[string]*hostRun
	mu     sync.Mutex

	stop      chan struct{} // closed by the first interrupt or a lost lock
	stopOnce  sync.Once
	stopCause error
	done      chan struct{} // closed when the run has finished
	locks     *state.LockSet
	// summaries are the hosts' run summaries, made when the run finished.
	summaries map[string]state.HostRunSummary
	// afterDone are the steps after the batches that started, in order;
	// undoFailed: an undo of the current reverse walk failed.
	afterDone  []*HostStep
	undoFailed bool

	// where the run is, for a panic on the run's own goroutine
	phase string
	batch int
}

// guarded is execute with relctl's own bugs contained: a panic on a host's
// goroutine is that host's failure (see recordPanic), and one on the run's
// own goroutine fails the run, which then rolls back what it touched (unless
// the rollback is what panicked) before the locks are released.
func (r *run) guarded(ctx context.Context) (rep *Report, err error) {
	ctx = fanout.WithRecorder(ctx, r.recordPanic)
	defer r.unlock(ctx)
	defer func() {
		if v := recover(); v != nil {
			rep, err = r.afterPanic(ctx, fanout.Recovered(ctx, "", v))
		}
	}()
	return r.execute(ctx)
}

// afterPanic ends a run whose own goroutine panicked: every host it touched
// is rolled back (and, whatever that rollback says, not vouched for).
func (r *run) afterPanic(ctx context.Context, p *fanout.PanicError) (*Report, error) {
	f := &Failure{Phase: r.phase, Batch: r.batch, Report: r.report, Err: p}
	if r.phase == "" {
		f.Phase = playbooks.PhasePreflight
	}
	for _, h := range r.report.Hosts {
		if h.Touched && h.Panic == "" {
			h.Panic = fmt.Sprintf("the run panicked: %v", p.Value)
		}
	}
	if r.finished() { // RunDone was sent: only the error is left to return
		return r.report, f
	}
	if !r.report.RolledBack && r.plan.AutoRollback && ctx.Err() == nil {
		if err := fanout.Guard(ctx, "", func() error { r.rollBack(ctx); return nil }); err != nil {
			r.engine.logEvent("", "the rollback after a panic panicked too: %v", err)
		}
	}
	return r.finish(ctx, f)
}

// recordPanic writes a recovered panic's stack to the run log, line by line
// under the host's name, marks the host, and says where the stack is.
func (r *run) recordPanic(p *fanout.PanicError) string {
	e := r.engine
	e.logEvent(p.Host, "internal error (panic) in relctl: %v", p.Value)
	for _, line := range strings.Split(strings.TrimRight(string(p.Stack), "\n"), "\n") {
		e.logEvent(p.Host, "| %s", line)
	}
	if h := r.report.Host(p.Host); h != nil {
		// Only the host's own goroutine writes its report.
		h.Panic = fmt.Sprint(p.Value)
		if h.Error == "" {
			h.Error = "internal error (panic) in relctl: " + h.Panic
		}
	}
	return e.Log.Path()
}

func (r *run) execute(ctx context.Context) (*Report, error) {
	e, p := r.engine, r.plan
	e.emit(Event{Kind: RunStarted, Plan: p})
	e.journal(state.JournalEvent{Kind: "run-start", Env: p.Env, Command: p.Kind, Release: p.Version, From: p.From,
		Operator: e.Operator, Controller: e.Controller})
	e.logEvent("", "run %s: %s %s %s to %s: %d hosts in %d batches", p.RunID, p.Kind, p.Playbook, p.Version, p.Env, len(r.report.Hosts), len(p.Batches))
	if err := r.preflight(ctx); err != nil {
		return r.finish(ctx, err)
	}
	for i, b := range p.Batches {
		if f := r.runBatch(ctx, i, b); f != nil {
			return r.fail(ctx, f)
		}
	}
	if len(p.After) > 0 {
		if f := r.after(ctx); f != nil {
			return r.finishAfter(ctx, f)
		}
	}
	e.logEvent("", "run %s: %s of %s done on %d hosts", p.RunID, p.Kind, p.Version, len(r.activeHosts()))
	return r.finish(ctx, nil)
}

// preflight connects to and locks every host, reads each under the lock,
// checks the gate still holds, and runs the preflight
// steps: all before any host changes. An unreachable host fails the run
// before anything is locked. Hosts skipped on resume are connected and
// locked too: the interrupted run's lock is on them as well.
func (r *run) preflight(ctx context.Context) error {
	e, p := r.engine, r.plan
	r.phase = playbooks.PhasePreflight
	failed := func(err error) error { return &Failure{Phase: playbooks.PhasePreflight, Report: r.report, Err: err} }
	all, active := p.Hosts(), r.activeHosts()
	if err := e.forEach(ctx, all, e.MaxParallel, r.connect); err != nil {
		return failed(err)
	}
	if err := r.lock(ctx, all); err != nil {
		return err
	}
	// What each host runs is read under the lock (most in the lock's own
	// session): a run that ended just before cannot have moved it since.
	err := e.forEach(ctx, all, e.MaxParallel, func(ctx context.Context, hp *HostPlan) error {
		return r.runs[hp.Name].learnState(ctx)
	})
	if err != nil {
		return failed(err)
	}
	fanout.Go(ctx, "watching for an interrupt", func() { r.watchStop(ctx) }, r.stopOnPanic)
	if err := r.gateStillHolds(active); err != nil {
		return failed(err)
	}
	if r.opts.Gate.Skipped != "" {
		if err := r.recordSkippedRehearsal(ctx, active); err != nil {
			return failed(err)
		}
	}
	err = e.forEach(ctx, active, e.MaxParallel, func(ctx context.Context, hp *HostPlan) error {
		return r.runs[hp.Name].runPhase(ctx, playbooks.PhasePreflight, nil)
	})
	if err != nil {
		return &Failure{Phase: playbooks.PhasePreflight, Report: r.report, Err: err, Interrupted: r.stopped()}
	}
	e.emit(Event{Kind: PreflightDone, Plan: p})
	e.logEvent("", "preflight passed on %d hosts", len(active))
	return nil
}

// runBatch runs batch b (the i-th) phase by phase, after the pause between
// batches; nil when it passed (or has no host left to work on).
func (r *run) runBatch(ctx context.Context, i int, b *Batch) *Failure {
	e, p := r.engine, r.plan
	hosts := r.active(b.Hosts)
	if len(hosts) == 0 {
		return nil
	}
	r.phase, r.batch = "between batches", b.Index
	if i > 0 && p.Pause > 0 {
		e.emit(Event{Kind: Pausing, Plan: p, Batch: b, Pause: p.Pause})
		select {
		case <-ctx.Done():
		case <-r.stop:
		case <-time.After(p.Pause):
		}
	}
	if r.stopped() || ctx.Err() != nil {
		err, interrupted := r.stopError("stopped before batch %d", b.Index)
		return &Failure{Phase: "between batches", Batch: b.Index, Report: r.report, Interrupted: interrupted || ctx.Err() != nil, Err: err}
	}
	e.emit(Event{Kind: BatchStarted, Plan: p, Batch: b})
	e.logEvent("", "batch %d/%d%s: %s", b.Index, len(p.Batches), canaryLabel(b), strings.Join(hostNames(b.Hosts), ", "))
	limit := p.MaxParallel
	if limit <= 0 || limit > len(hosts) {
		limit = len(hosts)
	}
	if e.MaxParallel > 0 && e.MaxParallel < limit {
		limit = e.MaxParallel
	}
	for _, phase := range playbooks.Phases[1:] {
		if f := r.runBatchPhase(ctx, b, hosts, phase, limit); f != nil {
			return f
		}
	}
	e.emit(Event{Kind: BatchDone, Plan: p, Batch: b})
	e.logEvent("", "batch %d/%d done", b.Index, len(p.Batches))
	return nil
}

// runBatchPhase runs one phase on the batch's hosts; a failure, or a stop
// asked for during it, is the batch's Failure.
func (r *run) runBatchPhase(ctx context.Context, b *Batch, hosts []*HostPlan, phase string, limit int) *Failure {
	r.phase = phase
	r.engine.emit(Event{Kind: PhaseStarted, Plan: r.plan, Batch: b, Phase: phase})
	failed := &stopFlag{}
	err := r.engine.forEach(ctx, hosts, limit, func(ctx context.Context, hp *HostPlan) error {
		return r.runs[hp.Name].runPhase(ctx, phase, failed)
	})
	interrupted := ctx.Err() != nil
	if err == nil && (r.stopped() || ctx.Err() != nil) {
		var byInterrupt bool
		err, byInterrupt = r.stopError("stopped after the %s phase", phase)
		interrupted = interrupted || byInterrupt
	} else if errors.Is(err, errStopped) {
		var byInterrupt bool
		err, byInterrupt = r.stopError("stopped in the %s phase", phase)
		interrupted = interrupted || byInterrupt
	}
	r.engine.emit(Event{Kind: PhaseDone, Plan: r.plan, Batch: b, Phase: phase, Err: err})
	if err != nil {
		return &Failure{Phase: phase, Batch: b.Index, Report: r.report, Err: err, Interrupted: interrupted}
	}
	return nil
}

// ErrGateChanged: what the rehearsal gate checked before the run no longer
// holds under the lock (another run moved a host, or the record expired).
var ErrGateChanged = errors.New("the rehearsal gate no longer holds")

// ErrNotLocked: a host the run changes could not be locked (its lock
// command failed, not another run's lock): the run stopped before changing
// anything, which says nothing about the release.
var ErrNotLocked = errors.New("cannot lock what the run changes")

// gateStillHolds checks, with the hosts locked and read again, that they
// still run the release the rehearsal gate let the deploy start from.
func (r *run) gateStillHolds(hosts []*HostPlan) error {
	p, gate := r.plan, r.opts.Gate
	if gate.From == "" {
		return nil
	}
	if !gate.Until.IsZero() && r.engine.now().After(gate.Until) {
		return fmt.Errorf("%w: the rehearsal record expired at %s while the deploy waited", ErrGateChanged, gate.Until.Local().Format(time.DateTime))
	}
	for _, hp := range hosts {
		before := r.runs[hp.Name].report.Before
		if before != gate.From && before != p.Version && before != "" {
			return fmt.Errorf("%w: %s runs %s now, but the gate passed for a deploy from %s (another run changed it since): run the deploy again", ErrGateChanged, hp.Name, before, gate.From)
		}
	}
	return nil
}

// recordSkippedRehearsal writes the override of the rehearsal gate into the
// history of every host the run works on, before any of them changes: an
// override nobody can find later is refused.
func (r *run) recordSkippedRehearsal(ctx context.Context, hosts []*HostPlan) error {
	e, p := r.engine, r.plan
	e.journal(state.JournalEvent{Kind: "skip-rehearsal", Release: p.Version, Detail: r.opts.Gate.Skipped})
	return e.forEach(ctx, hosts, e.MaxParallel, func(ctx context.Context, hp *HostPlan) error {
		h := r.runs[hp.Name]
		ev := state.HistoryEvent{Time: e.now().UTC(), Kind: "skip-rehearsal", Operator: e.Operator, Controller: e.Controller,
			RunID: p.RunID, Reason: r.opts.Gate.Skipped, Detail: map[string]string{"release": p.Version, "from": h.report.Before}}
		h.forgetState()
		if err := state.AppendHistoryEvent(ctx, h.conn, hp.Layout, ev); err != nil {
			return fmt.Errorf("%s: recording the skipped rehearsal in history: %w", hp.Name, err)
		}
		return nil
	})
}

// activeHosts are the plan's hosts not skipped (resume).
func (r *run) activeHosts() []*HostPlan { return r.active(r.plan.Hosts()) }

func (r *run) active(hosts []*HostPlan) []*HostPlan {
	var out []*HostPlan
	for _, hp := range hosts {
		if !r.opts.Skip[hp.Name] {
			out = append(out, hp)
		}
	}
	return out
}

// connect opens the host's connection. A panic here is the host's error.
func (r *run) connect(ctx context.Context, hp *HostPlan) error {
	return fanout.Guard(fanout.WithRecorder(ctx, r.recordPanic), hp.Name, func() error { return r.connectUnguarded(ctx, hp) })
}

func (r *run) connectUnguarded(ctx context.Context, hp *HostPlan) error {
	hr := r.report.Host(hp.Name)
	conn, err := r.engine.Connector.Get(ctx, hp.Target)
	if err != nil {
		hr.Error = err.Error()
		return err
	}
	hr.Reached = true
	h := &hostRun{engine: r.engine, run: r, plan: r.plan, host: hp, conn: conn, report: hr}
	r.mu.Lock()
	r.runs[hp.Name] = h
	r.mu.Unlock()
	return nil
}

// learnState reads the host's release state (under the run's lock), unless
// the lock's own session already brought it (lockRead).
func (h *hostRun) learnState(ctx context.Context) error {
	st, err := h.lockRead, error(nil)
	h.lockRead = nil
	if st == nil {
		st, err = h.readState(ctx)
	}
	if err != nil {
		h.report.Error = err.Error()
		return fmt.Errorf("%s: reading release state: %w", h.host.Name, err)
	}
	h.learn(st)
	return nil
}

// learn takes st as the host's state as the run found it. Before is what
// the host ran before this run - or, when resuming, before the interrupted
// run switched it: that is the release a rollback must return to.
func (h *hostRun) learn(st *state.HostState) {
	h.state, h.stateFresh = st, true
	h.report.Before, h.report.After = st.Current, st.Current
	if id := h.run.opts.ResumeRun; id != "" {
		// The interrupted run's last switch here: a deploy to current means
		// the host ran its Previous before; a rollback already put it back.
		for i := len(st.History.Activations) - 1; i >= 0; i-- {
			if a := st.History.Activations[i]; a.RunID == id {
				if a.Kind != KindRollback && a.Version == st.Current {
					h.report.Before = a.Previous
				}
				break
			}
		}
	}
}

// lock takes the environment lock on every host of the run.
func (r *run) lock(ctx context.Context, hosts []*HostPlan) error {
	e, p := r.engine, r.plan
	targets := make([]state.LockTarget, 0, len(hosts))
	for _, hp := range hosts {
		h := r.runs[hp.Name]
		target := hp.Target
		targets = append(targets, state.LockTarget{Host: hp.Name, Conn: h.conn, Layout: hp.Layout,
			Reconnect: func(ctx context.Context) (transport.Conn, error) { return e.Connector.Get(ctx, target) },
			// The host's state is read in the lock's session, under the lock.
			Then: hp.Layout.ReadScript(), ThenLabel: "read-state", Got: h.gotLockRead})
	}
	// The rest of the lock scope: targets outside --hosts, load balancers,
	// a move's old hosts and dependents (lockscope.go).
	side, why, notLocked, err := r.sideLockTargets(ctx, hosts)
	if err != nil {
		return err
	}
	targets = append(targets, side...)
	owner := state.LockOwner{
		Operator: e.Operator, Controller: e.Controller, PID: pid(), RunID: p.RunID,
		Env: p.Env, Command: p.Kind, Release: p.Version, Started: r.report.Started,
	}
	locks, lockCtx, err := state.AcquireLocks(ctx, targets, owner, state.LockOptions{TTL: e.LockTTL, TakeOverStale: r.opts.TakeOverStaleLocks, Now: e.Now, MaxParallel: e.MaxParallel})
	var locked *state.LockedError
	switch {
	case errors.As(err, &locked):
		return err // exit 5, naming the holder
	case err != nil:
		// A host the run changes could not be locked (its lock command
		// failed or was cut): stop before changing anything.
		return &Failure{Phase: playbooks.PhasePreflight, Report: r.report, Interrupted: ctx.Err() != nil,
			Err: fmt.Errorf("%w: %w", ErrNotLocked, err)}
	}
	r.locks = locks
	for _, st := range locks.NotLocked() {
		// A host the run only guards, or a rollback's side host: left out,
		// as one that cannot be reached is.
		st.Err = fmt.Sprintf("(%s): %s", why[st.Host+"\x00"+st.Path], st.Err)
		e.logEvent(st.Host, "not locked %s", st.Err)
		e.journal(state.JournalEvent{Kind: "lock-skipped", Host: st.Host, Detail: st.Err})
		notLocked = append(notLocked, st)
	}
	took := locks.TookOver()
	for _, t := range took {
		e.journal(state.JournalEvent{Kind: "lock-takeover", Host: t.Host, Detail: describeOwner(t)})
		e.logEvent(t.Host, "took over stale lock: %s", describeOwner(t))
	}
	e.emit(Event{Kind: LocksTaken, Plan: p, Locks: append(took, notLocked...)})
	fanout.Go(ctx, "watching the locks", func() {
		// A lost lock means another run may be working on these hosts: stop.
		select {
		case <-lockCtx.Done():
			if ctx.Err() == nil && !r.finished() {
				cause := context.Cause(lockCtx)
				e.logEvent("", "stopping: %v", cause)
				r.setStopCause(cause)
				r.requestStop()
			}
		case <-ctx.Done():
		}
	}, r.stopOnPanic)
	return nil
}

// stopOnPanic stops the run when one of its watchers panicked: without it,
// an interrupt or a lost lock would go unnoticed.
func (r *run) stopOnPanic(p *fanout.PanicError) {
	r.setStopCause(p)
	r.requestStop()
}

func describeOwner(s state.HostLockState) string {
	if s.Owner == nil {
		return "unknown holder"
	}
	o := s.Owner
	return fmt.Sprintf("run %s (%s %s in %s by %s@%s, pid %d): %s", o.RunID, o.Command, o.Release, o.Env, o.Operator, o.Controller, o.PID, s.StaleReason)
}

func (r *run) unlock(ctx context.Context) {
	if r.locks == nil {
		return
	}
	// Not bounded here: Release ends a heartbeat in flight and gives each
	// host state.DefaultReleaseTimeout from then on.
	// Each host's run summary is written in the session that gives its
	// lock back.
	if err := r.locks.ReleaseAfter(context.WithoutCancel(ctx), r.summaryPreludes()); err != nil {
		r.engine.logEvent("", "releasing locks: %v", err)
		zerolog.Ctx(ctx).Warn().Err(err).Msg("releasing locks")
	}
}

// watchStop turns the engine's Stop signal into this run's stop.
func (r *run) watchStop(ctx context.Context) {
	if r.engine.Stop == nil {
		return
	}
	select {
	case <-r.engine.Stop:
		r.engine.emit(Event{Kind: Stopping, Plan: r.plan})
		r.engine.logEvent("", "interrupt: no new work; running steps finish, then rollback")
		r.setStopCause(errInterrupt)
		r.requestStop()
	case <-ctx.Done():
	case <-r.done:
	}
}

func (r *run) requestStop() { r.stopOnce.Do(func() { close(r.stop) }) }

// errInterrupt is the stop cause of the first SIGINT/SIGTERM.
var errInterrupt = errors.New("interrupted")

// setStopCause records why the run stopped; the first cause wins.
func (r *run) setStopCause(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopCause == nil {
		r.stopCause = err
	}
}

// stopError is the error a stopped run fails with: an interrupt, or the
// lost lock.
func (r *run) stopError(format string, args ...any) (error, bool) {
	r.mu.Lock()
	cause := r.stopCause
	r.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if cause == nil || errors.Is(cause, errInterrupt) {
		return fmt.Errorf("%s: %w", msg, errStopped), true
	}
	return fmt.Errorf("%s: %w", msg, cause), false
}

func (r *run) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

func (r *run) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// fail handles a failure past preflight: the automatic rollback, then finish.
func (r *run) fail(ctx context.Context, f *Failure) (*Report, error) {
	switch {
	case r.plan.AutoRollback && ctx.Err() == nil:
		r.rollBack(ctx)
	case ctx.Err() != nil:
		r.reportAborted()
	}
	return r.finish(ctx, f)
}

// reportAborted says, for a run aborted without its rollback (the second
// interrupt), what it leaves undone that the report would not show
// otherwise: hosts it took out of the load balancer, and a move (its own,
// or the unfinished one it was finishing) that may carry the traffic.
func (r *run) reportAborted() {
	for _, hp := range r.plan.Hosts() {
		if h := r.runs[hp.Name]; h != nil {
			if pending := h.pendingLateUndo(); pending != "" {
				h.report.LeftOut = pending + " (aborted before the rollback)"
			}
		}
	}
	if r.report.MoveUnresolved == "" && r.afterChanged() {
		r.report.MoveUnresolved = "aborted, not undone: the load balancers and dependents may still point at the new hosts"
	}
}

// finish records the outcome: journal, host run summaries, RunDone.
func (r *run) finish(ctx context.Context, err error) (*Report, error) {
	e, rep := r.engine, r.report
	rep.Finished = e.now()
	result := "succeeded"
	var f *Failure
	var locked *state.LockedError
	switch {
	case errors.As(err, &locked):
		result = "refused"
	case errors.As(err, &f) && rep.RolledBack && len(rep.Unresolved()) == 0:
		result = "rolled-back"
	case errors.As(err, &f) && rep.RolledBack:
		result = "rollback-failed"
	case errors.As(err, &f) && f.Interrupted:
		result = "interrupted"
	case err != nil:
		result = "failed"
	}
	hosts := map[string]string{}
	for _, h := range rep.Hosts {
		// Where each host is, as far as the run knows: not a host it
		// reached but never read (a run refused by another's lock).
		if hr := r.runs[h.Name]; h.Reached && hr != nil && (hr.state != nil || h.Touched) {
			hosts[h.Name] = h.After
		}
	}
	ev := state.JournalEvent{Kind: "run-end", Result: result, Hosts: hosts}
	if err != nil {
		ev.Error = err.Error()
	}
	e.journal(ev)
	if locked == nil {
		r.summaries = r.hostSummaries(result)
		if r.locks == nil {
			// No lock to give back: each summary costs a session of its own.
			r.writeSummaries(ctx)
		}
	}
	close(r.done)
	e.emit(Event{Kind: RunDone, Plan: r.plan, Report: rep, Err: err})
	return rep, err
}

// hostSummaries is each reached host's part of the run, by host name.
func (r *run) hostSummaries(result string) map[string]state.HostRunSummary {
	out := map[string]state.HostRunSummary{}
	for _, hp := range r.plan.Hosts() {
		h := r.runs[hp.Name]
		if h == nil {
			continue
		}
		s := state.HostRunSummary{
			RunID: r.plan.RunID, Env: r.plan.Env, Command: r.plan.Kind, Release: r.plan.Version, From: h.report.Before,
			Operator: r.engine.Operator, Controller: r.engine.Controller,
			Started: r.report.Started, Finished: r.report.Finished, Result: result, Host: hp.Name,
		}
		for _, sr := range h.allResults() {
			s.Steps = append(s.Steps, state.StepRecord{Phase: sr.Phase, Name: sr.Name, Status: sr.Status, Detail: sr.Detail, Error: sr.Error, Elapsed: sr.Elapsed})
		}
		out[hp.Name] = s
	}
	return out
}

// writeSummaries leaves each reached host its part of the run when the run
// holds no lock (best effort: the journal on the controller is the record
// of last resort). With the lock, unlock writes them.
func (r *run) writeSummaries(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var hosts []*HostPlan
	for _, hp := range r.plan.Hosts() {
		if _, ok := r.summaries[hp.Name]; ok {
			hosts = append(hosts, hp)
		}
	}
	_ = r.engine.forEach(ctx, hosts, r.engine.MaxParallel, func(ctx context.Context, hp *HostPlan) error {
		if err := state.WriteHostRunSummary(ctx, r.runs[hp.Name].conn, hp.Layout, r.summaries[hp.Name]); err != nil {
			r.engine.logEvent(hp.Name, "writing run summary: %v", err)
		}
		return nil
	})
}

// summaryPreludes are the run summaries as scripts that each host runs in
// the session that gives its lock back (each made as its host's turn comes).
func (r *run) summaryPreludes() map[string]state.Prelude {
	pre := map[string]state.Prelude{}
	for _, hp := range r.plan.Hosts() {
		s, ok := r.summaries[hp.Name]
		if !ok {
			continue
		}
		host, layout := hp.Name, hp.Layout
		pre[state.ReleaseKey(host, layout)] = state.Prelude{
			Make: func() (string, []byte, error) { return state.RunSummaryScript(layout, s) },
			Done: func(err error) {
				if err != nil {
					r.engine.logEvent(host, "writing run summary: %v", err)
				}
			},
		}
	}
	return pre
}

func canaryLabel(b *Batch) string {
	if b.Canary {
		return " (canary)"
	}
	return ""
}

func hostNames(hs []*HostPlan) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

// stopFlag tells the hosts of a batch to start no new step once one failed.
type stopFlag struct {
	mu  sync.Mutex
	set bool
}

func (s *stopFlag) raise() {
	if s != nil {
		s.mu.Lock()
		s.set = true
		s.mu.Unlock()
	}
}

func (s *stopFlag) raised() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// forEach runs fn for every host with at most limit at once and collects
// the errors, in host order (fleet.Each). Work not started because the run
// was asked to stop is left out, unless nothing else failed.
func (e *Engine) forEach(ctx context.Context, hosts []*HostPlan, limit int, fn func(context.Context, *HostPlan) error) error {
	errs := fleet.EachErrors(ctx, hosts, limit, func(hp *HostPlan) string { return hp.Name }, fn)
	failed := slices.DeleteFunc(slices.Clone(errs), func(err error) bool { return errors.Is(err, errStopped) })
	if err := fleet.Join(failed); err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) emit(ev Event) {
	if e.Observe != nil {
		ev.Time = e.now()
		e.Observe(ev)
	}
}

func (e *Engine) logEvent(host, format string, args ...any) {
	if e.Log != nil {
		e.Log.Event(host, format, args...)
	}
}

func (e *Engine) journal(ev state.JournalEvent) {
	if e.Journal == nil {
		return
	}
	if err := e.Journal.Append(ev); err != nil {
		e.logEvent(ev.Host, "journal: %v", err)
	}
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) backoff() []time.Duration {
	if e.Backoff != nil {
		return e.Backoff
	}
	return []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
}
