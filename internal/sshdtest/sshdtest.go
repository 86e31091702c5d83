// Package sshdtest starts real OpenSSH sshd processes on 127.0.0.1 for tests:
// one process per host, each with its own config, host keys, pid file and
// authorized_keys, killed when the test ends.
package sshdtest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
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

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is where Debian's openssh-server puts sshd; sshd insists on an absolute path.
const SSHDPath = "/usr/sbin/sshd"

// Server is one running sshd.
type Server struct {
	Name string // host-1, host-2, ...
	Addr string // 127.0.0.1:PORT
	Port int
	// HostPubKey is the server's ed25519 host key: the one WriteKnownHosts records.
	HostPubKey ssh.PublicKey
	// ECDSAHostPubKey is a second host key the server also offers, as real
	// servers do; clients must negotiate the type they know.
	ECDSAHostPubKey ssh.PublicKey
	// Root holds the server's files: sshd_config, keys, sshd.log, home/.
	Root string
	// Home is the HOME of sessions (SetEnv), so shells skip root's start-up files.
	Home string
	// HostKeyPath is the ed25519 host key's private key file.
	HostKeyPath string
	// HostCertPath is the HostCertificate sshd uses; empty: none.
	HostCertPath string

	opts Options

	cmd *exec.Cmd
}

// Start starts n sshd processes that accept clientPub for any user (root
// included). It waits until each one answers with an SSH banner and
// registers a cleanup that kills them. Without sshd the test is skipped,
// unless CI=true, where openssh-server is installed with apt-get.
func Start(t testing.TB, n int, clientPub ssh.PublicKey) []*Server {
	t.Helper()
	return StartWith(t, n, clientPub, Options{})
}

// StartWith is Start with options (host certificates, user CAs). A nil
// clientPub leaves authorized_keys empty: only certificates log in.
func StartWith(t testing.TB, n int, clientPub ssh.PublicKey, opts Options) []*Server {
	t.Helper()
	ensureSSHD(t)
	if os.Geteuid() == 0 {
		// A root sshd refuses to start without its privilege-separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
	}
	var authorized []byte
	if clientPub != nil {
		authorized = ssh.MarshalAuthorizedKey(clientPub)
	}
	servers := make([]*Server, 0, n)
	for i := 1; i <= n; i++ {
		s := &Server{Name: fmt.Sprintf("host-%d", i), Root: t.TempDir(), opts: opts}
		s.Home = filepath.Join(s.Root, "home")
		if err := os.Mkdir(s.Home, 0o700); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		if err := os.WriteFile(filepath.Join(s.Root, "authorized_keys"), authorized, 0o600); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		s.HostKeyPath = filepath.Join(s.Root, "ssh_host_ed25519_key")
		s.HostPubKey = writeHostKey(t, s.HostKeyPath, "ed25519")
		s.ECDSAHostPubKey = writeHostKey(t, filepath.Join(s.Root, "ssh_host_ecdsa_key"), "ecdsa")
		if opts.HostCertificate != nil {
			s.HostCertPath = opts.HostCertificate(t, s)
		}
		s.start(t)
		servers = append(servers, s)
	}
	return servers
}

func ensureSSHD(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err == nil {
		return
	}
	if os.Getenv("CI") != "true" {
		t.Skipf("sshdtest: %s not found; install it with: apt-get install -y openssh-server", SSHDPath)
	}
	out, err := exec.Command("apt-get", "install", "-y", "openssh-server").CombinedOutput()
	if err != nil {
		t.Fatalf("sshdtest: apt-get install -y openssh-server: %v\n%s", err, out)
	}
}

// start picks a free port and starts sshd on it, retrying when another
// process takes the port between the probe and sshd's bind.
func (s *Server) start(t testing.TB) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		s.Port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.launch(t); lastErr == nil {
			return
		}
	}
	t.Fatalf("sshdtest: starting sshd for %s: %v", s.Name, lastErr)
}

// sshdCommand writes s's sshd_config and returns the sshd command (in its
// network namespace, if any) with its output going to the log at logPath,
// in a process group of its own so that cleanup can kill the listener
// without touching the test binary. Start it before closing logFile.
func (s *Server) sshdCommand() (cmd *exec.Cmd, logFile *os.File, logPath string, err error) {
	cfg := filepath.Join(s.Root, "sshd_config")
	if err := os.WriteFile(cfg, []byte(s.config()), 0o600); err != nil {
		return nil, nil, "", err
	}
	logPath = filepath.Join(s.Root, "sshd.log")
	if logFile, err = os.Create(logPath); err != nil {
		return nil, nil, "", err
	}
	cmd = exec.Command(SSHDPath, "-D", "-e", "-f", cfg)
	if s.opts.NetNS != nil {
		// ip netns exec enters the namespace and execs sshd (no fork).
		cmd = exec.Command("ip", "netns", "exec", s.opts.NetNS.Name, SSHDPath, "-D", "-e", "-f", cfg)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, logFile, logPath, nil
}

func (s *Server) launch(t testing.TB) error {
	cmd, logFile, logPath, err := s.sshdCommand()
	if err != nil {
		return err
	}
	defer logFile.Close()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.ready() {
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("sshd exited (%v):\n%s", err, log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("sshd on %s did not answer within 30s:\n%s", s.Addr, log)
		}
	}
	s.cmd = cmd
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("sshdtest: %s (%s) log:\n%s", s.Name, s.Addr, log)
		}
	})
	return nil
}

func (s *Server) config() string {
	lines := []string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(s.Root, "ssh_host_ed25519_key"),
		"HostKey " + filepath.Join(s.Root, "ssh_host_ecdsa_key"),
		"PidFile " + filepath.Join(s.Root, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(s.Root, "authorized_keys"),
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"UseDNS no",
		"PrintMotd no",
		"PrintLastLog no",
		"AllowTcpForwarding yes",
		"MaxStartups 200:30:400",
		"MaxSessions 200",
		"SetEnv HOME=" + s.Home,
		"Subsystem sftp /usr/lib/openssh/sftp-server",
	}
	if s.HostCertPath != "" {
		lines = append(lines, "HostCertificate "+s.HostCertPath)
	}
	if s.opts.LogLevel != "" {
		lines = append(lines, "LogLevel "+s.opts.LogLevel)
	}
	if s.opts.TrustedUserCAKeys != "" {
		lines = append(lines, "TrustedUserCAKeys "+s.opts.TrustedUserCAKeys)
	}
	lines = append(lines, s.opts.Config...)
	return strings.Join(lines, "\n") + "\n"
}

// ready reports whether the server answers with an SSH banner (not merely
// accepts TCP), from inside its namespace when it has one.
func (s *Server) ready() bool {
	var c net.Conn
	var err error
	if s.opts.NetNS != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err = s.opts.NetNS.Dial(ctx, s.Addr)
	} else {
		c, err = net.DialTimeout("tcp", s.Addr, time.Second)
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writeHostKey(t testing.TB, path, kind string) ssh.PublicKey {
	t.Helper()
	var priv any
	switch kind {
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		priv = k
	case "ecdsa":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		priv = k
	}
	return writePrivateKey(t, path, priv)
}

func writePrivateKey(t testing.TB, path string, priv any) ssh.PublicKey {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return signer.PublicKey()
}

// NewClientKey writes a fresh unencrypted ed25519 key in OpenSSH format to
// dir/id_ed25519 (0600) and returns its path and public key.
func NewClientKey(t testing.TB, dir string) (privPath string, pub ssh.PublicKey) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	privPath = filepath.Join(dir, "id_ed25519")
	return privPath, writePrivateKey(t, privPath, k)
}

// WriteKnownHosts writes (replacing) a known_hosts file listing each
// server's ed25519 key as "[127.0.0.1]:PORT ssh-ed25519 ...".
func WriteKnownHosts(t testing.TB, path string, servers []*Server) {
	t.Helper()
	var b strings.Builder
	for _, s := range servers {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostPubKey))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
}
