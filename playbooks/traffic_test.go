package playbooks

import (
	"errors"
	"strings"
	"testing"
)

// lbConfig is goodConfig with a load balancer host in staging.
const lbConfig = goodConfig + `
[[environments.staging.hosts]]
name = "lb-1"
address = "127.0.0.1:22002"
roles = ["lb"]
`

func TestTrafficAndRequiresProblems(t *testing.T) {
	tests := []struct {
		name   string
		config string
		extra  string // appended to goodPlaybook
		want   string // Problems.Error(); "" = loads
	}{
		{
			name:   "haproxy, complete",
			config: lbConfig,
			extra:  "\n[traffic]\nprovider = \"haproxy\"\nlb_role = \"lb\"\nsocket = \"/run/haproxy/{{.Host.Name}}.sock\"\nbackend = \"web\"\n",
		},
		{
			name:   "command, complete",
			config: goodConfig,
			extra:  "\n[traffic]\nprovider = \"command\"\ndisable = \"lbctl out {{.Host.Name}}\"\nenable = \"lbctl in {{.Host.Name}}\"\n",
		},
		{
			name:   "no provider",
			config: lbConfig,
			extra:  "\n[traffic]\nlb_role = \"lb\"\n",
			want:   `playbooks/web.toml:18:2: traffic.provider is missing (use "haproxy" or "command")`,
		},
		{
			name:   "unknown provider",
			config: lbConfig,
			extra:  "\n[traffic]\nprovider = \"nginx\"\n",
			want:   `playbooks/web.toml:19:1: traffic.provider "nginx" is not valid (use "haproxy" or "command")`,
		},
		{
			name:   "haproxy without socket and backend",
			config: lbConfig,
			extra:  "\n[traffic]\nprovider = \"haproxy\"\nlb_role = \"lb\"\n",
			want: `playbooks/web.toml:18:2: traffic.socket is missing (the haproxy provider needs lb_role, socket and backend)
playbooks/web.toml:18:2: traffic.backend is missing (the haproxy provider needs lb_role, socket and backend)`,
		},
		{
			name:   "lb_role with no hosts in the environment",
			config: goodConfig,
			extra:  "\n[traffic]\nprovider = \"haproxy\"\nlb_role = \"lb\"\nsocket = \"/run/haproxy.sock\"\nbackend = \"web\"\n",
			want:   `playbooks/web.toml:20:1: traffic.lb_role "lb" has no hosts in environment "staging" (the hosts that run HAProxy)`,
		},
		{
			name:   "command keys with the haproxy provider",
			config: lbConfig,
			extra:  "\n[traffic]\nprovider = \"haproxy\"\nlb_role = \"lb\"\nsocket = \"/s\"\nbackend = \"web\"\nenable = \"true\"\n",
			want:   `playbooks/web.toml:23:1: traffic.enable is not used by the haproxy provider`,
		},
		{
			name:   "command provider without enable, and a quoted action",
			config: goodConfig,
			extra:  "\n[traffic]\nprovider = \"command\"\ndisable = \"lbctl out '{{.Host.Name}}'\"\n",
			want: `playbooks/web.toml:18:2: traffic.enable is missing (the command provider runs disable before a host's release is switched and enable after its checks)
playbooks/web.toml:20:23: traffic.disable: {{.Host.Name}} is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it`,
		},
		{
			name:   "a bad template in backend",
			config: lbConfig,
			extra:  "\n[traffic]\nprovider = \"haproxy\"\nlb_role = \"lb\"\nsocket = \"/s\"\nbackend = \"{{.Vars.be\"\n",
			want:   `playbooks/web.toml:22:1: traffic.backend: template: unclosed action`,
		},
		{
			name:   "requires: a bad constraint",
			config: goodConfig,
			extra:  "\n[requires]\ncache = \">=2.0 <<3\"\n",
			want:   `playbooks/web.toml:19:1: requires.cache = ">=2.0 <<3" is not a version constraint (e.g. ">=2.0, <3"): improper constraint: >=2.0 <<3`,
		},
		{
			name:   "requires its own component",
			config: goodConfig,
			extra:  "\n[requires]\nweb = \">=1\"\n",
			want:   `playbooks/web.toml:19:1: requires.web: a release cannot constrain its own component`,
		},
	}
	moveConfig := lbConfig + `
[[environments.staging.hosts]]
name = "web-new-1"
address = "127.0.0.1:22003"
roles = ["web-new"]

[[environments.staging.hosts]]
name = "app-1"
address = "127.0.0.1:22004"
roles = ["app"]
`
	movePlaybook := strings.Replace(goodPlaybook, `roles = ["web"]`, `roles = ["web-new"]`, 1)
	withPort := moveConfig + "vars = { app_port = 9000 }\n"
	moveExtra := "\n[checks.app]\ntype = \"tcp\"\naddress = \"127.0.0.1:{{.Vars.app_port}}\"\n\n[move]\nfrom_role = \"web\"\nretire = \"systemctl stop web\"\n\n[[move.dependents]]\nrole = \"app\"\nconfig = \"/etc/app/search.conf\"\ntemplate = \"app.tmpl\"\nrestart = \"systemctl restart app\"\nchecks = [\"app\"]\n"
	tests = append(tests, []struct {
		name   string
		config string
		extra  string
		want   string
	}{
		{name: "move, complete", config: withPort, extra: moveExtra},
		{
			name:   "move: a dependent check needs a var the dependent lacks",
			config: moveConfig,
			extra:  moveExtra,
			want:   `playbooks/web.toml:20:1: checks.app.address: template: <.Vars.app_port>: map has no entry for key "app_port" (rendering for dependent "app-1" in environment "staging")`,
		},
		{
			name:   "move: from_role is one of the playbook's roles",
			config: withPort,
			extra:  strings.Replace(moveExtra, `from_role = "web"`, `from_role = "web-new"`, 1),
			want:   `playbooks/web.toml:23:1: move.from_role "web-new" is also one of the playbook's roles: a move goes from the hosts of from_role to those of roles`,
		},
		{
			name:   "move: from_role missing, template missing, unknown check",
			config: withPort,
			extra:  strings.NewReplacer("from_role = \"web\"\n", "", `app.tmpl`, `nope.tmpl`, `checks = ["app"]`, `checks = ["ap"]`).Replace(moveExtra),
			want: `playbooks/web.toml:22:2: move.from_role is missing (the role of the hosts the component moves away from)
playbooks/web.toml:28:1: move.dependents.0.template: open playbooks/nope.tmpl: no such file or directory
playbooks/web.toml:30:11: move.dependents.0.checks: unknown check "ap" (define [checks.ap])`,
		},
		{
			name:   "move with the command traffic provider",
			config: withPort,
			extra:  moveExtra + "\n[traffic]\nprovider = \"command\"\ndisable = \"true\"\nenable = \"true\"\n",
			want:   `playbooks/web.toml:34:1: a [move] switches traffic through the load balancer's API: use provider = "haproxy" (the command provider would have to run on the old hosts, which a move never touches)`,
		},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pbText := goodPlaybook + tt.extra
			if strings.HasPrefix(tt.name, "move") {
				pbText = movePlaybook + tt.extra
			}
			writeProject(t, map[string]string{"relctl.toml": tt.config, "playbooks/web.toml": pbText, "playbooks/app.tmpl": "{{range .Hosts}}{{.Address}}\n{{end}}"})
			_, err := Load("relctl.toml")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Load: want Problems, got %T %v", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", err.Error(), tt.want)
			}
		})
	}
}

// validate = deploy: the backend, server and socket names the deploy would
// send to HAProxy are rendered for every host that uses them and refused
// by the rule the runtime API client applies (haproxyspec).
func TestTrafficNamesAsTheDeploySeesThem(t *testing.T) {
	config := lbConfig + `vars = { haproxy_socket = "/run/haproxy/admin.sock" }

[[environments.staging.hosts]]
name = "old-1"
address = "127.0.0.1:22003"
roles = ["web-old"]
`
	traffic := func(socket, backend, server string) string {
		s := "\n[traffic]\nprovider = \"haproxy\"\nlb_role = \"lb\"\nsocket = \"" + socket + "\"\nbackend = \"" + backend + "\"\n"
		if server != "" {
			s += "server = \"" + server + "\"\n"
		}
		return s
	}
	const move = "\n[move]\nfrom_role = \"web-old\"\n"
	tests := []struct {
		name          string
		config, extra string
		want          string
	}{
		{name: "templated, all valid", config: config, extra: traffic("{{.Vars.haproxy_socket}}", "{{.Project}}_{{.Env}}", "{{.Host.Name}}.{{.Env}}") + move},
		{
			name: "a backend HAProxy could not have", config: config, extra: traffic("/run/haproxy.sock", "web pool", ""),
			want: `playbooks/web.toml:22:1: traffic.backend: backend name "web pool": HAProxy names are letters, digits, '-', '_', '.' and ':' (rendering for host "web-1" in environment "staging")`,
		},
		{
			name: "a server that smuggles a second API command", config: strings.Replace(config, "roles = [\"web\"]\n", "roles = [\"web\"]\nvars = { srv = \"web-1;disable server web/web-2\" }\n", 1),
			extra: traffic("/run/haproxy.sock", "web", "{{.Vars.srv}}"),
			want:  `playbooks/web.toml:23:1: traffic.server: server name "web-1;disable server web/web-2": HAProxy names are letters, digits, '-', '_', '.' and ':' (rendering for host "web-1" in environment "staging")`,
		},
		{
			name: "a server valid for the new hosts, not for the old ones", config: config,
			extra: traffic("/run/haproxy.sock", "web", "{{.Host.Name}}{{range .Host.Roles}}{{if eq . \\\"web-old\\\"}} (old){{end}}{{end}}") + move,
			want:  `playbooks/web.toml:23:1: traffic.server: server name "old-1 (old)": HAProxy names are letters, digits, '-', '_', '.' and ':' (rendering for old host "old-1" in environment "staging")`,
		},
		{
			name: "a socket socat would split", config: strings.Replace(config, `/run/haproxy/admin.sock`, `/run/haproxy/admin.sock,fork`, 1),
			extra: traffic("{{.Vars.haproxy_socket}}", "web", ""),
			want:  `playbooks/web.toml:21:1: traffic.socket: haproxy admin socket "/run/haproxy/admin.sock,fork": want an absolute path of letters, digits and /_.@%+=~- (rendering for load balancer "lb-1" in environment "staging")`,
		},
		{
			name: "a relative socket", config: config, extra: traffic("run/haproxy.sock", "web", ""),
			want: `playbooks/web.toml:21:1: traffic.socket: haproxy admin socket "run/haproxy.sock": want an absolute path of letters, digits and /_.@%+=~- (rendering for load balancer "lb-1" in environment "staging")`,
		},
		{
			name: "a server template needing a var a host lacks", config: config, extra: traffic("/s", "web", "{{.Vars.srv}}"),
			want: `playbooks/web.toml:23:1: traffic.server: template: <.Vars.srv>: map has no entry for key "srv" (rendering for host "web-1" in environment "staging")`,
		},
		{
			name: "an unparsable backend is reported once", config: config, extra: traffic("/s", "{{.Env", ""),
			want: `playbooks/web.toml:22:1: traffic.backend: template: unclosed action`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeProject(t, map[string]string{"relctl.toml": tt.config, "playbooks/web.toml": goodPlaybook + tt.extra})
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
