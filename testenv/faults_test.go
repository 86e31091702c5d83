package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
	c, err := p.Get(guard(t), transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}})
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
	if _, err := relctlPool(t, c.Dir(), nil).Get(short(), transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}}); !errors.Is(err, context.DeadlineExceeded) {
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
		{"staging-1", FaultSpec{GarbageStep: "a\x00b"}, "no control characters"},
		{"staging-1", FaultSpec{DropLinesStep: "x", DropEvery: -1}, "want 1 or more"},
		{"staging-1", FaultSpec{DropEvery: 2}, "need a drop-lines step"},
		{"staging-1", FaultSpec{DropMatching: "x"}, "need a drop-lines step"},
		{"staging-1", FaultSpec{DropLinesStep: "x", DropMatching: "("}, "drop-matching: error parsing regexp"},
		{"staging-1", FaultSpec{DropLinesStep: "x", DropMatching: "a", DropEvery: 2}, "not both"},
		{"staging-1", FaultSpec{Unreadable: "../../../etc/passwd"}, "no .."},
		{"staging-1", FaultSpec{Unreadable: "/etc/passwd"}, "not inside the host"},
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
		{FaultSpec{TruncateStep: "read-state", DropLinesStep: "lock", GarbageStep: "upload", NeverEndsStep: "verify/ready", Unreadable: ".relctl/history.json"},
			"truncate-step=read-state, drop-lines-step=lock (every 3rd line), garbage-step=upload, never-ends-step=verify/ready, unreadable=.relctl/history.json"},
		{FaultSpec{DropLinesStep: "x", DropEvery: 2}, "drop-lines-step=x (every 2nd line)"},
		{FaultSpec{DropLinesStep: "read-state", DropMatching: "^--relctl-releases--"}, "drop-lines-step=read-state (lines matching ^--relctl-releases--)"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestStepMatchesFirstWord(t *testing.T) {
	tests := []struct {
		name, label string
		want        bool
	}{
		{"upload", "upload /srv/search/releases/1.1.0/search-1.1.0.tar.gz", true},
		{"activate", "activate 1.1.0", true},
		{"activate", "activate/activate", true},
		{"forward", "forward 127.0.0.1:8080", true},
		{"read-state", "read-state", true},
		{"read", "read-state", false},
		{"upload", "uploads /x", false},
		{"1.1.0", "activate 1.1.0", false},
		{"lock", "lock+read-state", true},
		{"read-state", "lock+read-state", true},
		{"read", "lock+read-state", false},
		{"lock+read-state", "lock+read-state", false},
	}
	for _, tt := range tests {
		if got := stepMatches(tt.name, tt.label); got != tt.want {
			t.Errorf("stepMatches(%q, %q) = %v, want %v", tt.name, tt.label, got, tt.want)
		}
	}
}

// The output faults damage stdout only: the command runs, its stderr and
// exit status are its own.
func TestOutputFaults(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	client := dialHost(t, c.Dir(), h)
	const label = "preflight/probe"
	tests := []struct {
		name       string
		f          FaultSpec
		label      string
		cmd        string
		wantStdout string
		wantStatus int
	}{
		{name: "truncate", f: FaultSpec{TruncateStep: "probe"}, cmd: `printf 'one\ntwo\nthree\n'`, wantStdout: "one\ntwo"},
		{name: "truncate mid-line", f: FaultSpec{TruncateStep: "probe"}, cmd: `printf 'abcdefghij\n'`, wantStdout: "abcde"},
		{name: "truncate keeps the exit status", f: FaultSpec{TruncateStep: "probe"}, cmd: `echo failed-output; echo why >&2; exit 3`, wantStdout: "failed-", wantStatus: 3},
		{name: "drop every third line", f: FaultSpec{DropLinesStep: "probe"}, cmd: `seq 1 10`, wantStdout: "1\n2\n4\n5\n7\n8\n10\n"},
		{name: "drop every second line", f: FaultSpec{DropLinesStep: label, DropEvery: 2}, cmd: `seq 1 10`, wantStdout: "1\n3\n5\n7\n9\n"},
		{name: "drop every line", f: FaultSpec{DropLinesStep: label, DropEvery: 1}, cmd: `seq 1 3`, wantStdout: ""},
		{name: "drop matching lines", f: FaultSpec{DropLinesStep: "probe", DropMatching: `^--mark-b--( |$)`},
			cmd: `printf -- '--mark-a--\nx\n--mark-b-- present 3\ny\n--mark-b--x\n'`, wantStdout: "--mark-a--\nx\ny\n--mark-b--x\n"},
		{name: "dropped then truncated", f: FaultSpec{DropLinesStep: "probe", TruncateStep: "probe"}, cmd: `seq 1 6`, wantStdout: "1\n2"},
		{name: "first word of the label", f: FaultSpec{TruncateStep: "upload"}, label: "upload /srv/x y", cmd: `echo 0123456789`, wantStdout: "01234"},
		{name: "another step is untouched", f: FaultSpec{TruncateStep: "other", GarbageStep: "other"}, cmd: `seq 1 3`, wantStdout: "1\n2\n3\n"},
		{name: "empty output stays empty", f: FaultSpec{TruncateStep: "probe", DropLinesStep: "probe"}, cmd: `true`, wantStdout: ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.SetFault(h.Name, tt.f); err != nil {
				t.Fatal(err)
			}
			defer c.SetFault(h.Name, FaultSpec{})
			l := tt.label
			if l == "" {
				l = label
			}
			marker := fmt.Sprintf("ran-%d", i)
			res := run(t, client, "touch "+marker+"; "+tt.cmd, "", map[string]string{StepEnv: l})
			if res.stdout != tt.wantStdout || res.status != tt.wantStatus {
				t.Errorf("stdout %q status %d, want %q status %d", res.stdout, res.status, tt.wantStdout, tt.wantStatus)
			}
			if strings.Contains(tt.cmd, ">&2") && res.stderr != "why\n" {
				t.Errorf("stderr %q, want it untouched", res.stderr)
			}
			if !exists(filepath.Join(h.Root, marker)) {
				t.Error("the command did not run")
			}
		})
	}
}

func TestGarbageStep(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	if err := c.SetFault(h.Name, FaultSpec{GarbageStep: "read-state"}); err != nil {
		t.Fatal(err)
	}
	// Through relctl's own transport: exit 0, stdout not text.
	conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	got := func(cmd string) []byte {
		res, err := conn.Run(guard(t), cmd, transport.RunOptions{Label: "read-state"})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return res.Stdout
	}
	real := "--relctl-current--\nreleases/1.0.0\n" + strings.Repeat("x", 100) + "\n"
	first := got("touch ran; printf %s " + shellQuote(real))
	if len(first) < len(real) || !bytes.Contains(first, []byte{0}) || utf8.Valid(first) || bytes.Contains(first, []byte("relctl")) {
		t.Errorf("garbage %q: want at least %d bytes with a NUL and invalid UTF-8, none of the real output", first, len(real))
	}
	if !exists(filepath.Join(h.Root, "ran")) {
		t.Error("the command did not run")
	}
	if again := got("printf %s " + shellQuote(real)); !bytes.Equal(again, first) {
		t.Errorf("the same command got other garbage: %q then %q", first, again)
	}
	if short := got("true"); len(short) != 64 {
		t.Errorf("garbage for empty output is %d bytes, want 64", len(short))
	}
}

func TestNeverEndsStep(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	client := dialHost(t, c.Dir(), h)
	const cmd = "touch ran; printf 'abcdef\\n'"
	start := func(t *testing.T) (*ssh.Session, io.Reader) {
		t.Helper()
		if err := c.SetFault(h.Name, FaultSpec{NeverEndsStep: "restart"}); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(h.Root, "ran"))
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		s.Setenv(StepEnv, "activate/restart")
		stdout, _ := s.StdoutPipe()
		if err := s.Start(cmd); err != nil {
			t.Fatal(err)
		}
		// Half of "abcdef\n", then nothing more while the fault lasts.
		half := make([]byte, 3)
		if _, err := io.ReadFull(stdout, half); err != nil || string(half) != "abc" {
			t.Fatalf("partial output %q, %v", half, err)
		}
		eventually(t, "the command is held", func() bool { return c.Held()[h.Name] == 1 })
		if !exists(filepath.Join(h.Root, "ran")) {
			t.Fatal("the command did not run")
		}
		return s, stdout
	}

	t.Run("lifted: the rest and the exit status follow", func(t *testing.T) {
		s, stdout := start(t)
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(stdout)
		if string(rest) != "def\n" {
			t.Errorf("rest of the output %q", rest)
		}
		if err := s.Wait(); err != nil {
			t.Errorf("Wait = %v, want exit 0", err)
		}
	})
	t.Run("another step fault changing keeps it hanging", func(t *testing.T) {
		s, _ := start(t)
		if err := c.SetFault(h.Name, FaultSpec{NeverEndsStep: "restart", FailStep: "other"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // a chance to end wrongly; the assertion does not depend on it
		if n := c.Held()[h.Name]; n != 1 {
			t.Errorf("held = %d after an unrelated change, want 1", n)
		}
		s.Signal(ssh.SIGKILL)
	})
	t.Run("KILL signal", func(t *testing.T) {
		s, _ := start(t)
		if err := s.Signal(ssh.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var exitErr *ssh.ExitError
		if err := s.Wait(); !errors.As(err, &exitErr) || exitErr.Signal() != "KILL" {
			t.Fatalf("Wait = %v, want killed by KILL", err)
		}
	})
	t.Run("session closed", func(t *testing.T) {
		s, _ := start(t)
		s.Close()
		eventually(t, "the session is released", func() bool { return c.Held()[h.Name] == 0 })
	})
	t.Run("relctl's step timeout ends it", func(t *testing.T) {
		if err := c.SetFault(h.Name, FaultSpec{NeverEndsStep: "restart"}); err != nil {
			t.Fatal(err)
		}
		conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
		_, err := conn.Run(guard(t), cmd, transport.RunOptions{Label: "activate/restart", Timeout: 300 * time.Millisecond})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "step timeout") {
			t.Fatalf("Run = %v, want the step timeout", err)
		}
		eventually(t, "the session is released", func() bool { return c.Held()[h.Name] == 0 })
		// The connection still works.
		if res, err := conn.Run(guard(t), "echo ok", transport.RunOptions{Label: "other"}); err != nil || string(res.Stdout) != "ok\n" {
			t.Errorf("next command: %+v, %v", res, err)
		}
	})
	c.SetFault(h.Name, FaultSpec{})
}

func TestUnreadable(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	client := dialHost(t, c.Dir(), h)
	const rel = ".relctl/history.json"
	hist := filepath.Join(h.BaseDir, rel)
	original := []byte(`{"activations":[{"version":"1.0.0"}]}` + "\n")
	setup := func(t *testing.T) {
		t.Helper()
		os.RemoveAll(filepath.Dir(hist))
		if err := os.MkdirAll(filepath.Dir(hist), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hist, original, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.SetFault(h.Name, FaultSpec{Unreadable: rel}); err != nil {
			t.Fatal(err)
		}
		if got := c.Faults()[h.Name]; got != (FaultSpec{Unreadable: rel}) {
			t.Fatalf("Faults = %+v", got)
		}
	}
	sh := func(t *testing.T, cmd string) runResult {
		t.Helper()
		return run(t, client, "cd "+shellQuote(h.BaseDir)+" && "+cmd, "", nil)
	}
	content := func(t *testing.T, p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return string(b)
	}

	t.Run("unreadable while faulted, the original back after", func(t *testing.T) {
		setup(t)
		if res := sh(t, "if [ -f "+rel+" ]; then echo file; else echo no-file; fi"); res.stdout != "no-file\n" {
			t.Errorf("[ -f ] says %q", res.stdout)
		}
		if res := sh(t, "cat "+rel); res.status == 0 || !strings.Contains(res.stderr, "Is a directory") {
			t.Errorf("cat: %+v, want it to fail with Is a directory", res)
		}
		if res := sh(t, "grep -rl 1.0.0 . || true"); res.stdout != "" {
			t.Errorf("the original is visible under base_dir while faulted: %q", res.stdout)
		}
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		if got := content(t, hist); got != string(original) {
			t.Errorf("after clearing: %q", got)
		}
		if exists(hist + ".testenv-original") {
			t.Error("an untouched fault left a .testenv-original")
		}
	})
	t.Run("written into: kept, the original beside it", func(t *testing.T) {
		setup(t)
		// What `cat > tmp && mv -f tmp history.json` does to a directory.
		sh(t, "echo new > "+rel+".tmp && mv -f "+rel+".tmp "+rel)
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		if got := content(t, filepath.Join(hist, "history.json.tmp")); got != "new\n" {
			t.Errorf("what was written into the directory: %q", got)
		}
		if got := content(t, hist+".testenv-original"); got != string(original) {
			t.Errorf("original beside it: %q", got)
		}
	})
	t.Run("replaced: kept, the original beside it", func(t *testing.T) {
		setup(t)
		sh(t, "rm -rf "+rel+" && echo new > "+rel)
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		if got := content(t, hist); got != "new\n" {
			t.Errorf("the replacement: %q", got)
		}
		if got := content(t, hist+".testenv-original"); got != string(original) {
			t.Errorf("original beside it: %q", got)
		}
	})
	t.Run("a file that did not exist", func(t *testing.T) {
		if err := c.SetFault(h.Name, FaultSpec{Unreadable: "new/state.json"}); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(h.BaseDir, "new/state.json")); err != nil || !fi.IsDir() {
			t.Fatalf("stat: %v, %v", fi, err)
		}
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		if exists(filepath.Join(h.BaseDir, "new/state.json")) {
			t.Error("the directory stayed")
		}
	})
	t.Run("a directory", func(t *testing.T) {
		runs := filepath.Join(h.BaseDir, ".relctl", "runs")
		os.MkdirAll(runs, 0o755)
		os.WriteFile(filepath.Join(runs, "r1.json"), []byte("{}"), 0o644)
		if err := c.SetFault(h.Name, FaultSpec{Unreadable: ".relctl/runs"}); err != nil {
			t.Fatal(err)
		}
		if exists(filepath.Join(runs, "r1.json")) {
			t.Error("the directory's content is still visible")
		}
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		if got := content(t, filepath.Join(runs, "r1.json")); got != "{}" {
			t.Errorf("after clearing: %q", got)
		}
		if entries, _ := os.ReadDir(filepath.Join(h.Root, ".testenv-faults")); len(entries) != 0 {
			t.Errorf("stash left behind: %v", entries)
		}
	})
	t.Run("an absolute path inside the host", func(t *testing.T) {
		p := filepath.Join(h.Root, "etc-app.conf")
		os.WriteFile(p, []byte("x"), 0o644)
		if err := c.SetFault(h.Name, FaultSpec{Unreadable: p}); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Fatalf("stat: %v, %v", fi, err)
		}
		if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
			t.Fatal(err)
		}
		if got := content(t, p); got != "x" {
			t.Errorf("after clearing: %q", got)
		}
	})
	t.Run("close gives the original back", func(t *testing.T) {
		c2 := startCluster(t, 1)
		h2 := c2.Hosts()[0]
		p := filepath.Join(h2.BaseDir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, original, 0o600)
		if err := c2.SetFault(h2.Name, FaultSpec{Unreadable: rel}); err != nil {
			t.Fatal(err)
		}
		if err := c2.Close(); err != nil {
			t.Fatal(err)
		}
		if got := content(t, p); got != string(original) {
			t.Errorf("after Close: %q", got)
		}
	})
}

// A forwarded connection (an http check dialled through the host) gets the
// output faults as "forward ADDR".
func TestForwardFaults(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const answer = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			nc.Write([]byte(answer))
			nc.Close()
		}
	}()
	conn := relctlConn(t, relctlPool(t, c.Dir(), nil), h)
	dial := func(t *testing.T) net.Conn {
		t.Helper()
		nc, err := conn.DialContext(guard(t), "tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	for _, tt := range []struct {
		f    FaultSpec
		want string
	}{
		{FaultSpec{}, answer},
		{FaultSpec{TruncateStep: ForwardLabel}, answer[:len(answer)/2]},
		{FaultSpec{DropLinesStep: ForwardLabel, DropEvery: 2}, "HTTP/1.0 200 OK\r\n\r\n"},
		{FaultSpec{TruncateStep: ForwardLabel + " " + l.Addr().String()}, answer[:len(answer)/2]},
		{FaultSpec{TruncateStep: ForwardLabel + " 127.0.0.1:1"}, answer},
	} {
		if err := c.SetFault(h.Name, tt.f); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(dial(t))
		if string(got) != tt.want {
			t.Errorf("%v: got %q, want %q", tt.f, got, tt.want)
		}
	}

	if err := c.SetFault(h.Name, FaultSpec{NeverEndsStep: ForwardLabel}); err != nil {
		t.Fatal(err)
	}
	nc := dial(t)
	half := make([]byte, len(answer)/2)
	if _, err := io.ReadFull(nc, half); err != nil || string(half) != answer[:len(answer)/2] {
		t.Fatalf("partial answer %q, %v", half, err)
	}
	eventually(t, "the forward is held", func() bool { return c.Held()[h.Name] == 1 })
	if err := c.SetFault(h.Name, FaultSpec{}); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(nc); string(rest) != answer[len(answer)/2:] {
		t.Errorf("rest after lifting: %q", rest)
	}
	// Closed by the client while held: released.
	c.SetFault(h.Name, FaultSpec{NeverEndsStep: ForwardLabel})
	nc = dial(t)
	io.ReadFull(nc, half)
	eventually(t, "the forward is held", func() bool { return c.Held()[h.Name] == 1 })
	nc.Close()
	eventually(t, "the forward is released", func() bool { return c.Held()[h.Name] == 0 })
}

// The faults reach a daemon's hosts (relctl testenv fault), and going down
// gives an unreadable file back.
func TestDaemonHostileFaults(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	st := upForTest(t, dir, 1)
	h := st.Hosts[0].HostInfo
	client := dialHost(t, dir, h)
	hist := filepath.Join(h.BaseDir, ".relctl", "history.json")
	os.MkdirAll(filepath.Dir(hist), 0o755)
	os.WriteFile(hist, []byte("{}\n"), 0o644)

	f := FaultSpec{TruncateStep: "read-state", DropLinesStep: "lock", DropMatching: "^acquired$", Unreadable: ".relctl/history.json"}
	if err := SetHostFault(ctx, dir, h.Name, f); err != nil {
		t.Fatal(err)
	}
	got, err := GetStatus(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hosts[0].Faults != f {
		t.Errorf("status faults %+v, want %+v", got.Hosts[0].Faults, f)
	}
	if res := run(t, client, "seq 1 4", "", map[string]string{StepEnv: "read-state"}); res.stdout != "1\n2" {
		t.Errorf("truncated output %q", res.stdout)
	}
	if res := run(t, client, "echo acquired; echo more", "", map[string]string{StepEnv: "lock"}); res.stdout != "more\n" {
		t.Errorf("output with a line dropped %q", res.stdout)
	}
	if fi, err := os.Stat(hist); err != nil || !fi.IsDir() {
		t.Errorf("history.json while unreadable: %v, %v", fi, err)
	}
	if err := SetHostFault(ctx, dir, h.Name, FaultSpec{Unreadable: "../../../../x"}); err == nil || !strings.Contains(err.Error(), "no ..") {
		t.Errorf("SetHostFault outside the host = %v", err)
	}
	if err := Down(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(hist); err != nil || string(b) != "{}\n" {
		t.Errorf("history.json after down: %q, %v", b, err)
	}
}
