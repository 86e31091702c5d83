package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/transport"
)

// panicRun is a run over hosts web-1 and web-2 with a run log, touching nothing.
func panicRun(t *testing.T) (*run, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "r1.log")
	log, err := transport.OpenRunLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	e := &Engine{Log: log}
	p := &Plan{RunID: "r1", Env: "staging", Version: "1.2.0"}
	r := &run{engine: e, plan: p, runs: map[string]*hostRun{}, stop: make(chan struct{}), done: make(chan struct{}),
		report: &Report{RunID: "r1", Env: "staging", Version: "1.2.0"}}
	for _, name := range []string{"web-1", "web-2"} {
		hr := &HostReport{Name: name, Before: "1.1.0", After: "1.1.0", Reached: true}
		r.report.Hosts = append(r.report.Hosts, hr)
		r.runs[name] = &hostRun{engine: e, run: r, plan: p, host: &HostPlan{Name: name}, report: hr}
	}
	return r, logPath
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStepPanicIsTheStepsFailure: a panic inside a step fails that step on
// that host (result, report, error naming host and step), and its stack goes
// to the run log under the host's name, not to the caller.
func TestStepPanicIsTheStepsFailure(t *testing.T) {
	r, logPath := panicRun(t)
	h := r.runs["web-2"]
	step := &Step{Phase: "activate", Name: "restart", Kind: "run", Action: panicAction{}}
	err := h.runStep(context.Background(), step)
	var p *fanout.PanicError
	if !errors.As(err, &p) {
		t.Fatalf("runStep = %v, want a step error wrapping a *fanout.PanicError", err)
	}
	want := "web-2: step activate/restart: internal error (panic) in relctl: runtime error: invalid memory address or nil pointer dereference; the stack is in " + logPath
	if err.Error() != want {
		t.Errorf("error\n%q\nwant\n%q", err.Error(), want)
	}
	res := h.report.Steps[len(h.report.Steps)-1]
	if res.Status != StatusFailed || !strings.Contains(res.Error, "internal error (panic)") {
		t.Errorf("step result %+v, want failed with the panic", res)
	}
	if !h.report.Touched || h.report.Panic == "" || !h.report.Unresolved() {
		t.Errorf("host report touched=%v panic=%q unresolved=%v: a panic on a touched host must leave it unresolved (exit 4)", h.report.Touched, h.report.Panic, h.report.Unresolved())
	}
	if r.report.Host("web-1").Panic != "" {
		t.Errorf("web-1 marked as panicked too")
	}
	log := readLog(t, logPath)
	for _, w := range []string{"web-2 internal error (panic) in relctl: runtime error: invalid memory address", "web-2 | goroutine ", "web-2 | github.com/relctl/relctl/deploy.panicAction.Do", "web-2 step activate/restart failed"} {
		if !strings.Contains(log, w) {
			t.Errorf("run log lacks %q:\n%s", w, log)
		}
	}
}

// TestForEachPanicOutsideAStep: a panic in a host's work outside any step
// (reading its state, say) is that host's error; the other host's work runs.
func TestForEachPanicOutsideAStep(t *testing.T) {
	r, logPath := panicRun(t)
	ctx := fanout.WithRecorder(context.Background(), r.recordPanic)
	var ran atomic.Int32
	err := r.engine.forEach(ctx, []*HostPlan{r.runs["web-1"].host, r.runs["web-2"].host}, 2, func(ctx context.Context, hp *HostPlan) error {
		if hp.Name == "web-1" {
			var st *HostReport
			_ = st.Before // what a parser trusting a missing section does
		}
		ran.Add(1)
		return nil
	})
	if ran.Load() != 1 {
		t.Errorf("%d hosts ran to the end, want web-2", ran.Load())
	}
	if err == nil || !strings.HasPrefix(err.Error(), "web-1: internal error (panic) in relctl: runtime error") {
		t.Fatalf("forEach = %v, want web-1's panic as its error", err)
	}
	if hr := r.report.Host("web-1"); hr.Panic == "" || hr.Error == "" || hr.Unresolved() {
		t.Errorf("web-1: panic %q, error %q, unresolved %v: marked, but untouched hosts are not unresolved", hr.Panic, hr.Error, hr.Unresolved())
	}
	if !strings.Contains(readLog(t, logPath), "web-1 | goroutine ") {
		t.Errorf("no stack in the run log")
	}
}

// TestFailpointPanics: RELCTL_FAILPOINT panics in the named step on the
// named host only, rollback steps included.
func TestFailpointPanics(t *testing.T) {
	t.Setenv(FailpointEnv, "panic:web-1:verify/health,panic:web-2:rollback/undo-activate")
	r, _ := panicRun(t)
	ok := &Step{Phase: "verify", Name: "health", Kind: "check", Action: okAction{}}
	if err := r.runs["web-2"].runStep(context.Background(), ok); err != nil {
		t.Errorf("web-2 verify/health: %v, want no failpoint there", err)
	}
	if err := r.runs["web-1"].runStep(context.Background(), ok); !errors.As(err, new(*fanout.PanicError)) ||
		!strings.Contains(err.Error(), "RELCTL_FAILPOINT=panic:web-1:verify/health") {
		t.Errorf("web-1 verify/health: %v, want the injected panic", err)
	}
	undo := &Step{Phase: "rollback", Name: "undo-activate", Kind: "activate"}
	h := r.runs["web-2"]
	h.report.Rollback = &HostRollback{}
	if _, err := h.execute(context.Background(), undo, okAction{}.Do); !errors.As(err, new(*fanout.PanicError)) {
		t.Errorf("web-2 rollback/undo-activate: %v, want the injected panic", err)
	}
}

type panicAction struct{}

func (panicAction) Do(context.Context, *hostRun) (string, error) {
	var h *hostRun
	return h.host.Name, nil // a nil pointer: a bug
}

type okAction struct{}

func (okAction) Do(context.Context, *hostRun) (string, error) { return "fine", nil }

// TestRunPanicEndsTheRun: a panic on the run's own goroutine (here in the
// observer, on RunStarted) ends the run with a Failure carrying it, and
// RunDone is still sent: the caller prints its report and exits.
func TestRunPanicEndsTheRun(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "r1.log")
	log, err := transport.OpenRunLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var done *Event
	e := &Engine{Log: log, Observe: func(ev Event) {
		switch ev.Kind {
		case RunStarted:
			panic("observer bug")
		case RunDone:
			done = &ev
		}
	}}
	rep, err := e.Run(context.Background(), &Plan{RunID: "r1", Kind: KindDeploy, Env: "staging", Version: "1.2.0", AutoRollback: true}, RunOptions{})
	var f *Failure
	var p *fanout.PanicError
	if !errors.As(err, &f) || !errors.As(err, &p) || rep == nil {
		t.Fatalf("Deploy = %v, %v; want a *Failure carrying a *fanout.PanicError", rep, err)
	}
	if want := "deploy of 1.2.0 to staging failed in preflight: internal error (panic) in relctl: observer bug; the stack is in " + logPath; err.Error() != want {
		t.Errorf("error\n%q\nwant\n%q", err.Error(), want)
	}
	if done == nil || done.Err != err {
		t.Errorf("RunDone: %+v, want it sent with the failure", done)
	}
	if log := readLog(t, logPath); !strings.Contains(log, "  | goroutine ") {
		t.Errorf("no stack in the run log:\n%s", log)
	}
}
