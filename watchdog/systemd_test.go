package watchdog

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func entries(es []UnitEntry) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%d:%d %s", e.Pos.Line, e.Pos.Column, e.Value))
	}
	return strings.Join(parts, " | ")
}

func TestParseUnit(t *testing.T) {
	tests := []struct {
		name                    string
		src                     string
		wantSections            string
		wantType, wantRestart   string
		wantPIDFile             string
		wantExecStart, wantStop string
	}{
		{
			name: "typical service",
			src: `# /etc/systemd/system/search.service
[Unit]
Description=Search service
After=network-online.target

[Service]
Type=forking
PIDFile=/run/search/search.pid
ExecStart=/srv/search/current/bin/start --daemon
ExecStop=/srv/search/current/bin/stop
Restart=on-failure
User=search

[Install]
WantedBy=multi-user.target
`,
			wantSections:  "2:1 Unit, 6:1 Service, 14:1 Install",
			wantType:      "forking",
			wantRestart:   "on-failure",
			wantPIDFile:   "/run/search/search.pid",
			wantExecStart: "9:1 /srv/search/current/bin/start --daemon",
			wantStop:      "10:1 /srv/search/current/bin/stop",
		},
		{
			name:          "continuation lines, comments, spaces around =, CRLF",
			src:           "[Service]\r\n; comment\r\n  Type = simple\r\nExecStart=/usr/bin/env \\\r\n    FOO=1 \\\r\n# a comment inside\r\n    /srv/app/bin/run --port 8080\r\n",
			wantSections:  "1:1 Service",
			wantType:      "simple",
			wantExecStart: "4:1 /usr/bin/env FOO=1 /srv/app/bin/run --port 8080",
		},
		{
			name: "empty assignment resets ExecStart; repeated sections merge",
			src: `[Service]
ExecStart=/usr/bin/old
ExecStartPre=/bin/true
[Service]
ExecStart=
ExecStart=/usr/bin/new
ExecStart=-/usr/bin/also
Restart=always
`,
			wantSections:  "1:1 Service, 4:1 Service",
			wantRestart:   "always",
			wantExecStart: "6:1 /usr/bin/new | 7:1 -/usr/bin/also",
		},
		{
			name:         "no service section",
			src:          "[Unit]\nDescription=x\n",
			wantSections: "1:1 Unit",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUnit("search.service", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			var secs []string
			for _, s := range u.Sections {
				secs = append(secs, fmt.Sprintf("%d:%d %s", s.Pos.Line, s.Pos.Column, s.Name))
			}
			svc := u.Service()
			got := []string{strings.Join(secs, ", "), svc.Type.Value, svc.Restart.Value, svc.PIDFile.Value, entries(svc.ExecStart), entries(svc.ExecStop)}
			want := []string{tt.wantSections, tt.wantType, tt.wantRestart, tt.wantPIDFile, tt.wantExecStart, tt.wantStop}
			for i, field := range []string{"sections", "Type", "Restart", "PIDFile", "ExecStart", "ExecStop"} {
				if got[i] != want[i] {
					t.Errorf("%s = %q, want %q", field, got[i], want[i])
				}
			}
		})
	}
}

func TestParseUnitSyntaxError(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"key outside a section", "Type=simple\n[Service]\n", "search.service:1:1: syntax error near 'Type': assignment outside a section"},
		{"line without =", "[Service]\n  ExecStart /bin/x\n", "search.service:2:3: syntax error near 'ExecStart': expected Key=Value or [Section]"},
		{"unclosed section", "[Service\nType=simple\n", "search.service:1:1: syntax error near '[Service': section header must be [Name]"},
		{"empty section name", "[]\n", "search.service:1:1: syntax error near '[]': section header must be [Name]"},
		{"empty key", "[Service]\n=x\n", "search.service:2:1: syntax error near '=x': expected Key=Value or [Section]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseUnit("search.service", []byte(tt.src))
			var se *SyntaxError
			if !errors.As(err, &se) || err.Error() != tt.want {
				t.Errorf("err = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestSystemdCommands(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"verify plain path", SystemdVerifyCommand("/etc/systemd/system/search.service"), "systemd-analyze verify -- '/etc/systemd/system/search.service'"},
		{"verify hostile path", SystemdVerifyCommand("/tmp/a b'; rm -rf /"), `systemd-analyze verify -- '/tmp/a b'\''; rm -rf /'`},
		{"verify path like an option", SystemdVerifyCommand("--root=/"), "systemd-analyze verify -- '--root=/'"},
		{"is-active", SystemdIsActiveCommand("search.service"), "systemctl is-active -- 'search.service'"},
		{"is-active template instance", SystemdIsActiveCommand("worker@1.service"), "systemctl is-active -- 'worker@1.service'"},
		{"is-active hostile name", SystemdIsActiveCommand("x$(reboot)"), "systemctl is-active -- 'x$(reboot)'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got  %s\nwant %s", tt.got, tt.want)
			}
		})
	}
}

// TestSystemdCommandsAreOneArgument runs the built commands with a stand-in
// printing its arguments: each path reaches the program as one word.
func TestSystemdCommandsAreOneArgument(t *testing.T) {
	for _, path := range []string{"/tmp/a b'; echo pwned", "$(echo pwned)", "`echo pwned`", "-x"} {
		cmd := SystemdVerifyCommand(path)
		script := `systemd_analyze() { for a; do printf '[%s]' "$a"; done; }; ` + strings.Replace(cmd, "systemd-analyze", "systemd_analyze", 1)
		out, err := exec.Command("/bin/sh", "-c", script).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := "[verify][--][" + path + "]"; string(out) != want {
			t.Errorf("%q: args %s, want %s", path, out, want)
		}
	}
}
