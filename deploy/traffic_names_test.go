package deploy_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
)

// The plan renders [traffic]'s names and socket with the playbook's own
// functions (the ones `relctl validate` calls), so it refuses what HAProxy
// or socat could not take even for a project that changed after it was
// validated: one rule, wherever the value is rendered.
func TestBuildPlanTrafficNames(t *testing.T) {
	const traffic = `
[traffic]
provider = "haproxy"
lb_role = "db"
socket = "/run/haproxy/admin.sock"
backend = "search"
server = "{{.Vars.server}}"
`
	servers := func(bad string) func(*playbooks.Project) {
		return func(proj *playbooks.Project) {
			for _, h := range proj.Config.Environments["production"].Hosts {
				h.Vars["server"] = h.Name
				if h.Name == bad {
					h.Vars["server"] = h.Name + " (old)"
				}
			}
		}
	}
	tests := []struct {
		name   string
		move   bool
		mutate func(*playbooks.Project)
		want   string
	}{
		{name: "valid names", mutate: servers("")},
		{name: "backend", mutate: func(proj *playbooks.Project) {
			servers("")(proj)
			proj.Playbooks["search"].Traffic.Backend = "search pool"
		}, want: `host production-1: traffic: backend name "search pool": HAProxy names are letters, digits, '-', '_', '.' and ':'`},
		{name: "a target host's server", mutate: servers("production-2"),
			want: `host production-2: traffic: server name "production-2 (old)": HAProxy names are`},
		{name: "an old host's server", move: true, mutate: servers("db-1"),
			want: `host db-1: server name "db-1 (old)": HAProxy names are`},
		{name: "socket", mutate: func(proj *playbooks.Project) {
			servers("")(proj)
			proj.Playbooks["search"].Traffic.Socket = "/run/haproxy/admin.sock,fork"
		}, want: `load balancer db-1: haproxy admin socket "/run/haproxy/admin.sock,fork": want an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(searchPlaybook, "canary = 1") + traffic
			if tt.move {
				body += "\n[move]\nfrom_role = \"db\"\n"
			}
			dir := project{hosts: 2, artifacts: []string{"1.1.0"}, playbook: body}.write(t)
			// Every host has a server var at load time, so validate passes.
			cfg := filepath.Join(dir, "relctl.toml")
			withVars(t, cfg)
			proj, err := playbooks.Load(cfg)
			if err != nil {
				t.Fatalf("loading the test project:\n%v", err)
			}
			tt.mutate(proj)
			p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "production", Version: "1.1.0", RunID: "r1"})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				var described []string
				for _, s := range p.Batches[0].Hosts[0].Steps {
					described = append(described, s.Describe)
				}
				if want := "server search/production-1 on db-1"; !strings.Contains(strings.Join(described, "\n"), want) {
					t.Fatalf("the canary's steps do not say %q:\n%s", want, strings.Join(described, "\n"))
				}
				return
			}
			if !errors.Is(err, deploy.ErrBadInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("BuildPlan error = %v; want bad input saying %q", err, tt.want)
			}
		})
	}
}

// withVars gives every host of the test project's relctl.toml a server var.
func withVars(t *testing.T, cfg string) {
	t.Helper()
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(body), "vars = { base_dir", `vars = { server = "x", base_dir`)
	s = strings.ReplaceAll(s, "roles = [\"db\"]\n", "roles = [\"db\"]\nvars = { server = \"x\" }\n")
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
