package deploy_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/transport/localconn"
)

// interrupt is the operator's Ctrl-C: first closes the engine's Stop
// channel, second cancels the run's context.
type interrupt struct {
	t        *testing.T
	stop     chan struct{}
	stopOnce sync.Once
	// stopping is closed once the engine has seen Stop (its Stopping event).
	stopping     chan struct{}
	stoppingOnce sync.Once
	cancel       context.CancelFunc
	// onPause, when set, runs at the engine's Pausing event.
	onPause func()
}

func newInterrupt(t *testing.T) (*interrupt, context.Context) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return &interrupt{t: t, stop: make(chan struct{}), stopping: make(chan struct{}), cancel: cancel}, ctx
}

// first is the first SIGINT.
func (i *interrupt) first() { i.stopOnce.Do(func() { close(i.stop) }) }

// firstAndWait is the first SIGINT, returning once the engine has taken it:
// called from a command's OnStart, the command then runs while the run
// stops, so the next step is the first not to start.
func (i *interrupt) firstAndWait() {
	i.first()
	select {
	case <-i.stopping:
	case <-time.After(time.Minute):
		i.t.Error("the engine never reported the interrupt (Stopping)")
	}
}

// second is the second SIGINT.
func (i *interrupt) second() { i.cancel() }

// engine wires the interrupt into an engine: Stop, and the events it waits on.
func (i *interrupt) engine(e *deploy.Engine) {
	e.Stop = i.stop
	e.Observe = func(ev deploy.Event) {
		switch ev.Kind {
		case deploy.Stopping:
			i.stoppingOnce.Do(func() { close(i.stopping) })
		case deploy.Pausing:
			if i.onPause != nil {
				i.onPause()
			}
		}
	}
}

// lastStep is the host's last step result as "phase/name status".
func lastStep(h *deploy.HostReport) string {
	if len(h.Steps) == 0 {
		return ""
	}
	s := h.Steps[len(h.Steps)-1]
	return s.ID() + " " + s.Status
}

// TestFirstInterrupt: Stop closed at each point of a run. Running steps
// finish, no new step starts, and every touched host is rolled back.
func TestFirstInterrupt(t *testing.T) {
	tests := []struct {
		name     string
		hosts    int
		strategy string
		// at is the command of web-1 during which the interrupt arrives;
		// zero: at the pause between batches.
		at    localconn.Fault
		phase string
		batch int
		why   string // the stop as the error says it
		// web1Last is web-1's last step: the one running at the interrupt,
		// finished, or the last before the pause.
		web1Last   string
		rolledBack bool
	}{
		{name: "in preflight", hosts: 3, at: localconn.Fault{Label: "preflight/writable"},
			phase: "preflight", batch: 0, why: "stopped: no new work after interrupt", web1Last: "preflight/writable ok"},
		{name: "before the first batch", hosts: 1, at: localconn.Fault{Label: "preflight/rollback-ready"},
			phase: "between batches", batch: 1, why: "stopped before batch 1", web1Last: "preflight/rollback-ready ok"},
		{name: "in stage", hosts: 3, at: localconn.Fault{Label: "stage/upload:verify"},
			phase: "stage", batch: 1, why: "stopped in the stage phase", web1Last: "stage/upload ok", rolledBack: true},
		{name: "in activate", hosts: 3, at: localconn.Fault{Label: "activate 2.0.0"},
			phase: "activate", batch: 1, why: "stopped in the activate phase", web1Last: "activate/activate ok", rolledBack: true},
		{name: "in verify", hosts: 3, at: localconn.Fault{Label: "health/health", Text: "2.0.0"},
			phase: "verify", batch: 1, why: "stopped after the verify phase", web1Last: "verify/health ok", rolledBack: true},
		{name: "in cutover", hosts: 3, at: localconn.Fault{Label: "cutover/announce"},
			phase: "cutover", batch: 1, why: "stopped after the cutover phase", web1Last: "cutover/announce ok", rolledBack: true},
		{name: "in post", hosts: 3, at: localconn.Fault{Label: "post/notify"},
			phase: "post", batch: 1, why: "stopped in the post phase", web1Last: "post/notify ok", rolledBack: true},
		{name: "in the pause between batches", hosts: 3, strategy: strategyCanary + "\npause = \"1h\"",
			phase: "between batches", batch: 2, why: "stopped before batch 2", web1Last: "post/prune ok", rolledBack: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			strategy := tt.strategy
			if strategy == "" {
				strategy = strategyCanary
			}
			f := newFleet(t, tt.hosts, strategy)
			f.seed("1.0.0")
			intr, ctx := newInterrupt(t)
			if tt.at.Label != "" {
				tt.at.OnStart = intr.firstAndWait
				f.host("web-1").Fail(tt.at)
			} else {
				intr.onPause = intr.first
			}
			j, events := journalOf(t, "intr")
			rep, err := run(ctx, newTestEngine(f, intr.engine, func(e *deploy.Engine) { e.Journal = j }), f.plan("2.0.0", "intr"), runOptions{})

			fail := failure(t, err)
			if !fail.Interrupted || fail.Phase != tt.phase || fail.Batch != tt.batch {
				t.Errorf("failure: interrupted %v phase %q batch %d; want interrupted in %q, batch %d", fail.Interrupted, fail.Phase, fail.Batch, tt.phase, tt.batch)
			}
			if msg := err.Error(); !strings.Contains(msg, "was interrupted") || !strings.Contains(msg, tt.why) {
				t.Errorf("error does not say it was interrupted (%s):\n%s", tt.why, msg)
			}
			if got := lastStep(rep.Host("web-1")); got != tt.web1Last {
				t.Errorf("web-1's last step %q, want %q", got, tt.web1Last)
			}
			if rep.RolledBack != tt.rolledBack {
				t.Errorf("rolled back %v, want %v", rep.RolledBack, tt.rolledBack)
			}
			for _, n := range f.names {
				f.assertRestored(rep, n, "1.0.0")
			}
			if len(rep.Unresolved()) != 0 {
				t.Errorf("unresolved: %v", rep.Unresolved())
			}
			f.assertNoLocks()
			want := "interrupted"
			if tt.rolledBack {
				want = "rolled-back"
			}
			if got := runResult(events()); got != want {
				t.Errorf("journal result %q, want %q", got, want)
			}
		})
	}
}

// TestSecondInterrupt: the context cancelled. Nothing more runs, not even
// the rollback; the locks are still given back.
func TestSecondInterrupt(t *testing.T) {
	tests := []struct {
		name string
		// arm sets up the interrupts on the fleet.
		arm        func(f *fleet, intr *interrupt)
		phase      string
		batch      int
		unresolved []string
		rolledBack bool
		result     string
		check      func(t *testing.T, f *fleet, rep *deploy.Report)
	}{
		{
			name: "during a step",
			arm: func(f *fleet, intr *interrupt) {
				f.host("web-1").Fail(localconn.Fault{Label: "activate/restart", OnStart: intr.second})
			},
			phase: "activate", batch: 1, unresolved: []string{"web-1"}, result: "interrupted",
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				if w1 := rep.Host("web-1"); w1.After != "2.0.0" || w1.Rollback != nil || f.current("web-1") != "2.0.0" {
					t.Errorf("web-1: after %q rollback %+v current %q; want it left switched, not rolled back", w1.After, w1.Rollback, f.current("web-1"))
				}
				if got := lastStep(rep.Host("web-1")); got != "activate/restart failed" {
					t.Errorf("web-1's last step %q, want the cancelled restart", got)
				}
			},
		},
		{
			name: "during the pause between batches",
			arm: func(f *fleet, intr *interrupt) {
				intr.onPause = intr.second
			},
			phase: "between batches", batch: 2, unresolved: []string{"web-1"}, result: "interrupted",
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				if f.current("web-1") != "2.0.0" || rep.Host("web-2").Touched {
					t.Errorf("web-1 on %q, web-2 touched %v; want web-1 left on 2.0.0 and batch 2 not started", f.current("web-1"), rep.Host("web-2").Touched)
				}
			},
		},
		{
			name: "during the rollback of the first",
			arm: func(f *fleet, intr *interrupt) {
				f.host("web-1").Fail(localconn.Fault{Label: "activate 2.0.0", OnStart: intr.firstAndWait})
				f.host("web-1").Fail(localconn.Fault{Label: "rollback/restart", OnStart: intr.second})
			},
			phase: "activate", batch: 1, unresolved: []string{"web-1"}, rolledBack: true, result: "rollback-failed",
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				rb := rep.Host("web-1").Rollback
				if rb == nil || rb.Healthy || !strings.Contains(rb.Error, "context canceled") {
					t.Errorf("web-1's rollback %+v, want it cut by the cancelled context", rb)
				}
				if f.current("web-1") != "1.0.0" {
					t.Errorf("web-1: current %q; the switch back before the second interrupt is lost", f.current("web-1"))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 3, strategyCanary+"\npause = \"1h\"")
			f.seed("1.0.0")
			intr, ctx := newInterrupt(t)
			tt.arm(f, intr)
			j, events := journalOf(t, "intr2")
			rep, err := run(ctx, newTestEngine(f, intr.engine, func(e *deploy.Engine) { e.Journal = j }), f.plan("2.0.0", "intr2"), runOptions{})

			fail := failure(t, err)
			if !fail.Interrupted || fail.Phase != tt.phase || fail.Batch != tt.batch {
				t.Errorf("failure: interrupted %v phase %q batch %d; want interrupted in %q, batch %d", fail.Interrupted, fail.Phase, fail.Batch, tt.phase, tt.batch)
			}
			if rep.RolledBack != tt.rolledBack {
				t.Errorf("rolled back %v, want %v", rep.RolledBack, tt.rolledBack)
			}
			if got := rep.Unresolved(); !slices.Equal(got, tt.unresolved) {
				t.Errorf("unresolved %v, want %v", got, tt.unresolved)
			}
			f.assertNoLocks()
			if got := runResult(events()); got != tt.result {
				t.Errorf("journal result %q, want %q", got, tt.result)
			}
			tt.check(t, f, rep)
		})
	}
}

// TestResume: deploy --resume after a run that was cut (second interrupt,
// so no rollback): hosts it finished are skipped, and a host it switched
// goes back, on failure, to what it ran before that run - not to where
// the cut run left it.
func TestResume(t *testing.T) {
	tests := []struct {
		name string
		// cutAt is the command at which the first run is cut.
		cutHost string
		cutAt   localconn.Fault
		skip    []string
		faults  map[string]localconn.Fault // in the resumed run
		wantErr bool
		check   func(t *testing.T, f *fleet, rep *deploy.Report)
	}{
		{
			name: "finished hosts are skipped", cutHost: "web-2", cutAt: localconn.Fault{Label: "stage/unpack"}, skip: []string{"web-1"},
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				f.assertOn("2.0.0", f.names...)
				w1 := rep.Host("web-1")
				if !w1.Skipped || w1.Touched || len(w1.Steps) > 0 || f.host("web-1").Ran("stage/unpack") {
					t.Errorf("web-1: skipped %v touched %v steps %q; want it left alone", w1.Skipped, w1.Touched, stepStatuses(w1.Steps))
				}
				if got, want := f.activations("web-1"), []string{"deploy 1.0.0", "deploy 2.0.0"}; !slices.Equal(got, want) {
					t.Errorf("web-1's history %q, want %q", got, want)
				}
				for _, n := range []string{"web-2", "web-3"} {
					if h := rep.Host(n); h.Skipped || h.Before != "1.0.0" || h.After != "2.0.0" {
						t.Errorf("%s: skipped %v before %q after %q", n, h.Skipped, h.Before, h.After)
					}
				}
			},
		},
		{
			name: "a host the cut run switched goes back to the release before it", cutHost: "web-1",
			cutAt:  localconn.Fault{Label: "health/health", Text: "2.0.0"},
			faults: map[string]localconn.Fault{"web-1": {Label: "activate/restart", Exit: 1}}, wantErr: true,
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				if w1 := rep.Host("web-1"); w1.Before != "1.0.0" || w1.After != "1.0.0" || w1.Rollback == nil || !w1.Rollback.Healthy {
					t.Errorf("web-1: before %q after %q rollback %+v; want it back on 1.0.0, healthy", w1.Before, w1.After, w1.Rollback)
				}
				f.assertOn("1.0.0", f.names...)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 3, strategyCanary)
			f.seed("1.0.0")
			intr, ctx := newInterrupt(t)
			tt.cutAt.OnStart = intr.second
			tt.cutAt.Times = 1
			f.host(tt.cutHost).Fail(tt.cutAt)
			if _, err := run(ctx, newTestEngine(f, intr.engine), f.plan("2.0.0", "cut"), runOptions{}); !failure(t, err).Interrupted {
				t.Fatalf("the first run was not interrupted: %v", err)
			}
			if f.current("web-1") != "2.0.0" {
				t.Fatalf("the cut run left web-1 on %q, want 2.0.0", f.current("web-1"))
			}
			for host, fault := range tt.faults {
				f.host(host).Fail(fault)
			}
			f.host("web-1").ResetCommands()
			rep, err := run(t.Context(), newTestEngine(f), f.plan("2.0.0", "resumed"), runOptions{resume: "cut", skip: tt.skip, takeOver: true})
			if (err != nil) != tt.wantErr {
				t.Fatalf("resumed run: %v", err)
			}
			f.assertNoLocks()
			tt.check(t, f, rep)
		})
	}
}
