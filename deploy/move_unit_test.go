package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport/localconn"
	"github.com/relctl/relctl/playbooks"
)

// The steps after the batches - a host move - through the exported API,
// on localconn hosts behind a real HAProxy: web-1 and web-2 take over from
// old-1 (serving, on release 0.9.0), and dep-1's config names the hosts it
// talks to (testdata/unit/move_full.toml: a retire command, and a health
// check of dep-1 after each restart).

// moveFleet is the move's world: new hosts web-1, web-2 (out of HAProxy:
// disabled; seedNewHosts puts 1.0.0 on them), old-1 in HAProxy, dep-1
// configured for old-1.
type moveFleet struct {
	*haproxyFleet
	depConf string // dep-1's config
}

// The dependent's config and state before the move.
const (
	depBefore     = "old-1\n"
	depBeforeMode = 0o640
)

func newMoveFleet(t *testing.T) *moveFleet {
	t.Helper()
	hf := newHAProxyFleet(t, 2, true)
	f := &moveFleet{haproxyFleet: hf, depConf: filepath.Join(hf.base("dep-1"), "app.conf")}
	pbPath := filepath.Join(f.dir, "playbooks", "app.toml")
	pb, err := os.ReadFile(pbPath)
	if err != nil {
		t.Fatal(err)
	}
	full := strings.Replace(string(pb), readTestdata(t, "move.toml"), readTestdata(t, "move_full.toml"), 1)
	if full == string(pb) {
		t.Fatal("the playbook does not end with testdata/unit/move.toml")
	}
	writeFile(t, pbPath, full)
	f.reload()
	writeFile(t, f.depConf, depBefore)
	if err := os.Chmod(f.depConf, depBeforeMode); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.base("dep-1"), "app.running"), depBefore)
	// old-1 runs 0.9.0, as relctl left it.
	writeFile(t, filepath.Join(f.base("old-1"), "releases", "0.9.0", "VERSION"), "0.9.0\n")
	if err := os.Symlink("releases/0.9.0", filepath.Join(f.base("old-1"), "current")); err != nil {
		t.Fatal(err)
	}
	return f
}

// reload loads the project again after a test changed its files.
func (f *moveFleet) reload() {
	f.t.Helper()
	proj, err := playbooks.Load(filepath.Join(f.dir, "relctl.toml"))
	if err != nil {
		f.t.Fatalf("loading the test project:\n%v", err)
	}
	f.proj = proj
}

// addDependent adds a host of role dep, configured for old-1, to the environment.
func (f *moveFleet) addDependent(name string) {
	f.t.Helper()
	cfg, err := os.ReadFile(filepath.Join(f.dir, "relctl.toml"))
	if err != nil {
		f.t.Fatal(err)
	}
	cfg = fmt.Appendf(cfg, "\n[[environments.production.hosts]]\nname = %q\naddress = \"%s.test:22\"\nroles = [\"dep\"]\nvars = { base_dir = %q }\n",
		name, name, f.base(name))
	writeFile(f.t, filepath.Join(f.dir, "relctl.toml"), string(cfg))
	writeFile(f.t, filepath.Join(f.base(name), "app.conf"), depBefore)
	writeFile(f.t, filepath.Join(f.base(name), "app.running"), depBefore)
	f.reload()
}

// movePlan is a deploy of version that moves the component (resuming rec
// when it is not nil).
func (f *moveFleet) movePlan(version, runID string, rec *deploy.MoveRecord) *deploy.Plan {
	f.t.Helper()
	p, err := deploy.BuildPlan(f.proj, deploy.PlanOptions{Env: "production", Version: version, RunID: runID, MoveResume: rec})
	if err != nil {
		f.t.Fatalf("BuildPlan: %v", err)
	}
	if p.Move == nil || len(p.After) == 0 {
		f.t.Fatal("the plan has no move")
	}
	return p
}

// moveRunPlan is a move back or a finalize of rec.
func (f *moveFleet) moveRunPlan(kind, runID string, rec *deploy.MoveRecord) *deploy.Plan {
	f.t.Helper()
	p, err := deploy.BuildMovePlan(f.proj, deploy.MoveRunOptions{Env: "production", Playbook: "app", RunID: runID, Kind: kind, Record: rec})
	if err != nil {
		f.t.Fatalf("BuildMovePlan %s: %v", kind, err)
	}
	return p
}

// seedNewHosts releases 1.0.0 on the new hosts without moving (as a deploy
// does once a move is done), so a failed move has a release to go back to.
func (f *moveFleet) seedNewHosts() {
	f.t.Helper()
	p, err := deploy.BuildPlan(f.proj, deploy.PlanOptions{Env: "production", Version: "1.0.0", RunID: "seed", MoveDone: true})
	if err != nil {
		f.t.Fatal(err)
	}
	p.Pause = 0
	if _, err := run(f.t.Context(), newTestEngine(f.fleet), p, runOptions{}); err != nil {
		f.t.Fatalf("seeding the new hosts with 1.0.0: %v", err)
	}
	f.assertOn("1.0.0", f.names...)
	for _, n := range f.names {
		if f.record(n) != nil {
			f.t.Fatalf("%s: the seed wrote a move record", n)
		}
	}
}

// record is the host's .relctl/move.json (nil when there is none).
func (f *moveFleet) record(name string) *deploy.MoveRecord {
	f.t.Helper()
	body, err := os.ReadFile(filepath.Join(f.base(name), ".relctl", "move.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var rec deploy.MoveRecord
	if err := json.Unmarshal(body, &rec); err != nil {
		f.t.Fatalf("%s: move.json: %v", name, err)
	}
	return &rec
}

// recordState is the state every new host's record says ("none" without
// one); the test fails when the new hosts disagree.
func (f *moveFleet) recordState() string {
	f.t.Helper()
	states := map[string]bool{}
	for _, n := range f.names {
		st := "none"
		if rec := f.record(n); rec != nil {
			st = rec.State
		}
		states[st] = true
	}
	if len(states) != 1 {
		f.t.Errorf("the new hosts' move records disagree: %v", states)
	}
	for st := range states {
		return st
	}
	return ""
}

// lbState is every server of the move in HAProxy.
func (f *moveFleet) lbState() map[string]string {
	out := map[string]string{}
	for _, n := range []string{"web-1", "web-2", "old-1"} {
		out[n] = f.server(n)
	}
	return out
}

// lbBefore and lbMoved are HAProxy before and after the cutover.
var (
	lbBefore = map[string]string{"web-1": "maint weight 1", "web-2": "maint weight 1", "old-1": "ready weight 1"}
	lbMoved  = map[string]string{"web-1": "ready weight 1", "web-2": "ready weight 1", "old-1": "maint weight 1"}
)

func (f *moveFleet) assertLB(want map[string]string) {
	f.t.Helper()
	got := f.lbState()
	for n, w := range want {
		if got[n] != w {
			f.t.Errorf("%s in haproxy: %s, want %s", n, got[n], w)
		}
	}
}

// dependent is dep's config and what it runs with (one line each).
func (f *moveFleet) dependent(dep string) (config, running string) {
	f.t.Helper()
	c, err := os.ReadFile(filepath.Join(f.base(dep), "app.conf"))
	if err != nil {
		f.t.Fatal(err)
	}
	r, _ := os.ReadFile(filepath.Join(f.base(dep), "app.running"))
	return string(c), strings.Join(strings.Fields(string(r)), " ")
}

// assertDependentBefore checks dep-1 is back on its config as it was: the
// same bytes and mode, and running with it.
func (f *moveFleet) assertDependentBefore() {
	f.t.Helper()
	config, running := f.dependent("dep-1")
	if config != depBefore || running != "old-1" {
		f.t.Errorf("dep-1: config %q, running with %q; want %q, old-1", config, running, depBefore)
	}
	if fi, err := os.Stat(f.depConf); err != nil || fi.Mode().Perm() != depBeforeMode {
		f.t.Errorf("dep-1's config: %v (%v), want mode %o", fi.Mode(), err, depBeforeMode)
	}
}

// moveSteps lists the report's move steps as "host phase/name status".
func moveSteps(rep *deploy.Report) []string {
	var out []string
	for _, r := range rep.MoveSteps {
		out = append(out, r.Host+" "+r.ID()+" "+r.Status)
	}
	return out
}

// finalOutcomes is moveSteps with each run of attempts at one step (an
// undo retried while its host is unreachable) reduced to its last.
func finalOutcomes(rep *deploy.Report) []string {
	var out []string
	for _, r := range rep.MoveSteps {
		s := r.Host + " " + r.ID() + " " + r.Status
		if n := len(out); n > 0 && strings.HasPrefix(out[n-1], r.Host+" "+r.ID()+" ") {
			out[n-1] = s
			continue
		}
		out = append(out, s)
	}
	return out
}

// moveStep is the report's last move step named name on host (nil if none).
func moveStep(rep *deploy.Report, host, name string) *deploy.StepResult {
	var out *deploy.StepResult
	for _, r := range rep.MoveSteps {
		if r.Host == host && r.Name == name {
			out = r
		}
	}
	return out
}

// failAfterStep adds fault to host once the move step named after has
// finished (ok): the fault hits the next matching command, in the next step.
func failAfterStep(f *moveFleet, e *deploy.Engine, after string, host string, fault localconn.Fault) {
	prev := e.Observe
	e.Observe = func(ev deploy.Event) {
		if prev != nil {
			prev(ev)
		}
		if ev.Kind == deploy.StepDone && ev.Result != nil && ev.Result.Phase == "move" && ev.Result.Name == after && ev.Result.Status == deploy.StatusOK {
			f.host(host).Fail(fault)
		}
	}
}

// failAfterBatches adds fault to host once the last batch is done: it hits
// the next matching command, in the move's first steps.
func failAfterBatches(f *moveFleet, e *deploy.Engine, host string, fault localconn.Fault) {
	prev := e.Observe
	e.Observe = func(ev deploy.Event) {
		if prev != nil {
			prev(ev)
		}
		if ev.Kind == deploy.BatchDone && ev.Batch.Index == len(ev.Plan.Batches) {
			f.host(host).Fail(fault)
		}
	}
}

// moveRecordPath is the host's .relctl/move.json.
func (f *moveFleet) moveRecordPath(name string) string {
	return filepath.Join(f.base(name), ".relctl", "move.json")
}

// assertNoMoveLocks fails when any host of the move keeps a lock.
func (f *moveFleet) assertNoMoveLocks() {
	f.t.Helper()
	for _, n := range []string{"web-1", "web-2", "lb-1", "old-1", "dep-1"} {
		if f.locked(n) {
			f.t.Errorf("%s keeps a lock", n)
		}
	}
}

// The move's steps, as a cutover that fails runs them and then its undos.
const (
	stLBSave    = "lb-1 move/lb-save "
	stRecord    = "new hosts move/record "
	stCutover   = "lb-1 move/lb-cutover "
	stConfig    = "dep-1 move/config "
	stRestart   = "dep-1 move/restart "
	stCutOver   = "new hosts move/record-cut-over "
	stConfigBck = "dep-1 move/config-back "
	stLBBack    = "lb-1 move/lb-back "
	stUndoRec   = "new hosts move/undo-record "
)

// TestMoveStepFails: a failure at each step of the cutover. The undos of
// the steps that started run in reverse (dependents, load balancer, then
// the record says moved-back), then the new hosts are rolled back: HAProxy,
// dep-1's config and the new hosts are as before, nothing unresolved.
func TestMoveStepFails(t *testing.T) {
	const (
		ok, failed, skipped = "ok", "failed", "skipped"
	)
	tests := []struct {
		name   string
		inject func(f *moveFleet, e *deploy.Engine)
		// steps are the move's steps and undos, in order; record what the
		// new hosts' move.json says afterwards ("none": not written).
		steps  []string
		record string
		errHas string
	}{
		{
			name: "lb-save",
			inject: func(f *moveFleet, e *deploy.Engine) {
				failAfterBatches(f, e, "lb-1", localconn.Fault{Label: "traffic/haproxy", Times: 1, Exit: 1, Stderr: "socat: broken pipe"})
			},
			steps:  []string{stLBSave + failed},
			record: "none", errHas: "socat: broken pipe",
		},
		{
			name: "record write",
			inject: func(f *moveFleet, e *deploy.Engine) {
				f.host("web-1").Fail(localconn.Fault{Label: "upload " + f.moveRecordPath("web-1"), Times: 1, Exit: 1, Stderr: "disk full"})
			},
			steps:  []string{stLBSave + ok, stRecord + failed, stUndoRec + ok},
			record: deploy.MoveMovedBack, errHas: "writing the move record",
		},
		{
			name: "lb-cutover",
			inject: func(f *moveFleet, e *deploy.Engine) {
				failAfterStep(f, e, "record", "lb-1", localconn.Fault{Label: "traffic/haproxy", Times: 1, Exit: 1, Stderr: "socat: broken pipe"})
			},
			steps:  []string{stLBSave + ok, stRecord + ok, stCutover + failed, stLBBack + ok, stUndoRec + ok},
			record: deploy.MoveMovedBack, errHas: "socat: broken pipe",
		},
		{
			name: "dependent's config unreadable",
			inject: func(f *moveFleet, e *deploy.Engine) {
				f.host("dep-1").Fail(localconn.Fault{Label: "read " + f.depConf, Times: 1, Exit: 1, Stderr: "I/O error"})
			},
			// Nothing was kept or changed on dep-1: its undo has nothing to do.
			steps:  []string{stLBSave + ok, stRecord + ok, stCutover + ok, stConfig + failed, stConfigBck + skipped, stLBBack + ok, stUndoRec + ok},
			record: deploy.MoveMovedBack, errHas: "I/O error",
		},
		{
			name: "dependent's config write",
			inject: func(f *moveFleet, e *deploy.Engine) {
				f.host("dep-1").Fail(localconn.Fault{Label: "upload " + f.depConf, Times: 1, Exit: 1, Stderr: "disk full"})
			},
			steps:  []string{stLBSave + ok, stRecord + ok, stCutover + ok, stConfig + failed, stConfigBck + ok, stLBBack + ok, stUndoRec + ok},
			record: deploy.MoveMovedBack, errHas: "disk full",
		},
		{
			name: "dependent's restart",
			inject: func(f *moveFleet, e *deploy.Engine) {
				f.host("dep-1").Fail(localconn.Fault{Label: "move/restart", Times: 1, Exit: 1, Stderr: "app: bad config"})
			},
			steps:  []string{stLBSave + ok, stRecord + ok, stCutover + ok, stConfig + ok, stRestart + failed, stConfigBck + ok, stLBBack + ok, stUndoRec + ok},
			record: deploy.MoveMovedBack, errHas: "app: bad config",
		},
		{
			name: "dependent's health check",
			inject: func(f *moveFleet, e *deploy.Engine) {
				// Both attempts (retries = 1) of the check after the restart.
				f.host("dep-1").Fail(localconn.Fault{Label: "health/dep-up", Times: 2, Exit: 1, Stderr: "dep: not answering"})
			},
			steps:  []string{stLBSave + ok, stRecord + ok, stCutover + ok, stConfig + ok, stRestart + failed, stConfigBck + ok, stLBBack + ok, stUndoRec + ok},
			record: deploy.MoveMovedBack, errHas: "dep-up",
		},
		{
			name: "record-cut-over",
			inject: func(f *moveFleet, e *deploy.Engine) {
				// The third write of web-1's record: record, config (keeping dep-1's), record-cut-over.
				f.host("web-1").Fail(localconn.Fault{Label: "upload " + f.moveRecordPath("web-1"), Skip: 2, Times: 1, Exit: 1, Stderr: "disk full"})
			},
			steps:  []string{stLBSave + ok, stRecord + ok, stCutover + ok, stConfig + ok, stRestart + ok, stCutOver + failed, stConfigBck + ok, stLBBack + ok, stUndoRec + ok},
			record: deploy.MoveMovedBack, errHas: "disk full",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMoveFleet(t)
			f.seedNewHosts()
			e := newTestEngine(f.fleet)
			tt.inject(f, e)
			rep, err := run(t.Context(), e, f.movePlan("2.0.0", "move", nil), runOptions{})
			fail := failure(t, err)
			if fail.Phase != "move" || fail.Interrupted || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %v (phase %q, interrupted %v), want a failure in the move saying %q", err, fail.Phase, fail.Interrupted, tt.errHas)
			}
			if got := moveSteps(rep); !slices.Equal(got, tt.steps) {
				t.Errorf("move steps\n%q\nwant\n%q", got, tt.steps)
			}
			if !rep.RolledBack || len(rep.Unresolved()) != 0 || rep.MoveUnresolved != "" {
				t.Errorf("rolled back %v, unresolved %v, move unresolved %q", rep.RolledBack, rep.Unresolved(), rep.MoveUnresolved)
			}
			if !strings.Contains(err.Error(), "every touched host was rolled back and is healthy on its previous release") {
				t.Errorf("the error does not say everything was restored:\n%s", err)
			}
			if got := f.recordState(); got != tt.record {
				t.Errorf("the new hosts' move records say %s, want %s", got, tt.record)
			}
			if tt.record == deploy.MoveMovedBack {
				if rec := f.record("web-2"); rec.History[deploy.MoveMovedBack] != "move" || rec.Release != "2.0.0" {
					t.Errorf("web-2's record: history %v, release %q; want moved-back by run move, release 2.0.0", rec.History, rec.Release)
				}
			}
			f.assertLB(lbBefore)
			f.assertDependentBefore()
			for _, n := range f.names {
				f.assertRestored(rep, n, "1.0.0")
			}
			f.assertNoMoveLocks()
		})
	}
}

// cutOver moves the component to the new hosts (1.0.0 seeded, 2.0.0
// released), which must succeed, and returns the record it wrote.
func (f *moveFleet) cutOver() *deploy.MoveRecord {
	f.t.Helper()
	f.seedNewHosts()
	rep, err := run(f.t.Context(), newTestEngine(f.fleet), f.movePlan("2.0.0", "move", nil), runOptions{})
	if err != nil {
		f.t.Fatalf("the move: %v", err)
	}
	want := []string{stLBSave + "ok", stRecord + "ok", stCutover + "ok", stConfig + "ok", stRestart + "ok", stCutOver + "ok"}
	if got := moveSteps(rep); !slices.Equal(got, want) {
		f.t.Fatalf("the move's steps %q, want %q", got, want)
	}
	f.assertLB(lbMoved)
	if config, running := f.dependent("dep-1"); config != "web-1\nweb-2\n" || running != "web-1 web-2" {
		f.t.Fatalf("dep-1 after the move: config %q, running with %q", config, running)
	}
	if st := f.recordState(); st != deploy.MoveCutOver {
		f.t.Fatalf("the new hosts' records say %s after the move", st)
	}
	f.assertOn("2.0.0", f.names...)
	return f.record("web-1")
}

// TestMoveUndoFails: an undo of the move that fails for good leaves the
// move unresolved, its record saying cutting-over and the new hosts as
// they are (they may carry the traffic); one whose host comes back after
// a few dials succeeds, and everything is restored.
func TestMoveUndoFails(t *testing.T) {
	t.Run("dependent unreachable for good", func(t *testing.T) {
		f := newMoveFleet(t)
		f.seedNewHosts()
		f.host("dep-1").Fail(localconn.Fault{Label: "move/restart", Times: 1, Lose: true, ThenUnreachable: -1})
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.movePlan("2.0.0", "move", nil), runOptions{})
		fail := failure(t, err)
		if fail.Phase != "move" || !rep.RolledBack {
			t.Errorf("err = %v (rolled back %v), want a failure in the move", err, rep.RolledBack)
		}
		want := []string{stLBSave + "ok", stRecord + "ok", stCutover + "ok", stConfig + "ok", stRestart + "failed",
			stConfigBck + "failed", stLBBack + "ok", stUndoRec + "failed"}
		if got := finalOutcomes(rep); !slices.Equal(got, want) {
			t.Errorf("move steps\n%q\nwant\n%q", got, want)
		}
		if d := f.host("dep-1").Dials(); d < 5 {
			t.Errorf("dep-1 dialled %d times, want the first and 4 attempts at its config-back", d)
		}
		if !strings.Contains(rep.MoveUnresolved, "dep-1: step move/config-back") || !strings.Contains(rep.MoveUnresolved, "move.json keeps saying cutting-over") {
			t.Errorf("MoveUnresolved = %q, want dep-1's failed config-back and the record left as it is", rep.MoveUnresolved)
		}
		if got, want := rep.Unresolved(), []string{"web-1", "web-2", "move"}; !slices.Equal(got, want) {
			t.Errorf("unresolved %v, want %v", got, want)
		}
		if !strings.Contains(err.Error(), "rollback did not restore every host: web-1, web-2, move") {
			t.Errorf("the error does not name what is left:\n%s", err)
		}
		if st := f.recordState(); st != deploy.MoveCuttingOver {
			t.Errorf("the new hosts' records say %s, want %s", st, deploy.MoveCuttingOver)
		}
		if rec := f.record("web-1"); rec.History[deploy.MoveMovedBack] != "" {
			t.Errorf("web-1's record history says moved back: %v", rec.History)
		}
		// The new hosts may serve dep-1 (its config names them): left on 2.0.0.
		f.assertOn("2.0.0", f.names...)
		for _, n := range f.names {
			if h := rep.Host(n); h.Rollback != nil || h.After != "2.0.0" {
				t.Errorf("%s: rollback %+v, after %q; want it left as it is", n, h.Rollback, h.After)
			}
		}
		// The undos after the failed one still ran: the old host serves again.
		f.assertLB(lbBefore)
		if config, _ := f.dependent("dep-1"); config != "web-1\nweb-2\n" {
			t.Errorf("dep-1's config %q, want the new hosts' (it could not be reached)", config)
		}
		for _, n := range []string{"web-1", "web-2", "lb-1", "old-1"} {
			if f.locked(n) {
				t.Errorf("%s keeps a lock", n)
			}
		}
	})
	t.Run("dependent back after two dials", func(t *testing.T) {
		f := newMoveFleet(t)
		f.seedNewHosts()
		f.host("dep-1").Fail(localconn.Fault{Label: "move/restart", Times: 1, Lose: true, ThenUnreachable: 2})
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.movePlan("2.0.0", "move", nil), runOptions{})
		if fail := failure(t, err); fail.Phase != "move" || !rep.RolledBack {
			t.Errorf("err = %v (rolled back %v), want a failure in the move", err, rep.RolledBack)
		}
		want := []string{stLBSave + "ok", stRecord + "ok", stCutover + "ok", stConfig + "ok", stRestart + "failed",
			stConfigBck + "ok", stLBBack + "ok", stUndoRec + "ok"}
		if got := finalOutcomes(rep); !slices.Equal(got, want) {
			t.Errorf("move steps\n%q\nwant\n%q", got, want)
		}
		if d := f.host("dep-1").Dials(); d < 4 {
			t.Errorf("dep-1 dialled %d times, want the first, two refused and one that got through", d)
		}
		if len(rep.Unresolved()) != 0 || rep.MoveUnresolved != "" {
			t.Errorf("unresolved %v, move unresolved %q", rep.Unresolved(), rep.MoveUnresolved)
		}
		if st := f.recordState(); st != deploy.MoveMovedBack {
			t.Errorf("the new hosts' records say %s, want %s", st, deploy.MoveMovedBack)
		}
		f.assertLB(lbBefore)
		f.assertDependentBefore()
		for _, n := range f.names {
			f.assertRestored(rep, n, "1.0.0")
		}
		f.assertNoMoveLocks()
	})
}

// TestMoveBack: `relctl rollback` of a cut-over move, from the record the
// cutover wrote: HAProxy and dep-1 as before the move, the record says
// moved-back (with the run in its history); the new hosts keep their release.
func TestMoveBack(t *testing.T) {
	f := newMoveFleet(t)
	rec := f.cutOver()
	p := f.moveRunPlan(deploy.KindMoveBack, "back", rec)
	if !p.UndoAfter || p.Verb() != "move back" {
		t.Errorf("plan: undo after %v, verb %q", p.UndoAfter, p.Verb())
	}
	rep, err := run(t.Context(), newTestEngine(f.fleet), p, runOptions{})
	if err != nil {
		t.Fatalf("move back: %v", err)
	}
	want := []string{stConfigBck + "ok", stLBBack + "ok", stUndoRec + "ok"}
	if got := moveSteps(rep); !slices.Equal(got, want) {
		t.Errorf("move steps\n%q\nwant\n%q", got, want)
	}
	if len(rep.Unresolved()) != 0 || rep.MoveUnresolved != "" || rep.RolledBack {
		t.Errorf("unresolved %v, move unresolved %q, rolled back %v", rep.Unresolved(), rep.MoveUnresolved, rep.RolledBack)
	}
	f.assertLB(lbBefore)
	f.assertDependentBefore()
	if st := f.recordState(); st != deploy.MoveMovedBack {
		t.Errorf("the new hosts' records say %s, want %s", st, deploy.MoveMovedBack)
	}
	if got := f.record("web-2"); got.History[deploy.MoveMovedBack] != "back" || got.RunID != "move" {
		t.Errorf("web-2's record: run %q, history %v; want the move's run, moved-back by run back", got.RunID, got.History)
	}
	f.assertOn("2.0.0", f.names...)
	f.assertNoMoveLocks()

	// Moved back: nothing left to move back, and nothing to finalize.
	for _, kind := range []string{deploy.KindMoveBack, deploy.KindFinalize} {
		_, err := deploy.BuildMovePlan(f.proj, deploy.MoveRunOptions{Env: "production", Playbook: "app", RunID: "again", Kind: kind, Record: f.record("web-1")})
		if !errors.Is(err, deploy.ErrMoveState) {
			t.Errorf("%s of a moved-back move: %v, want ErrMoveState", kind, err)
		}
	}
}

// TestMoveBackLeavesNewDependentAlone: a dependent added after the move
// (not in its record) is not touched by the move back.
func TestMoveBackLeavesNewDependentAlone(t *testing.T) {
	f := newMoveFleet(t)
	rec := f.cutOver()
	f.addDependent("dep-2")
	rep, err := run(t.Context(), newTestEngine(f.fleet), f.moveRunPlan(deploy.KindMoveBack, "back", rec), runOptions{})
	if err != nil {
		t.Fatalf("move back: %v", err)
	}
	want := []string{"dep-2 move/config-back skipped", stConfigBck + "ok", stLBBack + "ok", stUndoRec + "ok"}
	if got := moveSteps(rep); !slices.Equal(got, want) {
		t.Errorf("move steps\n%q\nwant\n%q", got, want)
	}
	if s := moveStep(rep, "dep-2", "config-back"); s == nil || !strings.Contains(s.Detail+s.Error, "never changed") {
		t.Errorf("dep-2's config-back %+v, want it to say it never changed", s)
	}
	if config, running := f.dependent("dep-2"); config != depBefore || running != "old-1" || f.host("dep-2").Ran("move/restart") {
		t.Errorf("dep-2 changed: config %q, running with %q, restarted %v", config, running, f.host("dep-2").Ran("move/restart"))
	}
	f.assertLB(lbBefore)
	f.assertDependentBefore()
	if st := f.recordState(); st != deploy.MoveMovedBack {
		t.Errorf("the new hosts' records say %s, want %s", st, deploy.MoveMovedBack)
	}
}

// TestMoveFinalize: finalize refuses, changing nothing, unless every new
// host runs one release and every new server is ready and up; then the old
// host leaves HAProxy for good, its retire command runs, its current goes
// and its history says retired, and the record says finalized.
func TestMoveFinalize(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, f *moveFleet)
		steps   []string
		refusal string // "" succeeds
	}{
		{
			name: "new hosts on different releases",
			setup: func(t *testing.T, f *moveFleet) {
				cur := filepath.Join(f.base("web-2"), "current")
				if err := os.Remove(cur); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("releases/1.0.0", cur); err != nil {
					t.Fatal(err)
				}
			},
			steps:   []string{"new hosts move/check-release failed"},
			refusal: "web-2 runs 1.0.0 while the other new hosts run 2.0.0",
		},
		{
			name: "a new server not ready",
			setup: func(t *testing.T, f *moveFleet) {
				if err := f.lb.SetAdmin(t.Context(), "app", "web-2", "maint"); err != nil {
					t.Fatal(err)
				}
			},
			steps:   []string{"new hosts move/check-release ok", "lb-1 move/lb-check failed"},
			refusal: "web-2 is maint",
		},
		{
			name: "finalized",
			steps: []string{"new hosts move/check-release ok", "lb-1 move/lb-check ok", "lb-1 move/lb-retire ok",
				"old-1 move/retire ok", "new hosts move/record ok"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMoveFleet(t)
			rec := f.cutOver()
			if tt.setup != nil {
				tt.setup(t, f)
			}
			lb := f.lbState()
			p := f.moveRunPlan(deploy.KindFinalize, "finalize", rec)
			if p.Verb() != "finalize" {
				t.Errorf("plan verb %q", p.Verb())
			}
			rep, err := run(t.Context(), newTestEngine(f.fleet), p, runOptions{})
			if got := moveSteps(rep); !slices.Equal(got, tt.steps) {
				t.Errorf("move steps\n%q\nwant\n%q", got, tt.steps)
			}
			retireLog, _ := os.ReadFile(filepath.Join(f.base("old-1"), "retire.log"))
			f.assertNoMoveLocks()
			if tt.refusal != "" {
				if !errors.Is(err, deploy.ErrMoveState) || !strings.Contains(err.Error(), tt.refusal) {
					t.Errorf("err = %v, want ErrMoveState saying %q", err, tt.refusal)
				}
				if rep.MoveUnresolved != "" || len(rep.Unresolved()) != 0 || rep.RolledBack {
					t.Errorf("a refusal: move unresolved %q, unresolved %v, rolled back %v", rep.MoveUnresolved, rep.Unresolved(), rep.RolledBack)
				}
				f.assertLB(lb)
				if f.current("old-1") != "0.9.0" || len(retireLog) > 0 {
					t.Errorf("old-1 changed: current %q, retire.log %q", f.current("old-1"), retireLog)
				}
				if st := f.recordState(); st != deploy.MoveCutOver {
					t.Errorf("the new hosts' records say %s, want %s", st, deploy.MoveCutOver)
				}
				return
			}
			if err != nil {
				t.Fatalf("finalize: %v", err)
			}
			f.assertLB(lbMoved)
			if string(retireLog) != "retired\n" {
				t.Errorf("old-1's retire.log %q: the retire command did not run once", retireLog)
			}
			if c := f.current("old-1"); c != "" {
				t.Errorf("old-1: current -> %q, want it removed", c)
			}
			if !slices.ContainsFunc(f.history("old-1").Events, func(ev state.HistoryEvent) bool {
				return ev.Kind == "retired" && ev.RunID == "finalize" && strings.Contains(ev.Reason, "moved to web-1, web-2 by run move")
			}) {
				t.Errorf("old-1's history does not say it was retired: %+v", f.history("old-1").Events)
			}
			if st := f.recordState(); st != deploy.MoveFinalized {
				t.Errorf("the new hosts' records say %s, want %s", st, deploy.MoveFinalized)
			}
			if got := f.record("web-1"); got.History[deploy.MoveFinalized] != "finalize" {
				t.Errorf("web-1's record history %v, want finalized by run finalize", got.History)
			}
			f.assertOn("2.0.0", f.names...)
		})
	}
}

// abortMove runs the move and aborts it (the second interrupt: the run's
// context cancelled) while dep-1 restarts on its new config: HAProxy cut
// over, dep-1 configured for the new hosts, the record cutting-over.
func (f *moveFleet) abortMove() *deploy.Report {
	f.t.Helper()
	intr, ctx := newInterrupt(f.t)
	f.host("dep-1").Fail(localconn.Fault{Label: "move/restart", Times: 1, OnStart: intr.second})
	rep, err := run(ctx, newTestEngine(f.fleet, intr.engine), f.movePlan("2.0.0", "move", nil), runOptions{})
	if fail := failure(f.t, err); !fail.Interrupted || fail.Phase != "move" || rep.RolledBack {
		f.t.Fatalf("the aborted move: %v (interrupted %v, rolled back %v)", err, fail.Interrupted, rep.RolledBack)
	}
	f.assertLB(lbMoved)
	if st := f.recordState(); st != deploy.MoveCuttingOver {
		f.t.Fatalf("the new hosts' records say %s after the aborted move", st)
	}
	if config, _ := f.dependent("dep-1"); config != "web-1\nweb-2\n" {
		f.t.Fatalf("dep-1's config %q after the aborted move", config)
	}
	return rep
}

// TestMoveResume: a deploy after a cutover that did not finish (its record
// says cutting-over) finishes it with the states the first one saved - not
// the half-moved ones it finds - so a move back afterwards restores HAProxy
// and dep-1 as they were before the first.
func TestMoveResume(t *testing.T) {
	f := newMoveFleet(t)
	f.seedNewHosts()
	f.abortMove()
	var notices []string
	prep, err := deploy.Prepare(t.Context(), f.proj, deploy.PrepareOptions{
		Plan:      deploy.PlanOptions{Env: "production", Version: "2.0.0", RunID: "resume"},
		Connector: f.conns,
		Notice:    func(format string, args ...any) { notices = append(notices, fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if prep.Move == nil || prep.Move.State != deploy.MoveCuttingOver || prep.Move.RunID != "move" || len(prep.Plan.After) == 0 {
		t.Fatalf("Prepare read the move record %+v, plan with %d steps after the batches", prep.Move, len(prep.Plan.After))
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "did not finish: this deploy finishes it, keeping the states it saved") {
		t.Errorf("notices %q", notices)
	}
	rep, err := newTestEngine(f.fleet).Run(t.Context(), prep.Plan, prep.Run)
	if err != nil {
		t.Fatalf("the resumed move: %v", err)
	}
	want := []string{stLBSave + "ok", stRecord + "ok", stCutover + "ok", stConfig + "ok", stRestart + "ok", stCutOver + "ok"}
	if got := moveSteps(rep); !slices.Equal(got, want) {
		t.Errorf("move steps\n%q\nwant\n%q", got, want)
	}
	if s := moveStep(rep, "lb-1", "lb-save"); s == nil || s.Detail != "recorded old-1 kept from the unfinished move, web-1 kept from the unfinished move, web-2 kept from the unfinished move" {
		t.Errorf("lb-save: %+v, want every server kept from the unfinished move", s)
	}
	f.assertLB(lbMoved)
	rec := f.record("web-1")
	if rec == nil || rec.State != deploy.MoveCutOver || rec.RunID != "resume" || len(rec.Servers) != 3 || len(rec.Dependents) != 1 {
		t.Fatalf("web-1's record after the resumed move: %+v", rec)
	}
	for _, s := range rec.Servers {
		if want := map[string]string{"old-1": "ready", "web-1": "maint", "web-2": "maint"}[s.Saved.Name]; s.Saved.Admin != want {
			t.Errorf("the record saves %s as %s, want %s (as before the first move)", s.Saved.Name, s.Saved.Admin, want)
		}
	}
	if d := rec.Dependents[0]; !strings.HasSuffix(d.Copy, ".relctl-before-move") || d.Mode != depBeforeMode {
		t.Errorf("the record keeps dep-1's config at %s (mode %o), want the first move's copy", d.Copy, d.Mode)
	}
	// The move back restores what was there before the first move.
	if _, err := run(t.Context(), newTestEngine(f.fleet), f.moveRunPlan(deploy.KindMoveBack, "back", rec), runOptions{}); err != nil {
		t.Fatalf("move back: %v", err)
	}
	f.assertLB(lbBefore)
	f.assertDependentBefore()
	f.assertNoMoveLocks()
}

// TestMoveFirstInterrupt: the first interrupt while dep-1 restarts: the
// restart finishes, the record is not cut over, the move is undone, then
// the new hosts are rolled back.
func TestMoveFirstInterrupt(t *testing.T) {
	f := newMoveFleet(t)
	f.seedNewHosts()
	intr, ctx := newInterrupt(t)
	var mu sync.Mutex
	var order []string // the move's undos, then the hosts rolled back
	e := newTestEngine(f.fleet, intr.engine)
	observe := e.Observe
	e.Observe = func(ev deploy.Event) {
		observe(ev)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Kind == deploy.StepDone && ev.Result.Phase == "move":
			order = append(order, ev.Result.Name)
		case ev.Kind == deploy.RollbackHostDone:
			order = append(order, "rolled back "+ev.Host)
		}
	}
	f.host("dep-1").Fail(localconn.Fault{Label: "move/restart", Times: 1, OnStart: intr.firstAndWait})
	rep, err := run(ctx, e, f.movePlan("2.0.0", "move", nil), runOptions{})
	fail := failure(t, err)
	if !fail.Interrupted || fail.Phase != "move" || !strings.Contains(err.Error(), "stopped during the move") {
		t.Errorf("err = %v (interrupted %v, phase %q), want the move stopped by the interrupt", err, fail.Interrupted, fail.Phase)
	}
	want := []string{stLBSave + "ok", stRecord + "ok", stCutover + "ok", stConfig + "ok", stRestart + "ok", stConfigBck + "ok", stLBBack + "ok", stUndoRec + "ok"}
	if got := moveSteps(rep); !slices.Equal(got, want) {
		t.Errorf("move steps\n%q\nwant\n%q", got, want)
	}
	mu.Lock()
	got := order[len(order)-5:]
	mu.Unlock()
	if !slices.Equal(got[:3], []string{"config-back", "lb-back", "undo-record"}) || !slices.Contains(got[3:], "rolled back web-1") || !slices.Contains(got[3:], "rolled back web-2") {
		t.Errorf("the end of the run: %q, want the move's undos, then the new hosts rolled back", got)
	}
	if !rep.RolledBack || len(rep.Unresolved()) != 0 || rep.MoveUnresolved != "" {
		t.Errorf("rolled back %v, unresolved %v, move unresolved %q", rep.RolledBack, rep.Unresolved(), rep.MoveUnresolved)
	}
	if st := f.recordState(); st != deploy.MoveMovedBack {
		t.Errorf("the new hosts' records say %s, want %s", st, deploy.MoveMovedBack)
	}
	f.assertLB(lbBefore)
	f.assertDependentBefore()
	for _, n := range f.names {
		f.assertRestored(rep, n, "1.0.0")
	}
	f.assertNoMoveLocks()
}

// TestMoveSecondInterruptReportsTheMove: a move aborted by the second
// interrupt leaves HAProxy and dep-1 on the new hosts; the report must say
// the move is unresolved, as it does when its undo fails.
func TestMoveSecondInterruptReportsTheMove(t *testing.T) {
	f := newMoveFleet(t)
	f.seedNewHosts()
	rep := f.abortMove()
	if rep.MoveUnresolved == "" || !slices.Contains(rep.Unresolved(), "move") {
		t.Errorf("move unresolved %q, unresolved %v; want the move among what is left", rep.MoveUnresolved, rep.Unresolved())
	}
}

// TestMoveRecordTime: the record says when it was written (the engine's
// clock): ReadMoveRecords picks the newest record of the new hosts by it.
func TestMoveRecordTime(t *testing.T) {
	f := newMoveFleet(t)
	f.seedNewHosts()
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := newTestEngine(f.fleet, func(e *deploy.Engine) { e.Now = func() time.Time { return clock } })
	if _, err := run(t.Context(), e, f.movePlan("2.0.0", "move", nil), runOptions{}); err != nil {
		t.Fatalf("the move: %v", err)
	}
	for _, n := range f.names {
		if rec := f.record(n); !rec.Time.Equal(clock) {
			t.Errorf("%s's record says it was written at %v, want the engine's clock %v", n, rec.Time, clock)
		}
	}
}
