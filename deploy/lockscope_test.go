package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relctl/relctl/playbooks"
)

// lockScopeProject: search (old hosts, behind the LB) and a move of it to
// new hosts whose playbook keeps its releases elsewhere; an app server that
// depends on search; an LB with no base_dir at all.
var lockScopeProject = map[string]string{
	"relctl.toml": `project = "search"
[ssh]
user = "relctl"
known_hosts = "known_hosts"
[environments.production]
[[environments.production.hosts]]
name = "search-1"
address = "127.0.0.1:2201"
roles = ["search"]
vars = { port = 8081, haproxy_socket = "/s" }
[[environments.production.hosts]]
name = "search-2"
address = "127.0.0.1:2202"
roles = ["search"]
vars = { port = 8082 }
[[environments.production.hosts]]
name = "next-1"
address = "127.0.0.1:2203"
roles = ["search-next"]
vars = { port = 8083 }
[[environments.production.hosts]]
name = "lb-1"
address = "127.0.0.1:2204"
roles = ["lb"]
vars = { haproxy_socket = "/run/haproxy.sock" }
[[environments.production.hosts]]
name = "app-1"
address = "127.0.0.1:2205"
roles = ["app"]
vars = { base_dir = "/srv/app", app_config = "/etc/app.conf", app_restart = "true" }
[[environments.production.hosts]]
name = "db-1"
address = "127.0.0.1:2206"
roles = ["db"]
`,
	"playbooks/search.toml": `name = "search"
roles = ["search"]
[vars]
base_dir = "/srv/search"
[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"
[[steps]]
phase = "stage"
kind = "upload"
[[steps]]
phase = "activate"
kind = "activate"
[traffic]
provider = "haproxy"
lb_role = "lb"
socket = "{{.Vars.haproxy_socket}}"
backend = "search"
`,
	"playbooks/move.toml": `name = "move"
roles = ["search-next"]
[vars]
base_dir = "/srv/solr9"
[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"
[[steps]]
phase = "stage"
kind = "upload"
[[steps]]
phase = "activate"
kind = "activate"
[traffic]
provider = "haproxy"
lb_role = "lb"
socket = "{{.Vars.haproxy_socket}}"
backend = "search"
[move]
from_role = "search"
[[move.dependents]]
role = "app"
config = "{{.Vars.app_config}}"
template = "app.conf.tmpl"
restart = "{{.Vars.app_restart}}"
`,
	"playbooks/app.conf.tmpl": "{{range .Hosts}}{{.Name}}\n{{end}}",
}

// loadLockScopeProject writes lockScopeProject and loads it.
func loadLockScopeProject(t *testing.T) (*playbooks.Project, *playbooks.Environment) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range lockScopeProject {
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
		t.Fatalf("loading:\n%v", err)
	}
	env, err := proj.Environment("production")
	if err != nil {
		t.Fatal(err)
	}
	return proj, env
}

func TestLockScope(t *testing.T) {
	proj, env := loadLockScopeProject(t)
	scope := func(name string) string {
		var pb *playbooks.Playbook
		pbs, _ := proj.PlaybooksFor("production")
		for _, p := range pbs {
			if p.Name == name {
				pb = p
			}
		}
		if pb == nil {
			t.Fatalf("no playbook %s", name)
		}
		var lines []string
		for _, lh := range LockScope(proj, env, pb) {
			line := lh.Name + " (" + lh.Why + ") " + lh.Layout.LockDir()
			if lh.Err != nil {
				line += " error: " + lh.Err.Error()
			}
			lines = append(lines, line)
		}
		return strings.Join(lines, "\n")
	}
	// search: every target (whatever --hosts), and its load balancer, whose
	// lock is in the SSH user's home (it has no base_dir).
	if got, want := scope("search"), `search-1 (a target) /srv/search/.relctl/lock
search-2 (a target) /srv/search/.relctl/lock
lb-1 (a load balancer) .relctl/lock`; got != want {
		t.Errorf("search:\n%s\nwant\n%s", got, want)
	}
	// the move: its new host; the LB; the old hosts where search keeps its
	// lock (not under the move's base_dir); the dependent under its own
	// base_dir. Not db-1.
	if got, want := scope("move"), `next-1 (a target) /srv/solr9/.relctl/lock
lb-1 (a load balancer) .relctl/lock
search-1 (an old host of the move) /srv/search/.relctl/lock
search-2 (an old host of the move) /srv/search/.relctl/lock
app-1 (a dependent of the move) /srv/app/.relctl/lock`; got != want {
		t.Errorf("move:\n%s\nwant\n%s", got, want)
	}
}

// TestEnvLockScope: every playbook's lock scope, each lock location once
// (lb-1 and the old hosts are in both), narrowed to --hosts; a name no run
// locks is bad input naming those that are.
func TestEnvLockScope(t *testing.T) {
	proj, env := loadLockScopeProject(t)
	pbs, err := proj.PlaybooksFor("production")
	if err != nil {
		t.Fatal(err)
	}
	list := func(only ...string) string {
		scope, err := EnvLockScope(proj, env, pbs, only)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, lh := range scope {
			lines = append(lines, lh.Name+" "+lh.Layout.LockDir()+" "+lh.Target.User)
		}
		return strings.Join(lines, "\n")
	}
	all := list()
	for _, want := range []string{"search-1 /srv/search/.relctl/lock relctl", "next-1 /srv/solr9/.relctl/lock relctl", "lb-1 .relctl/lock relctl", "app-1 /srv/app/.relctl/lock relctl"} {
		if n := strings.Count("\n"+all+"\n", "\n"+want+"\n"); n != 1 {
			t.Errorf("the scope lists %q %d times, want once:\n%s", want, n, all)
		}
	}
	if strings.Contains(all, "db-1") {
		t.Errorf("db-1 is in no run's scope:\n%s", all)
	}
	if got, want := list("lb-1", "app-1"), "lb-1 .relctl/lock relctl\napp-1 /srv/app/.relctl/lock relctl"; got != want {
		t.Errorf("--hosts lb-1,app-1:\n%s\nwant\n%s", got, want)
	}
	_, err = EnvLockScope(proj, env, pbs, []string{"db-1", "lb-1"})
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "db-1: not a host that a run in production locks (those are: app-1, lb-1, next-1, search-1, search-2)") {
		t.Errorf("unknown host: %v", err)
	}
}

func TestMustLock(t *testing.T) {
	deployPlan := &Plan{Kind: KindDeploy}
	cutover := &Plan{Kind: KindDeploy, Move: &MoveSummary{}}
	finalize := &Plan{Kind: KindFinalize, Move: &MoveSummary{}}
	rollbackPlan := &Plan{Kind: KindRollback, Move: &MoveSummary{}, UndoAfter: true}
	for _, tt := range []struct {
		plan *Plan
		why  string
		want bool
	}{
		{deployPlan, ScopeOutside, false},
		{deployPlan, ScopeLB, true},
		{deployPlan, ScopeOldHost, false},
		{deployPlan, ScopeDependent, false},
		{cutover, ScopeLB, true},
		{cutover, ScopeDependent, true},
		{cutover, ScopeOldHost, false},
		{finalize, ScopeLB, true},
		{finalize, ScopeOldHost, true},
		{finalize, ScopeDependent, false},
		{rollbackPlan, ScopeLB, false},
		{rollbackPlan, ScopeDependent, false},
		{rollbackPlan, ScopeOutside, false},
	} {
		if got := tt.plan.mustLock(LockHost{Why: tt.why}); got != tt.want {
			t.Errorf("%s (move %v): mustLock(%s) = %v, want %v", tt.plan.Kind, tt.plan.Move != nil, tt.why, got, tt.want)
		}
	}
}
