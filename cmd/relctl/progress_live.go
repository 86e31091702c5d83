package main

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
)

// liveView draws a run on a terminal (stderr a TTY), redrawn in place by
// mpb: a header with the elapsed time and an estimate of the time left,
// then a bar per phase of the running batch with its hosts done, running
// and failed and the step running longest (host, step, how long); the
// automatic rollback its own section. A line leaves when its phase ends,
// and progress prints its summary line in its place; that, and all else
// written to stderr meanwhile (failures in full, headings, warnings), is
// printed above the bars.
type liveView struct {
	mu      sync.Mutex // orders events
	tally   *tally
	plan    *deploy.Plan
	redact  func(string) string
	now     func() time.Time
	p       *mpb.Progress
	release func()
	closed  bool

	header *mpb.Bar
	bars   map[*phaseTally]*mpb.Bar
	// the rollback section's heading
	rollbackHeading *mpb.Bar
}

// liveLabelWidth is the width of the bars' names ("batch 12/20 activate").
const liveLabelWidth = 24

// newLiveView takes over stderr's terminal (ios) for the run p, until close.
func newLiveView(ios *output.IOStreams, p *deploy.Plan, t *tally, redact func(string) string) *liveView {
	v := &liveView{tally: t, plan: p, redact: redact, now: time.Now, bars: map[*phaseTally]*mpb.Bar{}}
	v.release = ios.TakeOverErrOut(func(terminal io.Writer) io.Writer {
		v.p = mpb.New(
			mpb.WithOutput(terminal),
			// Also when the terminal is not os.Stderr's descriptor (a test's).
			mpb.ForceTTY(), mpb.WithAutoRefresh(), mpb.WithWidth(ios.StderrWidth()),
			mpb.WithRefreshRate(200*time.Millisecond),
		)
		return v.p
	})
	v.header = v.p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
		return v.redact(v.headerText())
	})))
	return v
}

// observe is the engine's Observer: the tally has counted ev already.
func (v *liveView) observe(ev deploy.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	switch ev.Kind {
	case deploy.RunStarted:
		v.addBar(v.tally.preflightLine(), "preflight")
	case deploy.BatchStarted:
		for _, pt := range v.tally.batchLines(ev.Batch) {
			v.addBar(pt, fmt.Sprintf("batch %d/%d %s", ev.Batch.Index, len(v.plan.Batches), pt.phase))
		}
	case deploy.RollbackStarted:
		rollback := v.tally.rollbackLine()
		v.endAll(rollback)
		heading := fmt.Sprintf("automatic rollback of %d touched host%s: %s", len(ev.Hosts), plural(len(ev.Hosts)), someHosts(ev.Hosts))
		v.rollbackHeading = v.p.New(0, mpb.NopStyle(), mpb.BarRemoveOnComplete(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			return v.redact("── " + heading)
		})))
		v.addBar(rollback, "rollback")
	case deploy.StepDone, deploy.RollbackHostDone, deploy.PreflightDone, deploy.PhaseDone, deploy.RollbackDone:
		v.update()
	case deploy.RunDone:
		v.update()
	}
}

// addBar adds pt's line, named name, unless it has no hosts.
func (v *liveView) addBar(pt *phaseTally, name string) {
	if pt == nil || v.bars[pt] != nil {
		return
	}
	v.tally.mu.Lock()
	n := len(pt.units)
	v.tally.mu.Unlock()
	if n == 0 {
		return
	}
	v.bars[pt] = v.p.New(int64(n), mpb.BarStyle(), mpb.BarWidth(20), mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(v.redact(name), decor.WC{W: liveLabelWidth, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return v.redact(v.lineText(pt)) })),
	)
}

// update moves each bar to its tally's hosts done; a line whose phase is
// over leaves (its summary line takes its place above).
func (v *liveView) update() {
	for pt, bar := range v.bars {
		v.tally.mu.Lock()
		done, over := pt.done, pt.over
		v.tally.mu.Unlock()
		bar.SetCurrent(int64(done))
		if over {
			bar.Abort(true)
			delete(v.bars, pt)
		}
	}
	if rb := v.tally.rollbackLine(); rb != nil && v.rollbackHeading != nil {
		v.tally.mu.Lock()
		over := rb.over
		v.tally.mu.Unlock()
		if over {
			v.rollbackHeading.SetTotal(-1, true)
		}
	}
}

// endAll removes every bar but keep's: the run moved on (to its rollback).
func (v *liveView) endAll(keep *phaseTally) {
	for pt, bar := range v.bars {
		if pt != keep {
			bar.Abort(true)
			delete(v.bars, pt)
		}
	}
}

// close ends the view: the bars leave, the header stays with the
// outcome; the terminal is stderr's again. Safe to call twice.
func (v *liveView) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.closed = true
	v.update()
	v.endAll(nil)
	if v.rollbackHeading != nil {
		v.rollbackHeading.SetTotal(-1, true)
	}
	v.header.SetTotal(-1, true)
	v.p.Wait()
	v.release()
}

// headerText is "deploy search 1.1.0 in staging: 40/200 hosts done ·
// 1m02s elapsed · about 2m10s left"; at the end, the outcome instead.
func (v *liveView) headerText() string {
	p := v.plan
	done, all := v.tally.hostsDone()
	v.tally.mu.Lock()
	start, end, outcome := v.tally.start, v.tally.end, v.tally.outcome
	v.tally.mu.Unlock()
	now := v.now()
	if !end.IsZero() {
		now = end
	}
	text := fmt.Sprintf("%s %s %s in %s: %d/%d hosts done · %s elapsed", p.Verb(), p.Playbook, p.Version, p.Env, done, all, clockDuration(now.Sub(start)))
	switch left, ok := v.tally.estimate(now); {
	case outcome != "":
		text += " · " + outcomeWords[outcome]
	case ok:
		text += " · about " + clockDuration(left) + " left"
	case done < all:
		text += " · estimate after the first batch"
	}
	return text
}

// lineText is a bar's counts: "12/20 done · 6 running · 0 failed ·
// longest: web-9 stage/upload 2.1s"; once over, how it ended and its time.
func (v *liveView) lineText(pt *phaseTally) string {
	v.tally.mu.Lock()
	defer v.tally.mu.Unlock()
	done, running, failed, all := pt.counts()
	text := fmt.Sprintf("%d/%d done · %d running · %d failed", done, all, running, failed)
	if failed > 0 {
		text += " (" + someHosts(pt.failed) + ")"
	}
	now := v.now()
	if step, d, ok := pt.longest(now); ok {
		text += fmt.Sprintf(" · longest: %s %s %s", step.host, step.step, shortDuration(d))
	}
	if pt.over || (done == all && running == 0) {
		end := pt.finished
		if end.IsZero() {
			end = now
		}
		text += " · " + shortDuration(end.Sub(pt.started))
	}
	return text
}

// outcomeWords say a run's outcome (runOutcome) on the live view's header.
var outcomeWords = map[string]string{
	"succeeded": "done", "rolled-back": "FAILED, rolled back", "rollback-failed": "FAILED, rollback FAILED",
	"interrupted": "interrupted", "failed": "FAILED", "refused": "refused",
}

// clockDuration is a duration to the second: "42s", "3m05s", "1h02m".
func clockDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// runOutcome is how a run ended, as its journal's run-end says it:
// succeeded, rolled-back, rollback-failed, interrupted, failed, refused.
func runOutcome(rep *deploy.Report, err error) string {
	var failure *deploy.Failure
	var locked *state.LockedError
	isFailure := errors.As(err, &failure)
	switch {
	case err == nil:
		return "succeeded"
	case errors.As(err, &locked):
		return "refused"
	case isFailure && rep != nil && rep.RolledBack && len(rep.Unresolved()) == 0:
		return "rolled-back"
	case isFailure && rep != nil && rep.RolledBack:
		return "rollback-failed"
	case isFailure && failure.Interrupted:
		return "interrupted"
	}
	return "failed"
}
