package watchdog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"
)

// localRunner runs commands with /bin/sh on this machine.
type localRunner struct{}

func (localRunner) Run(ctx context.Context, cmd string) ([]byte, []byte, int, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = 5 * time.Second
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return stdout.Bytes(), stderr.Bytes(), ee.ExitCode(), nil
	}
	return stdout.Bytes(), stderr.Bytes(), 0, err
}

type failingRunner struct{ err error }

func (f failingRunner) Run(context.Context, string) ([]byte, []byte, int, error) {
	return nil, nil, -1, f.err
}

func needMonit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("monit"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("monit not installed: `make test` installs it (scripts/install-test-deps.sh)")
		}
		t.Skip("monit not installed (apt-get install -y monit, or run `make test`)")
	}
}

// controlFile writes a monit control file in dir whose id, state and pid
// files stay in dir (monit -t writes the id file), followed by body.
func controlFile(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	// Quoted: monit splits an unquoted path at a comma (t.TempDir names hold test names).
	head := fmt.Sprintf("set daemon 30\nset idfile %q\nset statefile %q\nset pidfile %q\n",
		filepath.Join(dir, "monit.id"), filepath.Join(dir, "monit.state"), filepath.Join(dir, "monit.pid"))
	if err := os.WriteFile(p, []byte(head+body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMonitSyntaxCheck(t *testing.T) {
	needMonit(t)
	const good = "check process search with pidfile /run/search.pid\n  start program = \"/bin/true\"\n  if failed port 8080 then restart\n"
	tests := []struct {
		name string
		body string
		mode os.FileMode
		// setup may change the file after it is written; inc is an included snippet.
		setup    func(t *testing.T, path string)
		inc      string
		wantKind string
		wantFile string // relative to the temp dir
		wantLine int
		wantTok  string
		wantMsg  string
	}{
		{name: "valid", body: good, mode: 0o600},
		{name: "missing start program is only a warning", body: "check process s with pidfile /run/s.pid\n  start program = \"/nonexistent/start\"\n", mode: 0o600},
		{
			name: "syntax error", body: good + "check process other with pidfle /run/o.pid\n", mode: 0o600,
			wantKind: MonitSyntax, wantFile: "monitrc", wantLine: 8, wantTok: "pidfle",
			wantMsg: "monitrc:8: monit -t: syntax error 'pidfle'",
		},
		{
			name: "syntax error in an included snippet", mode: 0o600,
			inc:      "check process a with pidfile /run/a.pid\n  if failed port abc then restart\n",
			wantKind: MonitSyntax, wantFile: "conf.d/search.conf", wantLine: 2, wantTok: "abc",
			wantMsg: "conf.d/search.conf:2: monit -t: syntax error 'abc'",
		},
		{
			name: "secret is reserved", mode: 0o600,
			body:     "set httpd port 2812 and use address 127.0.0.1 allow admin:secret\n",
			wantKind: MonitSyntax, wantFile: "monitrc", wantLine: 5, wantTok: "secret",
		},
		{
			name: "wrong permission", body: good, mode: 0o644,
			wantKind: MonitPermission, wantFile: "monitrc",
			wantMsg: "monitrc: monit -t: permission 0644 is wrong, maximum 0700 allowed",
		},
		{
			name: "service name conflict", body: good + "check process search with pidfile /run/other.pid\n", mode: 0o600,
			wantKind: MonitNameConflict, wantFile: "monitrc", wantLine: 8, wantTok: "search",
			wantMsg: "monitrc:8: monit -t: Service name conflict, search already defined '/run/other.pid'",
		},
		{
			name: "not owned by the user running monit", body: good, mode: 0o600,
			setup: func(t *testing.T, p string) {
				if os.Getuid() != 0 {
					t.Skip("chown needs root")
				}
				if err := os.Chown(p, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			},
			wantKind: MonitOwner, wantFile: "monitrc",
			wantMsg: "monitrc: monit -t: must be owned by you",
		},
		{
			name: "control file is a directory", mode: 0o600,
			setup: func(t *testing.T, p string) {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(p, 0o700); err != nil {
					t.Fatal(err)
				}
			},
			wantKind: MonitNoFile, wantFile: "monitrc",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			body := tt.body
			if tt.inc != "" {
				incDir := filepath.Join(dir, "conf.d")
				if err := os.Mkdir(incDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(incDir, "search.conf"), []byte(tt.inc), 0o600); err != nil {
					t.Fatal(err)
				}
				body += "include " + filepath.Join(incDir, "*.conf") + "\n"
			}
			p := controlFile(t, dir, "monitrc", body, tt.mode)
			if tt.setup != nil {
				tt.setup(t, p)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			err := MonitSyntaxCheck(ctx, localRunner{}, p)
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("MonitSyntaxCheck: %v", err)
				}
				return
			}
			var me *MonitError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want a *MonitError", err)
			}
			if me.Kind != tt.wantKind || me.File != filepath.Join(dir, tt.wantFile) || me.Line != tt.wantLine || me.Token != tt.wantTok {
				t.Errorf("got {Kind:%s File:%s Line:%d Token:%q}, want {Kind:%s File:%s Line:%d Token:%q}",
					me.Kind, me.File, me.Line, me.Token, tt.wantKind, filepath.Join(dir, tt.wantFile), tt.wantLine, tt.wantTok)
			}
			if tt.wantMsg != "" {
				if got := strings.ReplaceAll(err.Error(), dir+"/", ""); got != tt.wantMsg {
					t.Errorf("message:\n got  %s\n want %s", got, tt.wantMsg)
				}
			}
		})
	}
}

func TestMonitSyntaxCheckCommandQuoting(t *testing.T) {
	needMonit(t)
	// A hostile file name reaches monit as one argument, never as shell code.
	dir := t.TempDir()
	p := controlFile(t, dir, "monit rc; touch pwned '$(id)'", "", 0o600)
	if err := MonitSyntaxCheck(t.Context(), localRunner{}, p); err != nil {
		t.Fatalf("MonitSyntaxCheck: %v", err)
	}
	if _, err := os.Stat("pwned"); err == nil {
		t.Fatal("the file name was run as a command")
	}
}

func TestMonitSyntaxCheckRunnerErrors(t *testing.T) {
	tests := []struct {
		name   string
		runner Runner
		want   string
	}{
		{"runner fails", failingRunner{errors.New("connection lost")}, "monit -t -c /etc/monitrc: connection lost"},
		{"monit missing", localRunnerWithPath{}, "monit -t -c /etc/monitrc: monit is not installed (exit 127)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := MonitSyntaxCheck(t.Context(), tt.runner, "/etc/monitrc")
			if err == nil || err.Error() != tt.want {
				t.Errorf("err = %v, want %s", err, tt.want)
			}
		})
	}
}

// localRunnerWithPath runs with an empty PATH, as on a host without monit.
type localRunnerWithPath struct{}

func (localRunnerWithPath) Run(ctx context.Context, cmd string) ([]byte, []byte, int, error) {
	return localRunner{}.Run(ctx, "PATH=/nonexistent; "+cmd)
}

// TestParsedSnippetsAreValidMonit runs every snippet the parser test accepts
// through the real monit -t: the parser's cases must be monit, not an
// invented dialect.
func TestParsedSnippetsAreValidMonit(t *testing.T) {
	needMonit(t)
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := controlFile(t, dir, "monitrc", tt.src, 0o600)
			if err := MonitSyntaxCheck(t.Context(), localRunner{}, p); err != nil {
				var merr *multierror.Error
				if errors.As(err, &merr) {
					t.Fatalf("monit -t rejects the snippet: %v", merr.Errors)
				}
				t.Fatalf("monit -t rejects the snippet: %v", err)
			}
		})
	}
}
