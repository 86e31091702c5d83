package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
)

// tally is where a run stands, counted from its events: for the preflight,
// each batch's phases, the automatic rollback and the steps after the
// batches, the hosts done, running and failed and the step running
// longest; and from the batches done so far, an estimate of the time left.
// The console's line per phase and the live view read it; it is safe for
// concurrent use (a live view redraws from it while events arrive).
type tally struct {
	mu    sync.Mutex
	plan  *deploy.Plan
	skip  map[string]bool // hosts a resumed run leaves out
	start time.Time
	end   time.Time
	// outcome is how the run ended (runOutcome), once it did
	outcome string

	preflight *phaseTally
	// batches' phase tallies, by batch index then in phase order; made
	// when the batch starts.
	phases   map[int][]*phaseTally
	rollback *phaseTally
	after    *phaseTally

	// the estimate: batches done (their hosts and time), the one running
	current     *deploy.Batch
	batchStart  time.Time
	batchesDone map[int]bool
	doneRounds  int
	doneTime    time.Duration
}

// phaseTally is one line of the run: a batch's phase, the preflight, the
// automatic rollback or the steps after the batches. Its units are hosts
// (steps, for the steps after the batches).
type phaseTally struct {
	label string // "batch 2/3 (web-[3-12])", "preflight", "rollback"
	phase string // the phase, for a batch's; else ""
	units []string
	// want is the steps each unit runs here; a unit is done when as many
	// ended, none failed. 0: it is done when said (rollback: its host).
	want    map[string]int
	ended   map[string]int
	failed  []string
	lastBad map[string]string // the unit's failed step (run again: a retry)
	done    int
	running map[string]runningStep

	started, finished time.Time
	stopped           error // PhaseDone's error
	over              bool  // no more events will change it
}

type runningStep struct {
	host, step string
	since      time.Time
}

func newTally(p *deploy.Plan, skip map[string]bool) *tally {
	t := &tally{plan: p, skip: skip, phases: map[int][]*phaseTally{}, batchesDone: map[int]bool{}}
	t.preflight = t.hostPhase("preflight", playbooks.PhasePreflight, p.Hosts())
	return t
}

// hostPhase is the tally of phase on hosts: the hosts with steps in it,
// skipped hosts left out.
func (t *tally) hostPhase(label, phase string, hosts []*deploy.HostPlan) *phaseTally {
	pt := newPhaseTally(label, phase)
	for _, hp := range hosts {
		if t.skip[hp.Name] {
			continue
		}
		n := 0
		for _, s := range hp.Steps {
			if s.Phase == phase {
				n++
			}
		}
		if n > 0 {
			pt.units = append(pt.units, hp.Name)
			pt.want[hp.Name] = n
		}
	}
	return pt
}

func newPhaseTally(label, phase string) *phaseTally {
	return &phaseTally{label: label, phase: phase, want: map[string]int{}, ended: map[string]int{},
		lastBad: map[string]string{}, running: map[string]runningStep{}}
}

// batchLabel is "batch 2/5 (web-[3-12])".
func batchLabel(b *deploy.Batch, total int) string {
	names := make([]string, len(b.Hosts))
	for i, h := range b.Hosts {
		names[i] = h.Name
	}
	return fmt.Sprintf("batch %d/%d (%s)", b.Index, total, someHosts(names))
}

// observe counts ev in; the view that called it reads the tally after.
func (t *tally) observe(ev deploy.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch ev.Kind {
	case deploy.RunStarted:
		t.start = ev.Time
	case deploy.BatchStarted:
		t.current, t.batchStart = ev.Batch, ev.Time
		t.phaseTallies(ev.Batch)
	case deploy.PhaseStarted:
		if pt := t.batchPhase(ev.Batch, ev.Phase); pt != nil && pt.started.IsZero() {
			pt.started = ev.Time
		}
	case deploy.PhaseDone:
		if pt := t.batchPhase(ev.Batch, ev.Phase); pt != nil {
			pt.finish(ev.Time, ev.Err)
		}
	case deploy.BatchDone:
		t.batchDone(ev.Batch, ev.Time)
	case deploy.PreflightDone:
		t.preflight.finish(ev.Time, nil)
	case deploy.StepStarted:
		pt := t.lineOf(ev.Host, ev.Step.Phase)
		pt.start(t.unit(pt, ev.Host, ev.Step.ID()), ev.Host, ev.Step.ID(), ev.Time)
	case deploy.StepDone:
		pt := t.lineOf(ev.Host, ev.Result.Phase)
		pt.stepEnded(t.unit(pt, ev.Host, ev.Result.ID()), ev.Result, pt == t.after)
	case deploy.RollbackStarted:
		t.rollback = newPhaseTally("Rollback", "")
		t.rollback.units = slices.Clone(ev.Hosts)
		t.rollback.started = ev.Time
	case deploy.RollbackStepStarted:
		if t.rollback != nil {
			t.rollback.start(ev.Host, ev.Host, ev.Step.ID(), ev.Time)
		}
	case deploy.RollbackStepDone:
		if t.rollback != nil {
			t.rollback.stepEnded(ev.Host, ev.Result, false)
		}
	case deploy.RollbackHostDone:
		if t.rollback != nil {
			t.rollback.unitEnded(ev.Host, ev.Err != nil)
		}
	case deploy.RollbackDone:
		if t.rollback != nil {
			t.rollback.finish(ev.Time, nil)
		}
	case deploy.RunDone:
		t.end, t.outcome = ev.Time, runOutcome(ev.Report, ev.Err)
		for _, pt := range t.lines() {
			pt.finish(ev.Time, ev.Err)
		}
	}
}

// phaseTallies makes batch b's tallies, one per phase it has steps in.
func (t *tally) phaseTallies(b *deploy.Batch) []*phaseTally {
	if pts, ok := t.phases[b.Index]; ok {
		return pts
	}
	var pts []*phaseTally
	label := batchLabel(b, len(t.plan.Batches))
	for _, phase := range playbooks.Phases[1:] {
		if pt := t.hostPhase(label, phase, b.Hosts); len(pt.units) > 0 {
			pts = append(pts, pt)
		}
	}
	t.phases[b.Index] = pts
	return pts
}

func (t *tally) batchPhase(b *deploy.Batch, phase string) *phaseTally {
	if b == nil {
		return nil
	}
	for _, pt := range t.phaseTallies(b) {
		if pt.phase == phase {
			return pt
		}
	}
	return nil
}

// Locked accessors, for the views (the methods above expect t.mu held).

// phaseLine is batch b's line for phase; nil when it has no steps there.
func (t *tally) phaseLine(b *deploy.Batch, phase string) *phaseTally {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.batchPhase(b, phase)
}

// batchLines are batch b's lines, one per phase it has steps in.
func (t *tally) batchLines(b *deploy.Batch) []*phaseTally {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.phaseTallies(b)
}

// preflightLine and rollbackLine are the preflight's line and the
// automatic rollback's (nil before it starts).
func (t *tally) preflightLine() *phaseTally {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.preflight
}

func (t *tally) rollbackLine() *phaseTally {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rollback
}

// lineOf is the tally a step of host in phase counts in.
func (t *tally) lineOf(host, phase string) *phaseTally {
	if phase == playbooks.PhasePreflight {
		return t.preflight
	}
	if b := t.batchOf(host); b != nil {
		if pt := t.batchPhase(b, phase); pt != nil {
			return pt
		}
	}
	// A step after the batches (load balancers, dependents, old hosts),
	// or its undo.
	if t.after == nil {
		t.after = newPhaseTally("Move", "")
	}
	return t.after
}

// unit is what a step counts for on line pt: its host, or on the line of
// the steps after the batches, where a host may run several, the step.
func (t *tally) unit(pt *phaseTally, host, step string) string {
	if pt == t.after {
		return host + " " + step
	}
	return host
}

func (t *tally) batchOf(host string) *deploy.Batch {
	for _, b := range t.plan.Batches {
		for _, hp := range b.Hosts {
			if hp.Name == host {
				return b
			}
		}
	}
	return nil
}

func (t *tally) batchDone(b *deploy.Batch, at time.Time) {
	if t.batchesDone[b.Index] {
		return
	}
	t.batchesDone[b.Index] = true
	if !t.batchStart.IsZero() {
		t.doneTime += at.Sub(t.batchStart)
		t.doneRounds += t.rounds(b)
	}
	t.current, t.batchStart = nil, time.Time{}
}

// rounds is how many hosts at a time batch b runs in: its time, roughly.
func (t *tally) rounds(b *deploy.Batch) int {
	n := 0
	for _, hp := range b.Hosts {
		if !t.skip[hp.Name] {
			n++
		}
	}
	limit := t.plan.MaxParallel
	if limit <= 0 {
		return min(n, 1)
	}
	return (n + limit - 1) / limit
}

// lines are every tally made so far, in the run's order.
func (t *tally) lines() []*phaseTally {
	out := []*phaseTally{t.preflight}
	for _, b := range t.plan.Batches {
		out = append(out, t.phases[b.Index]...)
	}
	if t.after != nil {
		out = append(out, t.after)
	}
	if t.rollback != nil {
		out = append(out, t.rollback)
	}
	return out
}

// estimate is the time the batches not done yet will take, from the time
// per round of hosts (max_parallel at once) of the batches done so far;
// ok is false before the first batch is done.
func (t *tally) estimate(now time.Time) (left time.Duration, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.doneRounds == 0 || !t.end.IsZero() {
		return 0, false
	}
	perRound := t.doneTime / time.Duration(t.doneRounds)
	for i, b := range t.plan.Batches {
		if t.batchesDone[b.Index] {
			continue
		}
		// A batch takes its rounds; the running one has been at it a
		// while, the others wait for the pause first.
		batch := perRound * time.Duration(t.rounds(b))
		switch {
		case b == t.current:
			batch = max(batch-now.Sub(t.batchStart), 0)
		case i > 0:
			batch += t.plan.Pause
		}
		left += batch
	}
	return left, true
}

// hostsDone counts the hosts of the batches done, of all the run works on.
func (t *tally) hostsDone() (done, all int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.plan.Batches {
		for _, hp := range b.Hosts {
			if t.skip[hp.Name] {
				continue
			}
			all++
			if t.batchesDone[b.Index] {
				done++
			}
		}
	}
	return done, all
}

func (pt *phaseTally) start(unit, host, step string, at time.Time) {
	if pt.started.IsZero() {
		pt.started = at
	}
	if pt.lastBad[unit] == step {
		// The step runs again (a host reconnected): its failure was not the last word.
		delete(pt.lastBad, unit)
		pt.failed = slices.DeleteFunc(pt.failed, func(u string) bool { return u == unit })
		pt.ended[unit]--
	}
	pt.running[unit] = runningStep{host: host, step: step, since: at}
}

// stepEnded counts a step's end; a unit of one step (byStep) is done with it.
func (pt *phaseTally) stepEnded(unit string, res *deploy.StepResult, byStep bool) {
	delete(pt.running, unit)
	if byStep {
		pt.units = append(pt.units, unit)
		pt.unitEnded(unit, res.Status == deploy.StatusFailed)
		return
	}
	pt.ended[unit]++
	if res.Status == deploy.StatusFailed {
		pt.lastBad[unit] = res.ID()
		if !slices.Contains(pt.failed, unit) {
			pt.failed = append(pt.failed, unit)
		}
		return
	}
	if w := pt.want[unit]; w > 0 && pt.ended[unit] == w && !slices.Contains(pt.failed, unit) {
		pt.done++
	}
}

// unitEnded: the unit is through, failed or not (a host's rollback).
func (pt *phaseTally) unitEnded(unit string, failed bool) {
	delete(pt.running, unit)
	if failed {
		if !slices.Contains(pt.failed, unit) {
			pt.failed = append(pt.failed, unit)
		}
		return
	}
	pt.done++
}

func (pt *phaseTally) finish(at time.Time, err error) {
	if pt.over {
		return
	}
	pt.over, pt.finished, pt.stopped = true, at, err
	if pt.started.IsZero() {
		pt.started = at
	}
}

// longest is the step running longest: host, step and for how long.
func (pt *phaseTally) longest(now time.Time) (runningStep, time.Duration, bool) {
	var best runningStep
	found := false
	for _, r := range pt.running {
		if !found || r.since.Before(best.since) || (r.since.Equal(best.since) && r.host < best.host) {
			best, found = r, true
		}
	}
	return best, now.Sub(best.since), found
}

// counts: units done, running, failed, and in all.
func (pt *phaseTally) counts() (done, running, failed, all int) {
	return pt.done, len(pt.running), len(pt.failed), len(pt.units)
}

// summary is the line a phase ends with, e.g. "batch 2/5 (web-[3-12]):
// stage done: 10 ok (1.2s)"; "... verify FAILED: 9 ok, 1 failed: web7
// (1.2s)"; every failed unit named.
func (pt *phaseTally) summary() string {
	done, _, failed, all := pt.counts()
	outcome := "done"
	switch {
	case failed > 0:
		outcome = "FAILED"
	case done < all:
		outcome = "stopped"
	}
	parts := []string{fmt.Sprintf("%d ok", done)}
	if failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed: %s", failed, allHosts(pt.failed)))
	}
	if rest := all - done - failed; rest > 0 {
		parts = append(parts, fmt.Sprintf("%d not finished", rest))
	}
	what := pt.label
	if pt.phase != "" {
		what += ": " + pt.phase
	}
	return fmt.Sprintf("%s %s: %s (%s)", what, outcome, strings.Join(parts, ", "), shortDuration(pt.finished.Sub(pt.started)))
}
