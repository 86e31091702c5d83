package playbooks

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestExampleNotify: the shipped example has a webhook and a command
// entry, and uses every [[notify]] key (as TestExampleUsesEveryKey does for
// the other tables).
func TestExampleNotify(t *testing.T) {
	p := loadExample(t)
	ns := p.Config.Notify
	if len(ns) != 2 || ns[0].Name != "chat" || ns[1].Name != "pager" {
		t.Fatalf("notify entries: %+v", ns)
	}
	if got := ns[0].SecretNames(); !reflect.DeepEqual(got, []string{"api_token"}) {
		t.Errorf("chat's secrets = %q", got)
	}
	if ns[0].TimeoutOrDefault() != 10*time.Second || ns[1].TimeoutOrDefault() != DefaultNotifyTimeout {
		t.Errorf("timeouts %v %v", ns[0].TimeoutOrDefault(), ns[1].TimeoutOrDefault())
	}
	if !ns[0].Wants("failure", "production") || ns[0].Wants("failure", "staging") || ns[0].Wants("success", "production") || !ns[1].Wants("failure", "staging") {
		t.Error("Wants does not follow on and environments")
	}
	if got := p.Config.NotifySecretNames("staging"); len(got) != 0 {
		t.Errorf("staging resolves %q for notifications, want none", got)
	}
	if got := p.Config.NotifySecretNames("production"); !reflect.DeepEqual(got, []string{"api_token"}) {
		t.Errorf("production resolves %q", got)
	}
	text, _ := os.ReadFile("examples/relctl.toml")
	rt := reflect.TypeOf(NotifyConfig{})
	for i := range rt.NumField() {
		if tag := rt.Field(i).Tag.Get("toml"); !strings.Contains(string(text), "\n"+tag+" =") {
			t.Errorf("example never uses notify's %s", tag)
		}
	}
}

func TestNotifyProblems(t *testing.T) {
	secret := "\n[secrets.hook]\nenv = \"HOOK\"\n"
	tests := []struct {
		name   string
		notify string
		want   string // Problems.Error()
	}{
		{name: "webhook from a secret", notify: secret + `
[[notify]]
name = "chat"
on = ["failure", "rollback"]
webhook = "{{.Secrets.hook}}"
`},
		{name: "literal loopback receiver, command", notify: `
[[notify]]
name = "local"
on = ["start", "success", "failure", "rollback", "rehearsal-recorded", "gate-refused"]
webhook = "http://127.0.0.1:8080/hook"
timeout = "2s"
environments = ["staging"]
[[notify]]
name = "pager"
on = ["failure"]
command = ["./page"]
`},
		{name: "secret path after a literal https host", notify: secret + `
[[notify]]
name = "chat"
on = ["failure"]
webhook = "https://hooks.slack.com/services/{{ .Secrets.hook }}"
`},
		{name: "unknown key", notify: `
[[notify]]
name = "x"
on = ["failure"]
command = ["true"]
timout = "1s"
`, want: `relctl.toml:15:1: unknown key "timout" in [[notify]] (did you mean timeout?)`},
		{name: "unknown event", notify: `
[[notify]]
name = "x"
on = ["failure", "gate-refuse", "bogus"]
command = ["true"]
`, want: `relctl.toml:13:18: notify "x": unknown event "gate-refuse" (did you mean gate-refused?); events: start, success, failure, rollback, rehearsal-recorded, gate-refused
relctl.toml:13:33: notify "x": unknown event "bogus"; events: start, success, failure, rollback, rehearsal-recorded, gate-refused`},
		{name: "neither and both", notify: secret + `
[[notify]]
name = "none"
on = ["failure"]
[[notify]]
name = "both"
on = ["failure"]
command = ["true"]
webhook = "{{.Secrets.hook}}"
`, want: `relctl.toml:14:3: notify "none": give one of webhook = "{{.Secrets.NAME}}" or command = ["/path/to/program", "arg"]
relctl.toml:17:3: notify "both": give only one of webhook and command`},
		{name: "literal https URL", notify: `
[[notify]]
name = "chat"
on = ["failure"]
webhook = "https://hooks.slack.com/services/T0/B0/abc"
`, want: `relctl.toml:14:1: notify "chat": webhook: a webhook URL is a credential: keep it in [secrets] and write webhook = "{{.Secrets.NAME}}" (a literal URL is accepted only for http:// on the loopback interface)`},
		{name: "literal http URL elsewhere", notify: `
[[notify]]
name = "chat"
on = ["failure"]
webhook = "http://10.0.0.1/hook"
`, want: `relctl.toml:14:1: notify "chat": webhook: a webhook URL is a credential: keep it in [secrets] and write webhook = "{{.Secrets.NAME}}" (a literal URL is accepted only for http:// on the loopback interface)`},
		{name: "undefined secret", notify: secret + `
[[notify]]
name = "chat"
on = ["failure"]
webhook = "{{.Secrets.hok}}"
`, want: `relctl.toml:17:1: notify "chat": webhook: secret "hok" is not defined: add [secrets.hok] (defined: hook)`},
		{name: "more than a secret in the template", notify: secret + `
[[notify]]
name = "chat"
on = ["failure"]
webhook = "{{.Secrets.hook | printf \"%s\"}}"
`, want: `relctl.toml:17:1: notify "chat": webhook: template: function "printf" not defined`},
		{name: "another field", notify: secret + `
[[notify]]
name = "chat"
on = ["failure"]
webhook = "{{.Secrets.hook}}?env={{.Env}}"
`, want: `relctl.toml:17:1: notify "chat": webhook: {{.Env}}: only literal text and {{.Secrets.NAME}} may be written in a webhook`},
		{name: "http to a secret host, plain http", notify: secret + `
[[notify]]
name = "chat"
on = ["failure"]
webhook = "http://example.com/{{.Secrets.hook}}"
`, want: `relctl.toml:17:1: notify "chat": webhook: the webhook is http:// to a host other than the loopback interface: use https://`},
		{name: "name, duplicates, timeout, environments", notify: `
[[notify]]
on = ["failure"]
command = ["true"]
[[notify]]
name = "a"
on = ["failure"]
command = ["true"]
timeout = "0s"
environments = ["staging", "prod"]
[[notify]]
name = "a"
on = []
command = [""]
timeout = "soon"
`, want: `relctl.toml:11:3: [[notify]]: missing name (it names the notification in warnings and the run log)
relctl.toml:18:1: notify "a": timeout must be more than 0s
relctl.toml:19:28: notify "a": environment "prod" is not defined in relctl.toml (it has: staging)
relctl.toml:21:1: notify "a": duplicate notify name (also at relctl.toml:15:1)
relctl.toml:22:1: notify "a": missing on: the events to tell it about (start, success, failure, rollback, rehearsal-recorded, gate-refused)
relctl.toml:23:1: notify "a": the program (first element) is empty
relctl.toml:24:1: notify "a": timeout: invalid duration "soon" (use a form like "30s" or "1m30s")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeProject(t, map[string]string{"relctl.toml": goodConfig + tt.notify, "playbooks/web.toml": goodPlaybook})
			_, err := Load("relctl.toml")
			var ps Problems
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.want == "":
				return
			case !errors.As(err, &ps):
				t.Fatalf("Load: %v, want problems", err)
			}
			if got := ps.Error(); got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestWebhookURL(t *testing.T) {
	values := map[string]string{"hook": "https://hooks.example.com/T0/B0/xyz", "path": "T0/B0/xyz", "local": "http://127.0.0.1:9/x", "plain": "http://example.com/x"}
	value := func(name string) (string, error) {
		if v, ok := values[name]; ok {
			return v, nil
		}
		return "", fmt.Errorf("secret %q is not defined", name)
	}
	tests := []struct {
		webhook, want, err string
	}{
		{webhook: "{{.Secrets.hook}}", want: "https://hooks.example.com/T0/B0/xyz"},
		{webhook: "https://hooks.slack.com/services/{{.Secrets.path}}", want: "https://hooks.slack.com/services/T0/B0/xyz"},
		{webhook: "{{.Secrets.local}}", want: "http://127.0.0.1:9/x"},
		{webhook: "http://localhost:8080/hook", want: "http://localhost:8080/hook"},
		{webhook: "{{.Secrets.plain}}", err: "the webhook is http:// to a host other than the loopback interface: use https://"},
		{webhook: "{{.Secrets.path}}", err: "the webhook is not an absolute URL (https://host/path)"},
		{webhook: "{{.Secrets.nope}}", err: `secret "nope" is not defined`},
	}
	for _, tt := range tests {
		n := &NotifyConfig{Webhook: tt.webhook}
		got, err := n.WebhookURL(value)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%s: error %v, want %s", tt.webhook, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s = %q, %v; want %q", tt.webhook, got, err, tt.want)
		}
		if err != nil {
			for _, v := range values {
				if strings.Contains(err.Error(), v) {
					t.Errorf("%s: the error holds a secret: %v", tt.webhook, err)
				}
			}
		}
	}
}
