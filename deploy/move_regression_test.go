package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/transport/localconn"
)

// Regression tests of the move as plan steps, from a review of the
// redesign: each failed on the first version of deploy/after.go.

func regressionRecord(t *testing.T, f *haproxyFleet, host string) deploy.MoveRecord {
	t.Helper()
	var rec deploy.MoveRecord
	body, err := os.ReadFile(filepath.Join(f.base(host), ".relctl", "move.json"))
	if err != nil {
		t.Fatalf("read move.json: %v", err)
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func regressionRunning(t *testing.T, f *haproxyFleet) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(f.base("dep-1"), "app.running"))
	return strings.Join(strings.Fields(string(b)), " ")
}

func regressionSteps(rep *deploy.Report) []string {
	var out []string
	for _, s := range rep.MoveSteps {
		out = append(out, s.Host+" "+s.Name+" "+s.Status)
	}
	return out
}

func regressionFleet(t *testing.T) *haproxyFleet {
	f := newHAProxyFleet(t, 2, true)
	writeFile(t, filepath.Join(f.base("dep-1"), "app.conf"), "old-1\n")
	writeFile(t, filepath.Join(f.base("dep-1"), "app.running"), "old-1\n")
	return f
}

// A dependent the move never changed (its config could not even be read)
// is skipped by the undo: the rest is moved back, the record says so, and
// the new hosts are rolled back.
func TestMoveUndoSkipsDependentNeverChanged(t *testing.T) {
	f := regressionFleet(t)
	depConf := filepath.Join(f.base("dep-1"), "app.conf")
	f.host("dep-1").Fail(localconn.Fault{Label: "read " + depConf, Times: 1, Exit: 1, Stderr: "read error"})
	rep, err := run(t.Context(), newTestEngine(f.fleet), f.plan("1.0.0", "move"), runOptions{})
	if err == nil {
		t.Fatal("the deploy passed, want the config step's failure")
	}
	if got := regressionRecord(t, f, "web-1").State; got != deploy.MoveMovedBack {
		t.Errorf("record says %s, want %s; steps %v", got, deploy.MoveMovedBack, regressionSteps(rep))
	}
	if got := f.server("old-1"); got != "ready weight 1" {
		t.Errorf("old-1 is %s, want ready weight 1", got)
	}
	if !slices.Contains(regressionSteps(rep), "dep-1 config-back skipped") {
		t.Errorf("steps %v, want dep-1 config-back skipped", regressionSteps(rep))
	}
	if bad := rep.Unresolved(); len(bad) != 0 || rep.MoveUnresolved != "" {
		t.Errorf("unresolved %v, move %q: want everything back", bad, rep.MoveUnresolved)
	}
	if got := f.current("web-1"); got != "" {
		t.Errorf("web-1 left on %q, want rolled back", got)
	}
}

// A move back from a record without dependents (a cutover killed after
// lb-cutover) puts the load balancer back and says moved-back.
func TestMoveBackRecordWithoutDependents(t *testing.T) {
	f := regressionFleet(t)
	if _, err := run(t.Context(), newTestEngine(f.fleet), f.plan("1.0.0", "move"), runOptions{}); err != nil {
		t.Fatal(err)
	}
	rec := regressionRecord(t, f, "web-1")
	if rec.Time.IsZero() {
		t.Errorf("the move record has no time")
	}
	writeFile(t, filepath.Join(f.base("dep-1"), "app.conf"), "old-1\n")
	rec.State, rec.Dependents = deploy.MoveCuttingOver, nil
	p, err := deploy.BuildMovePlan(f.proj, deploy.MoveRunOptions{Env: "production", RunID: "back", Kind: deploy.KindMoveBack, Record: &rec})
	if err != nil {
		t.Fatal(err)
	}
	// The plan says so before the run: the dependent's undo is not needed.
	for _, hs := range p.After {
		if hs.Host == "dep-1" && hs.Step.Name == "config" {
			if needed, why := hs.Step.UndoNeeded(); needed || why == "" {
				t.Errorf("dep-1's config undo: needed %v (%q), want not needed, saying why", needed, why)
			}
		}
	}
	rep, err := run(t.Context(), newTestEngine(f.fleet), p, runOptions{takeOver: true})
	if err != nil {
		t.Fatalf("move back: %v; steps %v", err, regressionSteps(rep))
	}
	if got := regressionRecord(t, f, "web-1"); got.State != deploy.MoveMovedBack || got.History[deploy.MoveMovedBack] != "back" {
		t.Errorf("record %s, history %v: want moved-back by run back", got.State, got.History)
	}
	if s := f.server("old-1"); s != "ready weight 1" {
		t.Errorf("old-1 is %s, want ready weight 1", s)
	}
}

// The record cannot be written on a new host: nothing was moved, so the
// record's undo has nothing to do and the new hosts are rolled back.
func TestMoveRecordWriteFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(string) localconn.Fault
	}{
		{"the write fails", func(p string) localconn.Fault { return localconn.Fault{Label: "upload " + p, Exit: 1} }},
		{"the connection is lost at the write", func(p string) localconn.Fault { return localconn.Fault{Label: "upload " + p, Lose: true} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := regressionFleet(t)
			f.host("web-2").Fail(tc.fault(filepath.Join(f.base("web-2"), ".relctl", "move.json")))
			rep, err := run(t.Context(), newTestEngine(f.fleet), f.plan("1.0.0", "move"), runOptions{})
			if err == nil {
				t.Fatal("the deploy passed, want the record step's failure")
			}
			if bad := rep.Unresolved(); len(bad) != 0 || rep.MoveUnresolved != "" {
				t.Errorf("unresolved %v, move %q; steps %v", bad, rep.MoveUnresolved, regressionSteps(rep))
			}
			for _, h := range []string{"web-1", "web-2"} {
				if got := f.current(h); got != "" {
					t.Errorf("%s left on %q although the traffic never moved", h, got)
				}
			}
			if got := f.server("old-1"); got != "ready weight 1" {
				t.Errorf("old-1 is %s, want ready weight 1", got)
			}
		})
	}
}

// A deploy finishing an unfinished cutover, stopped before it changed
// anything itself, undoes what the unfinished one changed: the load
// balancer and the dependent go back, and only then does the record say
// moved-back.
func TestMoveResumedCutoverUndoesTheEarlierRun(t *testing.T) {
	f := regressionFleet(t)
	if _, err := run(t.Context(), newTestEngine(f.fleet), f.plan("1.0.0", "movea"), runOptions{}); err != nil {
		t.Fatal(err)
	}
	rec := regressionRecord(t, f, "web-1")
	rec.State = deploy.MoveCuttingOver // as if run A died before record-cut-over
	body, _ := json.MarshalIndent(rec, "", "  ")
	for _, n := range []string{"web-1", "web-2"} {
		writeFile(t, filepath.Join(f.base(n), ".relctl", "move.json"), string(body))
	}
	p, err := deploy.BuildPlan(f.proj, deploy.PlanOptions{Env: "production", Version: "1.0.0", RunID: "moveb", MoveResume: &rec})
	if err != nil {
		t.Fatal(err)
	}
	intr, ctx := newInterrupt(t)
	f.host("web-1").Fail(localconn.Fault{Label: "upload " + filepath.Join(f.base("web-1"), ".relctl", "move.json"), Times: 1, OnStart: intr.firstAndWait})
	rep, _ := run(ctx, newTestEngine(f.fleet, intr.engine), p, runOptions{})
	steps := regressionSteps(rep)
	for _, want := range []string{"dep-1 config-back ok", "lb-1 lb-back ok", "new hosts undo-record ok"} {
		if !slices.Contains(steps, want) {
			t.Errorf("steps %v, want %q", steps, want)
		}
	}
	if got := regressionRecord(t, f, "web-1").State; got != deploy.MoveMovedBack {
		t.Errorf("record says %s, want moved-back", got)
	}
	if got := f.server("old-1"); got != "ready weight 1" {
		t.Errorf("old-1 is %s, want ready weight 1 (the unfinished run drained it)", got)
	}
	if got := regressionRunning(t, f); got != "old-1" {
		t.Errorf("dep-1 runs %q, want old-1", got)
	}
}

// Two [[move.dependents]] that reach the same host each keep their own
// config: both are kept before the move and both put back by the move back.
func TestMoveTwoConfigsOnOneDependent(t *testing.T) {
	f := newMoveFleet(t)
	pbPath := filepath.Join(f.dir, "playbooks", "app.toml")
	pb, err := os.ReadFile(pbPath)
	if err != nil {
		t.Fatal(err)
	}
	pb = append(pb, []byte("\n[[move.dependents]]\nrole = \"dep\"\nconfig = \"{{.Vars.base_dir}}/app2.conf\"\ntemplate = \"dep.conf.tmpl\"\nrestart = \"true\"\n")...)
	writeFile(t, pbPath, string(pb))
	conf2 := filepath.Join(f.base("dep-1"), "app2.conf")
	writeFile(t, conf2, "second-old\n")
	f.reload()
	f.seedNewHosts()
	if rep, err := run(t.Context(), newTestEngine(f.fleet), f.movePlan("2.0.0", "move", nil), runOptions{}); err != nil {
		t.Fatalf("move: %v; %v", err, moveSteps(rep))
	}
	rec := f.record("web-1")
	if len(rec.Dependents) != 2 {
		t.Fatalf("the record keeps %d configs of dep-1, want 2: %+v", len(rec.Dependents), rec.Dependents)
	}
	rep, err := run(t.Context(), newTestEngine(f.fleet), f.moveRunPlan(deploy.KindMoveBack, "back", rec), runOptions{})
	if err != nil {
		t.Fatalf("move back: %v; %v", err, moveSteps(rep))
	}
	if b, _ := os.ReadFile(conf2); string(b) != "second-old\n" {
		t.Errorf("after the move back app2.conf is %q, want %q", b, "second-old\n")
	}
	if got := f.recordState(); got != deploy.MoveMovedBack {
		t.Errorf("record says %s, want moved-back", got)
	}
}

// A deploy finishing an unfinished cutover that fails (in its batches or in
// the move) leaves the load balancer as it was before the move: the new
// hosts' own traffic restore does not send traffic to them again after the
// move's undo took it away.
func TestMoveResumedCutoverFailsRestoresTheLB(t *testing.T) {
	for _, tt := range []struct {
		name  string
		host  string
		fault localconn.Fault
	}{
		{"in the batches", "web-1", localconn.Fault{Label: "activate/restart", Times: 1, Exit: 1}},
		{"in the move", "dep-1", localconn.Fault{Label: "move/restart", Times: 1, Exit: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newMoveFleet(t)
			f.seedNewHosts()
			f.abortMove()
			prep, err := deploy.Prepare(t.Context(), f.proj, deploy.PrepareOptions{
				Plan: deploy.PlanOptions{Env: "production", Version: "2.0.0", RunID: "resume"}, Connector: f.conns,
			})
			if err != nil {
				t.Fatal(err)
			}
			f.host(tt.host).Fail(tt.fault)
			rep, err := newTestEngine(f.fleet).Run(t.Context(), prep.Plan, prep.Run)
			if err == nil {
				t.Fatal("the deploy passed, want the injected failure")
			}
			f.assertLB(lbBefore)
			if got := f.recordState(); got != deploy.MoveMovedBack {
				t.Errorf("record says %s, want moved-back; steps %v", got, moveSteps(rep))
			}
			if bad := rep.Unresolved(); len(bad) != 0 {
				t.Errorf("unresolved %v, want none", bad)
			}
		})
	}
}

// Aborted by the second interrupt while finishing an unfinished cutover:
// nothing is rolled back, and the report says what is left - the move, and
// the host taken out of the load balancer.
func TestMoveResumedCutoverAbortedIsReported(t *testing.T) {
	f := newMoveFleet(t)
	f.seedNewHosts()
	f.abortMove()
	prep, err := deploy.Prepare(t.Context(), f.proj, deploy.PrepareOptions{
		Plan: deploy.PlanOptions{Env: "production", Version: "2.0.0", RunID: "resume"}, Connector: f.conns,
	})
	if err != nil {
		t.Fatal(err)
	}
	intr, ctx := newInterrupt(t)
	f.host("web-1").Fail(localconn.Fault{Label: "activate/restart", Times: 1, OnStart: intr.second})
	rep, _ := newTestEngine(f.fleet, intr.engine).Run(ctx, prep.Plan, prep.Run)
	if rep.MoveUnresolved == "" || !slices.Contains(rep.Unresolved(), "move") {
		t.Errorf("move unresolved %q, unresolved %v: want the move reported", rep.MoveUnresolved, rep.Unresolved())
	}
	if h := rep.Host("web-1"); h == nil || !strings.Contains(h.LeftOut, "out of the load balancer") || !slices.Contains(rep.Unresolved(), "web-1") {
		t.Errorf("web-1: %+v; want it reported left out of the load balancer", h)
	}
}
