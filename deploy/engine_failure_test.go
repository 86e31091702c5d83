package deploy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
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

// The engine's failure branches, run on hosts that are directories of this
// machine (localconn): the project is testdata/unit's relctl.toml and
// app.toml, the steps are real shell, and the assertions are what a user
// sees: the report, the error, and the files left on the hosts.

// fleet is the unit tests' project and its hosts web-1..N.
type fleet struct {
	t     *testing.T
	dir   string // the project directory
	conns *localconn.Connector
	proj  *playbooks.Project
	names []string
}

// strategyCanary is the default [strategy]: web-1 alone, then two at a time.
const strategyCanary = "canary = 1\nbatch_size = 2"

// newFleet writes the project for n hosts with the given [strategy] body
// (and extra tables appended to the playbook), and the artifacts of
// releases 1.0.0 and 2.0.0.
func newFleet(t *testing.T, n int, strategy string, extra ...string) *fleet {
	t.Helper()
	return newFleetWithHosts(t, n, strategy, nil, extra...)
}

// newFleetWithHosts is newFleet with more hosts in the environment: the
// TOML hosts returns (f.base names their base_dir).
func newFleetWithHosts(t *testing.T, n int, strategy string, hosts func(f *fleet) string, extra ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, dir: t.TempDir(), conns: localconn.NewConnector(t.TempDir())}
	cfg := readTestdata(t, "relctl.toml")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("web-%d", i)
		f.names = append(f.names, name)
		cfg += fmt.Sprintf("\n[[environments.production.hosts]]\nname = %q\naddress = \"%s.test:22\"\nroles = [\"app\"]\nvars = { base_dir = %q }\n",
			name, name, f.base(name))
	}
	if hosts != nil {
		cfg += "\n" + hosts(f)
	}
	pb := strings.Replace(readTestdata(t, "app.toml"), "# STRATEGY (replaced by the test)", strategy, 1) + strings.Join(extra, "\n")
	writeFile(t, filepath.Join(f.dir, "relctl.toml"), cfg)
	writeFile(t, filepath.Join(f.dir, "playbooks", "app.toml"), pb)
	writeFile(t, filepath.Join(f.dir, "playbooks", "dep.conf.tmpl"), readTestdata(t, "dep.conf.tmpl"))
	for _, v := range []string{"1.0.0", "2.0.0"} {
		writeFile(t, filepath.Join(f.dir, "artifacts", "app-"+v+".tar.gz"), string(artifact(t, v)))
	}
	proj, err := playbooks.Load(filepath.Join(f.dir, "relctl.toml"))
	if err != nil {
		t.Fatalf("loading the test project:\n%v", err)
	}
	f.proj = proj
	return f
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "unit", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// artifact is a release's tarball: VERSION, and bin/restart, which makes
// the release the one running (BASE/running says which).
func artifact(t *testing.T, version string) []byte {
	return tarball(t, []tarFile{
		{"VERSION", version + "\n", 0o644},
		{"bin/restart", "#!/bin/sh\nset -e\ncat \"$(dirname \"$0\")/../VERSION\" > \"$1/running\"\n", 0o755},
	})
}

// tarFile is one file of a test tarball.
type tarFile struct {
	name, body string
	mode       int64
}

// tarball is a .tar.gz of files.
func tarball(t *testing.T, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *fleet) host(name string) *localconn.Host { return f.conns.Host(name) }

// base is the host's base_dir, inside its localconn directory.
func (f *fleet) base(name string) string { return filepath.Join(f.host(name).Root, "srv", "app") }

// plan is a deploy of version to every host.
func (f *fleet) plan(version, runID string) *deploy.Plan {
	f.t.Helper()
	p, err := deploy.BuildPlan(f.proj, deploy.PlanOptions{Env: "production", Version: version, RunID: runID})
	if err != nil {
		f.t.Fatalf("BuildPlan: %v", err)
	}
	return p
}

// newTestEngine is the one place an engine is made. tune adjusts it
// (Stop, Journal, Observe, ...).
func newTestEngine(f *fleet, tune ...func(*deploy.Engine)) *deploy.Engine {
	e := &deploy.Engine{
		Connector: f.conns, Operator: "tester", Controller: "unit-test",
		// A host unreachable while rolling back is tried 4 times in all.
		Backoff: []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond},
	}
	for _, fn := range tune {
		fn(e)
	}
	return e
}

// runOptions are a run's decisions, as the tests set them.
type runOptions struct {
	skip      []string
	resume    string
	takeOver  bool
	gateFrom  string
	gateUntil time.Time
	skipGate  string
}

// run is the one place a plan is executed.
func run(ctx context.Context, e *deploy.Engine, p *deploy.Plan, o runOptions) (*deploy.Report, error) {
	opts := deploy.RunOptions{ResumeRun: o.resume, TakeOverStaleLocks: o.takeOver,
		Gate: deploy.GateDecision{From: o.gateFrom, Until: o.gateUntil, Skipped: o.skipGate}}
	if len(o.skip) > 0 {
		opts.Skip = map[string]bool{}
		for _, h := range o.skip {
			opts.Skip[h] = true
		}
	}
	return e.Run(ctx, p, opts)
}

// seed deploys version to every host, which must succeed, and forgets the
// commands it ran.
func (f *fleet) seed(version string) {
	f.t.Helper()
	p := f.plan(version, "seed-"+version)
	p.Pause = 0 // a seed does not wait between batches
	rep, err := run(f.t.Context(), newTestEngine(f), p, runOptions{})
	if err != nil {
		f.t.Fatalf("seeding release %s: %v", version, err)
	}
	for _, n := range f.names {
		if h := rep.Host(n); h.After != version {
			f.t.Fatalf("seeding release %s: %s is on %q", version, n, h.After)
		}
		f.host(n).ResetCommands()
	}
}

// current is the release the host's current symlink points at ("" without one).
func (f *fleet) current(name string) string {
	f.t.Helper()
	target, err := os.Readlink(filepath.Join(f.base(name), "current"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.TrimPrefix(target, "releases/")
}

// running is the release the host's service runs (BASE/running).
func (f *fleet) running(name string) string {
	b, _ := os.ReadFile(filepath.Join(f.base(name), "running"))
	return strings.TrimSpace(string(b))
}

// history is the host's .relctl/history.json.
func (f *fleet) history(name string) *state.History {
	f.t.Helper()
	p := filepath.Join(f.base(name), ".relctl", "history.json")
	body, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return &state.History{}
	}
	if err != nil {
		f.t.Fatal(err)
	}
	h, err := state.ParseHistory(p, body)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// activations lists the host's history as "kind version" lines.
func (f *fleet) activations(name string) []string {
	var out []string
	for _, a := range f.history(name).Activations {
		kind := a.Kind
		if kind == "" {
			kind = deploy.KindDeploy
		}
		out = append(out, kind+" "+a.Version)
	}
	return out
}

// locked says whether a lock is left on the host.
func (f *fleet) locked(name string) bool {
	_, err := os.Lstat(filepath.Join(f.base(name), ".relctl", "lock"))
	return err == nil
}

// assertNoLocks fails when any host keeps a lock after the run.
func (f *fleet) assertNoLocks() {
	f.t.Helper()
	for _, n := range f.names {
		if f.locked(n) {
			f.t.Errorf("%s: a lock is left in %s", n, filepath.Join(f.base(n), ".relctl", "lock"))
		}
	}
}

// assertOn checks that every named host's current and service are on version.
func (f *fleet) assertOn(version string, names ...string) {
	f.t.Helper()
	for _, n := range names {
		if got := f.current(n); got != version {
			f.t.Errorf("%s: current -> %q, want %q", n, got, version)
		}
		if got := f.running(n); got != version {
			f.t.Errorf("%s: the service runs %q, want %q", n, got, version)
		}
	}
}

// stepStatuses lists a host's step results as "phase/name status".
func stepStatuses(rs []*deploy.StepResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID()+" "+r.Status)
	}
	return out
}

// failure is err as a *deploy.Failure, or the test fails.
func failure(t *testing.T, err error) *deploy.Failure {
	t.Helper()
	var f *deploy.Failure
	if !errors.As(err, &f) {
		t.Fatalf("err = %v (%T), want a *deploy.Failure", err, err)
	}
	return f
}

func TestDeploySucceeds(t *testing.T) {
	f := newFleet(t, 3, strategyCanary)
	var mu sync.Mutex
	var batches []string
	e := newTestEngine(f, func(e *deploy.Engine) {
		e.Observe = func(ev deploy.Event) {
			if ev.Kind == deploy.BatchStarted {
				mu.Lock()
				batches = append(batches, fmt.Sprintf("%d canary=%v %d hosts", ev.Batch.Index, ev.Batch.Canary, len(ev.Batch.Hosts)))
				mu.Unlock()
			}
		}
	})
	rep, err := run(t.Context(), e, f.plan("1.0.0", "first"), runOptions{})
	if err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	if want := []string{"1 canary=true 1 hosts", "2 canary=false 2 hosts"}; !slices.Equal(batches, want) {
		t.Errorf("batches = %q, want %q", batches, want)
	}
	f.assertOn("1.0.0", f.names...)
	for _, h := range rep.Hosts {
		if h.Before != "" || h.After != "1.0.0" || !h.Touched || h.Rollback != nil {
			t.Errorf("%s: before %q after %q touched %v rollback %v", h.Name, h.Before, h.After, h.Touched, h.Rollback)
		}
	}

	rep, err = run(t.Context(), newTestEngine(f), f.plan("2.0.0", "second"), runOptions{})
	if err != nil {
		t.Fatalf("second deploy: %v", err)
	}
	f.assertOn("2.0.0", f.names...)
	f.assertNoLocks()
	want := []string{
		"preflight/writable ok", "preflight/rollback-ready ok",
		"stage/upload ok", "stage/unpack ok",
		"activate/activate ok", "activate/restart ok",
		"verify/health ok", "cutover/announce ok", "post/notify ok", "post/prune ok",
	}
	for _, n := range f.names {
		h := rep.Host(n)
		if h.Before != "1.0.0" || h.After != "2.0.0" || h.Rollback != nil || h.Error != "" {
			t.Errorf("%s: before %q after %q rollback %v error %q", n, h.Before, h.After, h.Rollback, h.Error)
		}
		if got := stepStatuses(h.Steps); !slices.Equal(got, want) {
			t.Errorf("%s: steps\n%q\nwant\n%q", n, got, want)
		}
		if got, want := f.activations(n), []string{"deploy 1.0.0", "deploy 2.0.0"}; !slices.Equal(got, want) {
			t.Errorf("%s: history %q, want %q", n, got, want)
		}
	}
	if len(rep.Changed()) != 3 || rep.RolledBack {
		t.Errorf("changed %v, rolled back %v", rep.Changed(), rep.RolledBack)
	}
}

// journalOf opens a journal for the run in a temp dir; events reads it back.
func journalOf(t *testing.T, runID string) (*state.Journal, func() []state.JournalEvent) {
	t.Helper()
	j, err := state.OpenJournal(t.TempDir(), runID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, func() []state.JournalEvent {
		t.Helper()
		evs, err := state.ReadJournal(j.Path())
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
}

// runResult is the journal's run-end result ("" without one).
func runResult(evs []state.JournalEvent) string {
	for _, ev := range evs {
		if ev.Kind == "run-end" {
			return ev.Result
		}
	}
	return ""
}

// journalHas says whether the journal has an event of kind (for host and
// step when they are not empty) with the given status ("" any).
func journalHas(evs []state.JournalEvent, kind, host, step, status string) bool {
	return slices.ContainsFunc(evs, func(ev state.JournalEvent) bool {
		return ev.Kind == kind && (host == "" || ev.Host == host) && (step == "" || ev.Step == step) && (status == "" || ev.Status == status)
	})
}

// assertRestored checks a host the failed run left: back on 1.0.0 in the
// report and on disk, and, when it was touched, rolled back and healthy.
func (f *fleet) assertRestored(rep *deploy.Report, name, version string) {
	f.t.Helper()
	h := rep.Host(name)
	if h.Before != version || h.After != version {
		f.t.Errorf("%s: report says before %q after %q, want %q both", name, h.Before, h.After, version)
	}
	if h.Touched && (h.Rollback == nil || !h.Rollback.Healthy || h.Rollback.Error != "") {
		f.t.Errorf("%s: touched, but rollback %+v", name, h.Rollback)
	}
	if !h.Touched && h.Rollback != nil {
		f.t.Errorf("%s: not touched, yet rolled back: %+v", name, h.Rollback)
	}
	f.assertOn(version, name)
}

// TestDeployFailsInEachPhase: a step failing on web-2 (batch 2) in each
// phase. Preflight changes nothing; later, every touched host - web-1,
// which finished batch 1, included - is rolled back and healthy.
func TestDeployFailsInEachPhase(t *testing.T) {
	tests := []struct {
		name  string
		fault localconn.Fault
		phase string
		batch int
		// failedStep is web-2's last step; rollback its rollback steps.
		failedStep string
		rollback   []string
	}{
		{
			name: "preflight", fault: localconn.Fault{Label: "preflight/writable", Exit: 1, Stderr: "read-only file system"},
			phase: "preflight", batch: 0, failedStep: "preflight/writable",
		},
		{
			name: "stage", fault: localconn.Fault{Label: "stage/unpack", Exit: 2, Stderr: "tar: unexpected EOF"},
			phase: "stage", batch: 2, failedStep: "stage/unpack",
			rollback: []string{"rollback/undo-unpack skipped", "rollback/health ok"},
		},
		{
			name: "activate", fault: localconn.Fault{Label: "activate/restart", Exit: 1, Stderr: "restart: failed"},
			phase: "activate", batch: 2, failedStep: "activate/restart",
			rollback: []string{"rollback/undo-restart skipped", "rollback/undo-activate ok", "rollback/undo-unpack skipped", "rollback/restart ok", "rollback/health ok"},
		},
		{
			name: "verify", fault: localconn.Fault{Label: "health/health", Text: "2.0.0", Exit: 1, Stderr: "not serving"},
			phase: "verify", batch: 2, failedStep: "verify/health",
			rollback: []string{"rollback/undo-restart skipped", "rollback/undo-activate ok", "rollback/undo-unpack skipped", "rollback/restart ok", "rollback/health ok"},
		},
		{
			name: "cutover", fault: localconn.Fault{Label: "cutover/announce", Exit: 1, Stderr: "announce: refused"},
			phase: "cutover", batch: 2, failedStep: "cutover/announce",
			rollback: []string{"rollback/undo-announce ok", "rollback/undo-restart skipped", "rollback/undo-activate ok", "rollback/undo-unpack skipped", "rollback/restart ok", "rollback/health ok"},
		},
		{
			name: "post", fault: localconn.Fault{Label: "post/notify", Exit: 1, Stderr: "notify: down"},
			phase: "post", batch: 2, failedStep: "post/notify",
			rollback: []string{"rollback/undo-notify skipped", "rollback/undo-announce ok", "rollback/undo-restart skipped", "rollback/undo-activate ok", "rollback/undo-unpack skipped", "rollback/restart ok", "rollback/health ok"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 3, strategyCanary)
			f.seed("1.0.0")
			f.host("web-2").Fail(tt.fault)
			j, events := journalOf(t, "fail-"+tt.name)
			rep, err := run(t.Context(), newTestEngine(f, func(e *deploy.Engine) { e.Journal = j }), f.plan("2.0.0", "fail-"+tt.name), runOptions{})

			fail := failure(t, err)
			if fail.Phase != tt.phase || fail.Batch != tt.batch || fail.Interrupted {
				t.Errorf("failure in phase %q batch %d interrupted %v, want phase %q batch %d", fail.Phase, fail.Batch, fail.Interrupted, tt.phase, tt.batch)
			}
			if msg := err.Error(); !strings.Contains(msg, "web-2: step "+tt.failedStep) || !strings.Contains(msg, tt.fault.Stderr) {
				t.Errorf("error does not name web-2's step %s and its output:\n%s", tt.failedStep, msg)
			}
			w2 := rep.Host("web-2")
			if n := len(w2.Steps); n == 0 || w2.Steps[n-1].ID() != tt.failedStep || w2.Steps[n-1].Status != deploy.StatusFailed {
				t.Errorf("web-2's steps end with %q, want %s failed", stepStatuses(w2.Steps), tt.failedStep)
			}
			for _, n := range f.names {
				f.assertRestored(rep, n, "1.0.0")
			}
			f.assertNoLocks()
			if len(rep.Unresolved()) != 0 {
				t.Errorf("unresolved: %v", rep.Unresolved())
			}
			evs := events()
			if !journalHas(evs, "step-end", "web-2", tt.failedStep, deploy.StatusFailed) {
				t.Errorf("the journal has no failed step-end for web-2 %s", tt.failedStep)
			}

			if tt.phase == "preflight" {
				for _, h := range rep.Hosts {
					if h.Touched {
						t.Errorf("%s touched by a run that failed in preflight", h.Name)
					}
					if _, err := os.Stat(filepath.Join(f.base(h.Name), "releases", "2.0.0")); !os.IsNotExist(err) {
						t.Errorf("%s: 2.0.0 staged by a run that failed in preflight", h.Name)
					}
				}
				if rep.RolledBack || runResult(evs) != "failed" || journalHas(evs, "rollback-start", "", "", "") {
					t.Errorf("rolled back %v, journal result %q", rep.RolledBack, runResult(evs))
				}
				return
			}
			if !rep.RolledBack || runResult(evs) != "rolled-back" || !journalHas(evs, "rollback-start", "", "", "") {
				t.Errorf("rolled back %v, journal result %q", rep.RolledBack, runResult(evs))
			}
			if !strings.Contains(err.Error(), "every touched host was rolled back and is healthy on its previous release") {
				t.Errorf("error does not say the rollback restored every host:\n%s", err)
			}
			if got := stepStatuses(w2.Rollback.Steps); !slices.Equal(got, tt.rollback) {
				t.Errorf("web-2's rollback steps\n%q\nwant\n%q", got, tt.rollback)
			}
			// web-1 finished batch 1 on 2.0.0: switched there and back.
			if got, want := f.activations("web-1"), []string{"deploy 1.0.0", "deploy 2.0.0", "rollback 1.0.0"}; !slices.Equal(got, want) {
				t.Errorf("web-1's history %q, want %q", got, want)
			}
			if !rep.Host("web-1").Touched || rep.Host("web-1").Rollback == nil {
				t.Errorf("web-1 (the canary, done) was not rolled back")
			}
		})
	}
}

// TestDeployGate: the rehearsal gate's decision, checked again under the
// lock; an override is written to every host's history first.
func TestDeployGate(t *testing.T) {
	tests := []struct {
		name    string
		opts    runOptions
		wantErr string // "" succeeds
	}{
		{name: "the gate still holds", opts: runOptions{gateFrom: "1.0.0", gateUntil: time.Now().Add(time.Hour)}},
		{name: "another run moved a host", opts: runOptions{gateFrom: "0.9.0"},
			wantErr: "web-1 runs 1.0.0 now, but the gate passed for a deploy from 0.9.0"},
		{name: "the record expired while waiting", opts: runOptions{gateFrom: "1.0.0", gateUntil: time.Now().Add(-time.Minute)},
			wantErr: "the rehearsal record expired"},
		{name: "the gate overridden", opts: runOptions{skipGate: "hotfix for INC-42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 2, strategyCanary)
			f.seed("1.0.0")
			rep, err := run(t.Context(), newTestEngine(f), f.plan("2.0.0", "gated"), tt.opts)
			f.assertNoLocks()
			if tt.wantErr != "" {
				if fail := failure(t, err); fail.Phase != "preflight" || !errors.Is(err, deploy.ErrGateChanged) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want a preflight ErrGateChanged saying %q", err, tt.wantErr)
				}
				f.assertOn("1.0.0", f.names...)
				for _, h := range rep.Hosts {
					if h.Touched {
						t.Errorf("%s touched", h.Name)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f.assertOn("2.0.0", f.names...)
			for _, n := range f.names {
				overridden := slices.ContainsFunc(f.history(n).Events, func(ev state.HistoryEvent) bool {
					return ev.Kind == "skip-rehearsal" && ev.Reason == tt.opts.skipGate && ev.Detail["from"] == "1.0.0"
				})
				if overridden != (tt.opts.skipGate != "") {
					t.Errorf("%s: the override in history: %v, want %v", n, overridden, tt.opts.skipGate != "")
				}
			}
		})
	}
}

// TestEngineCheck: `relctl check` changes nothing and names the hosts that fail.
func TestEngineCheck(t *testing.T) {
	tests := []struct {
		name    string
		release string
		setup   func(f *fleet)
		failed  []string
		// wantSteps are among every host's step results ("phase/name status").
		wantSteps map[string][]string
	}{
		{name: "healthy fleet", wantSteps: map[string][]string{
			"web-1": {"check/rollback-ready ok", "check/health ok"}, "web-2": {"check/rollback-ready ok", "check/health ok"}}},
		{name: "with a candidate release", release: "2.0.0", wantSteps: map[string][]string{
			"web-1": {"check/disk-space ok", "check/health ok"}}},
		{name: "a host's service is down", setup: func(f *fleet) { writeFile(f.t, filepath.Join(f.base("web-2"), "running"), "crashed\n") },
			failed: []string{"web-2"}, wantSteps: map[string][]string{"web-2": {"check/health failed"}, "web-1": {"check/health ok"}}},
		{name: "a host unreachable", setup: func(f *fleet) { f.host("web-1").Unreachable(-1) },
			failed: []string{"web-1"}, wantSteps: map[string][]string{"web-2": {"check/health ok"}}},
		{name: "a release that was never deployed", setup: func(f *fleet) {
			if err := os.RemoveAll(filepath.Join(f.base("web-2"), "releases", "1.0.0")); err != nil {
				f.t.Fatal(err)
			}
		}, failed: []string{"web-2"}, wantSteps: map[string][]string{"web-2": {"check/rollback-ready failed"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 2, strategyCanary)
			f.seed("1.0.0")
			if tt.setup != nil {
				tt.setup(f)
			}
			rep, err := newTestEngine(f).Check(t.Context(), f.proj, deploy.CheckOptions{Env: "production", Release: tt.release, RunID: "check"})
			if len(tt.failed) == 0 && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if len(tt.failed) > 0 && (!errors.Is(err, deploy.ErrChecksFailed) || !strings.HasSuffix(err.Error(), "on "+strings.Join(tt.failed, ", "))) {
				t.Fatalf("err = %v, want ErrChecksFailed on %v", err, tt.failed)
			}
			if got := rep.Failed(); !slices.Equal(got, tt.failed) {
				t.Errorf("Failed() = %v, want %v", got, tt.failed)
			}
			for host, want := range tt.wantSteps {
				var got []string
				for _, h := range rep.Hosts {
					if h.Name == host {
						got = stepStatuses(h.Steps)
					}
				}
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Errorf("%s: steps %q, want %q among them", host, got, w)
					}
				}
			}
			for _, n := range f.names {
				if f.current(n) != "1.0.0" || f.locked(n) || len(f.history(n).Activations) != 1 {
					t.Errorf("%s: changed by a check", n)
				}
			}
		})
	}
}

// TestStatus: what `relctl status` reads from each host.
func TestStatus(t *testing.T) {
	f := newFleet(t, 3, strategyCanary)
	f.seed("1.0.0")
	f.seed("2.0.0")
	writeFile(t, filepath.Join(f.base("web-2"), "running"), "crashed\n")
	f.host("web-3").Unreachable(-1)
	st, err := deploy.Status(t.Context(), f.conns, f.proj, "production", 2)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range st.Hosts {
		got[h.Name] = fmt.Sprintf("reachable=%v current=%s previous=%s healthy=%v error=%v", h.Reachable, h.Current, h.Previous, h.Healthy, h.Error != "")
	}
	want := map[string]string{
		"web-1": "reachable=true current=2.0.0 previous=1.0.0 healthy=true error=false",
		"web-2": "reachable=true current=2.0.0 previous=1.0.0 healthy=false error=true",
		"web-3": "reachable=false current= previous= healthy=false error=true",
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: %s\nwant   %s", n, got[n], w)
		}
	}
	if _, err := deploy.Status(t.Context(), f.conns, f.proj, "nowhere", 2); !errors.Is(err, deploy.ErrBadInput) {
		t.Errorf("status of an unknown environment: %v, want ErrBadInput", err)
	}
}

// TestPreflightReadFailures: a host whose state cannot be read under the
// lock (in the lock's own session, then on its own), or whose history cannot
// record a skipped rehearsal: the run stops in preflight, nothing changed or
// locked.
func TestPreflightReadFailures(t *testing.T) {
	tests := []struct {
		name    string
		fault   localconn.Fault
		corrupt bool // web-2's history.json holds something that is not JSON
		opts    runOptions
		want    string
		// wantAlso: the cause, also in the error
		wantAlso string
	}{
		{name: "history unreadable", corrupt: true,
			want: "web-2: reading release state", wantAlso: "history.json"},
		{name: "the lock's read unusable, the read on its own fails", corrupt: true,
			// (Skip: the lock's session, lock+read-state, matches too.)
			fault: localconn.Fault{Label: "read-state", Skip: 1, Times: 1, Exit: 1, Stderr: "ls: I/O error"},
			want:  "web-2: reading release state", wantAlso: "ls: I/O error"},
		{name: "recording the skipped rehearsal", fault: localconn.Fault{Label: "write history", Exit: 1, Stderr: "disk full"},
			opts: runOptions{skipGate: "hotfix"}, want: "web-2: recording the skipped rehearsal in history", wantAlso: "disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 3, strategyCanary)
			f.seed("1.0.0")
			if tt.corrupt {
				writeFile(t, filepath.Join(f.base("web-2"), ".relctl", "history.json"), "{not json\n")
			}
			if tt.fault.Label != "" {
				f.host("web-2").Fail(tt.fault)
			}
			rep, err := run(t.Context(), newTestEngine(f), f.plan("2.0.0", "unreadable"), tt.opts)
			if fail := failure(t, err); fail.Phase != "preflight" || fail.Batch != 0 || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.wantAlso) {
				t.Errorf("err = %v, want a preflight failure saying %q and %q", err, tt.want, tt.wantAlso)
			}
			for _, h := range rep.Hosts {
				if h.Touched || h.Rollback != nil {
					t.Errorf("%s touched (%v) or rolled back (%v)", h.Name, h.Touched, h.Rollback)
				}
			}
			f.assertOn("1.0.0", f.names...)
			f.assertNoLocks()
		})
	}
}

// TestDeployOptions: the engine's knobs that change how, not what: one
// host at a time, a pause that elapses, a Stop that never comes, the
// engine's clock in history, a journal that cannot be written.
func TestDeployOptions(t *testing.T) {
	f := newFleet(t, 3, strategyCanary+"\npause = \"10ms\"")
	f.seed("1.0.0")
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	j, _ := journalOf(t, "opts")
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(f, func(e *deploy.Engine) {
		e.MaxParallel = 1
		e.Stop = make(chan struct{})
		e.Now = func() time.Time { return clock }
		e.Journal = j // closed: every append fails, the run goes on
	})
	rep, err := run(t.Context(), e, f.plan("2.0.0", "opts"), runOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.assertOn("2.0.0", f.names...)
	f.assertNoLocks()
	if !rep.Started.Equal(clock) || !rep.Finished.Equal(clock) {
		t.Errorf("report started %v finished %v, want the engine's clock %v", rep.Started, rep.Finished, clock)
	}
	for _, n := range f.names {
		acts := f.history(n).Activations
		if last := acts[len(acts)-1]; !last.Time.Equal(clock) || last.Operator != "tester" || last.Controller != "unit-test" || last.RunID != "opts" {
			t.Errorf("%s: last activation %+v, want the engine's clock, operator, controller and run", n, last)
		}
	}
}

// TestDeployOutsideHosts: --hosts leaves web-3 out of the plan but in the
// lock scope; when it cannot be reached or locked, the run goes on
// without its lock, and says so.
func TestDeployOutsideHosts(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *localconn.Host)
		want  string
	}{
		{name: "unreachable", setup: func(h *localconn.Host) { h.Unreachable(-1) }, want: "not reachable"},
		{name: "its lock command fails", setup: func(h *localconn.Host) { h.Fail(localconn.Fault{Label: "lock", Exit: 1, Stderr: "read-only"}) },
			want: "the lock command failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 3, strategyCanary)
			f.seed("1.0.0")
			tt.setup(f.host("web-3"))
			var mu sync.Mutex
			var notLocked []state.HostLockState
			e := newTestEngine(f, func(e *deploy.Engine) {
				e.Observe = func(ev deploy.Event) {
					if ev.Kind == deploy.LocksTaken {
						mu.Lock()
						notLocked = append(notLocked, ev.Locks...)
						mu.Unlock()
					}
				}
			})
			p, err := deploy.BuildPlan(f.proj, deploy.PlanOptions{Env: "production", Version: "2.0.0", RunID: "some", Hosts: []string{"web-1", "web-2"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := run(t.Context(), e, p, runOptions{}); err != nil {
				t.Fatalf("deploy to web-1, web-2: %v", err)
			}
			f.assertOn("2.0.0", "web-1", "web-2")
			if f.current("web-3") != "1.0.0" || f.host("web-3").Ran("stage/unpack") {
				t.Errorf("web-3, outside --hosts, changed")
			}
			if len(notLocked) != 1 || notLocked[0].Host != "web-3" || !strings.Contains(notLocked[0].Err, tt.want) || !strings.Contains(notLocked[0].Err, deploy.ScopeOutside) {
				t.Errorf("LocksTaken says %+v, want web-3 not locked (%s)", notLocked, tt.want)
			}
			f.assertNoLocks()
		})
	}
}

// TestLockLost: another hand removes the run's lock on web-1 while web-1
// stages: the run stops (not an interrupt) and rolls back.
func TestLockLost(t *testing.T) {
	f := newFleet(t, 3, strategyCanary)
	f.seed("1.0.0")
	var mu sync.Mutex
	removed, beats := false, 0
	seen := make(chan struct{})
	// Two heartbeats started after the removal: the first saw the lock
	// gone, and its tick ended (the run was told) before the second.
	f.host("web-1").Fail(localconn.Fault{Label: "lock heartbeat", OnStart: func() {
		mu.Lock()
		defer mu.Unlock()
		if removed {
			if beats++; beats == 2 {
				close(seen)
			}
		}
	}})
	f.host("web-1").Fail(localconn.Fault{Label: "stage/upload:verify", OnStart: func() {
		if err := os.RemoveAll(filepath.Join(f.base("web-1"), ".relctl", "lock")); err != nil {
			t.Error(err)
		}
		mu.Lock()
		removed = true
		mu.Unlock()
		select {
		case <-seen:
		case <-time.After(time.Minute):
			t.Error("no heartbeat saw the lock gone")
		}
	}})
	e := newTestEngine(f, func(e *deploy.Engine) { e.LockTTL = 400 * time.Millisecond })
	rep, err := run(t.Context(), e, f.plan("2.0.0", "lost"), runOptions{})
	fail := failure(t, err)
	if fail.Interrupted || fail.Phase != "stage" || !errors.Is(err, state.ErrLockLost) {
		t.Errorf("err = %v (interrupted %v, phase %q), want a stop in stage for the lost lock", err, fail.Interrupted, fail.Phase)
	}
	if !rep.RolledBack || len(rep.Unresolved()) != 0 {
		t.Errorf("rolled back %v, unresolved %v", rep.RolledBack, rep.Unresolved())
	}
	f.assertOn("1.0.0", f.names...)
}

// TestStepPanics: a panic in relctl while a step runs (RELCTL_FAILPOINT)
// is that host's failure: the run rolls back, and the host, restored as it
// looks, is not vouched for.
func TestStepPanics(t *testing.T) {
	f := newFleet(t, 3, strategyCanary)
	f.seed("1.0.0")
	t.Setenv(deploy.FailpointEnv, "panic:web-2:activate/restart")
	rep, err := run(t.Context(), newTestEngine(f), f.plan("2.0.0", "panics"), runOptions{})
	if fail := failure(t, err); fail.Phase != "activate" || !strings.Contains(err.Error(), "relctl itself failed (a panic) while changing these hosts; they look restored, but are not vouched for: web-2") {
		t.Errorf("err = %v", err)
	}
	if w2 := rep.Host("web-2"); !w2.Suspect() || !strings.Contains(w2.Panic, "panic:web-2:activate/restart") {
		t.Errorf("web-2: suspect %v panic %q", w2.Suspect(), w2.Panic)
	}
	if got := rep.Unresolved(); !slices.Equal(got, []string{"web-2"}) {
		t.Errorf("unresolved %v, want web-2", got)
	}
	f.assertOn("1.0.0", f.names...)
	f.assertNoLocks()
}
