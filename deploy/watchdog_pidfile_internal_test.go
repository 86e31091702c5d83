package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
)

// The two checks that a release writes the pidfile its monit snippet
// watches: before activation, some file of the release other than the
// snippet must name the pidfile; after activation, the pid monit reports
// must be the pid in that pidfile. Each test below fails when its check is
// skipped. The "host" is this machine, reached through localConn; its monit
// is a script answering from files the test writes.

// localConn is a transport.Conn that runs commands with /bin/sh on this
// machine, with a fake monit first on PATH.
type localConn struct {
	env []string
}

var _ transport.Conn = (*localConn)(nil)

func (c *localConn) Host() string { return "web-1" }

func (c *localConn) Run(ctx context.Context, cmd string, opts transport.RunOptions) (*transport.Result, error) {
	sh := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	sh.Env = c.env
	sh.Stdin = opts.Stdin
	var stdout, stderr bytes.Buffer
	sh.Stdout, sh.Stderr = &stdout, &stderr
	err := sh.Run()
	res := &transport.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.ExitCode = ee.ExitCode()
		return res, &transport.CommandError{Host: c.Host(), Command: cmd, ExitCode: ee.ExitCode(), Tail: stderr.String()}
	}
	return res, err
}

func (c *localConn) Upload(ctx context.Context, r io.Reader, remotePath string, mode uint32, wantSHA256 string) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != wantSHA256 {
		return fmt.Errorf("upload %s: sha256 mismatch", remotePath)
	}
	if err := os.MkdirAll(filepath.Dir(remotePath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(remotePath, body, os.FileMode(mode)); err != nil {
		return err
	}
	return os.Chmod(remotePath, os.FileMode(mode))
}

func (c *localConn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (c *localConn) Close() error { return nil }

// fakeMonit answers `monit -t` with OK, summary and reload as a running
// daemon, and status with the file $FAKE_MONIT/status.
const fakeMonit = `#!/bin/sh
while [ $# -gt 0 ]; do
	case $1 in
	-c) shift 2 ;;
	-t) echo "Control file syntax OK"; exit 0 ;;
	*) break ;;
	esac
done
case $1 in
summary) echo "Monit daemon with pid 1 awakened" ;;
reload) echo "Reinitializing monit daemon" ;;
status) cat "$FAKE_MONIT/status" ;;
monitor | unmonitor) echo "$1 $2" >>"$FAKE_MONIT/requests" ;;
*) echo "fake monit: unexpected $*" >&2; exit 2 ;;
esac
`

// pidfileHost is a host with a base dir, a current release 1.0.0, a new
// release 2.0.0 (unpacked, not switched), a monit control file including
// monit.d/*, and the fake monit.
type pidfileHost struct {
	base, monitDir string
	conn           *localConn
	h              *hostRun
	spec           *watchdogSpec
}

func newPidfileHost(t *testing.T) *pidfileHost {
	t.Helper()
	root := t.TempDir()
	p := &pidfileHost{base: filepath.Join(root, "srv"), monitDir: filepath.Join(root, "monit")}
	bin := filepath.Join(root, "bin")
	for _, d := range []string{bin, p.monitDir, filepath.Join(p.monitDir, "monit.d"), filepath.Join(p.base, "run"), filepath.Join(p.base, "releases", "1.0.0")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(bin, "monit"), fakeMonit, 0o755)
	control := filepath.Join(p.monitDir, "monitrc")
	writeFile(t, control, "set daemon 1\ninclude \""+filepath.Join(p.monitDir, "monit.d")+"/*\"\n", 0o600)
	if err := os.Symlink("releases/1.0.0", filepath.Join(p.base, "current")); err != nil {
		t.Fatal(err)
	}
	p.conn = &localConn{env: append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_MONIT="+p.monitDir)}
	layout := state.Layout{BaseDir: p.base}
	p.spec = &watchdogSpec{
		Snippet: "monit/search.monitrc", ReleaseDir: layout.Release("2.0.0"), CurrentDir: layout.Current(),
		InstallPath: filepath.Join(p.monitDir, "monit.d", "search.monitrc"), ControlFile: control,
		Service: "search", Timeout: 1200 * time.Millisecond,
	}
	p.spec.sup = monitSupervisor{p.spec}
	plan := &Plan{RunID: "r1", Env: "staging", Version: "2.0.0"}
	p.h = &hostRun{plan: plan, conn: p.conn, host: &HostPlan{Name: "web-1", Layout: layout},
		report: &HostReport{Name: "web-1", Before: "1.0.0", After: "2.0.0", Reached: true}}
	return p
}

func writeFile(t *testing.T, name, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

// release writes release 2.0.0: bin/start naming startPidfile (a path
// inside BaseDir/run), bin/stop, and its monit snippet watching pidfile.
func (p *pidfileHost) release(t *testing.T, startPidfile, pidfile string) []byte {
	t.Helper()
	rel := p.spec.ReleaseDir
	writeFile(t, filepath.Join(rel, "bin", "start"), "#!/bin/sh\nbase=$1\nexec server --pidfile \"$base/run/"+startPidfile+"\"\n", 0o755)
	writeFile(t, filepath.Join(rel, "bin", "stop"), "#!/bin/sh\nkill \"$(cat \"$1/run/"+startPidfile+"\")\"\n", 0o755)
	snippet := fmt.Sprintf("check process search with pidfile %q\n  start program = \"%s/bin/start %s\"\n  stop program = \"%s/bin/stop %s\"\n",
		filepath.Join(p.base, "run", pidfile), p.spec.CurrentDir, p.base, p.spec.CurrentDir, p.base)
	writeFile(t, filepath.Join(rel, "monit", "search.monitrc"), snippet, 0o644)
	return []byte(snippet)
}

// Before activation: the watchdog check refuses a snippet whose pidfile no
// file of the new release (the snippet itself aside) names, so its start
// program cannot write it.
func TestWatchdogCheckRefusesAPidfileTheReleaseNeverWrites(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		startWrites, snippets string
		wantErr               string
	}{
		{"start writes the watched pidfile", "search.pid", "search.pid", ""},
		{"start writes another pidfile", "search.pid", "search-server.pid",
			`pidfile "BASE/run/search-server.pid": nothing in the new release mentions search-server.pid, so its start program will not write it`},
		{"only the current release writes it", "search.pid", "search-old.pid",
			`nothing in the new release mentions search-old.pid`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPidfileHost(t)
			snippet := p.release(t, tt.startWrites, tt.snippets)
			// The release that runs now writes search-old.pid: not a proof
			// that the new one does.
			writeFile(t, filepath.Join(p.base, "releases", "1.0.0", "bin", "start"), "#!/bin/sh\nexec server --pidfile \"$1/run/search-old.pid\"\n", 0o755)
			a := &watchdogCheckAction{spec: p.spec}
			detail, err := a.validate(context.Background(), p.h, snippet, &hostFS{conn: p.conn, from: p.spec.CurrentDir, to: p.spec.ReleaseDir})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v, want ok", err)
				}
				if !strings.Contains(detail, "monit -t OK; 1 service(s) checked") {
					t.Errorf("detail %q", detail)
				}
				return
			}
			want := strings.ReplaceAll(tt.wantErr, "BASE", p.base)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("validate = %q, %v; want an error containing %q", detail, err, want)
			}
		})
	}
}

// After activation: watchdog-install waits until monit runs the service
// with the pid that is in the snippet's pidfile. A live pid monit reports
// that is not the one in the pidfile (what monit still says right after a
// reload) is not the new release running.
func TestWatchdogInstallWantsMonitsPidInThePidfile(t *testing.T) {
	sleeper := func() int {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd.Process.Pid
	}
	monitPID, otherPID := sleeper(), sleeper()
	for _, tt := range []struct {
		name    string
		inFile  string // the pidfile's content; "-": no pidfile
		wantErr string
	}{
		{"pidfile names monit's pid", strconv.Itoa(monitPID), ""},
		{"pidfile names another live process", strconv.Itoa(otherPID), "monit does not run search after 1.2s: status \"OK\", monitoring \"Monitored\", pid " + strconv.Itoa(monitPID)},
		{"no pidfile", "-", "monit does not run search after 1.2s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPidfileHost(t)
			snippet := p.release(t, "search.pid", "search.pid")
			writeFile(t, filepath.Join(p.monitDir, "status"), fmt.Sprintf("Process 'search'\n  status                       OK\n  monitoring status            Monitored\n  pid                          %d\n", monitPID), 0o644)
			if tt.inFile != "-" {
				writeFile(t, filepath.Join(p.base, "run", "search.pid"), tt.inFile+"\n", 0o644)
			}
			a := &watchdogInstallAction{spec: p.spec, check: &watchdogCheckAction{spec: p.spec, validated: snippet}}
			detail, err := a.Do(context.Background(), p.h)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("watchdog-install: %v, want ok", err)
				}
				if want := fmt.Sprintf("monit runs search (pid %d)", monitPID); !strings.Contains(detail, want) {
					t.Errorf("detail %q, want it to contain %q", detail, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("watchdog-install = %q, %v; want an error containing %q", detail, err, tt.wantErr)
			}
		})
	}
}
