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
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func startCluster(t *testing.T, hostsPerEnv int) *Cluster {
	t.Helper()
	return startClusterWith(t, Options{Hosts: hostsPerEnv})
}

// startClusterWith starts opts in a fresh directory; Close runs at cleanup
// and must leave no process behind.
func startClusterWith(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	opts.Dir = t.TempDir()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if pids := markedProcesses(c.Dir()); len(pids) > 0 {
			t.Errorf("processes left behind after Close: %v", pids)
		}
	})
	return c
}

// clientConfig is what relctl does: the generated key, strict known_hosts.
func clientConfig(t *testing.T, dir string) *ssh.ClientConfig {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join(dir, ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(filepath.Join(dir, KnownHostsFile))
	if err != nil {
		t.Fatal(err)
	}
	return &ssh.ClientConfig{
		User:            "relctl",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         10 * time.Second,
	}
}

func dialHost(t *testing.T, dir string, h HostInfo) *ssh.Client {
	t.Helper()
	client, err := ssh.Dial("tcp", h.Address, clientConfig(t, dir))
	if err != nil {
		t.Fatalf("ssh %s: %v", h.Name, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

type runResult struct {
	stdout, stderr string
	status         int
	signal         string
}

func run(t *testing.T, client *ssh.Client, cmd, stdin string, env map[string]string) runResult {
	t.Helper()
	s, err := client.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	for k, v := range env {
		if err := s.Setenv(k, v); err != nil {
			t.Fatalf("setenv %s: %v", k, err)
		}
	}
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	if stdin != "" {
		s.Stdin = strings.NewReader(stdin)
	}
	res := runResult{}
	err = s.Run(cmd)
	var exitErr *ssh.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.status, res.signal = exitErr.ExitStatus(), exitErr.Signal()
	case err != nil:
		t.Fatalf("run %q: %v", cmd, err)
	}
	res.stdout, res.stderr = out.String(), errOut.String()
	return res
}

// shellQuote is the test's own quoting of values put into remote commands.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func TestHostsAndFiles(t *testing.T) {
	c := startCluster(t, 2)
	var names []string
	for _, h := range c.Hosts() {
		names = append(names, h.Name)
		if h.Address != fmt.Sprintf("127.0.0.1:%d", h.SSHPort) {
			t.Errorf("%s: address %q does not match port %d", h.Name, h.Address, h.SSHPort)
		}
		if h.BaseDir != filepath.Join(c.Dir(), "hosts", h.Name, "srv", "search") || h.Root != filepath.Join(c.Dir(), "hosts", h.Name) {
			t.Errorf("%s: root %q base_dir %q", h.Name, h.Root, h.BaseDir)
		}
	}
	if got, want := strings.Join(names, " "), "staging-1 staging-2 production-1 production-2"; got != want {
		t.Errorf("hosts = %s, want %s", got, want)
	}
	tests := []struct {
		file string
		mode os.FileMode
		want []string // substrings
	}{
		{ClientKeyFile, 0o600, []string{"-----BEGIN OPENSSH PRIVATE KEY-----"}},
		{ClientKeyFile + ".pub", 0o644, []string{"ssh-ed25519 AAAA"}},
		{"hostkeys/staging-1", 0o600, []string{"-----BEGIN OPENSSH PRIVATE KEY-----"}},
		{KnownHostsFile, 0o644, []string{fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 AAAA", c.Hosts()[0].SSHPort)}},
		{ConfigFile, 0o644, []string{`identity_file = "id_ed25519"`, `host_key_policy = "strict"`, "[[environments.production.hosts]]",
			fmt.Sprintf(`address = "127.0.0.1:%d"`, c.Hosts()[3].SSHPort), fmt.Sprintf("port = %d", c.Hosts()[3].ServicePort),
			fmt.Sprintf("base_dir = %q", c.Hosts()[3].BaseDir)}},
		{PlaybookFile, 0o644, []string{`path = "artifacts/search-{{.Version}}.tar.gz"`, `run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"`}},
		{"artifacts/search-1.2.0.tar.gz", 0o644, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(c.Dir(), tt.file)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.mode)
			}
			b, _ := os.ReadFile(path)
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %q:\n%s", tt.file, w, b)
				}
			}
		})
	}
	if n := strings.Count(mustRead(t, filepath.Join(c.Dir(), KnownHostsFile)), "\n"); n != 4 {
		t.Errorf("known_hosts has %d lines, want 4", n)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunCommands(t *testing.T) {
	c := startCluster(t, 2)
	h := c.Hosts()[1]
	client := dialHost(t, c.Dir(), h)
	tests := []struct {
		name    string
		cmd     string
		stdin   string
		env     map[string]string
		want    runResult
		wantErr string // substring of stderr
	}{
		{name: "exit code", cmd: "exit 3", want: runResult{status: 3}},
		{name: "stdout and status 0", cmd: "echo hello", want: runResult{stdout: "hello\n"}},
		{name: "stderr", cmd: "echo oops >&2; exit 1", want: runResult{stderr: "oops\n", status: 1}},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "ship it\n", want: runResult{stdout: "SHIP IT\n"}},
		{name: "marker", cmd: `printf %s "$RELCTL_TESTENV"`, want: runResult{stdout: c.Dir()}},
		{name: "cwd and HOME", cmd: `pwd; printf '%s\n' "$HOME"`, want: runResult{stdout: h.Root + "\n" + h.Root + "\n"}},
		{name: "PATH and LANG", cmd: `printf '%s %s\n' "$PATH" "$LANG"`, want: runResult{stdout: hostPATH + " C\n"}},
		{name: "client env", cmd: `printf %s "$RELEASE"`, env: map[string]string{"RELEASE": "1.1.0 'x'"}, want: runResult{stdout: "1.1.0 'x'"}},
		{name: "command not found", cmd: "no-such-command-xyz", want: runResult{status: 127}, wantErr: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, client, tt.cmd, tt.stdin, tt.env)
			if tt.wantErr != "" {
				if !strings.Contains(got.stderr, tt.wantErr) {
					t.Errorf("stderr %q lacks %q", got.stderr, tt.wantErr)
				}
				got.stderr = ""
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSessionRequestsRejected(t *testing.T) {
	c := startCluster(t, 1)
	client := dialHost(t, c.Dir(), c.Hosts()[0])
	tests := []struct {
		name string
		do   func(s *ssh.Session) error
	}{
		{"shell", func(s *ssh.Session) error { return s.Shell() }},
		{"pty", func(s *ssh.Session) error { return s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}) }},
		{"marker override", func(s *ssh.Session) error { return s.Setenv(MarkerEnv, "/elsewhere") }},
		{"bad env name", func(s *ssh.Session) error { return s.Setenv("A B", "x") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := tt.do(s); err == nil {
				t.Errorf("%s accepted, want rejected", tt.name)
			}
		})
	}
	// OpenSSH answers keepalives with "failure": what matters is an answer.
	if _, _, err := client.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Errorf("keepalive: %v", err)
	}
}

func TestAuthAndHostKeys(t *testing.T) {
	c := startCluster(t, 2)
	hosts := c.Hosts()
	_, otherKey, _ := ed25519Key(t)
	tests := []struct {
		name    string
		mutate  func(cfg *ssh.ClientConfig)
		addr    string
		wantErr string
	}{
		{name: "generated key and known_hosts", addr: hosts[0].Address},
		{name: "any user name", addr: hosts[0].Address, mutate: func(cfg *ssh.ClientConfig) { cfg.User = "deploy" }},
		{name: "unknown client key", addr: hosts[0].Address, wantErr: "unable to authenticate",
			mutate: func(cfg *ssh.ClientConfig) { cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(otherKey)} }},
		{name: "host key of another host", addr: hosts[0].Address, wantErr: "knownhosts: key mismatch",
			mutate: func(cfg *ssh.ClientConfig) {
				// known_hosts claims staging-1's address has staging-2's key.
				line := knownhosts.Line([]string{knownhosts.Normalize(hosts[0].Address)}, hostPublicKey(t, c.Dir(), hosts[1].Name))
				path := filepath.Join(t.TempDir(), "known_hosts")
				os.WriteFile(path, []byte(line+"\n"), 0o644)
				cb, err := knownhosts.New(path)
				if err != nil {
					t.Fatal(err)
				}
				cfg.HostKeyCallback = cb
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientConfig(t, c.Dir())
			if tt.mutate != nil {
				tt.mutate(cfg)
			}
			client, err := ssh.Dial("tcp", tt.addr, cfg)
			if err == nil {
				client.Close()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("dial: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("dial error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func hostPublicKey(t *testing.T, dir, host string) ssh.PublicKey {
	t.Helper()
	s, err := ssh.ParsePrivateKey([]byte(mustRead(t, filepath.Join(dir, "hostkeys", host))))
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

func ed25519Key(t *testing.T) (ssh.PublicKey, ssh.Signer, error) {
	t.Helper()
	s, err := loadOrCreateKey(filepath.Join(t.TempDir(), "key"), "other")
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey(), s, nil
}

func TestConcurrentSessionsOnOneConnection(t *testing.T) {
	c := startCluster(t, 1)
	client := dialHost(t, c.Dir(), c.Hosts()[0])
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := client.NewSession()
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			defer s.Close()
			// The sleep keeps all sessions open at once.
			out, err := s.Output(fmt.Sprintf("sleep 1; echo %d", i))
			if err != nil || string(out) != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("session %d: output %q, err %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSignalKillsCommand(t *testing.T) {
	c := startCluster(t, 1)
	client := dialHost(t, c.Dir(), c.Hosts()[0])
	tests := []struct {
		sig  ssh.Signal
		want string
	}{
		{ssh.SIGKILL, "KILL"},
		{ssh.SIGTERM, "TERM"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			s, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stdout, _ := s.StdoutPipe()
			// The child sleep is in the same process group, so it dies too
			// and the output pipe closes.
			if err := s.Start("echo started; sleep 100; echo not reached"); err != nil {
				t.Fatal(err)
			}
			line := make([]byte, len("started\n"))
			if _, err := io.ReadFull(stdout, line); err != nil {
				t.Fatal(err)
			}
			if err := s.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, stdout)
			err = s.Wait()
			var exitErr *ssh.ExitError
			if !errors.As(err, &exitErr) || exitErr.Signal() != tt.want {
				t.Fatalf("Wait = %v, want killed by %s", err, tt.want)
			}
		})
	}
}

func TestDirectTCPIP(t *testing.T) {
	c := startCluster(t, 1)
	client := dialHost(t, c.Dir(), c.Hosts()[0])

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				io.Copy(conn, conn)
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	tests := []struct {
		addr    string
		wantErr string
	}{
		{addr: fmt.Sprintf("127.0.0.1:%d", port)},
		{addr: fmt.Sprintf("localhost:%d", port)},
		// Rejected by policy before any dial: nothing leaves the machine.
		{addr: "10.0.0.1:80", wantErr: "administratively prohibited"},
		{addr: "192.168.1.1:22", wantErr: "administratively prohibited"},
		{addr: "example.com:80", wantErr: "administratively prohibited"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			conn, err := dialVia(client, tt.addr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("dial %s: err = %v, want %q", tt.addr, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial %s: %v", tt.addr, err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 5)
			if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping\n" {
				t.Fatalf("echo = %q, %v", got, err)
			}
		})
	}
}

// dialVia opens a direct-tcpip channel without resolving names on the client,
// so the server's policy sees the name as given.
func dialVia(client *ssh.Client, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip != nil {
		var p int
		fmt.Sscan(port, &p)
		return client.DialTCP("tcp", nil, &net.TCPAddr{IP: ip, Port: p})
	}
	return client.Dial("tcp", addr)
}

func TestSetSSHDown(t *testing.T) {
	c := startCluster(t, 2)
	h := c.Hosts()[2]
	live := dialHost(t, c.Dir(), h)

	if err := c.SetSSHDown(h.Name, true); err != nil {
		t.Fatal(err)
	}
	_, err := net.DialTimeout("tcp", h.Address, 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while down: %v, want connection refused", err)
	}
	if err := live.Wait(); err == nil {
		t.Errorf("live connection survived the fault")
	}
	// Other hosts are unaffected.
	other := dialHost(t, c.Dir(), c.Hosts()[0])
	if got := run(t, other, "echo up", "", nil); got.stdout != "up\n" {
		t.Errorf("other host: %+v", got)
	}

	if err := c.SetSSHDown(h.Name, false); err != nil {
		t.Fatal(err)
	}
	again := dialHost(t, c.Dir(), h)
	if got := run(t, again, "echo back", "", nil); got.stdout != "back\n" {
		t.Errorf("after fault lifted: %+v", got)
	}

	err = c.SetSSHDown("staging-9", true)
	if err == nil || !strings.Contains(err.Error(), `unknown host "staging-9"`) {
		t.Errorf("unknown host: %v", err)
	}
}

func TestHandshakes(t *testing.T) {
	c := startCluster(t, 2)
	hosts := c.Hosts()
	for _, i := range []int{0, 0, 3} {
		client := dialHost(t, c.Dir(), hosts[i])
		client.Close()
	}
	// A failed authentication is not a handshake that succeeded.
	_, bad, _ := ed25519Key(t)
	cfg := clientConfig(t, c.Dir())
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(bad)}
	if client, err := ssh.Dial("tcp", hosts[1].Address, cfg); err == nil {
		client.Close()
		t.Fatal("bad key accepted")
	}
	want := map[string]int{"staging-1": 2, "staging-2": 0, "production-1": 0, "production-2": 1}
	got := c.Handshakes()
	for name, n := range want {
		if got[name] != n {
			t.Errorf("handshakes[%s] = %d, want %d (all: %v)", name, got[name], n, got)
		}
	}
}

func TestRestartKeepsKeysAndPorts(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	first, err := Start(ctx, Options{Dir: dir, Hosts: 1})
	if err != nil {
		t.Fatal(err)
	}
	hosts1, known1 := first.Hosts(), mustRead(t, filepath.Join(dir, KnownHostsFile))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := Start(ctx, Options{Dir: dir, Hosts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if known2 := mustRead(t, filepath.Join(dir, KnownHostsFile)); known2 != known1 {
		t.Errorf("known_hosts changed:\n%s\nthen\n%s", known1, known2)
	}
	for i, h := range second.Hosts() {
		if !reflect.DeepEqual(h, hosts1[i]) {
			t.Errorf("host changed: %+v then %+v", hosts1[i], h)
		}
	}
	// The old known_hosts still verifies the new servers.
	client := dialHost(t, dir, second.Hosts()[0])
	client.Close()
}

func TestOptionsRejected(t *testing.T) {
	tests := []struct {
		opts    Options
		wantErr string
	}{
		{Options{}, "a directory is required"},
		{Options{Dir: t.TempDir(), Hosts: -1}, "between 1 and 250"},
		{Options{Dir: t.TempDir(), Envs: []string{"Prod env"}}, `environment name "Prod env"`},
		{Options{Dir: t.TempDir(), Envs: []string{"qa", "qa"}}, `environment "qa" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.wantErr, func(t *testing.T) {
			c, err := Start(t.Context(), tt.opts)
			if err == nil {
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Start(%+v) = %v, want %q", tt.opts, err, tt.wantErr)
			}
		})
	}
}
