package sshconfig

import (
	"os"
	"strings"
	"testing"
)

// TestQuotedKeywordRefused: ssh unquotes a keyword, so `"Host" other` is a
// Host line; read as anything else, its block would apply to every host.
func TestQuotedKeywordRefused(t *testing.T) {
	for _, line := range []string{`"Host" other`, `Proxy"Command" nc %h %p`, `"ProxyCommand" nc %h %p`, `Host\ name x`} {
		w := newWorld(t)
		w.write(map[string]string{".ssh/config": "Host web-1\n    User a\n" + line + "\n    HostName q.example.com\n"})
		_, err := w.load(File{Path: w.path(".ssh/config")})
		if err == nil || !strings.Contains(err.Error(), "~/.ssh/config:3") || !strings.Contains(err.Error(), "quoted or escaped") {
			t.Errorf("%s: Load: %v, want the line refused at ~/.ssh/config:3", line, err)
		}
	}
}

// TestBadPermissionsRefused: like ssh, a configuration file others may
// write is refused.
func TestBadPermissionsRefused(t *testing.T) {
	w := newWorld(t)
	w.write(map[string]string{".ssh/config": "Host web-1\n    HostName a\n"})
	if err := os.Chmod(w.path(".ssh/config"), 0o666); err != nil {
		t.Fatal(err)
	}
	_, err := w.load(File{Path: w.path(".ssh/config")})
	if err == nil || !strings.Contains(err.Error(), "bad permissions: mode 0666") {
		t.Errorf("Load of a mode 0666 file: %v, want bad permissions", err)
	}
}

// TestLookupPreset: values given before the files (relctl.toml's user,
// address) are what Match user, Match host and %r, %h, %p see.
func TestLookupPreset(t *testing.T) {
	w := newWorld(t)
	w.write(map[string]string{".ssh/config": "Match user deploy\n    IdentitiesOnly yes\nMatch host 10.0.0.*\n    ForwardAgent yes\nHost *\n    UserKnownHostsFile ~/.ssh/kh_%r_%h_%p\n    User root\n    Port 22\n"})
	c, err := w.load(File{Path: w.path(".ssh/config")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.LookupPreset("web-1", Local{User: "alice"}, Preset{User: "deploy", HostName: "10.0.0.5", Port: "2200"})
	if err != nil {
		t.Fatal(err)
	}
	if s.IdentitiesOnly.Value != "yes" || s.ForwardAgent.Value != "yes" {
		t.Errorf("Match user/host with preset values: IdentitiesOnly %q ForwardAgent %q, want both yes", s.IdentitiesOnly.Value, s.ForwardAgent.Value)
	}
	if want := w.home + "/.ssh/kh_deploy_10.0.0.5_2200"; s.UserKnownHostsFile.Value != want {
		t.Errorf("UserKnownHostsFile %q, want %q", s.UserKnownHostsFile.Value, want)
	}
	if s.User.Value != "deploy" || s.User.Where() != "" || s.Port.Value != "2200" {
		t.Errorf("preset User %+v Port %+v, want them back with no file", s.User, s.Port)
	}
}
