package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func upForTest(t *testing.T, dir string, hosts int) *Status {
	t.Helper()
	t.Setenv(serveDirEnv, dir)
	t.Setenv(serveHostsEnv, fmt.Sprint(hosts))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := Up(ctx, Options{Dir: dir, Hosts: hosts}, []string{os.Args[0]})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		// Against a failed test leaving the daemon up.
		Down(context.WithoutCancel(t.Context()), dir)
	})
	return st
}

func TestDaemonUpStatusFaultDown(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	st := upForTest(t, dir, 2)
	if !st.Running || st.PID <= 0 || len(st.Hosts) != 4 {
		t.Fatalf("Up status: %+v", st)
	}
	for _, h := range st.Hosts {
		if !h.SSHUp || h.Handshakes != 0 {
			t.Errorf("%s: ssh_up %v handshakes %d right after up", h.Name, h.SSHUp, h.Handshakes)
		}
	}

	// A second up for the same directory is refused.
	_, err := Up(ctx, Options{Dir: dir, Hosts: 2}, []string{os.Args[0]})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Up: %v", err)
	}

	// Work on a host: a command and a detached process that must not survive Down.
	h := st.Hosts[0].HostInfo
	client := dialHost(t, dir, h)
	res := run(t, client, "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo started", "", nil)
	if res.stdout != "started\n" {
		t.Fatalf("detached sleep: %+v", res)
	}
	client.Close()

	if err := Fault(ctx, dir, h.Name, true); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", h.Address, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial with fault: %v, want connection refused", err)
	}
	got, err := GetStatus(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hosts[0].SSHUp || !got.Hosts[1].SSHUp || got.Hosts[0].Handshakes != 1 {
		t.Errorf("status with fault: %+v", got.Hosts[:2])
	}
	if err := Fault(ctx, dir, h.Name, false); err != nil {
		t.Fatal(err)
	}
	dialHost(t, dir, h).Close()
	if err := Fault(ctx, dir, "nope-1", true); err == nil || !strings.Contains(err.Error(), `unknown host "nope-1"`) {
		t.Errorf("fault on unknown host: %v", err)
	}

	if len(markedProcesses(dir)) == 0 {
		t.Fatal("the detached sleep is not marked")
	}
	if err := Down(ctx, dir); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if processAlive(st.PID) {
		t.Errorf("daemon %d still alive after Down", st.PID)
	}
	if pids := markedProcesses(dir); len(pids) > 0 {
		t.Errorf("processes left after Down: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(dir, SocketFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Down: %v", err)
	}
	after, err := GetStatus(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if after.Running || after.PID != 0 || len(after.Hosts) != 4 || after.Hosts[0].SSHUp {
		t.Errorf("status after Down: %+v", after)
	}
	if err := Down(ctx, dir); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if err := Fault(ctx, dir, h.Name, true); err == nil || !strings.Contains(err.Error(), "no cluster is running") {
		t.Errorf("fault with nothing running: %v", err)
	}

	// Up again: same ports, so relctl.toml and known_hosts stay valid.
	again := upForTest(t, dir, 2)
	for i, hs := range again.Hosts {
		if !reflect.DeepEqual(hs.HostInfo, st.Hosts[i].HostInfo) {
			t.Errorf("host changed across down/up: %+v then %+v", st.Hosts[i].HostInfo, hs.HostInfo)
		}
	}
	dialHost(t, dir, again.Hosts[3].HostInfo).Close()
	if err := Down(ctx, dir); err != nil {
		t.Fatal(err)
	}
}

func TestUpReportsDaemonDeath(t *testing.T) {
	dir := t.TempDir()
	_, err := Up(t.Context(), Options{Dir: dir, Hosts: 1}, []string{"/bin/sh", "-c", "echo cannot bind anything >&2; exit 3"})
	if err == nil || !strings.Contains(err.Error(), "daemon exited during start-up") || !strings.Contains(err.Error(), "cannot bind anything") {
		t.Fatalf("Up with a dying daemon: %v", err)
	}
}

func TestDownWithNothingRunning(t *testing.T) {
	if err := Down(t.Context(), t.TempDir()); err != nil {
		t.Fatalf("Down: %v", err)
	}
	st, err := GetStatus(t.Context(), t.TempDir())
	if err != nil || st.Running || len(st.Hosts) != 0 {
		t.Fatalf("GetStatus: %+v, %v", st, err)
	}
}

func TestDaemonSetHostFault(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	st := upForTest(t, dir, 1)
	h := st.Hosts[0].HostInfo
	client := dialHost(t, dir, h)
	health := map[string]string{StepEnv: "verify/health"}

	steps := []struct {
		name       string
		do         func() error
		wantFaults FaultSpec
		wantRun    runResult // the health step's outcome afterwards
	}{
		{"fail step", func() error { return SetHostFault(ctx, dir, h.Name, FaultSpec{FailStep: "health"}) },
			FaultSpec{FailStep: "health"}, runResult{status: 1, stderr: "testenv: injected failure in step health on staging-1\n"}},
		{"old Fault keeps step faults", func() error { return Fault(ctx, dir, h.Name, false) },
			FaultSpec{FailStep: "health"}, runResult{status: 1, stderr: "testenv: injected failure in step health on staging-1\n"}},
		{"clear", func() error { return SetHostFault(ctx, dir, h.Name, FaultSpec{}) },
			FaultSpec{}, runResult{stdout: "healthy\n"}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, err := GetStatus(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		if got.Hosts[0].Faults != s.wantFaults || got.Hosts[1].Faults != (FaultSpec{}) {
			t.Errorf("%s: status faults %+v, %+v", s.name, got.Hosts[0].Faults, got.Hosts[1].Faults)
		}
		if res := run(t, client, "echo healthy", "", health); res != s.wantRun {
			t.Errorf("%s: health step = %+v, want %+v", s.name, res, s.wantRun)
		}
	}

	// A held step shows in the status, and the daemon releases it when cleared.
	if err := SetHostFault(ctx, dir, h.Name, FaultSpec{HangStep: "health"}); err != nil {
		t.Fatal(err)
	}
	held := make(chan string, 1)
	go func() {
		s, err := client.NewSession()
		if err != nil {
			held <- err.Error()
			return
		}
		defer s.Close()
		s.Setenv(StepEnv, "verify/health")
		out, err := s.Output("echo healthy")
		held <- fmt.Sprint(string(out), err)
	}()
	eventually(t, "status shows the held step", func() bool {
		got, err := GetStatus(ctx, dir)
		return err == nil && got.Hosts[0].Held == 1
	})
	if err := SetHostFault(ctx, dir, h.Name, FaultSpec{}); err != nil {
		t.Fatal(err)
	}
	if got := <-held; got != "healthy\n<nil>" {
		t.Errorf("released step: %q", got)
	}

	errs := []struct {
		host    string
		f       FaultSpec
		wantErr string
	}{
		{"nope-1", FaultSpec{Hang: true}, `unknown host "nope-1"`},
		{h.Name, FaultSpec{FailStep: "x\ny"}, "no control characters"},
	}
	for _, e := range errs {
		if err := SetHostFault(ctx, dir, e.host, e.f); err == nil || !strings.Contains(err.Error(), e.wantErr) {
			t.Errorf("SetHostFault(%s, %+v) = %v, want %q", e.host, e.f, err, e.wantErr)
		}
	}
	if err := Down(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if err := SetHostFault(ctx, dir, h.Name, FaultSpec{Hang: true}); err == nil || !strings.Contains(err.Error(), "no cluster is running") {
		t.Errorf("SetHostFault with nothing running: %v", err)
	}
}
