package playbooks

import (
	"strings"
	"testing"
)

// validate = deploy: a health check's url and address, rendered for every
// host, are refused by the prober's own rule (checkspec) before a deploy
// switches a host and only then finds the check cannot run.
func TestCheckTargetsAsTheProberSeesThem(t *testing.T) {
	config := goodConfig + "vars = { health = \"http://127.0.0.1:8983/health\", hostport = \"127.0.0.1:8983\" }\n"
	check := func(body string) string {
		return goodPlaybook + "\n[[steps]]\nname = \"verify\"\nphase = \"verify\"\nkind = \"check\"\nchecks = [\"health\"]\n\n[checks.health]\n" + body
	}
	tests := []struct {
		name, config, playbook, want string
	}{
		{name: "http and tcp, rendered", config: config, playbook: check("type = \"http\"\nurl = \"{{.Vars.health}}\"\n")},
		{name: "tcp, rendered", config: config, playbook: check("type = \"tcp\"\naddress = \"{{.Vars.hostport}}\"\n")},
		{
			name: "a url without a scheme", config: strings.Replace(config, "http://127.0.0.1:8983/health", "127.0.0.1:8983/health", 1),
			playbook: check("type = \"http\"\nurl = \"{{.Vars.health}}\"\n"),
			want:     `playbooks/web.toml:26:1: checks.health.url: url must be an absolute http(s) URL (rendering for host "web-1" in environment "staging")`,
		},
		{
			name: "a literal relative url", config: config, playbook: check("type = \"http\"\nurl = \"/health\"\n"),
			want: `playbooks/web.toml:26:1: checks.health.url: url must be an absolute http(s) URL (rendering for host "web-1" in environment "staging")`,
		},
		{
			name: "credentials in a bad url are not echoed", config: config, playbook: check("type = \"http\"\nurl = \"ftp://admin:hunter2@{{.Host.Name}}/\"\n"),
			want: `playbooks/web.toml:26:1: checks.health.url: url must be an absolute http(s) URL (rendering for host "web-1" in environment "staging")`,
		},
		{
			name: "an address without a port", config: config, playbook: check("type = \"tcp\"\naddress = \"{{.Host.Name}}\"\n"),
			want: `playbooks/web.toml:26:1: checks.health.address: address must be host:port: address web-1: missing port in address (rendering for host "web-1" in environment "staging")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeProject(t, map[string]string{"relctl.toml": tt.config, "playbooks/web.toml": tt.playbook})
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
