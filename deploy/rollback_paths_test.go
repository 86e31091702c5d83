package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/internal/transport/localconn"
	"github.com/relctl/relctl/traffic"
)

// rollbackCase is a deploy of 2.0.0 (over 1.0.0 when seeded) with faults
// on some hosts, and what the user must see of its automatic rollback.
type rollbackCase struct {
	name   string
	seeded bool
	faults map[string][]localconn.Fault
	phase  string
	// unresolved is Report.Unresolved(); the other hosts must be restored.
	unresolved []string
	result     string // the journal's run-end result
	check      func(t *testing.T, f *fleet, rep *deploy.Report, err error)
}

// runRollbackCase runs tt and checks what every case shares.
func runRollbackCase(t *testing.T, tt rollbackCase) {
	f := newFleet(t, 3, strategyCanary)
	before := ""
	if tt.seeded {
		f.seed("1.0.0")
		before = "1.0.0"
	}
	for host, faults := range tt.faults {
		for _, fault := range faults {
			f.host(host).Fail(fault)
		}
	}
	j, events := journalOf(t, "rb")
	rep, err := run(t.Context(), newTestEngine(f, func(e *deploy.Engine) { e.Journal = j }), f.plan("2.0.0", "rb"), runOptions{})
	fail := failure(t, err)
	if fail.Phase != tt.phase || fail.Interrupted {
		t.Errorf("failed in phase %q (interrupted %v), want %q", fail.Phase, fail.Interrupted, tt.phase)
	}
	if got := rep.Unresolved(); !slices.Equal(got, tt.unresolved) {
		t.Errorf("unresolved %v, want %v", got, tt.unresolved)
	}
	if len(tt.unresolved) > 0 && !strings.Contains(err.Error(), "rollback did not restore every host: "+strings.Join(tt.unresolved, ", ")) {
		t.Errorf("the error does not name the unresolved hosts:\n%s", err)
	}
	for _, n := range f.names {
		if !slices.Contains(tt.unresolved, n) && before != "" {
			f.assertRestored(rep, n, before)
		}
	}
	if got := runResult(events()); got != tt.result {
		t.Errorf("journal result %q, want %q", got, tt.result)
	}
	if tt.check != nil {
		tt.check(t, f, rep, err)
	}
}

func TestRollbackProblems(t *testing.T) {
	tests := []rollbackCase{
		{
			name: "first deploy fails before switching", faults: map[string][]localconn.Fault{"web-1": {{Label: "stage/unpack", Exit: 1}}},
			phase: "stage", result: "rolled-back",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				w1 := rep.Host("web-1")
				if !w1.Touched || w1.Rollback == nil || !w1.Rollback.Healthy || w1.Before != "" || w1.After != "" {
					t.Errorf("web-1: touched %v before %q after %q rollback %+v", w1.Touched, w1.Before, w1.After, w1.Rollback)
				}
				for _, n := range f.names {
					if c := f.current(n); c != "" {
						t.Errorf("%s: current -> %q after a failed first deploy", n, c)
					}
				}
				for _, n := range []string{"web-2", "web-3"} {
					if rep.Host(n).Touched || f.host(n).Ran("stage/unpack") {
						t.Errorf("%s: touched, but the canary failed", n)
					}
				}
			},
		},
		{
			name: "first deploy fails after switching", faults: map[string][]localconn.Fault{"web-1": {{Label: "activate/restart", Exit: 1}}},
			phase: "activate", unresolved: []string{"web-1"}, result: "rollback-failed",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				rb := rep.Host("web-1").Rollback
				if rb == nil || rb.Healthy || !strings.Contains(rb.Error, "no release before this run to return to: current was removed") {
					t.Errorf("web-1's rollback %+v, want the error that there is no release to return to", rb)
				}
				if c := f.current("web-1"); c != "" {
					t.Errorf("web-1: current -> %q, want it removed", c)
				}
				evs := f.history("web-1").Events
				if !slices.ContainsFunc(evs, func(ev state.HistoryEvent) bool { return ev.Kind == "current-removed" && ev.RunID == "rb" }) {
					t.Errorf("web-1's history does not record the removal of current: %+v", evs)
				}
			},
		},
		{
			name: "an undo command fails", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "post/notify", Exit: 1}, {Label: "undo cutover/announce", Exit: 1, Stderr: "rm: busy"}}},
			phase:  "post", unresolved: []string{"web-2"}, result: "rollback-failed",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				rb := rep.Host("web-2").Rollback
				if rb == nil || rb.Healthy || !strings.Contains(rb.Error, "step rollback/undo-announce") || !strings.Contains(rb.Error, "rm: busy") {
					t.Errorf("web-2's rollback %+v, want the failed undo-announce", rb)
				}
				// The failed undo did not keep current from going back.
				f.assertOn("1.0.0", "web-2")
				if got := stepStatuses(rb.Steps); !slices.Contains(got, "rollback/undo-activate ok") || !slices.Contains(got, "rollback/health ok") {
					t.Errorf("web-2's rollback steps %q: no switch back and health check after the failed undo", got)
				}
			},
		},
		{
			name: "a [rollback] step fails", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "health/health", Text: "2.0.0", Exit: 1}, {Label: "rollback/restart", Exit: 1, Stderr: "restart: no"}}},
			phase:  "verify", unresolved: []string{"web-2"}, result: "rollback-failed",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				rb := rep.Host("web-2").Rollback
				if rb == nil || rb.Healthy || !strings.Contains(rb.Error, "step rollback/restart") {
					t.Errorf("web-2's rollback %+v, want the failed rollback/restart", rb)
				}
				if got := stepStatuses(rb.Steps); got[len(got)-1] != "rollback/restart failed" {
					t.Errorf("web-2's rollback steps %q, want them to stop at the failed restart", got)
				}
				if c, r := f.current("web-2"), f.running("web-2"); c != "1.0.0" || r != "2.0.0" {
					t.Errorf("web-2: current %q, running %q; want current switched back and the service not restarted", c, r)
				}
			},
		},
		{
			name: "the health check fails after the switch back", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "cutover/announce", Exit: 1}, {Label: "health/health", Text: "1.0.0", Exit: 1, Stderr: "still broken"}}},
			phase:  "cutover", unresolved: []string{"web-2"}, result: "rollback-failed",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				rb := rep.Host("web-2").Rollback
				if rb == nil || rb.Healthy || !strings.Contains(rb.Error, "step rollback/health") {
					t.Errorf("web-2's rollback %+v, want the failed health check", rb)
				}
				if got := stepStatuses(rb.Steps); got[len(got)-1] != "rollback/health failed" {
					t.Errorf("web-2's rollback steps %q, want the last to be the failed health check", got)
				}
				if f.current("web-2") != "1.0.0" || rep.Host("web-2").After != "1.0.0" {
					t.Errorf("web-2 not switched back")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runRollbackCase(t, tt) })
	}
}

// TestRollbackUnreachable: connections lost in a step, and hosts that stay
// away while the rollback reconnects with backoff.
func TestRollbackUnreachable(t *testing.T) {
	lostErr := func(t *testing.T, err error) {
		if !errors.Is(err, transport.ErrConnectionLost) {
			t.Errorf("err does not wrap ErrConnectionLost: %v", err)
		}
	}
	tests := []rollbackCase{
		{
			name: "connection lost during a step", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "activate/restart", Lose: true}}},
			phase:  "activate", result: "rolled-back",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				lostErr(t, err)
				if f.host("web-2").Dials() < 2 {
					t.Errorf("web-2 was not dialled again for the rollback")
				}
			},
		},
		{
			name: "connection lost right after the switch", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "activate 2.0.0", Lose: true, RunFirst: true}}},
			phase:  "activate", result: "rolled-back",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				lostErr(t, err)
				w2 := rep.Host("web-2")
				if w2.Unknown {
					t.Errorf("web-2 unknown, but it could be read again")
				}
				if got := stepStatuses(w2.Rollback.Steps); !slices.Contains(got, "rollback/undo-activate ok") {
					t.Errorf("web-2's rollback %q: the switch the lost answer hid was not undone", got)
				}
				if got, want := f.activations("web-2"), []string{"deploy 1.0.0", "deploy 2.0.0", "rollback 1.0.0"}; !slices.Equal(got, want) {
					t.Errorf("web-2's history %q, want %q", got, want)
				}
			},
		},
		{
			name: "host unreachable in the rollback, back after two dials", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "activate/restart", Lose: true, ThenUnreachable: 2}}},
			phase:  "activate", result: "rolled-back",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				lostErr(t, err)
				if d := f.host("web-2").Dials(); d < 4 {
					t.Errorf("web-2 dialled %d times, want the first, two refused and one that got through", d)
				}
			},
		},
		{
			name: "host never comes back", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "activate/restart", Lose: true, ThenUnreachable: -1}}},
			phase:  "activate", unresolved: []string{"web-2"}, result: "rollback-failed",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				w2 := rep.Host("web-2")
				if w2.Rollback == nil || w2.Rollback.Healthy || !strings.Contains(w2.Rollback.Error, "still unreachable after 4 attempts") {
					t.Errorf("web-2's rollback %+v, want it still unreachable after 4 attempts", w2.Rollback)
				}
				if w2.After != "2.0.0" || f.current("web-2") != "2.0.0" {
					t.Errorf("web-2: report says %q, current %q; want it left on 2.0.0", w2.After, f.current("web-2"))
				}
				if !f.locked("web-2") || f.locked("web-1") || f.locked("web-3") {
					t.Errorf("locks: web-1 %v web-2 %v web-3 %v; want only unreachable web-2's left", f.locked("web-1"), f.locked("web-2"), f.locked("web-3"))
				}
			},
		},
		{
			name: "answer of the switch lost and the host gone", seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "activate 2.0.0", Lose: true, RunFirst: true, ThenUnreachable: -1}}},
			phase:  "activate", unresolved: []string{"web-2"}, result: "rollback-failed",
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				if w2 := rep.Host("web-2"); !w2.Unknown || w2.Rollback == nil || w2.Rollback.Healthy {
					t.Errorf("web-2: unknown %v rollback %+v; want its release unknown and not restored", w2.Unknown, w2.Rollback)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runRollbackCase(t, tt) })
	}
}

// TestDeployRefusedBeforeChanging: a host unreachable at connect, a lock
// held by another run, a lock command that fails. No host changes, no
// lock is left (but the other run's).
func TestDeployRefusedBeforeChanging(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, f *fleet)
		opts   runOptions
		check  func(t *testing.T, f *fleet, rep *deploy.Report, err error)
		result string
	}{
		{
			name:  "host unreachable at connect",
			setup: func(t *testing.T, f *fleet) { f.host("web-3").Unreachable(1) },
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				var dial *transport.DialError
				if fail := failure(t, err); fail.Phase != "preflight" || fail.Batch != 0 || !errors.As(err, &dial) || dial.Host != "web-3" {
					t.Errorf("err = %v, want a preflight failure with web-3's DialError", err)
				}
				if w3 := rep.Host("web-3"); w3.Reached || w3.Error == "" {
					t.Errorf("web-3: reached %v error %q", w3.Reached, w3.Error)
				}
				for _, n := range f.names {
					if f.host(n).Ran("lock") {
						t.Errorf("%s was locked although web-3 could not be reached", n)
					}
				}
			},
			result: "failed",
		},
		{
			name:  "lock held by another run",
			setup: func(t *testing.T, f *fleet) { f.writeLock(t, "web-2", "other-run", "ci-runner", os.Getpid()) },
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				var locked *state.LockedError
				if !errors.As(err, &locked) || len(locked.Holders) != 1 || locked.Holders[0].Host != "web-2" || locked.Holders[0].Owner.RunID != "other-run" {
					t.Fatalf("err = %v, want a LockedError naming web-2's holder", err)
				}
				if !f.locked("web-2") {
					t.Errorf("the other run's lock on web-2 was removed")
				}
			},
			result: "refused",
		},
		{
			name:  "stale lock, not taken over",
			setup: func(t *testing.T, f *fleet) { f.writeLock(t, "web-2", "dead-run", state.Controller(), deadPID(t)) },
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				var locked *state.LockedError
				if !errors.As(err, &locked) || !locked.Holders[0].Stale {
					t.Fatalf("err = %v, want a LockedError with a stale holder", err)
				}
			},
			result: "refused",
		},
		{
			name: "lock command fails",
			setup: func(t *testing.T, f *fleet) {
				f.host("web-2").Fail(localconn.Fault{Label: "lock", Exit: 1, Stderr: "mkdir: permission denied"})
			},
			check: func(t *testing.T, f *fleet, rep *deploy.Report, err error) {
				if fail := failure(t, err); fail.Phase != "preflight" || !errors.Is(err, deploy.ErrNotLocked) || !strings.Contains(err.Error(), "permission denied") {
					t.Errorf("err = %v, want a preflight failure that is ErrNotLocked with the lock command's output", err)
				}
				if f.locked("web-2") {
					t.Errorf("web-2 keeps a lock")
				}
			},
			result: "failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 3, strategyCanary)
			f.seed("1.0.0")
			tt.setup(t, f)
			j, events := journalOf(t, "refused")
			rep, err := run(t.Context(), newTestEngine(f, func(e *deploy.Engine) { e.Journal = j }), f.plan("2.0.0", "refused"), tt.opts)
			if err == nil {
				t.Fatal("the deploy succeeded")
			}
			tt.check(t, f, rep, err)
			for _, n := range f.names {
				if f.host(n).Ran("preflight/writable") || rep.Host(n).Touched || len(rep.Host(n).Steps) > 0 {
					t.Errorf("%s: steps ran (%q)", n, stepStatuses(rep.Host(n).Steps))
				}
				f.assertOn("1.0.0", n)
				if got, want := f.activations(n), []string{"deploy 1.0.0"}; !slices.Equal(got, want) {
					t.Errorf("%s: history %q, want %q", n, got, want)
				}
				if n != "web-2" && f.locked(n) {
					t.Errorf("%s keeps a lock", n)
				}
			}
			evs := events()
			if got := runResult(evs); got != tt.result {
				t.Errorf("journal result %q, want %q", got, tt.result)
			}
			// The run-end says where hosts are only for hosts the run read:
			// never "" for one whose release it does not know.
			for _, ev := range evs {
				for h, v := range ev.Hosts {
					if ev.Kind == "run-end" && v != "1.0.0" {
						t.Errorf("run-end: %s is on %q, want 1.0.0 (or not listed)", h, v)
					}
				}
			}
		})
	}
}

func TestDeployTakesOverStaleLock(t *testing.T) {
	f := newFleet(t, 3, strategyCanary)
	f.seed("1.0.0")
	f.writeLock(t, "web-2", "dead-run", state.Controller(), deadPID(t))
	var mu sync.Mutex
	var took []state.HostLockState
	e := newTestEngine(f, func(e *deploy.Engine) {
		e.Observe = func(ev deploy.Event) {
			if ev.Kind == deploy.LocksTaken {
				mu.Lock()
				took = append(took, ev.Locks...)
				mu.Unlock()
			}
		}
	})
	if _, err := run(t.Context(), e, f.plan("2.0.0", "takeover"), runOptions{takeOver: true}); err != nil {
		t.Fatalf("deploy taking over a stale lock: %v", err)
	}
	if len(took) != 1 || took[0].Host != "web-2" || took[0].Owner.RunID != "dead-run" {
		t.Errorf("LocksTaken lists %+v, want web-2's stale lock of dead-run", took)
	}
	f.assertOn("2.0.0", f.names...)
	f.assertNoLocks()
}

// writeLock puts another run's lock on the host, as relctl writes one.
func (f *fleet) writeLock(t *testing.T, host, runID, controller string, pid int) {
	t.Helper()
	now := time.Now().UTC()
	body, err := json.Marshal(state.LockOwner{Operator: "someone", Controller: controller, PID: pid, RunID: runID,
		Env: "production", Command: "deploy", Release: "3.0.0", Started: now, Heartbeat: now})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.base(host), ".relctl", "lock", "owner.json"), string(body))
}

// deadPID is the pid of a process that has ended (and was reaped).
func deadPID(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// rollbackPlan is `relctl rollback` of the fleet to target, with each
// host's current release read from its files as the command reads it.
func (f *fleet) rollbackPlan(target, from, runID string) *deploy.Plan {
	f.t.Helper()
	current := map[string]string{}
	for _, n := range f.names {
		current[n] = f.current(n)
	}
	p, err := deploy.BuildRollbackPlan(f.proj, deploy.RollbackPlanOptions{Env: "production", RunID: runID, Target: target, From: from, Current: current})
	if err != nil {
		f.t.Fatalf("BuildRollbackPlan: %v", err)
	}
	return p
}

// TestRollbackPlan: `relctl rollback` from 2.0.0 to 1.0.0, run by the same
// engine; a failing rollback is not itself rolled back.
func TestRollbackPlan(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fleet)
		// phase is where it fails ("" succeeds); unresolved its leftovers.
		phase      string
		unresolved []string
		check      func(t *testing.T, f *fleet, rep *deploy.Report)
	}{
		{
			name: "every host back on the target",
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				for _, n := range f.names {
					if got, want := f.activations(n), []string{"deploy 1.0.0", "deploy 2.0.0", "rollback 1.0.0"}; !slices.Equal(got, want) {
						t.Errorf("%s: history %q, want %q", n, got, want)
					}
					if h := rep.Host(n); h.Before != "2.0.0" || h.After != "1.0.0" {
						t.Errorf("%s: before %q after %q", n, h.Before, h.After)
					}
				}
			},
		},
		{
			name: "a host already on the target, but not serving it",
			setup: func(t *testing.T, f *fleet) {
				// An earlier rollback switched web-1 back and then failed.
				if err := os.Remove(filepath.Join(f.base("web-1"), "current")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("releases/1.0.0", filepath.Join(f.base("web-1"), "current")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				got := stepStatuses(rep.Host("web-1").Steps)
				if !slices.Contains(got, "activate/restore-if-unhealthy ok") || slices.Contains(got, "activate/activate ok") {
					t.Errorf("web-1's steps %q: want it restored in place, not switched", got)
				}
				if !f.host("web-1").Ran("activate/restart") {
					t.Errorf("web-1's [rollback] restart did not run although its service was on 2.0.0")
				}
			},
		},
		{
			name: "the target's health check fails",
			setup: func(t *testing.T, f *fleet) {
				f.host("web-2").Fail(localconn.Fault{Label: "health/health", Text: "1.0.0", Exit: 1, Stderr: "down"})
			},
			// A rollback run's unresolved hosts are those it changed.
			phase: "verify", unresolved: []string{"web-1", "web-2", "web-3"},
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				if rep.RolledBack || rep.Host("web-2").Rollback != nil {
					t.Errorf("a failed rollback run was rolled back")
				}
				if got := lastStep(rep.Host("web-2")); got != "verify/health failed" {
					t.Errorf("web-2's last step %q, want its failed health check", got)
				}
				// The canary went back first, and stays there.
				f.assertOn("1.0.0", "web-1")
				if f.current("web-2") != "1.0.0" {
					t.Errorf("web-2 on %q, want it switched (and failing)", f.current("web-2"))
				}
			},
		},
		{
			name: "the target is missing on a host",
			setup: func(t *testing.T, f *fleet) {
				if err := os.RemoveAll(filepath.Join(f.base("web-3"), "releases", "1.0.0")); err != nil {
					t.Fatal(err)
				}
			},
			phase: "preflight",
			check: func(t *testing.T, f *fleet, rep *deploy.Report) {
				f.assertOn("2.0.0", f.names...)
				if e := rep.Host("web-3").Error; !strings.Contains(e, "cannot roll back to 1.0.0: missing: release directory") {
					t.Errorf("web-3's error %q, want the missing release directory", e)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 3, strategyCanary)
			f.seed("1.0.0")
			f.seed("2.0.0")
			if tt.setup != nil {
				tt.setup(t, f)
			}
			p := f.rollbackPlan("1.0.0", "2.0.0", "rollback-run")
			rep, err := run(t.Context(), newTestEngine(f), p, runOptions{takeOver: true})
			if rep.Kind != deploy.KindRollback {
				t.Errorf("report kind %q", rep.Kind)
			}
			f.assertNoLocks()
			if tt.phase == "" {
				if err != nil {
					t.Fatalf("rollback: %v", err)
				}
				f.assertOn("1.0.0", f.names...)
			} else {
				fail := failure(t, err)
				if fail.Phase != tt.phase || !strings.HasPrefix(err.Error(), "rollback of 1.0.0 to production failed") {
					t.Errorf("failed in %q: %v; want phase %q", fail.Phase, err, tt.phase)
				}
				if got := rep.Unresolved(); !slices.Equal(got, tt.unresolved) {
					t.Errorf("unresolved %v, want %v", got, tt.unresolved)
				}
			}
			tt.check(t, f, rep)
		})
	}
}

// inLB says whether the host is in the load balancer (testdata/unit/traffic.toml).
func (f *fleet) inLB(name string) bool {
	_, err := os.Stat(filepath.Join(f.base(name), "in-lb"))
	return err == nil
}

// lbLog is what the host's disable and enable commands did, in order.
func (f *fleet) lbLog(name string) []string {
	b, _ := os.ReadFile(filepath.Join(f.base(name), "lb.log"))
	return strings.Fields(string(b))
}

// TestRollbackWithTraffic: with [traffic], hosts come back batch by batch,
// the latest first and the canary last, each back in the load balancer
// only once healthy; a host that cannot leave it, or a wave that would
// empty it, is left as it is and reported.
func TestRollbackWithTraffic(t *testing.T) {
	tests := []struct {
		name       string
		hosts      int
		seeded     bool
		faults     map[string][]localconn.Fault
		unresolved []string
		check      func(t *testing.T, f *fleet, rep *deploy.Report, order []string)
	}{
		{
			name: "latest batch first, canary last", hosts: 2, seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "activate/restart", Exit: 1}}},
			check: func(t *testing.T, f *fleet, rep *deploy.Report, order []string) {
				if !slices.Equal(order, []string{"web-2", "web-1"}) {
					t.Errorf("rolled back in the order %v, want web-2 then the canary web-1", order)
				}
				for _, n := range f.names {
					if !f.inLB(n) {
						t.Errorf("%s is out of the load balancer", n)
					}
				}
				// seed out, in; deploy out, in; rollback out (undo of traffic-on), in.
				if got, want := f.lbLog("web-1"), []string{"out", "in", "out", "in", "out", "in"}; !slices.Equal(got, want) {
					t.Errorf("web-1's load balancer log %q, want %q", got, want)
				}
				if got := stepStatuses(rep.Host("web-2").Rollback.Steps); got[len(got)-1] != "rollback/traffic-restore ok" {
					t.Errorf("web-2's rollback %q: traffic not restored last", got)
				}
			},
		},
		{
			name: "a host that cannot be put back holds the canary back", hosts: 2, seeded: true,
			faults:     map[string][]localconn.Fault{"web-2": {{Label: "activate/restart", Exit: 1}, {Label: "traffic/enable", Exit: 1, Stderr: "lb refused"}}},
			unresolved: []string{"web-1", "web-2"},
			check: func(t *testing.T, f *fleet, rep *deploy.Report, order []string) {
				assertHeldBack(t, f, rep)
				if f.inLB("web-2") {
					t.Errorf("web-2 in the load balancer, although its enable failed")
				}
				if rb := rep.Host("web-2").Rollback; rb == nil || !strings.Contains(rb.Error, "lb refused") {
					t.Errorf("web-2's rollback %+v, want its failed traffic-restore", rb)
				}
			},
		},
		{
			name: "a host that cannot leave the load balancer is not switched back", hosts: 2, seeded: true,
			faults: map[string][]localconn.Fault{"web-2": {{Label: "post/notify", Exit: 1}, {Label: "traffic/disable", Skip: 1, Exit: 1, Stderr: "lb busy"}}},
			// A failed disable may have taken web-2 out halfway: the canary,
			// maybe the last host in, is held back too.
			unresolved: []string{"web-1", "web-2"},
			check: func(t *testing.T, f *fleet, rep *deploy.Report, order []string) {
				assertHeldBack(t, f, rep)
				rb := rep.Host("web-2").Rollback
				if rb == nil || !strings.Contains(rb.Error, "it could not be taken out of the load balancer, so it was not switched back: it may still be serving") {
					t.Errorf("web-2's rollback %+v, want it left as it is", rb)
				}
				if f.current("web-2") != "2.0.0" || !f.inLB("web-2") {
					t.Errorf("web-2 on %q, in LB %v; want it left serving 2.0.0", f.current("web-2"), f.inLB("web-2"))
				}
			},
		},
		{
			name: "an unhealthy restored host stays out", hosts: 2, seeded: true,
			faults:     map[string][]localconn.Fault{"web-2": {{Label: "activate/restart", Exit: 1}, {Label: "health/health", Text: "1.0.0", Exit: 1}}},
			unresolved: []string{"web-1", "web-2"},
			check: func(t *testing.T, f *fleet, rep *deploy.Report, order []string) {
				assertHeldBack(t, f, rep)
				rb := rep.Host("web-2").Rollback
				if rb == nil || !strings.Contains(rb.Error, "left out of the load balancer: its release is not healthy") {
					t.Errorf("web-2's rollback %+v, want it left out", rb)
				}
				if f.inLB("web-2") || f.current("web-2") != "1.0.0" {
					t.Errorf("web-2 in LB %v on %q; want it out, switched back", f.inLB("web-2"), f.current("web-2"))
				}
			},
		},
		{
			name: "a first deploy whose disable failed is put back", hosts: 1,
			faults: map[string][]localconn.Fault{"web-1": {{Label: "traffic/disable", Exit: 1}}},
			check: func(t *testing.T, f *fleet, rep *deploy.Report, order []string) {
				if rb := rep.Host("web-1").Rollback; rb == nil || !rb.Healthy || !f.inLB("web-1") || f.current("web-1") != "" {
					t.Errorf("web-1: rollback %+v, in LB %v, current %q", rb, f.inLB("web-1"), f.current("web-1"))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, tt.hosts, strategyCanary, readTestdata(t, "traffic.toml"))
			if tt.seeded {
				f.seed("1.0.0")
			}
			for host, faults := range tt.faults {
				for _, fault := range faults {
					f.host(host).Fail(fault)
				}
			}
			var mu sync.Mutex
			var order []string
			e := newTestEngine(f, func(e *deploy.Engine) {
				e.Observe = func(ev deploy.Event) {
					if ev.Kind == deploy.RollbackHostDone {
						mu.Lock()
						order = append(order, ev.Host)
						mu.Unlock()
					}
				}
			})
			rep, err := run(t.Context(), e, f.plan("2.0.0", "traffic"), runOptions{})
			if fail := failure(t, err); !rep.RolledBack || fail.Interrupted {
				t.Errorf("rolled back %v, interrupted %v", rep.RolledBack, fail.Interrupted)
			}
			if got := rep.Unresolved(); !slices.Equal(got, tt.unresolved) {
				t.Errorf("unresolved %v, want %v", got, tt.unresolved)
			}
			f.assertNoLocks()
			tt.check(t, f, rep, order)
		})
	}
}

// assertHeldBack checks that the canary web-1 was not rolled back, since
// web-2 is (or may be) out of the load balancer: it is left serving 2.0.0.
func assertHeldBack(t *testing.T, f *fleet, rep *deploy.Report) {
	t.Helper()
	rb := rep.Host("web-1").Rollback
	if rb == nil || !strings.Contains(rb.Error, "web-1: not rolled back, left serving 2.0.0: web-2 could not be put back in the load balancer") {
		t.Errorf("web-1's rollback %+v, want it held back", rb)
	}
	if f.current("web-1") != "2.0.0" || !f.inLB("web-1") {
		t.Errorf("web-1 on %q, in LB %v; want it left serving 2.0.0", f.current("web-1"), f.inLB("web-1"))
	}
}

// haproxyFleet is a fleet behind a real HAProxy (its admin socket only: no
// port is opened, no server is checked), reached through the host lb-1.
type haproxyFleet struct {
	*fleet
	lb *traffic.Runtime
}

// newHAProxyFleet starts HAProxy for web-1..n and writes the project with
// [traffic] provider haproxy; with move, the playbook moves the component
// from old-1 (serving; web-1..n start out of HAProxy) and has dep-1 as a
// dependent.
func newHAProxyFleet(t *testing.T, n int, move bool) *haproxyFleet {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed")
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("socat is not installed")
	}
	dir, err := os.MkdirTemp("", "hap") // a socket path must be short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket, pidfile := filepath.Join(dir, "admin.sock"), filepath.Join(dir, "pid")
	cfg := "global\n  stats socket " + socket + " mode 600 level admin\n" +
		"defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\nbackend app\n"
	for i := 1; i <= n; i++ {
		cfg += fmt.Sprintf("  server web-%d 127.0.0.1:%d\n", i, i)
		if move {
			cfg = strings.TrimSuffix(cfg, "\n") + " disabled\n"
		}
	}
	if move {
		cfg += "  server old-1 127.0.0.1:100\n"
	}
	writeFile(t, filepath.Join(dir, "haproxy.cfg"), cfg)
	// -D: haproxy returns once the socket is bound, in the background.
	if out, err := exec.Command(bin, "-D", "-p", pidfile, "-f", filepath.Join(dir, "haproxy.cfg")).CombinedOutput(); err != nil {
		t.Fatalf("starting haproxy: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidfile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	hosts := func(f *fleet) string {
		out := fmt.Sprintf("[[environments.production.hosts]]\nname = \"lb-1\"\naddress = \"lb-1.test:22\"\nroles = [\"lb\"]\nvars = { haproxy_socket = %q }\n", socket)
		if move {
			for _, h := range []struct{ name, role string }{{"old-1", "old"}, {"dep-1", "dep"}} {
				out += fmt.Sprintf("[[environments.production.hosts]]\nname = %q\naddress = \"%s.test:22\"\nroles = [%q]\nvars = { base_dir = %q }\n",
					h.name, h.name, h.role, f.base(h.name))
			}
		}
		return out
	}
	extra := []string{readTestdata(t, "haproxy.toml")}
	if move {
		extra = append(extra, readTestdata(t, "move.toml"))
	}
	f := newFleetWithHosts(t, n, strategyCanary, hosts, extra...)
	conn, err := f.conns.Get(t.Context(), transport.Target{Name: "lb-1"})
	if err != nil {
		t.Fatal(err)
	}
	return &haproxyFleet{fleet: f, lb: &traffic.Runtime{Conn: conn, Host: "lb-1", Socket: socket}}
}

// server is the host's server in HAProxy as "admin weight N".
func (f *haproxyFleet) server(name string) string {
	f.t.Helper()
	s, err := f.lb.Server(f.t.Context(), "app", name)
	if err != nil {
		f.t.Fatalf("reading %s from haproxy: %v", name, err)
	}
	return fmt.Sprintf("%s weight %d", s.Admin, s.Weight)
}

// TestTrafficHAProxy: hosts leave HAProxy before they switch and come back
// exactly as they were (state and weight); a rollback run puts back a host
// a cut run left out.
func TestTrafficHAProxy(t *testing.T) {
	t.Run("deploy and automatic rollback", func(t *testing.T) {
		f := newHAProxyFleet(t, 2, false)
		f.seed("1.0.0")
		if err := f.lb.SetWeight(t.Context(), "app", "web-2", 7); err != nil {
			t.Fatal(err)
		}
		f.host("web-2").Fail(localconn.Fault{Label: "activate/restart", Exit: 1})
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.plan("2.0.0", "hap"), runOptions{})
		failure(t, err)
		if got := rep.Unresolved(); len(got) != 0 {
			t.Errorf("unresolved %v", got)
		}
		for name, want := range map[string]string{"web-1": "ready weight 1", "web-2": "ready weight 7"} {
			if got := f.server(name); got != want {
				t.Errorf("%s in haproxy: %s, want %s", name, got, want)
			}
			if _, err := os.Stat(filepath.Join(f.base(name), ".relctl", "traffic.json")); !os.IsNotExist(err) {
				t.Errorf("%s: traffic.json left behind (%v)", name, err)
			}
		}
		steps := stepStatuses(rep.Host("web-2").Steps)
		if !slices.Contains(steps, "preflight/traffic-precheck ok") || !slices.Contains(steps, "activate/traffic-off ok") {
			t.Errorf("web-2's steps %q: no traffic precheck or traffic-off", steps)
		}
		f.assertNoLocks()
		if f.locked("lb-1") {
			t.Errorf("the load balancer keeps a lock")
		}
	})
	t.Run("a rollback run puts back a host a cut deploy left out", func(t *testing.T) {
		f := newHAProxyFleet(t, 2, false)
		f.seed("1.0.0")
		intr, ctx := newInterrupt(t)
		f.host("web-1").Fail(localconn.Fault{Label: "activate 2.0.0", OnStart: intr.second})
		if _, err := run(ctx, newTestEngine(f.fleet, intr.engine), f.plan("2.0.0", "cut"), runOptions{}); !failure(t, err).Interrupted {
			t.Fatalf("the deploy was not cut: %v", err)
		}
		if got := f.server("web-1"); got != "maint weight 1" || f.current("web-1") != "1.0.0" {
			t.Fatalf("web-1 after the cut deploy: %s on %q, want out of haproxy on 1.0.0", got, f.current("web-1"))
		}
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.rollbackPlan("1.0.0", "2.0.0", "back"), runOptions{takeOver: true})
		if err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if got := f.server("web-1"); got != "ready weight 1" {
			t.Errorf("web-1 in haproxy after the rollback run: %s", got)
		}
		if got := stepStatuses(rep.Host("web-1").Steps); !slices.Contains(got, "cutover/traffic-pending ok") {
			t.Errorf("web-1's steps %q: the pending traffic was not put back", got)
		}
	})
	t.Run("load balancer unreachable", func(t *testing.T) {
		f := newHAProxyFleet(t, 2, false)
		f.seed("1.0.0")
		f.host("lb-1").Unreachable(-1)
		_, err := run(t.Context(), newTestEngine(f.fleet), f.plan("2.0.0", "nolb"), runOptions{})
		if fail := failure(t, err); fail.Phase != "preflight" || !strings.Contains(err.Error(), "lb-1 (a load balancer)") {
			t.Errorf("err = %v, want a preflight failure naming the load balancer", err)
		}
		f.assertOn("1.0.0", f.names...)
	})
}

// TestMove: a playbook with [move] releases its new hosts, then cuts
// HAProxy over from the old host and reconfigures the dependent; when the
// dependent fails, the move is undone first (old host serving, old config
// back), then the new hosts are rolled back.
func TestMove(t *testing.T) {
	tests := []struct {
		name  string
		fault *localconn.Fault // on dep-1
		want  map[string]string
		// dependent is dep-1's running config; record the new hosts' move.json state.
		dependent, record string
	}{
		{
			name:      "cut over",
			want:      map[string]string{"web-1": "ready weight 1", "web-2": "ready weight 1", "old-1": "maint weight 1"},
			dependent: "web-1 web-2", record: deploy.MoveCutOver,
		},
		{
			name:      "the dependent's restart fails",
			fault:     &localconn.Fault{Label: "move/restart", Times: 1, Exit: 1, Stderr: "app: bad config"},
			want:      map[string]string{"web-1": "maint weight 1", "web-2": "maint weight 1", "old-1": "ready weight 1"},
			dependent: "old-1", record: deploy.MoveMovedBack,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newHAProxyFleet(t, 2, true)
			depConf := filepath.Join(f.base("dep-1"), "app.conf")
			writeFile(t, depConf, "old-1\n")
			writeFile(t, filepath.Join(f.base("dep-1"), "app.running"), "old-1\n")
			if tt.fault != nil {
				f.host("dep-1").Fail(*tt.fault)
			}
			p := f.plan("1.0.0", "move")
			if p.Move == nil {
				t.Fatal("the plan has no move")
			}
			rep, err := run(t.Context(), newTestEngine(f.fleet), p, runOptions{})
			if tt.fault == nil && err != nil {
				t.Fatalf("move: %v", err)
			}
			if tt.fault != nil {
				if fail := failure(t, err); fail.Phase != "move" || !rep.RolledBack || !strings.Contains(err.Error(), "app: bad config") {
					t.Errorf("err = %v (rolled back %v), want a failure in the move, rolled back", err, rep.RolledBack)
				}
				if got := rep.Unresolved(); len(got) != 0 {
					t.Errorf("unresolved %v (move: %q)", got, rep.MoveUnresolved)
				}
				for _, n := range f.names {
					if f.current(n) != "" {
						t.Errorf("%s: current -> %q after the move was undone", n, f.current(n))
					}
				}
			}
			for name, want := range tt.want {
				if got := f.server(name); got != want {
					t.Errorf("%s in haproxy: %s, want %s", name, got, want)
				}
			}
			b, _ := os.ReadFile(filepath.Join(f.base("dep-1"), "app.running"))
			if got := strings.Join(strings.Fields(string(b)), " "); got != tt.dependent {
				t.Errorf("dep-1 runs with %q, want %q", got, tt.dependent)
			}
			var rec deploy.MoveRecord
			body, err := os.ReadFile(filepath.Join(f.base("web-1"), ".relctl", "move.json"))
			if err == nil {
				err = json.Unmarshal(body, &rec)
			}
			if err != nil || rec.State != tt.record {
				t.Errorf("web-1's move record: %+v (%v), want state %q", rec, err, tt.record)
			}
			for _, n := range []string{"web-1", "web-2", "lb-1", "old-1", "dep-1"} {
				if f.locked(n) {
					t.Errorf("%s keeps a lock", n)
				}
			}
		})
	}
}
