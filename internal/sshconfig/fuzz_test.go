package sshconfig

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"",
	"Host web\n  HostName web.example.com\n  Port 2222\n  User deploy\n  IdentityFile ~/.ssh/%h-%p-%r\n",
	"Host *.prod !db*\n  ProxyJump ops@bastion:2222,[::1]\nHost *\n  ProxyCommand nc %h %p\n",
	"Match host *.prod,!db* originalhost=web* !user bob\n  User x\nMatch all\n  Port 1\n",
	"Match exec \"true\"\n  User x\nMatch canonical\nMatch address 10.0.0.0/8\n",
	"Include inc.conf\nInclude config\nHost a\n  Include *\n",
	"Host=web\r\n  Port = 22\r\n  User \"a b\" # c\r\n\r\n",
	"\rMatch host x\n\rHost\r\n=foo\nPort=\nHost \"\n",
	"IdentityFile ${HOME}/${}/%C/%\nUserKnownHostsFile none x\nGlobalKnownHostsFile \"a b\" c\n",
	"ConnectTimeout 1m30s\nStrictHostKeyChecking Accept-New\nIdentitiesOnly true\nForwardAgent maybe\n",
	"\xff\xfeHost \xc3\x28\n  User \xe2\x82\n",
	"Host a\tb\n\tHostName\t%h.x\n Host ! \n",
	"#\x00relctl:include\nHost \x00relctl:1\n",
	"   # comment\n\t\n  Port 22 # 23\nPort\t\t=\t\t2\n",
}

// sandboxGlob matches only under root, so that what the fuzzer writes in an
// Include (/dev/zero, /proc/...) never reaches the machine.
func sandboxGlob(root string) func(string) ([]string, error) {
	return func(p string) ([]string, error) {
		if !strings.HasPrefix(filepath.Clean(p), root+string(filepath.Separator)) {
			return nil, nil
		}
		return filepath.Glob(p)
	}
}

// FuzzLoad: no bytes make Load or Lookup panic, every error is an *Error,
// and none is the library and scanLine disagreeing about a line.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		home := filepath.Join(root, "home")
		for _, d := range []string{filepath.Join(home, ".ssh", "conf.d"), filepath.Join(root, "etc")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		config := filepath.Join(home, ".ssh", "config")
		for p, content := range map[string][]byte{
			config:                                   b,
			filepath.Join(home, ".ssh", "inc.conf"):  []byte("Host *\n  User inc\n"),
			filepath.Join(root, "etc", "ssh_config"): b,
		} {
			if err := os.WriteFile(p, content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		l := &loader{
			home:      home,
			systemDir: filepath.Join(root, "etc"),
			readFile:  readConfigFile,
			glob:      sandboxGlob(root),
			getenv:    func(string) (string, bool) { return "v", true },
		}
		cfg, err := l.load([]File{{Path: config}, {Path: filepath.Join(root, "etc", "ssh_config"), System: true}})
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		for _, alias := range []string{"web", "db1.prod", "Web", ""} {
			s, err := cfg.Lookup(alias, Local{Home: home, User: "alice", Hostname: "h.example", UID: 1})
			if err != nil {
				checkFuzzError(t, err)
				continue
			}
			if v := s.ProxyJump; v.Set() && v.Value != "none" {
				if _, err := ParseProxyJump(v.Value); err != nil {
					t.Errorf("Lookup returned ProxyJump %q that does not parse: %v", v.Value, err)
				}
			}
		}
	})
}

func checkFuzzError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	if strings.Contains(e.Msg, "a bug in relctl") {
		t.Fatalf("scanLine and the library disagree: %v", err)
	}
}

// FuzzParseProxyJump: no panic, and a chain it accepts is written back by
// String into something it parses to the same chain.
func FuzzParseProxyJump(f *testing.F) {
	for _, s := range []string{"", "none", "bastion", "ops@[::1]:2200,ssh://u@h:22", "::1", "a@b@c:1", "[::1", "-x", "h:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		chain, err := ParseProxyJump(s)
		if err != nil || len(chain) == 0 {
			return
		}
		parts := make([]string, len(chain))
		for i, j := range chain {
			parts[i] = j.String()
		}
		again, err := ParseProxyJump(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, chain) {
			t.Errorf("ParseProxyJump(%q) = %#v; its String %q parses to %#v, %v", s, chain, strings.Join(parts, ","), again, err)
		}
	})
}
