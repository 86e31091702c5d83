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

// newFleet writes the project for n hosts with the given [strategy] body,
// and the artifacts of releases 1.0.0 and 2.0.0.
func newFleet(t *testing.T, n int, strategy string) *fleet {
	t.Helper()
	f := &fleet{t: t, dir: t.TempDir(), conns: localconn.NewConnector(t.TempDir())}
	cfg := readTestdata(t, "relctl.toml")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("web-%d", i)
		f.names = append(f.names, name)
		cfg += fmt.Sprintf("\n[[environments.production.hosts]]\nname = %q\naddress = \"%s.test:22\"\nroles = [\"app\"]\nvars = { base_dir = %q }\n",
			name, name, f.base(name))
	}
	pb := strings.Replace(readTestdata(t, "app.toml"), "# STRATEGY (replaced by the test)", strategy, 1)
	writeFile(t, filepath.Join(f.dir, "relctl.toml"), cfg)
	writeFile(t, filepath.Join(f.dir, "playbooks", "app.toml"), pb)
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
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name, body string
		mode       int64
	}{
		{"VERSION", version + "\n", 0o644},
		{"bin/restart", "#!/bin/sh\nset -e\ncat \"$(dirname \"$0\")/../VERSION\" > \"$1/running\"\n", 0o755},
	} {
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
	rep, err := run(f.t.Context(), newTestEngine(f), f.plan(version, "seed-"+version), runOptions{})
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
