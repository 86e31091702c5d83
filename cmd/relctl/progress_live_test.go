package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
)

// lockedBuffer is a terminal for tests: the live view and the lines
// above it are written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fleetPlan is a deploy of n hosts web-001.. in a canary and two batches,
// each host with a step in stage and in verify.
func fleetPlan(n int) *deploy.Plan {
	p := &deploy.Plan{RunID: "r1", Kind: deploy.KindDeploy, Env: "production", Playbook: "web", Version: "2.0.0", MaxParallel: 50}
	var hosts []*deploy.HostPlan
	for i := 1; i <= n; i++ {
		hosts = append(hosts, &deploy.HostPlan{Name: fmt.Sprintf("web-%03d", i), Steps: []*deploy.Step{
			{Phase: "stage", Name: "upload"}, {Phase: "verify", Name: "smoke"},
		}})
	}
	half := 1 + (n-1)/2
	p.Batches = []*deploy.Batch{{Index: 1, Canary: true, Hosts: hosts[:1]}, {Index: 2, Hosts: hosts[1:half]}, {Index: 3, Hosts: hosts[half:]}}
	return p
}

// runFleet sends the events of a run of p from a goroutine per host, as
// the engine does: every step of every batch; failing (a host and step ID)
// fails its step, and the touched hosts are rolled back.
func runFleet(observe deploy.Observer, p *deploy.Plan, failing string) {
	now := time.Now()
	ev := func(e deploy.Event) { e.Plan, e.Time = p, now; observe(e) }
	ev(deploy.Event{Kind: deploy.RunStarted})
	ev(deploy.Event{Kind: deploy.PreflightDone})
	var touched []string
	var runErr error
	for _, b := range p.Batches {
		ev(deploy.Event{Kind: deploy.BatchStarted, Batch: b})
		var failed error
		for _, phase := range []string{"stage", "verify"} {
			ev(deploy.Event{Kind: deploy.PhaseStarted, Batch: b, Phase: phase})
			var wg sync.WaitGroup
			var mu sync.Mutex
			for _, hp := range b.Hosts {
				if phase == "stage" {
					touched = append(touched, hp.Name)
				}
				for _, s := range hp.Steps {
					if s.Phase != phase {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						ev(deploy.Event{Kind: deploy.StepStarted, Host: hp.Name, Step: s})
						res := &deploy.StepResult{Host: hp.Name, Phase: s.Phase, Name: s.Name, Status: deploy.StatusOK, Elapsed: time.Millisecond}
						if hp.Name+" "+s.ID() == failing {
							res.Status, res.Error = deploy.StatusFailed, "exit status 1:\n    smoke test: 502 Bad Gateway"
							mu.Lock()
							failed = errors.New(hp.Name + ": step " + s.ID() + ": " + res.Error)
							mu.Unlock()
						}
						ev(deploy.Event{Kind: deploy.StepDone, Host: hp.Name, Result: res})
					}()
				}
			}
			wg.Wait()
			ev(deploy.Event{Kind: deploy.PhaseDone, Batch: b, Phase: phase, Err: failed})
			if failed != nil {
				break
			}
		}
		if failed != nil {
			runErr = &deploy.Failure{Batch: b.Index, Phase: "verify", Err: failed}
			break
		}
		ev(deploy.Event{Kind: deploy.BatchDone, Batch: b})
	}
	rep := &deploy.Report{RunID: p.RunID, Kind: p.Kind, Env: p.Env, Version: p.Version}
	if runErr != nil {
		rep.RolledBack = true
		runErr.(*deploy.Failure).Report = rep
		ev(deploy.Event{Kind: deploy.RollbackStarted, Hosts: touched})
		var wg sync.WaitGroup
		for _, h := range touched {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := &deploy.Step{Phase: "rollback", Name: "undo-activate"}
				ev(deploy.Event{Kind: deploy.RollbackStepStarted, Host: h, Step: s})
				ev(deploy.Event{Kind: deploy.RollbackStepDone, Host: h, Result: &deploy.StepResult{Host: h, Phase: "rollback", Name: s.Name, Status: deploy.StatusOK}})
				ev(deploy.Event{Kind: deploy.RollbackHostDone, Host: h})
			}()
		}
		wg.Wait()
		ev(deploy.Event{Kind: deploy.RollbackDone, Hosts: touched})
	}
	ev(deploy.Event{Kind: deploy.RunDone, Report: rep, Err: runErr})
}

// The live view takes many hosts' events at once (run with -race): the
// lines it prints above its bars are the console's (a line per batch and
// phase, the failure in full, the rollback's end), its header ends with
// the outcome, and stderr is stderr again after it.
func TestLiveViewManyHosts(t *testing.T) {
	var term lockedBuffer
	ios := output.Test(nil, &bytes.Buffer{}, &term)
	ios.SetTTY(false, false, true)
	t.Setenv("TERM", "xterm")
	s := &session{errOut: ios.ErrOut, ios: ios, logPath: "/state/runs/r1.log"}
	p := fleetPlan(400)
	v := s.newRunView(p, deploy.RunOptions{}, nil)
	runFleet(v.observe, p, "web-300 verify/smoke")
	v.close()
	if v.live == nil {
		t.Fatal("no live view on a terminal")
	}
	got := term.String()
	for _, want := range []string{
		"Batch 3/3: web-[201-400]\n",
		"batch 2/3 (web-[002-200]): verify done: 199 ok (0ms)\n",
		"  web-300        verify/smoke               FAILED     1ms  exit status 1:\n      smoke test: 502 Bad Gateway\n",
		"batch 3/3 (web-[201-400]): verify FAILED: 199 ok, 1 failed: web-300 (0ms)\n",
		"Rolling back 400 touched hosts: web-[001-400]\n",
		"Rollback done: 400 ok (0ms)\n",
		"deploy web 2.0.0 in production: 200/400 hosts done",
		"FAILED, rolled back",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal has no %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "stage/upload") {
		t.Errorf("a step that passed has a line of its own:\n%s", got)
	}
	fmt.Fprintln(ios.ErrOut, "after the view")
	if !strings.HasSuffix(term.String(), "after the view\n") {
		t.Errorf("stderr is not the terminal's again after the view")
	}
}

// Without a terminal no bar is drawn; -v adds a line per host and step.
func TestProgressLinesVerbose(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		var errOut lockedBuffer
		ios := output.Test(nil, &bytes.Buffer{}, &errOut)
		s := &session{errOut: ios.ErrOut, ios: ios, logPath: "/state/runs/r1.log", view: viewFlags{Verbose: verbose}}
		p := fleetPlan(1000)
		v := s.newRunView(p, deploy.RunOptions{}, nil)
		runFleet(v.observe, p, "")
		v.close()
		got := errOut.String()
		lines := strings.Count(got, "\n")
		if v.live != nil || strings.Contains(got, "[") && strings.Contains(got, "running") {
			t.Errorf("verbose=%v: a live view without a terminal:\n%s", verbose, got)
		}
		switch {
		case !verbose && lines >= 100:
			t.Errorf("1,000 hosts: %d lines, want fewer than 100:\n%s", lines, got)
		case verbose && lines < 2000:
			t.Errorf("1,000 hosts with -v: %d lines, want one per host and step (2,000) and more", lines)
		}
		if !strings.Contains(got, "batch 3/3 (web-[501-1000]): verify done: 500 ok (0ms)\n") {
			t.Errorf("verbose=%v: no line for batch 3's verify:\n%s", verbose, got)
		}
	}
}

// The estimate is the time per round of max_parallel hosts of the batches
// done, for the rounds left, less what the running batch has done.
func TestTallyEstimate(t *testing.T) {
	p := fleetPlan(201) // batches of 1, 100, 100 hosts; 50 at a time: 1, 2, 2 rounds
	tl := newTally(p, nil)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	tl.observe(deploy.Event{Kind: deploy.RunStarted, Plan: p, Time: start})
	if _, ok := tl.estimate(at(time.Second)); ok {
		t.Error("an estimate before a batch is done")
	}
	tl.observe(deploy.Event{Kind: deploy.BatchStarted, Plan: p, Batch: p.Batches[0], Time: at(0)})
	tl.observe(deploy.Event{Kind: deploy.BatchDone, Plan: p, Batch: p.Batches[0], Time: at(10 * time.Second)})
	if left, ok := tl.estimate(at(10 * time.Second)); !ok || left != 40*time.Second {
		t.Errorf("after the canary (10s, one round): %v %v, want 40s (4 rounds)", left, ok)
	}
	tl.observe(deploy.Event{Kind: deploy.BatchStarted, Plan: p, Batch: p.Batches[1], Time: at(10 * time.Second)})
	if left, _ := tl.estimate(at(25 * time.Second)); left != 25*time.Second {
		t.Errorf("15s into batch 2: %v left, want 25s", left)
	}
	if done, all := tl.hostsDone(); done != 1 || all != 201 {
		t.Errorf("hosts done %d/%d, want 1/201", done, all)
	}
}
