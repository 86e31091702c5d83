package playbooks

import (
	"strings"
	"testing"
	"time"
)

// TestControlTimeout: ssh.control_timeout defaults to 1m, keeps an explicit
// value, and refuses a zero or unparsable one with its position, like the
// other ssh durations.
func TestControlTimeout(t *testing.T) {
	withSSH := func(lines string) string {
		return strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\n[ssh]\n"+lines, 1)
	}
	t.Run("default", func(t *testing.T) {
		writeProject(t, map[string]string{"relctl.toml": goodConfig, "playbooks/web.toml": goodPlaybook})
		p, err := Load("relctl.toml")
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Config.SSH.ControlTimeout.Duration; got != time.Minute {
			t.Errorf("control_timeout %v, want the default 1m", got)
		}
		if got := p.Config.SSH.CommandTimeout.Duration; got != 10*time.Minute {
			t.Errorf("command_timeout %v, want 10m untouched", got)
		}
	})
	t.Run("explicit", func(t *testing.T) {
		writeProject(t, map[string]string{
			"relctl.toml":        withSSH("command_timeout = \"20m\"\ncontrol_timeout = \"3s\"\n"),
			"playbooks/web.toml": goodPlaybook,
		})
		p, err := Load("relctl.toml")
		if err != nil {
			t.Fatal(err)
		}
		s := p.Config.SSH
		if s.ControlTimeout.Duration != 3*time.Second || s.CommandTimeout.Duration != 20*time.Minute {
			t.Errorf("control_timeout %v command_timeout %v, want 3s and 20m", s.ControlTimeout, s.CommandTimeout)
		}
		// A step's default timeout stays command_timeout: control_timeout is
		// only for relctl's own commands.
		for _, st := range p.Playbooks["web"].Steps {
			if st.Kind == "run" && st.Timeout.Duration != 20*time.Minute {
				t.Errorf("step %s timeout %v, want ssh.command_timeout (20m)", st.Name, st.Timeout)
			}
		}
	})
	bad := []struct {
		name, value, want string
	}{
		{"zero", `"0s"`, `relctl.toml:3:1: ssh.control_timeout must be more than 0s`},
		{"negative", `"-5s"`, `relctl.toml:3:1: ssh.control_timeout: invalid duration "-5s": must not be negative`},
		{"not a duration", `"abc"`, `relctl.toml:3:1: ssh.control_timeout: invalid duration "abc" (use a form like "30s" or "1m30s")`},
		{"a number", `60`, `relctl.toml:3:1: ssh.control_timeout: expected a duration string like "30s", got an integer`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			writeProject(t, map[string]string{
				"relctl.toml":        withSSH("control_timeout = " + tt.value + "\n"),
				"playbooks/web.toml": goodPlaybook,
			})
			_, err := Load("relctl.toml")
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
