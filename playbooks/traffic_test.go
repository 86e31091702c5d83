package playbooks

import (
	"errors"
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
playbooks/web.toml:20:1: traffic.disable: {{.Host.Name}} is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it`,
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
