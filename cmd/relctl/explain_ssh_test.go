package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relctl/relctl/internal/output"
)

// TestExplainSSHProblems: `validate --explain-ssh` names the host it cannot
// find or cannot choose, and refuses (exit 2) a host whose key cannot be
// used, after printing its settings, contacting no host.
func TestExplainSSHProblems(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	writeFile(t, filepath.Join(home, ".ssh", "config"), "Host web-1\n    HostName 192.0.2.10\n    IdentityFile ~/.ssh/broken\n")
	writeFile(t, filepath.Join(home, ".ssh", "broken"), "not a key\n")
	writeFile(t, filepath.Join(dir, "playbooks", "search.toml"), realSSHDPlaybook)
	cfg := filepath.Join(dir, "relctl.toml")
	writeFile(t, cfg, `project = "search"
[environments.staging]
vars = { base_dir = "/srv/search", port = 8080 }
[[environments.staging.hosts]]
name = "web-1"
roles = ["search"]
[environments.production]
vars = { base_dir = "/srv/search", port = 8080 }
[[environments.production.hosts]]
name = "web-1"
roles = ["search"]
identity_file = "~/.ssh/missing"
`)
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		stdout   []string
		stderr   string
		noStdout bool
	}{
		{"unknown host", []string{"--explain-ssh", "web-9"}, exitUsage, nil, `no host "web-9" in any environment`, true},
		{"unknown environment", []string{"--explain-ssh", "web-1", "--env", "qa"}, exitUsage, nil, `unknown environment "qa"`, true},
		{"host in two environments", []string{"--explain-ssh", "web-1"}, exitUsage, nil, `host "web-1" is in environments production, staging: pick one with --env`, true},
		{"unusable key from ~/.ssh/config", []string{"--explain-ssh", "web-1", "--env", "staging"}, exitUsage,
			[]string{"host web-1 (environment staging): ", "@192.0.2.10:22, directly", "~/.ssh/broken"},
			"host web-1 cannot be reached as configured: web-1: no SSH identity: set an identity file or use an ssh-agent (left out as unusable: identity file " + filepath.Join(home, ".ssh", "broken") + ": ssh: no key found)", false},
		{"missing key from relctl.toml", []string{"--explain-ssh", "web-1", "--env", "production"}, exitUsage,
			[]string{"~/.ssh/missing", "relctl.toml:12:1 (environments.production.hosts.identity_file)"},
			"no such file or directory", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"validate", "-c", cfg}, tt.args...), output.Test(nil, &out, &errOut))
			if code != tt.code || !strings.Contains(errOut.String(), tt.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want %q", code, tt.code, errOut.String(), tt.stderr)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
			}
			if tt.noStdout && out.Len() > 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, ".relctl")); err == nil {
		t.Errorf("validate --explain-ssh wrote a state directory")
	}
}
