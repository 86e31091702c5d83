package transport

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/relctl/relctl/internal/sshdtest"
)

func TestPoolOneHandshakePerHost(t *testing.T) {
	f := newFixture(t, 2)
	p := f.pool(t, nil)
	ctx := testContext(t)
	const n = 20
	conns := make([]Conn, 2*n)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Get(ctx, target(f.servers[i%2]))
			if err != nil {
				t.Error(err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, c := range conns {
		if c != conns[i%2] {
			t.Errorf("Get #%d returned a different connection for %s", i, c.Host())
		}
	}
	want := map[string]int{"host-1": 1, "host-2": 1}
	if got := p.Handshakes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Handshakes() = %v, want %v", got, want)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := p.Get(ctx, target(f.servers[0])); err == nil {
		t.Error("Get after Close succeeded")
	}
}

func TestHostKeys(t *testing.T) {
	f := newFixture(t, 2)
	s1, s2 := f.servers[0], f.servers[1]
	name := knownhosts.Normalize(s1.Addr)
	line := func(key ssh.PublicKey) string { return knownhosts.Line([]string{name}, key) + "\n" }
	otherHostOnly := knownhosts.Line([]string{knownhosts.Normalize(s2.Addr)}, s2.HostPubKey) + "\n"

	tests := []struct {
		name       string
		policy     string
		knownHosts *string // nil: no file
		wantErr    []string
		wantKind   string
		wantLines  int // lines in known_hosts afterwards when it changes
	}{
		{name: "strict, ed25519 known", policy: PolicyStrict, knownHosts: ptr(line(s1.HostPubKey))},
		{name: "strict, only ecdsa known", policy: PolicyStrict, knownHosts: ptr(line(s1.ECDSAHostPubKey))},
		{name: "accept-new, known", policy: PolicyAcceptNew, knownHosts: ptr(line(s1.HostPubKey))},
		{
			name: "strict, unknown", policy: PolicyStrict, knownHosts: ptr(otherHostOnly),
			wantKind: HostKeyUnknown,
		},
		{
			name: "strict, no known_hosts file", policy: PolicyStrict,
			wantKind: HostKeyUnknown,
		},
		{name: "accept-new, no known_hosts file", policy: PolicyAcceptNew, wantLines: 1},
		{
			name: "strict, changed", policy: PolicyStrict, knownHosts: ptr("# fleet\n" + line(s2.HostPubKey)),
			wantKind: HostKeyChanged,
		},
		{
			name: "accept-new, changed", policy: PolicyAcceptNew, knownHosts: ptr("# fleet\n" + line(s2.HostPubKey)),
			wantKind: HostKeyChanged,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			khPath := filepath.Join(t.TempDir(), "ssh", "known_hosts")
			if tt.knownHosts != nil {
				if err := os.MkdirAll(filepath.Dir(khPath), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(khPath, []byte(*tt.knownHosts), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			p := f.pool(t, func(o *Options) { o.KnownHostsFile, o.HostKeyPolicy = khPath, tt.policy })
			c, err := p.Get(testContext(t), target(s1))
			after, readErr := os.ReadFile(khPath)

			if tt.wantKind != "" {
				var hke *HostKeyError
				if !errors.As(err, &hke) || hke.Kind != tt.wantKind {
					t.Fatalf("Get error = %v, want *HostKeyError %s", err, tt.wantKind)
				}
				for _, want := range hostKeyMessages(tt.wantKind, s1.Addr, khPath) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not say %q:\n%s", want, err)
					}
				}
				if tt.knownHosts == nil && !errors.Is(readErr, os.ErrNotExist) {
					t.Errorf("known_hosts was created on refusal")
				}
				if tt.knownHosts != nil && string(after) != *tt.knownHosts {
					t.Errorf("known_hosts changed on refusal:\n%s", after)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if _, err := c.Run(testContext(t), "true", RunOptions{}); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tt.wantLines == 0 {
				if string(after) != *tt.knownHosts {
					t.Errorf("known_hosts changed:\n%s", after)
				}
				return
			}
			// accept-new recorded the key: exactly one line, 0600, usable in strict mode.
			lines := strings.Split(strings.TrimSpace(string(after)), "\n")
			if len(lines) != tt.wantLines || !strings.HasPrefix(lines[0], name+" ") {
				t.Fatalf("known_hosts =\n%s\nwant %d line(s) for %s", after, tt.wantLines, name)
			}
			if fi, err := os.Stat(khPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("known_hosts mode = %v (%v), want 0600", fi.Mode().Perm(), err)
			}
			strict := f.pool(t, func(o *Options) { o.KnownHostsFile, o.HostKeyPolicy = khPath, PolicyStrict })
			if _, err := strict.Get(testContext(t), target(s1)); err != nil {
				t.Fatalf("strict Get after accept-new: %v", err)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func hostKeyMessages(kind, addr, file string) []string {
	name := knownhosts.Normalize(addr)
	if kind == HostKeyChanged {
		return []string{
			"host-1 (" + addr + "): host key verification failed:\n",
			"WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!",
			"The fingerprint for the ED25519 key sent by the remote host is\nSHA256:",
			"Host key for " + name + " has changed",
			"Offending key in " + file + ":2\n",
			"Host key verification failed.",
		}
	}
	return []string{
		"host-1 (" + addr + "): Host key verification failed: no key for " + name + " in " + file +
			` (run with host_key_policy = "accept-new" or add it with ssh-keyscan)`,
	}
}

// Parallel first dials under accept-new must record the host once and not
// corrupt the file.
func TestAcceptNewConcurrentDials(t *testing.T) {
	f := newFixture(t, 3)
	khPath := filepath.Join(t.TempDir(), "known_hosts")
	ctx := testContext(t)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := f.pool(t, func(o *Options) { o.KnownHostsFile, o.HostKeyPolicy = khPath, PolicyAcceptNew })
			if _, err := p.Get(ctx, target(f.servers[i%3])); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	data, err := os.ReadFile(khPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("known_hosts has %d lines, want 3:\n%s", len(lines), data)
	}
	for _, s := range f.servers {
		if n := strings.Count(string(data), knownhosts.Normalize(s.Addr)+" "); n != 1 {
			t.Errorf("%s recorded %d times", s.Addr, n)
		}
	}
}

func TestDialErrors(t *testing.T) {
	f := newFixture(t, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	l.Close()

	// silent accepts TCP but never speaks SSH.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	otherKey, _ := sshdtest.NewClientKey(t, t.TempDir())

	tests := []struct {
		name    string
		addr    string
		edit    func(*Options)
		timeout time.Duration // the target's ConnectTimeout
		wantErr string
		wantIs  error
	}{
		{name: "closed port", addr: closedAddr, wantErr: "staging-2 (" + closedAddr + "): connect: connection refused", wantIs: syscall.ECONNREFUSED},
		{
			name: "silent server", addr: silent.Addr().String(),
			edit:    func(o *Options) { o.ConnectTimeout = 300 * time.Millisecond },
			wantErr: "staging-2 (" + silent.Addr().String() + "): ssh handshake: context deadline exceeded", wantIs: context.DeadlineExceeded,
		},
		{
			name: "silent server, the target's timeout", addr: silent.Addr().String(), timeout: 300 * time.Millisecond,
			wantErr: "staging-2 (" + silent.Addr().String() + "): ssh handshake: context deadline exceeded", wantIs: context.DeadlineExceeded,
		},
		{
			name: "key not authorized", addr: f.servers[0].Addr,
			edit:    func(o *Options) { o.IdentityFile = otherKey },
			wantErr: "staging-2 (" + f.servers[0].Addr + "): ssh: handshake failed: ssh: unable to authenticate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.pool(t, func(o *Options) {
				o.KnownHostsFile = filepath.Join(t.TempDir(), "kh")
				o.HostKeyPolicy = PolicyAcceptNew
				if tt.edit != nil {
					tt.edit(o)
				}
			})
			_, err := p.Get(testContext(t), Target{Name: "staging-2", Endpoint: Endpoint{Address: tt.addr, ConnectTimeout: tt.timeout}})
			var de *DialError
			if !errors.As(err, &de) {
				t.Fatalf("Get error = %v (%T), want *DialError", err, err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want %q", err, tt.wantErr)
			}
			if de.Host != "staging-2" || de.Address != tt.addr || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Errorf("DialError = %+v, want errors.Is %v", de, tt.wantIs)
			}
			if got := p.Handshakes(); len(got) != 0 {
				t.Errorf("Handshakes() = %v, want none", got)
			}
		})
	}
}

func TestNewPoolIdentityErrors(t *testing.T) {
	dir := t.TempDir()
	encrypted := writeEncryptedKey(t, dir)
	tests := []struct {
		name    string
		opts    Options
		env     string // SSH_AUTH_SOCK
		wantErr string
	}{
		{name: "missing key file", opts: Options{IdentityFile: filepath.Join(dir, "nope")},
			wantErr: "identity file: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "encrypted key without agent", opts: Options{IdentityFile: encrypted},
			wantErr: "identity file " + encrypted + " is encrypted and no ssh-agent is available (SSH_AUTH_SOCK is not set)"},
		{name: "agent requested, none running", opts: Options{UseAgent: true},
			wantErr: "ssh agent requested but SSH_AUTH_SOCK is not set"},
		{name: "bad policy", opts: Options{IdentityFile: encrypted, HostKeyPolicy: "yes"},
			wantErr: `host key policy "yes": want "strict" or "accept-new"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SSH_AUTH_SOCK", tt.env)
			_, err := NewPool(tt.opts)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("NewPool error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// An encrypted identity file works through a real ssh-agent holding the key.
func TestEncryptedKeyThroughAgent(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ssh-agent"); err != nil {
		t.Skip("ssh-agent not installed (apt-get install -y openssh-client)")
	}
	f := newFixture(t, 1)
	encrypted := writeEncryptedKeyOf(t, f.dir, f.key)
	sock := startAgent(t)
	t.Setenv("SSH_AUTH_SOCK", sock)

	_, err := NewPool(Options{IdentityFile: encrypted, KnownHostsFile: f.knownHosts})
	if err == nil || !strings.Contains(err.Error(), "ssh-agent does not hold this key") {
		t.Fatalf("NewPool with an empty agent: %v", err)
	}
	if out, err := runLocal("ssh-add", f.key); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	p := f.pool(t, func(o *Options) { o.IdentityFile = encrypted })
	c, err := p.Get(testContext(t), target(f.servers[0]))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	res, err := c.Run(testContext(t), "echo via-agent", RunOptions{})
	if err != nil || string(res.Stdout) != "via-agent\n" {
		t.Fatalf("Run = %v, %v", res, err)
	}
}

func TestDialContextThroughHost(t *testing.T) {
	f := newFixture(t, 1)
	c := f.conn(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		line, _ := bufio.NewReader(nc).ReadString('\n')
		fmt.Fprintf(nc, "echo: %s", line)
	}()
	nc, err := c.DialContext(testContext(t), "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "ping\n")
	got, err := io.ReadAll(nc)
	if err != nil || string(got) != "echo: ping\n" {
		t.Errorf("read %q, %v; want %q", got, err, "echo: ping\n")
	}

	// A closed port on the host is an error naming the host.
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l2.Addr().String()
	l2.Close()
	if _, err := c.DialContext(testContext(t), "tcp", closed); err == nil || !strings.HasPrefix(err.Error(), "host-1: dial tcp "+closed+" through ssh: ") {
		t.Errorf("DialContext to a closed port: %v", err)
	}
}

// A server that stops answering is detected by keepalive; Runs then fail
// at once with "connection to HOST lost".
func TestKeepaliveDetectsDeadServer(t *testing.T) {
	f := newFixture(t, 1)
	c := f.conn(t, func(o *Options) { o.Keepalive = 100 * time.Millisecond })
	ctx := testContext(t)
	res, err := c.Run(ctx, "echo $PPID", RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The parent of our shell is the sshd process serving this connection.
	var pid int
	if _, err := fmt.Sscan(string(res.Stdout), &pid); err != nil || pid <= 1 {
		t.Fatalf("sshd pid %q: %v", res.Stdout, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	// A command in flight when the server froze fails too, without waiting for its own timeout.
	_, err = c.Run(ctx, "echo never", RunOptions{})
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Run on a frozen server = %v, want ErrConnectionLost", err)
	}
	want := regexp.MustCompile(`^connection to host-1 lost: keepalive: no reply within 300ms$`)
	if !want.MatchString(err.Error()) {
		t.Errorf("error = %q, want %s", err, want)
	}
	if _, err := c.Run(ctx, "true", RunOptions{}); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("later Run = %v, want ErrConnectionLost", err)
	}
}

func runLocal(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// writeEncryptedKey writes a fresh passphrase-protected ed25519 key.
func writeEncryptedKey(t *testing.T, dir string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return writeEncrypted(t, filepath.Join(dir, "id_encrypted"), priv)
}

// writeEncryptedKeyOf writes the key at plainPath again, passphrase-protected.
func writeEncryptedKeyOf(t *testing.T, dir, plainPath string) string {
	t.Helper()
	pemBytes, err := os.ReadFile(plainPath)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return writeEncrypted(t, filepath.Join(dir, "id_encrypted"), priv)
}

func writeEncrypted(t *testing.T, path string, priv any) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent runs a real ssh-agent on a socket in a temp dir until the test ends.
func startAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("/usr/bin/ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
