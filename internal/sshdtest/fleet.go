package sshdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Fleet is many sshd processes started at once by StartFleet, for
// benchmarks that run outside a test (no testing.TB, no t.Cleanup).
type Fleet struct {
	Servers []*Server

	mu     sync.Mutex
	procs  []*fleetProc
	ports  map[int]bool // handed out, so two servers never probe the same port
	closed bool
}

type fleetProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartFleet starts n sshd processes under dir (dir/host-N each), as Start
// does, parallel at a time. Each sshd is in its own process group and is
// killed with SIGKILL when this process dies (Pdeathsig), so an interrupted
// benchmark leaves no listener behind; Close kills them all. On error the
// servers already started are killed.
func StartFleet(ctx context.Context, dir string, n, parallel int, clientPub ssh.PublicKey) (*Fleet, error) {
	if _, err := os.Stat(SSHDPath); err != nil {
		return nil, fmt.Errorf("sshdtest: %s not found; install it with: apt-get install -y openssh-server", SSHDPath)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("sshdtest: %w", err)
		}
	}
	f := &Fleet{ports: map[int]bool{}}
	authorized := ssh.MarshalAuthorizedKey(clientPub)
	for i := 1; i <= n; i++ {
		s, err := prepareServer(filepath.Join(dir, fmt.Sprintf("host-%d", i)), fmt.Sprintf("host-%d", i), authorized)
		if err != nil {
			return nil, err
		}
		f.Servers = append(f.Servers, s)
	}
	parallel = max(1, parallel)
	work := make(chan *Server)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				errs <- f.startServer(ctx, s)
			}
		}()
	}
	for _, s := range f.Servers {
		work <- s
	}
	close(work)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil {
			all = append(all, err)
		}
	}
	if err := errors.Join(all...); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// prepareServer writes a server's directory: home/, authorized_keys and host keys.
func prepareServer(root, name string, authorized []byte) (*Server, error) {
	s := &Server{Name: name, Root: root, Home: filepath.Join(root, "home")}
	if err := os.MkdirAll(s.Home, 0o700); err != nil {
		return nil, fmt.Errorf("sshdtest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "authorized_keys"), authorized, 0o600); err != nil {
		return nil, fmt.Errorf("sshdtest: %w", err)
	}
	var err error
	if s.HostPubKey, err = newHostKey(filepath.Join(root, "ssh_host_ed25519_key"), "ed25519"); err != nil {
		return nil, err
	}
	if s.ECDSAHostPubKey, err = newHostKey(filepath.Join(root, "ssh_host_ecdsa_key"), "ecdsa"); err != nil {
		return nil, err
	}
	return s, nil
}

func newHostKey(path, kind string) (ssh.PublicKey, error) {
	var priv any
	var err error
	switch kind {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("sshdtest: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, fmt.Errorf("sshdtest: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("sshdtest: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sshdtest: %w", err)
	}
	return signer.PublicKey(), nil
}

// startServer picks a port no other server of the fleet has and starts sshd
// on it, retrying when the port was taken meanwhile.
func (f *Fleet) startServer(ctx context.Context, s *Server) error {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		port, err := f.uniquePort()
		if err != nil {
			return fmt.Errorf("sshdtest: %w", err)
		}
		s.Port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = f.launch(ctx, s); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("sshdtest: starting sshd for %s: %w", s.Name, lastErr)
}

func (f *Fleet) uniquePort() (int, error) {
	for {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		f.mu.Lock()
		taken := f.ports[port]
		f.ports[port] = true
		f.mu.Unlock()
		if !taken {
			return port, nil
		}
	}
}

func (f *Fleet) launch(ctx context.Context, s *Server) error {
	cmd, logFile, logPath, err := s.sshdCommand()
	if err != nil {
		return err
	}
	defer logFile.Close()
	// Close kills its process group; it dies with this process too.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return errors.New("fleet closed")
	}
	if err := cmd.Start(); err != nil {
		f.mu.Unlock()
		return err
	}
	p := &fleetProc{cmd: cmd, exited: make(chan struct{})}
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	go func() { _ = cmd.Wait(); close(p.exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for !s.ready() {
		select {
		case <-p.exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("sshd exited:\n%s", log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return fmt.Errorf("sshd on %s did not answer within 30s", s.Addr)
		}
	}
	return nil
}

// Close kills every sshd of the fleet (each process group) and waits for them.
func (f *Fleet) Close() {
	f.mu.Lock()
	f.closed = true
	procs := f.procs
	f.procs = nil
	f.mu.Unlock()
	for _, p := range procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	for _, p := range procs {
		<-p.exited
	}
}

// NewFleetClientKey is NewClientKey without a testing.TB.
func NewFleetClientKey(dir string) (privPath string, pub ssh.PublicKey, err error) {
	privPath = filepath.Join(dir, "id_ed25519")
	pub, err = newHostKey(privPath, "ed25519")
	return privPath, pub, err
}

// WriteFleetKnownHosts is WriteKnownHosts without a testing.TB.
func WriteFleetKnownHosts(path string, servers []*Server) error {
	var b []byte
	for _, s := range servers {
		b = append(b, knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostPubKey)...)
		b = append(b, '\n')
	}
	return os.WriteFile(path, b, 0o600)
}
