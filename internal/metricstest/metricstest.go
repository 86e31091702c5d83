// Package metricstest starts real metrics servers on 127.0.0.1 for tests
// and the local cluster: Debian's prometheus, redis-server and memcached,
// each a private process with its own free port and files under a
// directory of the caller's, never the system service; and an Exporter
// that serves /metrics in the text format for Prometheus to scrape.
//
// StartRedis, StartMemcached and StartPrometheus take a context and a
// directory and return a *Server (or *PrometheusServer) to Close; Redis,
// Memcached and Prometheus do the same for a test: they install a missing
// package with apt-get when running as root, skip the test when it is
// still missing (fail it under CI=true), and close the server at cleanup.
package metricstest

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
	"sync"
	"syscall"
	"testing"
	"time"
)

// Where Debian's packages put the servers.
const (
	RedisServerPath = "/usr/bin/redis-server"
	MemcachedPath   = "/usr/bin/memcached"
	PrometheusPath  = "/usr/bin/prometheus"
)

// StartTimeout bounds how long a server may take to answer after start.
const StartTimeout = 30 * time.Second

// ErrNotInstalled: the server's binary is missing; the error names the
// Debian package to install.
var ErrNotInstalled = errors.New("not installed")

// Server is one running server process.
type Server struct {
	Name string // "redis-server", "memcached", "prometheus"
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string // its files: config, data, log

	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	once    sync.Once
}

// Close kills the server (its whole process group) and waits for it. It
// may be called more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	})
}

// Log is what the server has printed so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// launch describes one server for start.
type launch struct {
	name, bin, pkg string
	dir            string
	// args returns the command line (and writes any config file) for port.
	args func(port int) ([]string, error)
	// ready reports whether the server answers at addr.
	ready func(ctx context.Context, addr string) bool
}

// start runs l on a free port, retrying with another port when the server
// exits before answering (another process took the port between the probe
// and the server's bind).
func start(ctx context.Context, l launch) (*Server, error) {
	if _, err := os.Stat(l.bin); err != nil {
		return nil, fmt.Errorf("%s: %s %w (apt-get install -y %s, or scripts/install-test-deps.sh)", l.name, l.bin, ErrNotInstalled, l.pkg)
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", l.name, err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
		s, err := launchOnce(ctx, l, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%s: %w", l.name, lastErr)
}

func launchOnce(ctx context.Context, l launch, port int) (*Server, error) {
	args, err := l.args(port)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Name: l.name, Port: port, Dir: l.dir,
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		logPath: filepath.Join(l.dir, l.name+".log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	s.cmd = exec.Command(l.bin, args...)
	s.cmd.Dir = l.dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// Its own process group, so Close kills it without touching ours; and
	// killed with this process, so an interrupted test leaves no listener.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()

	deadline := time.Now().Add(StartTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := l.ready(rctx, s.Addr)
		cancel()
		if ok {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("exited before answering on %s:\n%s", s.Addr, s.Log())
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("did not answer on %s within %s:\n%s", s.Addr, StartTimeout, s.Log())
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// askLine sends request to addr and reports whether the first line of the
// answer starts with one of want.
func askLine(ctx context.Context, addr, request string, want ...string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte(request)); err != nil {
		return false
	}
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	for _, w := range want {
		if strings.HasPrefix(string(buf[:n]), w) {
			return true
		}
	}
	return false
}

var (
	installMu   sync.Mutex
	installDone = map[string]bool{}
)

// Require makes sure bin is installed, installing the Debian package pkg
// with apt-get when it is missing and the test runs as root (once per
// package and process). When it is still missing the test is skipped, or
// failed under CI=true. Redis, Memcached and Prometheus call it; tests that
// start servers with the Start functions call it first.
func Require(t testing.TB, bin, pkg string) {
	t.Helper()
	if _, err := os.Stat(bin); err == nil {
		return
	}
	installMu.Lock()
	if !installDone[pkg] && os.Geteuid() == 0 {
		installDone[pkg] = true
		for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", pkg}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("metricstest: apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	installMu.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("metricstest: %s is not installed and could not be (apt-get install -y %s): CI must run the tests against the real server", bin, pkg)
	}
	t.Skipf("metricstest: %s is not installed (as root: apt-get install -y %s, or scripts/install-test-deps.sh)", bin, pkg)
}

// forTest registers s's Close at cleanup, with its log when the test failed.
func forTest(t testing.TB, s *Server) {
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("metricstest: %s on %s, log:\n%s", s.Name, s.Addr, s.Log())
		}
	})
}

// testContext bounds a test helper's start.
func testContext(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), 2*StartTimeout)
}
