package traffic

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/testenv"
)

const haproxyBin = "/usr/sbin/haproxy"

// lbCluster is one testenv SSH host shared by the package's tests: the
// load balancer host. Its commands run on this machine, so a socket a test
// creates here is the socket the host sees.
type lbCluster struct {
	env  *testenv.Cluster
	pool *transport.Pool
	host testenv.HostInfo
}

var (
	clusterOnce sync.Once
	shared      *lbCluster
	sharedErr   error
	sharedDir   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.pool.Close()
		shared.env.Close()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

func testCtx(t *testing.T) context.Context {
	return zerolog.Nop().WithContext(t.Context())
}

// requireTools skips (or in CI fails) when haproxy or socat is missing.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := os.Stat(haproxyBin); err != nil {
		missing = append(missing, "haproxy")
	}
	if _, err := exec.LookPath("socat"); err != nil {
		missing = append(missing, "socat")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed: `make test` installs it", strings.Join(missing, " and "))
	}
	t.Skipf("%s not installed (apt-get install -y %s, or run `make test`)", strings.Join(missing, " and "), strings.Join(missing, " "))
}

func lbConn(t *testing.T) (transport.Conn, string) {
	t.Helper()
	clusterOnce.Do(func() {
		ctx := zerolog.Nop().WithContext(context.Background())
		sharedDir, sharedErr = os.MkdirTemp("", "traffic-test-")
		if sharedErr != nil {
			return
		}
		env, err := testenv.Start(ctx, testenv.Options{Dir: sharedDir, Hosts: 1, Envs: []string{"staging"}})
		if err != nil {
			sharedErr = err
			return
		}
		pool, err := transport.NewPool(transport.Options{
			User:           "relctl",
			IdentityFile:   filepath.Join(sharedDir, testenv.ClientKeyFile),
			KnownHostsFile: filepath.Join(sharedDir, testenv.KnownHostsFile),
			HostKeyPolicy:  "strict",
			ConnectTimeout: 5 * time.Second,
			CommandTimeout: time.Minute,
		})
		if err != nil {
			env.Close()
			sharedErr = err
			return
		}
		shared = &lbCluster{env: env, pool: pool, host: env.Hosts()[0]}
	})
	if sharedErr != nil {
		t.Fatalf("starting the test cluster: %v", sharedErr)
	}
	conn, err := shared.pool.Get(testCtx(t), transport.Target{Name: shared.host.Name, Endpoint: transport.Endpoint{Address: shared.host.Address}})
	if err != nil {
		t.Fatal(err)
	}
	return conn, shared.host.Name
}

// testServer is one server of a test backend: an httptest server behind it.
type testServer struct {
	name     string
	weight   int
	disabled bool         // `disabled` in the configuration
	handler  http.Handler // nil: answers 200 with its name
}

type testBackend struct {
	name    string
	servers []testServer
}

// lb is a real haproxy started for one test, reached through the SSH host.
type lb struct {
	socket    string
	frontends map[string]string       // backend -> its frontend's host:port
	addrs     map[string]*net.TCPAddr // server name -> its httptest address
	rt        *Runtime
	conn      *recordingConn
}

// startHAProxy writes a configuration with one frontend per backend and
// starts haproxy in the foreground; it is killed when the test ends.
func startHAProxy(t *testing.T, backends ...testBackend) *lb {
	t.Helper()
	requireTools(t)
	dir := t.TempDir()
	l := &lb{
		socket:    filepath.Join(dir, "admin.sock"),
		frontends: map[string]string{},
		addrs:     map[string]*net.TCPAddr{},
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
    stats socket %s mode 600 level admin
    stats timeout 1m
defaults
    mode http
    timeout connect 5s
    timeout client 1m
    timeout server 1m
`, l.socket)
	for _, b := range backends {
		port := freePort(t)
		l.frontends[b.name] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		fmt.Fprintf(&cfg, "frontend fe_%s\n    bind %s\n    default_backend %s\n", b.name, l.frontends[b.name], b.name)
		fmt.Fprintf(&cfg, "backend %s\n    balance roundrobin\n", b.name)
		for _, s := range b.servers {
			h := s.handler
			if h == nil {
				name := s.name
				h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })
			}
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			addr := srv.Listener.Addr().(*net.TCPAddr)
			l.addrs[s.name] = addr
			fmt.Fprintf(&cfg, "    server %s %s weight %d", s.name, addr, s.weight)
			if s.disabled {
				cfg.WriteString(" disabled")
			}
			cfg.WriteString("\n")
		}
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })

	// t.Context ends just before cleanups run: that kills haproxy.
	cmd := exec.CommandContext(t.Context(), haproxyBin, "-f", cfgPath, "-db")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { <-exited })

	if err := waitForSocket(l.socket, exited); err != nil {
		log, _ := os.ReadFile(logFile.Name())
		t.Fatalf("haproxy: %v\nconfiguration:\n%s\nlog:\n%s", err, cfg.String(), log)
	}
	conn, host := lbConn(t)
	l.conn = &recordingConn{Conn: conn}
	l.rt = &Runtime{Conn: l.conn, Host: host, Socket: l.socket}
	return l
}

// waitForSocket waits until haproxy accepts on its admin socket.
func waitForSocket(path string, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before opening %s", path)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no admin socket at %s: %v", path, err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// recordingConn records every API command sent (socat's stdin) and lets a
// test act on each answer.
type recordingConn struct {
	transport.Conn

	mu       sync.Mutex
	commands []string
	// afterRun, when set, sees each command and its stdout once it ran.
	afterRun func(command string, stdout []byte)
}

func (c *recordingConn) Run(ctx context.Context, cmd string, opts transport.RunOptions) (*transport.Result, error) {
	var command string
	if opts.Stdin != nil {
		b, err := io.ReadAll(opts.Stdin)
		if err != nil {
			return nil, err
		}
		command = strings.TrimSpace(string(b))
		opts.Stdin = strings.NewReader(string(b))
	}
	c.mu.Lock()
	c.commands = append(c.commands, command)
	hook := c.afterRun
	c.mu.Unlock()
	res, err := c.Conn.Run(ctx, cmd, opts)
	if hook != nil && res != nil {
		hook(command, res.Stdout)
	}
	return res, err
}

func (c *recordingConn) sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.commands...)
}

func (c *recordingConn) setAfterRun(f func(command string, stdout []byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.afterRun = f
}
