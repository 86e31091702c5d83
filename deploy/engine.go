package deploy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Connector hands out the one connection per host a run uses.
type Connector interface {
	Get(ctx context.Context, t transport.Target) (transport.Conn, error)
}

// EventKind says what happened.
type EventKind int

const (
	RunStarted EventKind = iota
	PreflightDone
	BatchStarted
	StepDone
	BatchDone
	Pausing
	RunDone
)

// Event is one thing that happened during a run, for progress output.
type Event struct {
	Kind   EventKind
	Plan   *Plan
	Batch  *Batch
	Host   string
	Result *StepResult
	Pause  time.Duration
	Report *Report
	Err    error
}

// Observer receives events; it is called from many goroutines at once.
type Observer func(Event)

// Engine executes plans.
type Engine struct {
	Connector Connector
	Observe   Observer
	Log       *transport.RunLog // per-run log; may be nil
	// Operator and Controller are recorded in every host's history.
	Operator   string
	Controller string
	// MaxParallel caps the hosts worked on at once across the run (ssh.max_parallel).
	MaxParallel int
	Now         func() time.Time
}

// Step statuses.
const (
	StatusOK     = "ok"
	StatusFailed = "failed"
)

// StepResult is how one step ended on one host.
type StepResult struct {
	Host    string        `json:"host"`
	Phase   string        `json:"phase"`
	Name    string        `json:"name"`
	Kind    string        `json:"kind"`
	Status  string        `json:"status"`
	Detail  string        `json:"detail,omitempty"`
	Error   string        `json:"error,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// ID is "phase/name".
func (r *StepResult) ID() string { return r.Phase + "/" + r.Name }

// HostReport is what happened on one host.
type HostReport struct {
	Name    string        `json:"name"`
	Address string        `json:"address"`
	Batch   int           `json:"batch"`
	Reached bool          `json:"reached"`
	Before  string        `json:"before"` // current release before the run
	After   string        `json:"after"`  // current release at the end, as last seen
	Steps   []*StepResult `json:"steps"`
	Error   string        `json:"error,omitempty"`
}

// Changed says whether the run switched this host's current release.
func (h *HostReport) Changed() bool { return h.After != h.Before }

// Report is the outcome of a run.
type Report struct {
	RunID    string        `json:"run_id"`
	Env      string        `json:"environment"`
	Version  string        `json:"release"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Hosts    []*HostReport `json:"hosts"`
}

// Host returns the named host's report.
func (r *Report) Host(name string) *HostReport {
	for _, h := range r.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Changed lists the hosts whose current release the run switched.
func (r *Report) Changed() []string {
	var out []string
	for _, h := range r.Hosts {
		if h.Changed() {
			out = append(out, h.Name)
		}
	}
	return out
}

// Failure is a deploy that stopped. Err holds every host's error.
type Failure struct {
	Phase  string
	Batch  int // 0 for preflight
	Report *Report
	Err    error
}

func (f *Failure) Error() string {
	where := "preflight"
	if f.Batch > 0 {
		where = fmt.Sprintf("batch %d, %s phase", f.Batch, f.Phase)
	}
	return fmt.Sprintf("deploy of %s to %s failed in %s: %v", f.Report.Version, f.Report.Env, where, f.Err)
}

func (f *Failure) Unwrap() error { return f.Err }

// Deploy runs the plan: preflight on every host (connect, read state, run
// preflight steps) before any host changes; then each batch, canary first,
// phase by phase, stopping at the first batch with a failure.
func (e *Engine) Deploy(ctx context.Context, p *Plan) (*Report, error) {
	rep := &Report{RunID: p.RunID, Env: p.Env, Version: p.Version, Started: e.now()}
	for _, b := range p.Batches {
		for _, hp := range b.Hosts {
			rep.Hosts = append(rep.Hosts, &HostReport{Name: hp.Name, Address: hp.Address, Batch: b.Index})
		}
	}
	finish := func(err error) (*Report, error) {
		rep.Finished = e.now()
		e.emit(Event{Kind: RunDone, Plan: p, Report: rep, Err: err})
		return rep, err
	}
	e.emit(Event{Kind: RunStarted, Plan: p})
	e.logEvent("", "run %s: deploy %s %s to %s: %d hosts in %d batches", p.RunID, p.Playbook, p.Version, p.Env, len(rep.Hosts), len(p.Batches))

	runs := make(map[string]*hostRun, len(rep.Hosts))
	var mu sync.Mutex
	err := e.forEach(ctx, p.Hosts(), e.MaxParallel, func(ctx context.Context, hp *HostPlan) error {
		hr := rep.Host(hp.Name)
		conn, err := e.Connector.Get(ctx, hp.Target)
		if err != nil {
			hr.Error = err.Error()
			return err
		}
		hr.Reached = true
		run := &hostRun{engine: e, plan: p, host: hp, conn: conn, report: hr}
		st, err := run.readState(ctx)
		if err != nil {
			hr.Error = err.Error()
			return fmt.Errorf("%s: reading release state: %w", hp.Name, err)
		}
		hr.Before, hr.After = st.Current, st.Current
		mu.Lock()
		runs[hp.Name] = run
		mu.Unlock()
		return run.runPhase(ctx, playbooks.PhasePreflight, nil)
	})
	if err != nil {
		return finish(&Failure{Phase: playbooks.PhasePreflight, Report: rep, Err: err})
	}
	e.emit(Event{Kind: PreflightDone, Plan: p})
	e.logEvent("", "preflight passed on %d hosts", len(runs))

	for i, b := range p.Batches {
		if i > 0 && p.Pause > 0 {
			e.emit(Event{Kind: Pausing, Plan: p, Batch: b, Pause: p.Pause})
			select {
			case <-ctx.Done():
			case <-time.After(p.Pause):
			}
		}
		if err := ctx.Err(); err != nil {
			return finish(&Failure{Phase: "between batches", Batch: b.Index, Report: rep, Err: fmt.Errorf("interrupted before batch %d: %w", b.Index, err)})
		}
		e.emit(Event{Kind: BatchStarted, Plan: p, Batch: b})
		e.logEvent("", "batch %d/%d%s: %s", b.Index, len(p.Batches), canaryLabel(b), strings.Join(hostNames(b.Hosts), ", "))
		limit := p.MaxParallel
		if limit <= 0 || limit > len(b.Hosts) {
			limit = len(b.Hosts)
		}
		if e.MaxParallel > 0 && e.MaxParallel < limit {
			limit = e.MaxParallel
		}
		for _, phase := range playbooks.Phases[1:] {
			stop := &stopFlag{}
			err := e.forEach(ctx, b.Hosts, limit, func(ctx context.Context, hp *HostPlan) error {
				return runs[hp.Name].runPhase(ctx, phase, stop)
			})
			if err != nil {
				return finish(&Failure{Phase: phase, Batch: b.Index, Report: rep, Err: err})
			}
		}
		e.emit(Event{Kind: BatchDone, Plan: p, Batch: b})
		e.logEvent("", "batch %d/%d done", b.Index, len(p.Batches))
	}
	e.logEvent("", "run %s: deployed %s to %d hosts", p.RunID, p.Version, len(rep.Hosts))
	return finish(nil)
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

// forEach runs fn for every host with at most limit at once and collects the
// errors, in host order, into a multierror.
func (e *Engine) forEach(ctx context.Context, hosts []*HostPlan, limit int, fn func(context.Context, *HostPlan) error) error {
	if limit <= 0 || limit > len(hosts) {
		limit = len(hosts)
	}
	errs := make([]error, len(hosts))
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, hp := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("%s: not started: %w", hp.Name, ctx.Err())
				return
			}
			defer func() { <-sem }()
			errs[i] = fn(zerolog.Ctx(ctx).With().Str("host", hp.Name).Logger().WithContext(ctx), hp)
		}()
	}
	wg.Wait()
	var all *multierror.Error
	for _, err := range errs {
		if err != nil {
			all = multierror.Append(all, err)
		}
	}
	if all == nil {
		return nil
	}
	all.ErrorFormat = hostErrorFormat
	return all
}

// hostErrorFormat lists one host error per line.
func hostErrorFormat(errs []error) string {
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = "  - " + strings.ReplaceAll(err.Error(), "\n", "\n    ")
	}
	if len(errs) == 1 {
		return strings.TrimPrefix(lines[0], "  - ")
	}
	return fmt.Sprintf("%d hosts failed:\n%s", len(errs), strings.Join(lines, "\n"))
}

func (e *Engine) emit(ev Event) {
	if e.Observe != nil {
		e.Observe(ev)
	}
}

func (e *Engine) logEvent(host, format string, args ...any) {
	if e.Log != nil {
		e.Log.Event(host, format, args...)
	}
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// hostRun is one host's part of a run.
type hostRun struct {
	engine *Engine
	plan   *Plan
	host   *HostPlan
	conn   transport.Conn
	report *HostReport
}

func (h *hostRun) now() time.Time { return h.engine.now() }

func (h *hostRun) setCurrent(v string) { h.report.After = v }

func (h *hostRun) readState(ctx context.Context) (*state.HostState, error) {
	res, err := h.conn.Run(ctx, h.host.Layout.ReadScript(), transport.RunOptions{Label: "read-state"})
	if err != nil {
		return nil, err
	}
	return state.ParseHostState(string(res.Stdout))
}

// runPhase runs this host's steps of one phase in order.
func (h *hostRun) runPhase(ctx context.Context, phase string, stop *stopFlag) error {
	for _, s := range h.host.Steps {
		if s.Phase != phase {
			continue
		}
		if stop.raised() {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: step %s not started: %w", h.host.Name, s.ID(), err)
		}
		if err := h.runStep(ctx, s); err != nil {
			stop.raise()
			return err
		}
	}
	return nil
}

func (h *hostRun) runStep(ctx context.Context, s *Step) error {
	log := zerolog.Ctx(ctx).With().Str("step", s.ID()).Logger()
	started := h.now()
	h.engine.logEvent(h.host.Name, "step %s started", s.ID())
	detail, err := s.Action.Do(log.WithContext(ctx), h)
	res := &StepResult{
		Host: h.host.Name, Phase: s.Phase, Name: s.Name, Kind: s.Kind,
		Status: StatusOK, Detail: detail, Elapsed: h.now().Sub(started),
	}
	if err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		h.report.Error = err.Error()
		log.Debug().Err(err).Msg("step failed")
		h.engine.logEvent(h.host.Name, "step %s failed: %v", s.ID(), err)
	} else {
		h.engine.logEvent(h.host.Name, "step %s ok %s", s.ID(), detail)
	}
	h.report.Steps = append(h.report.Steps, res)
	h.engine.emit(Event{Kind: StepDone, Plan: h.plan, Host: h.host.Name, Result: res})
	if err != nil {
		return fmt.Errorf("%s: step %s: %w", h.host.Name, s.ID(), err)
	}
	return nil
}
