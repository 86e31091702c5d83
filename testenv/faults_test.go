package testenv

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"golang.org/x/crypto/ssh"
)

// relctlPool connects as relctl does: generated key, strict known_hosts.
func relctlPool(t *testing.T, dir string, edit func(*transport.Options)) *transport.Pool {
	t.Helper()
	opts := transport.Options{
		User:           "relctl",
		IdentityFile:   filepath.Join(dir, ClientKeyFile),
		KnownHostsFile: filepath.Join(dir, KnownHostsFile),
		HostKeyPolicy:  transport.PolicyStrict,
		ConnectTimeout: 30 * time.Second,
	}
	if edit != nil {
		edit(&opts)
	}
	p, err := transport.NewPool(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func relctlConn(t *testing.T, p *transport.Pool, h HostInfo) transport.Conn {
	t.Helper()
	c, err := p.Get(guard(t), transport.Target{Name: h.Name, Address: h.Address})
	if err != nil {
		t.Fatalf("connect %s: %v", h.Name, err)
	}
	return c
}

// guard only keeps a broken test from hanging.
func guard(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond; the deadline only guards against a hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestStepLabelReachesHost(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	for _, label := range []string{"verify/health", "activate 1.2.0", "upload /srv/search/x y'z"} {
		res, err := conn.Run(guard(t), `printf %s "$RELCTL_STEP"`, transport.RunOptions{Label: label})
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		if string(res.Stdout) != label {
			t.Errorf("RELCTL_STEP = %q, want %q", res.Stdout, label)
		}
	}
}

func TestFailStep(t *testing.T) {
	c := startCluster(t, 2)
	pool := relctlPool(t, c.Dir(), nil)
	tests := []struct {
		name     string
		faults   map[string]FaultSpec
		host     string
		label    string
		wantFail string // the stderr the user sees; empty: the command runs
	}{
		{name: "suffix after slash", faults: map[string]FaultSpec{"staging-1": {FailStep: "health"}},
			host: "staging-1", label: "verify/health", wantFail: "testenv: injected failure in step health on staging-1"},
		{name: "exact label", faults: map[string]FaultSpec{"staging-1": {FailStep: "verify/health"}},
			host: "staging-1", label: "verify/health", wantFail: "testenv: injected failure in step verify/health on staging-1"},
		{name: "bare label", faults: map[string]FaultSpec{"staging-1": {FailStep: "health"}},
			host: "staging-1", label: "health", wantFail: "testenv: injected failure in step health on staging-1"},
		{name: "label with spaces", faults: map[string]FaultSpec{"production-2": {FailStep: "activate 1.2.0"}},
			host: "production-2", label: "activate 1.2.0", wantFail: "testenv: injected failure in step activate 1.2.0 on production-2"},
		{name: "other step on the faulted host", faults: map[string]FaultSpec{"staging-1": {FailStep: "health"}},
			host: "staging-1", label: "stage/unpack"},
		{name: "prefix is not the step", faults: map[string]FaultSpec{"staging-1": {FailStep: "verify"}},
			host: "staging-1", label: "verify/health"},
		{name: "no partial match", faults: map[string]FaultSpec{"staging-1": {FailStep: "health"}},
			host: "staging-1", label: "verify/health-2"},
		{name: "same step on another host", faults: map[string]FaultSpec{"staging-1": {FailStep: "health"}},
			host: "staging-2", label: "verify/health"},
		{name: "FailStep wins over HangStep", faults: map[string]FaultSpec{"staging-2": {FailStep: "health", HangStep: "health"}},
			host: "staging-2", label: "verify/health", wantFail: "testenv: injected failure in step health on staging-2"},
		{name: "no faults", host: "staging-1", label: "verify/health"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for host, f := range tt.faults {
				if err := c.SetFault(host, f); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				for host := range tt.faults {
					if err := c.SetFault(host, FaultSpec{}); err != nil {
						t.Error(err)
					}
				}
			}()
			h := hostNamed(t, c, tt.host)
			marker := filepath.Join(h.Root, "ran-"+strings.ReplaceAll(tt.name, " ", "-"))
			res, err := relctlConn(t, pool, h).Run(guard(t), "touch "+shellQuote(marker)+" && echo ran", transport.RunOptions{Label: tt.label})
			if tt.wantFail == "" {
				if err != nil || string(res.Stdout) != "ran\n" || !exists(marker) {
					t.Fatalf("Run = %+v, %v; want it to run", res, err)
				}
				return
			}
			var ce *transport.CommandError
			if !errors.As(err, &ce) || ce.ExitCode != 1 || ce.Tail != tt.wantFail {
				t.Fatalf("Run error = %v, want exit 1 with %q", err, tt.wantFail)
			}
			if string(res.Stderr) != tt.wantFail+"\n" || len(res.Stdout) != 0 {
				t.Errorf("output: stdout %q stderr %q", res.Stdout, res.Stderr)
			}
			if exists(marker) {
				t.Errorf("the failed step ran anyway (%s exists)", marker)
			}
		})
	}
	// Cleared: the step runs again.
	h := hostNamed(t, c, "staging-1")
	if _, err := relctlConn(t, pool, h).Run(guard(t), "true", transport.RunOptions{Label: "verify/health"}); err != nil {
		t.Errorf("after clearing: %v", err)
	}
	if got := c.Faults(); len(got) != 0 {
		t.Errorf("Faults after clearing = %v", got)
	}
}

func hostNamed(t *testing.T, c *Cluster, name string) HostInfo {
	t.Helper()
	for _, h := range c.Hosts() {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s", name)
	return HostInfo{}
}

func TestHangStepRunsOnceCleared(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	if err := c.SetFault(h.Name, FaultSpec{HangStep: "restart"}); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(h.Root, "restarted")
	type outcome struct {
		res *transport.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := conn.Run(guard(t), "touch restarted && echo restarted", transport.RunOptions{Label: "activate/restart"})
		done <- outcome{res, err}
	}()
	eventually(t, "the step is held", func() bool { return c.Held()[h.Name] == 1 })

	// Held: other steps on the same connection still run, the held one has not.
	if res, err := conn.Run(guard(t), "echo other", transport.RunOptions{Label: "activate/link"}); err != nil || string(res.Stdout) != "other\n" {
		t.Fatalf("other step while one is held: %+v, %v", res, err)
	}
	if exists(marker) {
		t.Fatal("the held step ran")
	}
	if got := c.Faults()[h.Name]; got != (FaultSpec{HangStep: "restart"}) {
		t.Errorf("Faults = %+v", got)
	}

	if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil || string(o.res.Stdout) != "restarted\n" || !exists(marker) {
		t.Fatalf("after clearing: %+v, %v", o.res, o.err)
	}
	if n := c.Held()[h.Name]; n != 0 {
		t.Errorf("held after clearing = %d", n)
	}
}

// A held step becomes a failure when FailStep replaces HangStep.
func TestHangStepThenFailStep(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	if err := c.SetFault(h.Name, FaultSpec{HangStep: "health"}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Run(guard(t), "true", transport.RunOptions{Label: "verify/health"})
		errc <- err
	}()
	eventually(t, "the step is held", func() bool { return c.Held()[h.Name] == 1 })
	if err := c.SetFault(h.Name, FaultSpec{FailStep: "health"}); err != nil {
		t.Fatal(err)
	}
	var ce *transport.CommandError
	if err := <-errc; !errors.As(err, &ce) || ce.Tail != "testenv: injected failure in step health on "+h.Name {
		t.Fatalf("Run = %v, want the injected failure", err)
	}
}

func TestHangStepEndsWithoutRunning(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	client := dialHost(t, c.Dir(), h)
	conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	const cmd = "touch ran"
	rawSession := func(t *testing.T) *ssh.Session {
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Setenv(StepEnv, "activate/restart"); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(cmd); err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name string
		end  func(t *testing.T) // starts the step, waits for it to be held, ends it
	}{
		{"KILL signal", func(t *testing.T) {
			s := rawSession(t)
			defer s.Close()
			eventually(t, "the step is held", func() bool { return c.Held()[h.Name] == 1 })
			if err := s.Signal(ssh.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var exitErr *ssh.ExitError
			if err := s.Wait(); !errors.As(err, &exitErr) || exitErr.Signal() != "KILL" {
				t.Fatalf("Wait = %v, want killed by KILL", err)
			}
		}},
		{"session closed", func(t *testing.T) {
			s := rawSession(t)
			eventually(t, "the step is held", func() bool { return c.Held()[h.Name] == 1 })
			s.Close()
		}},
		{"relctl's context cancelled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(guard(t))
			errc := make(chan error, 1)
			go func() {
				_, err := conn.Run(ctx, cmd, transport.RunOptions{Label: "activate/restart"})
				errc <- err
			}()
			eventually(t, "the step is held", func() bool { return c.Held()[h.Name] == 1 })
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
		}},
		{"connection dropped", func(t *testing.T) {
			other := dialHost(t, c.Dir(), h)
			s, err := other.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			s.Setenv(StepEnv, "activate/restart")
			if err := s.Start(cmd); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the step is held", func() bool { return c.Held()[h.Name] == 1 })
			other.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.SetFault(h.Name, FaultSpec{HangStep: "restart"}); err != nil {
				t.Fatal(err)
			}
			tt.end(t)
			eventually(t, "the held step is released", func() bool { return c.Held()[h.Name] == 0 })
			// Lifting the fault must not run what was abandoned.
			if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
				t.Fatal(err)
			}
			if res := run(t, client, "echo ok", "", nil); res.stdout != "ok\n" {
				t.Fatalf("host after the fault: %+v", res)
			}
			if exists(filepath.Join(h.Root, "ran")) {
				t.Fatal("the abandoned step ran")
			}
		})
	}
}

func TestCloseReleasesHeldStep(t *testing.T) {
	ctx := guard(t)
	c, err := Start(ctx, Options{Dir: t.TempDir(), Hosts: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hosts()[0]
	conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	for _, f := range []FaultSpec{{HangStep: "restart"}} {
		if err := c.SetFault(h.Name, f); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Run(ctx, "true", transport.RunOptions{Label: "activate/restart"})
		errc <- err
	}()
	eventually(t, "the step is held", func() bool { return c.Held()[h.Name] == 1 })
	if err := c.Close(); err != nil {
		t.Fatalf("Close with a held step: %v", err)
	}
	// The host vanished mid-command. transport reports that as a lost
	// connection or, when the session's end wins the race with the
	// connection's, as a command without exit status (-1).
	var ce *transport.CommandError
	if err := <-errc; !errors.Is(err, transport.ErrConnectionLost) && !(errors.As(err, &ce) && ce.ExitCode == -1) {
		t.Errorf("Run after Close = %v, want connection lost", err)
	}
	if err := c.SetFault(h.Name, FaultSpec{}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("SetFault after Close = %v", err)
	}
}

func TestHang(t *testing.T) {
	c := startCluster(t, 1)
	h, other := c.Hosts()[0], c.Hosts()[1]
	pool := relctlPool(t, c.Dir(), nil)
	conn := relctlConn(t, pool, h)
	otherConn := relctlConn(t, pool, other)
	if err := c.SetFault(h.Name, FaultSpec{Hang: true}); err != nil {
		t.Fatal(err)
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(guard(t), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}

	// A command on an open connection: no error from the host, only the deadline.
	if _, err := conn.Run(short(), "echo hi", transport.RunOptions{Label: "verify/health"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run on a hung host = %v, want context.DeadlineExceeded", err)
	}
	// A new connection: not even the SSH banner.
	if _, err := relctlPool(t, c.Dir(), nil).Get(short(), transport.Target{Name: h.Name, Address: h.Address}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("connect to a hung host = %v, want context.DeadlineExceeded", err)
	}
	// relctl's keepalive notices: the connection is dropped as lost.
	kaConn := func() transport.Conn {
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		conn := relctlConn(t, relctlPool(t, c.Dir(), func(o *transport.Options) { o.Keepalive = 50 * time.Millisecond }), h)
		if err := c.SetFault(h.Name, FaultSpec{Hang: true}); err != nil {
			t.Fatal(err)
		}
		return conn
	}()
	if _, err := kaConn.Run(guard(t), "echo hi", transport.RunOptions{Label: "verify/health"}); !errors.Is(err, transport.ErrConnectionLost) {
		t.Errorf("Run with keepalive on a hung host = %v, want connection lost", err)
	}
	// Other hosts are unaffected.
	if res, err := otherConn.Run(guard(t), "echo up", transport.RunOptions{}); err != nil || string(res.Stdout) != "up\n" {
		t.Errorf("other host: %+v, %v", res, err)
	}
	if got := c.Faults(); len(got) != 1 || got[h.Name] != (FaultSpec{Hang: true}) {
		t.Errorf("Faults = %v", got)
	}

	if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
		t.Fatal(err)
	}
	fresh := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	if res, err := fresh.Run(guard(t), "echo back", transport.RunOptions{}); err != nil || string(res.Stdout) != "back\n" {
		t.Fatalf("new connection after clearing: %+v, %v", res, err)
	}
	// The connection that saw the hang recovers too: what was held is answered.
	if res, err := conn.Run(guard(t), "echo still here", transport.RunOptions{}); err != nil || string(res.Stdout) != "still here\n" {
		t.Errorf("old connection after clearing: %+v, %v", res, err)
	}
}

// A running command's output stops while the host hangs and resumes after.
func TestHangStopsOutput(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	client := dialHost(t, c.Dir(), h)
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stdout, _ := s.StdoutPipe()
	// Prints, waits for the file "go", prints again.
	if err := s.Start("echo first; while [ ! -e go ]; do sleep 0.01; done; echo second; touch printed"); err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("first\n"))
	if _, err := io.ReadFull(stdout, first); err != nil {
		t.Fatal(err)
	}
	if err := c.SetFault(h.Name, FaultSpec{Hang: true}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(h.Root, "go"), nil, 0o644)
	// The command printed "second" and went on; nothing reaches the client.
	eventually(t, "the command printed", func() bool { return exists(filepath.Join(h.Root, "printed")) })
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(stdout)
		got <- string(b)
	}()
	select {
	case b := <-got:
		t.Fatalf("output reached the client while hung: %q", b)
	default:
	}
	if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b != "second\n" {
		t.Errorf("output after clearing = %q", b)
	}
	if err := s.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

func TestSetFaultDropSSHAndWrappers(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	steps := []struct {
		name string
		do   func() error
		want FaultSpec
	}{
		{"fail step", func() error { return c.SetFault(h.Name, FaultSpec{FailStep: "health"}) }, FaultSpec{FailStep: "health"}},
		{"ssh down keeps the step fault", func() error { return c.SetSSHDown(h.Name, true) }, FaultSpec{DropSSH: true, FailStep: "health"}},
		{"ssh up keeps it too", func() error { return c.SetSSHDown(h.Name, false) }, FaultSpec{FailStep: "health"}},
		{"drop ssh via SetFault", func() error { return c.SetFault(h.Name, FaultSpec{DropSSH: true}) }, FaultSpec{DropSSH: true}},
		{"clear", func() error { return c.SetFault(h.Name, FaultSpec{}) }, FaultSpec{}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := c.Faults()[h.Name]; got != st.want {
			t.Errorf("%s: faults %+v, want %+v", st.name, got, st.want)
		}
		_, err := ssh.Dial("tcp", h.Address, clientConfig(t, c.Dir()))
		if up := err == nil; up == st.want.DropSSH {
			t.Errorf("%s: dial = %v with DropSSH %v", st.name, err, st.want.DropSSH)
		}
	}
}

func TestSetFaultRejected(t *testing.T) {
	c := startCluster(t, 1)
	tests := []struct {
		host    string
		f       FaultSpec
		wantErr string
	}{
		{"staging-9", FaultSpec{Hang: true}, `unknown host "staging-9"`},
		{"staging-1", FaultSpec{FailStep: "a\nb"}, "no control characters"},
		{"staging-1", FaultSpec{HangStep: " health"}, "surrounding spaces"},
		{"staging-1", FaultSpec{FailStep: strings.Repeat("x", 201)}, "longer than 200"},
	}
	for _, tt := range tests {
		t.Run(tt.wantErr, func(t *testing.T) {
			err := c.SetFault(tt.host, tt.f)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("SetFault = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if got := c.Faults(); len(got) != 0 {
		t.Errorf("a rejected fault was applied: %v", got)
	}
}

func TestFaultSpecString(t *testing.T) {
	tests := []struct {
		f    FaultSpec
		want string
	}{
		{FaultSpec{}, "none"},
		{FaultSpec{DropSSH: true, FailStep: "health"}, "drop-ssh, fail-step=health"},
		{FaultSpec{Hang: true, HangStep: "restart"}, "hang, hang-step=restart"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.f, got, tt.want)
		}
	}
}
