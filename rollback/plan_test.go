package rollback_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// projectConfig is a production environment of four hosts, each with its
// own base_dir and service port so rendered commands show whose they are.
const projectConfig = `project = "search"

[ssh]
user = "relctl"
known_hosts = "known_hosts"

[environments.production]
[[environments.production.hosts]]
name = "production-1"
address = "127.0.0.1:2201"
roles = ["search"]
vars = { base_dir = "/srv/search-1", port = 8081 }
[[environments.production.hosts]]
name = "production-2"
address = "127.0.0.1:2202"
roles = ["search"]
vars = { base_dir = "/srv/search-2", port = 8082 }
[[environments.production.hosts]]
name = "production-3"
address = "127.0.0.1:2203"
roles = ["search"]
vars = { base_dir = "/srv/search-3", port = 8083 }
[[environments.production.hosts]]
name = "production-4"
address = "127.0.0.1:2204"
roles = ["search"]
vars = { base_dir = "/srv/search-4", port = 8084 }
`

// projectPlaybook has the shape of testenv's search playbook, plus a
// rollback step naming the release directory, so a plan shows which
// release's paths it rendered.
const projectPlaybook = `name = "search"
roles = ["search"]
keep_releases = 3

[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"

[strategy]
canary = 1
batch_size = 2
max_parallel = 4
pause = "5s"

[checks.health]
type = "http"
url = "http://127.0.0.1:{{.Vars.port}}/health"
body_contains = "{{.Version}}"
healthy_for = 2

[[steps]]
phase = "preflight"
name = "base-dir"
run = "mkdir -p {{.BaseDir}} && test -w {{.BaseDir}}"

[[steps]]
phase = "stage"
kind = "upload"

[[steps]]
phase = "stage"
name = "unpack"
run = "tar -xzf {{.Artifact}} -C {{.ReleaseDir}} && test -x {{.ReleaseDir}}/bin/start"

[[steps]]
phase = "activate"
kind = "activate"

[[steps]]
phase = "activate"
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"

[[steps]]
phase = "verify"
name = "health"
kind = "check"
checks = ["health"]

[rollback]
requires = ["bin/start", "bin/stop", "bin/restart"]

[[rollback.steps]]
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"

[[rollback.steps]]
name = "restored"
run = "test -x {{.ReleaseDir}}/bin/start && echo {{.Version}} > {{.BaseDir}}/restored"
`

// loadProject writes relctl.toml and playbooks/search.toml into a temporary
// directory and loads them as relctl would. No artifact is written: a
// rollback goes back to a release already on the hosts.
func loadProject(t *testing.T) *playbooks.Project {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"relctl.toml": projectConfig, "playbooks/search.toml": projectPlaybook} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proj, err := playbooks.Load(filepath.Join(dir, "relctl.toml"))
	if err != nil {
		t.Fatalf("loading the test project:\n%v", err)
	}
	return proj
}

// Step lists of a host switched back, and of a host already on the target.
var (
	switchedSteps = []string{"preflight/rollback-ready", "activate/activate", "activate/restart", "activate/restored", "verify/health"}
	checkedSteps  = []string{"preflight/rollback-ready", "activate/restore-if-unhealthy", "verify/health"}
)

func threeReleases(name string, d int) rollback.HostState {
	return host(name, "1.2.0", shifted(d, deployed("1.0.0", "", 0), deployed("1.1.0", "1.0.0", 10), deployed("1.2.0", "1.1.0", 20))...)
}

// TestFleetToPlan goes from what the hosts say to what the rollback will do:
// Resolve, then BuildRollbackPlan with each host's current release.
func TestFleetToPlan(t *testing.T) {
	tests := []struct {
		name        string
		hosts       []rollback.HostState
		only        []string // --hosts
		parallelAll bool     // --parallel all

		target, from string
		unreachable  []string
		// batches lists each batch's hosts; the first is the canary unless parallelAll.
		batches [][]string
		steps   map[string][]string
		errIs   error
	}{
		{
			name: "uniform fleet: canary, then batches of two, every host switched",
			hosts: []rollback.HostState{
				twoReleases("production-1", 0), twoReleases("production-2", 1), twoReleases("production-3", 2), twoReleases("production-4", 3),
			},
			target: "1.0.0", from: "1.1.0",
			batches: [][]string{{"production-1"}, {"production-2", "production-3"}, {"production-4"}},
			steps: map[string][]string{
				"production-1": switchedSteps, "production-2": switchedSteps, "production-3": switchedSteps, "production-4": switchedSteps,
			},
		},
		{
			name: "uniform fleet, --parallel all: one batch of every host, no canary",
			hosts: []rollback.HostState{
				twoReleases("production-1", 0), twoReleases("production-2", 1), twoReleases("production-3", 2), twoReleases("production-4", 3),
			},
			parallelAll: true,
			target:      "1.0.0", from: "1.1.0",
			batches: [][]string{{"production-1", "production-2", "production-3", "production-4"}},
			steps: map[string][]string{
				"production-1": switchedSteps, "production-2": switchedSteps, "production-3": switchedSteps, "production-4": switchedSteps,
			},
		},
		{
			name: "mixed fleet: hosts on the new release are switched, hosts on the target only checked",
			hosts: []rollback.HostState{
				threeReleases("production-1", 0), threeReleases("production-2", 1), twoReleases("production-3", 2), twoReleases("production-4", 3),
			},
			target: "1.1.0", from: "1.2.0",
			batches: [][]string{{"production-1"}, {"production-2", "production-3"}, {"production-4"}},
			steps: map[string][]string{
				"production-1": switchedSteps, "production-2": switchedSteps, "production-3": checkedSteps, "production-4": checkedSteps,
			},
		},
		{
			name: "partial: after the canary's failed deploy was rolled back, every host goes to the release before",
			hosts: []rollback.HostState{
				host("production-1", "1.1.0", deployed("1.0.0", "", 0), deployed("1.1.0", "1.0.0", 10), deployed("1.2.0", "1.1.0", 20), rolledBack("1.1.0", "1.2.0", 21)),
				twoReleases("production-2", 1), twoReleases("production-3", 2), twoReleases("production-4", 3),
			},
			target: "1.0.0", from: "1.1.0",
			batches: [][]string{{"production-1"}, {"production-2", "production-3"}, {"production-4"}},
			steps: map[string][]string{
				"production-1": switchedSteps, "production-2": switchedSteps, "production-3": switchedSteps, "production-4": switchedSteps,
			},
		},
		{
			name: "unreachable host left out with --hosts: the rest keep the strategy",
			hosts: []rollback.HostState{
				threeReleases("production-1", 0), threeReleases("production-2", 1), twoReleases("production-3", 2),
				{Name: "production-4", Err: errors.New("dial tcp 127.0.0.1:2204: connect: connection refused")},
			},
			only:   []string{"production-1", "production-2", "production-3"},
			target: "1.1.0", from: "1.2.0",
			unreachable: []string{"production-4: dial tcp 127.0.0.1:2204: connect: connection refused"},
			batches:     [][]string{{"production-1"}, {"production-2", "production-3"}},
			steps: map[string][]string{
				"production-1": switchedSteps, "production-2": switchedSteps, "production-3": checkedSteps,
			},
		},
		{
			name: "--hosts picks hosts in the order given",
			hosts: []rollback.HostState{
				twoReleases("production-1", 0), twoReleases("production-2", 1), twoReleases("production-3", 2), twoReleases("production-4", 3),
			},
			only:   []string{"production-4", "production-2"},
			target: "1.0.0", from: "1.1.0",
			batches: [][]string{{"production-4"}, {"production-2"}},
			steps:   map[string][]string{"production-4": switchedSteps, "production-2": switchedSteps},
		},
		{
			name: "nothing to roll back to: no plan",
			hosts: []rollback.HostState{
				host("production-1", "1.0.0", deployed("1.0.0", "", 0)), host("production-2", "1.0.0", deployed("1.0.0", "", 1)),
				host("production-3", "1.0.0", deployed("1.0.0", "", 2)), host("production-4", "1.0.0", deployed("1.0.0", "", 3)),
			},
			errIs: rollback.ErrNothingToRollBackTo,
		},
	}
	proj := loadProject(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &rollback.Fleet{Env: "production", Hosts: tt.hosts}
			if got := f.Unreachable(); !reflect.DeepEqual(got, tt.unreachable) {
				t.Errorf("Unreachable() = %q; want %q", got, tt.unreachable)
			}
			target, from, err := f.Resolve("prev")
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("Resolve = %q, %q, %v; want %v", target, from, err, tt.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if target != tt.target || from != tt.from {
				t.Fatalf("Resolve = target %q from %q; want %q from %q", target, from, tt.target, tt.from)
			}
			p, err := deploy.BuildRollbackPlan(proj, deploy.RollbackPlanOptions{
				Env: "production", RunID: "20250301T030000Z-test", Target: target, From: from,
				Hosts: tt.only, ParallelAll: tt.parallelAll, Current: f.Current(),
			})
			if err != nil {
				t.Fatalf("BuildRollbackPlan: %v", err)
			}
			if p.Kind != deploy.KindRollback || p.AutoRollback || p.Version != tt.target || p.From != tt.from || p.Env != "production" || p.Playbook != "search" || p.RunID != "20250301T030000Z-test" {
				t.Errorf("plan header: kind %q auto_rollback %v release %q from %q env %q playbook %q run %q; want a rollback run of production from %s to %s without auto-rollback",
					p.Kind, p.AutoRollback, p.Version, p.From, p.Env, p.Playbook, p.RunID, tt.from, tt.target)
			}
			var batches [][]string
			for i, b := range p.Batches {
				if b.Index != i+1 {
					t.Errorf("batch %d has index %d", i+1, b.Index)
				}
				if want := i == 0 && !tt.parallelAll; b.Canary != want {
					t.Errorf("batch %d canary = %v; want %v", b.Index, b.Canary, want)
				}
				var names []string
				for _, h := range b.Hosts {
					names = append(names, h.Name)
				}
				batches = append(batches, names)
			}
			if !reflect.DeepEqual(batches, tt.batches) {
				t.Errorf("batches = %v; want %v", batches, tt.batches)
			}
			if tt.parallelAll {
				if p.MaxParallel != len(p.Hosts()) || p.Pause != 0 {
					t.Errorf("--parallel all: max_parallel %d, pause %v; want %d hosts at once, no pause", p.MaxParallel, p.Pause, len(p.Hosts()))
				}
			} else if p.MaxParallel != 4 || p.Pause.String() != "5s" {
				t.Errorf("max_parallel %d, pause %v; want the playbook's 4 and 5s", p.MaxParallel, p.Pause)
			}
			got := map[string][]string{}
			for _, h := range p.Hosts() {
				for _, s := range h.Steps {
					got[h.Name] = append(got[h.Name], s.ID())
				}
			}
			if !reflect.DeepEqual(got, tt.steps) {
				t.Errorf("steps per host:\n got %v\nwant %v", got, tt.steps)
			}
		})
	}
}

// TestRollbackPlanRendersTarget: every command and check of a rollback is
// rendered for the release gone back to, never the one left.
func TestRollbackPlanRendersTarget(t *testing.T) {
	proj := loadProject(t)
	p, err := deploy.BuildRollbackPlan(proj, deploy.RollbackPlanOptions{
		Env: "production", RunID: "r1", Target: "1.0.0", From: "1.1.0",
		Hosts:   []string{"production-2", "production-3"},
		Current: map[string]string{"production-2": "1.1.0", "production-3": "1.0.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	describe := map[string][]string{}
	for _, h := range p.Hosts() {
		for _, s := range h.Steps {
			describe[h.Name] = append(describe[h.Name], s.ID()+": "+s.Describe)
		}
	}
	want := map[string][]string{
		"production-2": {
			"preflight/rollback-ready: check release 1.0.0 can be rolled back to: its directory and artifact sha256 match history; bin/start, bin/stop, bin/restart present",
			"activate/activate: switch /srv/search-2/current -> releases/1.0.0 (from 1.1.0) atomically; append to .relctl/history.json",
			"activate/restart: run: '/srv/search-2/current'/bin/restart '/srv/search-2' '8082'",
			"activate/restored: run: test -x '/srv/search-2/releases/1.0.0'/bin/start && echo '1.0.0' > '/srv/search-2'/restored",
			`verify/health: check health (GET http://127.0.0.1:8082/health expecting 200 and "1.0.0", healthy for 2)`,
		},
		"production-3": {
			"preflight/rollback-ready: check release 1.0.0 can be rolled back to: its directory and artifact sha256 match history; bin/start, bin/stop, bin/restart present",
			"activate/restore-if-unhealthy: already on 1.0.0: probe its health once; if unhealthy, run the [rollback] steps",
			`verify/health: check health (GET http://127.0.0.1:8083/health expecting 200 and "1.0.0", healthy for 2)`,
		},
	}
	if !reflect.DeepEqual(describe, want) {
		t.Errorf("plan:\n got %q\nwant %q", describe, want)
	}
	for _, h := range p.Hosts() {
		for _, s := range h.Steps {
			if strings.Contains(s.Describe, "1.1.0") && s.ID() != "activate/activate" {
				t.Errorf("%s %s renders the release rolled back from: %s", h.Name, s.ID(), s.Describe)
			}
		}
		if h.Data.Version != "1.0.0" || h.Data.ReleaseDir != h.Layout.Release("1.0.0") {
			t.Errorf("%s: template data for %q in %q; want 1.0.0", h.Name, h.Data.Version, h.Data.ReleaseDir)
		}
	}
}

func TestRollbackPlanRefuses(t *testing.T) {
	proj := loadProject(t)
	tests := []struct {
		name string
		opts deploy.RollbackPlanOptions
		want string
	}{
		{"hostile target", deploy.RollbackPlanOptions{Env: "production", Target: "1.0;rm -rf /"}, `release "1.0;rm -rf /": version "1.0;rm -rf /" contains ';'`},
		{"unknown environment", deploy.RollbackPlanOptions{Env: "prod", Target: "1.0.0"}, `unknown environment "prod" (known: production)`},
		{"unknown host", deploy.RollbackPlanOptions{Env: "production", Target: "1.0.0", Hosts: []string{"production-9"}}, `host "production-9" is not a target of this playbook in environment production`},
		{"host listed twice", deploy.RollbackPlanOptions{Env: "production", Target: "1.0.0", Hosts: []string{"production-1", "production-1"}}, `host "production-1" is listed twice in --hosts`},
		{"unknown playbook", deploy.RollbackPlanOptions{Env: "production", Target: "1.0.0", Playbook: "web"}, `playbook "web" does not apply to environment production (it has: search)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := deploy.BuildRollbackPlan(proj, tt.opts)
			if !errors.Is(err, deploy.ErrBadInput) {
				t.Fatalf("BuildRollbackPlan = %v, %v; want a bad-input error", p, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}
