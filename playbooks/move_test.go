package playbooks

import (
	"strings"
	"testing"
)

// What a deploy renders for a [move] without asking a host - each
// dependent's config template with the new hosts, move.retire for each old
// host - validate renders too, for every host, and says which one fails.
func TestMoveRenderedForEveryHost(t *testing.T) {
	config := goodConfig + `vars = { dc = "eu" }

[[environments.staging.hosts]]
name = "web-new-1"
address = "127.0.0.1:22003"
roles = ["web-new"]
vars = { port = 8983 }

[[environments.staging.hosts]]
name = "app-1"
address = "127.0.0.1:22004"
roles = ["app"]
vars = { dc = "eu" }

[[environments.staging.hosts]]
name = "app-2"
address = "127.0.0.1:22005"
roles = ["app"]
vars = { dc = "us" }
`
	playbook := strings.Replace(goodPlaybook, `roles = ["web"]`, `roles = ["web-new"]`, 1) + `
[move]
from_role = "web"
retire = "systemctl stop search-{{.Vars.dc}}"

[[move.dependents]]
role = "app"
config = "/etc/app/search.conf"
template = "app.tmpl"
restart = "systemctl restart app"
`
	tests := []struct {
		name, config, tmpl, want string
	}{
		{name: "renders for every host", config: config, tmpl: "{{range .Hosts}}{{.Address}}:{{.Vars.port}} {{$.Vars.dc}}\n{{end}}{{.Env}} {{.Version}} {{.Host.Name}}\n"},
		{
			name:   "a dependent lacks a var its template needs",
			config: strings.Replace(config, "vars = { dc = \"us\" }\n", "", 1),
			tmpl:   "{{range .Hosts}}{{.Address}}{{end}} {{.Vars.dc}}\n",
			want:   `playbooks/web.toml:25:1: move.dependents.template: app.tmpl: template: app.tmpl:1:43: executing "app.tmpl" at <.Vars.dc>: map has no entry for key "dc" (rendering for dependent "app-2" in environment "staging")`,
		},
		{
			name:   "a new host lacks a var the template reads from .Hosts",
			config: strings.Replace(config, "vars = { port = 8983 }\n", "", 1),
			tmpl:   "{{range .Hosts}}{{.Address}}:{{.Vars.port}}{{end}}\n",
			want:   `playbooks/web.toml:25:1: move.dependents.template: app.tmpl: template: app.tmpl:1:36: executing "app.tmpl" at <.Vars.port>: map has no entry for key "port" (rendering for dependent "app-1" in environment "staging")`,
		},
		{
			name:   "an old host lacks a var retire needs",
			config: strings.Replace(config, "roles = [\"web\"]\nvars = { dc = \"eu\" }\n", "roles = [\"web\"]\n", 1),
			tmpl:   "x\n",
			want:   `playbooks/web.toml:20:1: move.retire: template: <.Vars.dc>: map has no entry for key "dc" (rendering for old host "web-1" in environment "staging")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeProject(t, map[string]string{"relctl.toml": tt.config, "playbooks/web.toml": playbook, "playbooks/app.tmpl": tt.tmpl})
			_, err := Load("relctl.toml")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Errorf("problems:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}
