package watchdog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// monitDaemon starts a real monit daemon (foreground, 1-second cycle, httpd
// on a free 127.0.0.1 port) supervising one process, "sleeper", and returns
// its control file and the sleeper's pidfile once the daemon answers.
func monitDaemon(t *testing.T) (control, pidfile string) {
	t.Helper()
	needMonit(t)
	dir := t.TempDir()
	if strings.ContainsAny(dir, "\"'") {
		t.Skipf("temp dir %q cannot be quoted in a monit control file", dir)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pidfile = filepath.Join(dir, "sleeper.pid")
	control = filepath.Join(dir, "monitrc")
	body := fmt.Sprintf(`set daemon 1
set pidfile %[1]q
set idfile %[2]q
set statefile %[3]q
set logfile %[4]q
set httpd port %[5]d and use address 127.0.0.1 allow localhost
check process sleeper with pidfile %[6]q
  start program = "/bin/sh -c 'sleep 600 >/dev/null 2>&1 </dev/null & echo $! > %[6]s'"
  stop program = "/bin/sh -c 'kill $(cat %[6]s)'"
`, filepath.Join(dir, "monit.pid"), filepath.Join(dir, "monit.id"), filepath.Join(dir, "monit.state"),
		filepath.Join(dir, "monit.log"), port, pidfile)
	if err := os.WriteFile(control, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command("monit", "-I", "-c", control)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Kill()
		daemon.Wait()
		if pid := readPidfile(pidfile); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	sleeper := MonitService{Runner: localRunner{}, Control: control, Name: "sleeper"}
	until(t, "the monit daemon answers", func() (bool, error) {
		_, err := sleeper.Status(t.Context())
		return err == nil, err
	})
	return control, pidfile
}

func readPidfile(p string) int {
	b, _ := os.ReadFile(p)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// until polls cond every 200ms; the deadline only keeps a broken test from hanging.
func until(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		var ok bool
		if ok, err = cond(); ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: never happened (last error: %v)", what, err)
}

// TestMonitServiceUnmonitorMonitor drives a real monit daemon: a service
// taken out of supervision stays down when its process dies; monitored
// again, monit starts it.
func TestMonitServiceUnmonitorMonitor(t *testing.T) {
	control, pidfile := monitDaemon(t)
	ctx := t.Context()
	svc := MonitService{Runner: localRunner{}, Control: control, Name: "sleeper"}
	var st MonitStatus
	until(t, "monit runs sleeper", func() (bool, error) {
		var err error
		st, err = svc.Status(ctx)
		return err == nil && st.Running(), err
	})
	if st.Name != "sleeper" || st.PID != readPidfile(pidfile) || st.Unmonitored() {
		t.Fatalf("status %+v; want sleeper monitored with the pid in %s", st, pidfile)
	}

	if err := svc.Unmonitor(ctx); err != nil {
		t.Fatalf("Unmonitor: %v", err)
	}
	until(t, "monit reports sleeper Not monitored", func() (bool, error) {
		var err error
		st, err = svc.Status(ctx)
		return err == nil && st.Unmonitored(), err
	})
	if st.Running() {
		t.Errorf("status %+v: Running() while not monitored", st)
	}
	// Killed while unmonitored: only Monitor brings it back.
	old := readPidfile(pidfile)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	if err := svc.Monitor(ctx); err != nil {
		t.Fatalf("Monitor: %v", err)
	}
	until(t, "monit starts sleeper again", func() (bool, error) {
		var err error
		st, err = svc.Status(ctx)
		return err == nil && st.Running() && st.PID != old, err
	})
	if st.PID != readPidfile(pidfile) {
		t.Errorf("monit runs pid %d; the pidfile says %d", st.PID, readPidfile(pidfile))
	}
}

func TestMonitServiceUnknown(t *testing.T) {
	control, _ := monitDaemon(t)
	ctx := t.Context()
	svc := MonitService{Runner: localRunner{}, Control: control, Name: "no such service"}
	if _, err := svc.Status(ctx); !errors.Is(err, ErrMonitNoService) {
		t.Errorf("Status of an unknown service: %v; want ErrMonitNoService", err)
	}
	for _, ask := range []func(context.Context) error{svc.Unmonitor, svc.Monitor} {
		if err := ask(ctx); !errors.Is(err, ErrMonitNoService) {
			t.Errorf("request for an unknown service: %v; want ErrMonitNoService", err)
		}
	}
}

// TestMonitServiceFailures: a failure that is not about the service names
// the command and monit's words; the service name is quoted for the shell.
func TestMonitServiceFailures(t *testing.T) {
	tests := []struct {
		name    string
		run     scriptedRunner
		wantErr string
		noSvc   bool
	}{
		{"daemon down", scriptedRunner{stderr: "Cannot connect to [127.0.0.1]:2812 -- Connection refused\n", exit: 1},
			"monit -c /etc/monit rc status it's: exit 1: Cannot connect to [127.0.0.1]:2812 -- Connection refused", false},
		{"not installed", scriptedRunner{stderr: "sh: 1: monit: not found\n", exit: 127},
			"monit -c /etc/monit rc status it's: monit is not installed (exit 127)", false},
		{"unknown service", scriptedRunner{stderr: "Service 'it's' not found\n", exit: 1},
			"monit -c /etc/monit rc status it's: monit has no such service", true},
		{"transport", scriptedRunner{err: errors.New("connection lost")}, "monit -c /etc/monit rc status it's: connection lost", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := tt.run
			svc := MonitService{Runner: &run, Control: "/etc/monit rc", Name: "it's"}
			_, err := svc.Status(t.Context())
			if err == nil || err.Error() != tt.wantErr || errors.Is(err, ErrMonitNoService) != tt.noSvc {
				t.Errorf("Status: %v; want %q (no such service: %v)", err, tt.wantErr, tt.noSvc)
			}
			if want := `monit -c '/etc/monit rc' status 'it'\''s'`; run.cmd != want {
				t.Errorf("command %q; want %q", run.cmd, want)
			}
		})
	}
}

// scriptedRunner answers every command with the same result and keeps the
// last command.
type scriptedRunner struct {
	stdout, stderr string
	exit           int
	err            error
	cmd            string
}

func (r *scriptedRunner) Run(_ context.Context, cmd string) ([]byte, []byte, int, error) {
	r.cmd = cmd
	if r.err != nil {
		return nil, nil, -1, r.err
	}
	return []byte(r.stdout), []byte(r.stderr), r.exit, nil
}

// busyRunner is monit's httpd resetting the first resets requests, then
// answering.
type busyRunner struct {
	resets, calls int
}

func (r *busyRunner) Run(context.Context, string) ([]byte, []byte, int, error) {
	r.calls++
	if r.calls <= r.resets {
		return nil, []byte("Cannot connect to [127.0.0.1]:2812 -- Connection reset by peer\n"), 1, nil
	}
	return []byte("Process 'it'\n  status                       OK\n  monitoring status            Monitored\n  pid                          42\n"), nil, 0, nil
}

// TestMonitServiceBusy: a request monit's busy httpd reset is tried again;
// one it keeps resetting is an error with monit's words.
func TestMonitServiceBusy(t *testing.T) {
	run := &busyRunner{resets: 2}
	st, err := MonitService{Runner: run, Control: "/etc/monitrc", Name: "it"}.Status(t.Context())
	if err != nil || st.PID != 42 || run.calls != 3 {
		t.Errorf("Status after two resets: %+v, %v after %d calls; want pid 42 after 3 calls", st, err, run.calls)
	}
	run = &busyRunner{resets: 10}
	_, err = MonitService{Runner: run, Control: "/etc/monitrc", Name: "it"}.Status(t.Context())
	if err == nil || !strings.Contains(err.Error(), "Connection reset by peer") || run.calls != busyRetries+1 {
		t.Errorf("Status of a daemon that keeps resetting: %v after %d calls; want monit's words after %d", err, run.calls, busyRetries+1)
	}
}
