package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"
)

// Roles of the hosts a cluster with Options.Traffic adds to each environment.
const (
	RoleSearch     = "search"      // E-1..N: the demo search service
	RoleSearchNext = "search-next" // E-next-1..N: spares, the destination of a host move
	RoleLB         = "lb"          // E-lb: HAProxy in front of the search hosts
	RoleApp        = "app"         // E-app-1, E-app-2: clients of the search hosts
)

// HAProxyBin is the HAProxy testenv runs on every E-lb host.
const HAProxyBin = "/usr/sbin/haproxy"

// HAProxyBackend is the backend of every E-lb's HAProxy: one server per
// search and spare host, named after the host.
const HAProxyBackend = "search"

// Files of an E-lb host's HAProxy, under DIR/hosts/E-lb/haproxy/.
const (
	haproxyDirName      = "haproxy"
	HAProxyConfigFile   = "haproxy.cfg"
	HAProxySocketFile   = "admin.sock"
	HAProxyStateFile    = "server-state" // `show servers state`, loaded at start
	HAProxyLogFile      = "haproxy.log"
	haproxyPIDFile      = "haproxy.pid"
	haproxyStateVersion = "1"
)

// ErrHAProxyNotInstalled: Options.Traffic is set but HAProxyBin is missing.
var ErrHAProxyNotInstalled = errors.New("haproxy is not installed at " + HAProxyBin + " (apt-get install -y haproxy, or scripts/install-test-deps.sh)")

// haproxySearchPath is HAProxyBin; tests point it elsewhere to play a
// machine without HAProxy.
var haproxySearchPath = HAProxyBin

func findHAProxy() (string, error) {
	fi, err := os.Stat(haproxySearchPath)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", ErrHAProxyNotInstalled
	}
	return haproxySearchPath, nil
}

func haproxyDir(root string) string { return filepath.Join(root, haproxyDirName) }

// haproxyQuotable rejects what HAProxy's config parser would split or
// expand: whitespace, quotes, backslashes, '#' and '$'.
func haproxyQuotable(p string) error {
	if strings.ContainsAny(p, " \t\r\n\"'\\#$") {
		return fmt.Errorf("testenv: HAProxy cannot use a path containing whitespace, quotes, '\\', '#' or '$': %q", p)
	}
	return nil
}

// haproxyServer is one server line of the search backend.
type haproxyServer struct {
	name  string
	port  int
	spare bool // starts in maintenance ("disabled")
}

// lbServers are the servers of env's backend: the search hosts, then the spares.
func lbServers(env string, hosts []HostInfo) []haproxyServer {
	var out []haproxyServer
	for _, role := range []string{RoleSearch, RoleSearchNext} {
		for _, h := range hosts {
			if h.Env == env && h.HasRole(role) {
				out = append(out, haproxyServer{name: h.Name, port: h.ServicePort, spare: role == RoleSearchNext})
			}
		}
	}
	return out
}

// haproxyConfig is the configuration of lb's HAProxy: a foreground process
// (testenv is its parent), its admin socket and server state file in the
// host's haproxy directory, health checks on every search host.
func haproxyConfig(lb HostInfo, servers []haproxyServer) string {
	dir := haproxyDir(lb.Root)
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by relctl testenv: the load balancer of %s.\n", lb.Env)
	b.WriteString("global\n")
	fmt.Fprintf(&b, "    stats socket %s mode 600 level admin\n", lb.HAProxySocket)
	fmt.Fprintf(&b, "    server-state-file %s\n", filepath.Join(dir, HAProxyStateFile))
	// HAProxy writes no pid file in the foreground (-db); testenv writes it.
	fmt.Fprintf(&b, "    pidfile %s\n", filepath.Join(dir, haproxyPIDFile))
	// No retries and no redispatch: a request sent to a host that is being
	// switched fails visibly, so the tests see what relctl's cutover does.
	b.WriteString(`
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global
`)
	fmt.Fprintf(&b, "\nfrontend fe\n    bind 127.0.0.1:%d\n    default_backend %s\n", lb.LBPort, HAProxyBackend)
	fmt.Fprintf(&b, "\nbackend %s\n", HAProxyBackend)
	b.WriteString("    option httpchk GET /health\n")
	b.WriteString("    http-check expect status 200\n")
	b.WriteString("    balance roundrobin\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "    server %s 127.0.0.1:%d check inter 300ms fall 2 rise 1 weight 100", s.name, s.port)
		if s.spare {
			b.WriteString(" disabled")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// haproxyProcess is one E-lb's HAProxy, a child of this process.
type haproxyProcess struct {
	info   HostInfo
	pid    int
	exited chan struct{} // closed once the child is reaped
}

// startHAProxy writes lb's configuration and starts HAProxy in the
// foreground, marked like the hosts' commands so Down finds it should this
// process die without stopping it. It returns once the admin socket answers.
func startHAProxy(ctx context.Context, haproxyBin, marker string, lb HostInfo, servers []haproxyServer, log zerolog.Logger) (*haproxyProcess, error) {
	dir := haproxyDir(lb.Root)
	cfgPath := filepath.Join(dir, HAProxyConfigFile)
	for _, p := range []string{dir, lb.HAProxySocket} {
		if err := haproxyQuotable(p); err != nil {
			return nil, err
		}
	}
	if len(lb.HAProxySocket) >= 108 { // sun_path
		return nil, fmt.Errorf("testenv: directory path too long for HAProxy's admin socket: %s", lb.HAProxySocket)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(cfgPath, []byte(haproxyConfig(lb, servers)), 0o644); err != nil {
		return nil, err
	}
	statePath := filepath.Join(dir, HAProxyStateFile)
	if err := keepMatchingServerState(statePath, servers); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath, err)
	}
	os.Remove(lb.HAProxySocket) // a socket left by a killed HAProxy

	logPath := filepath.Join(dir, HAProxyLogFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(haproxyBin, "-db", "-f", cfgPath)
	cmd.Dir = lb.Root
	cmd.Env = []string{"HOME=" + lb.Root, "PATH=" + hostPATH, "LANG=C", MarkerEnv + "=" + marker}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C meant for the caller must not kill it
	// before Close saved its server state.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", haproxyBin, err)
	}
	p := &haproxyProcess{info: lb, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		cmd.Wait() // reaps it, however it ends
		close(p.exited)
	}()
	if err := writeFileAtomic(filepath.Join(dir, haproxyPIDFile), []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		p.stop()
		return nil, err
	}

	deadline := time.Now().Add(30 * time.Second) // only against a hang
	for {
		_, err := RunHAProxyCommand(ctx, lb.HAProxySocket, "show info")
		if err == nil {
			log.Debug().Str("host", lb.Name).Int("pid", p.pid).Int("port", lb.LBPort).Msg("haproxy started")
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("haproxy -db -f %s exited during start-up; last lines of %s:\n%s", cfgPath, logPath, logTail(logPath, 10))
		default:
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("haproxy's admin socket %s did not answer: %w; last lines of %s:\n%s", lb.HAProxySocket, err, logPath, logTail(logPath, 10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends HAProxy: TERM, then KILL should it outlive a generous wait.
func (p *haproxyProcess) stop() {
	syscall.Kill(p.pid, syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(10 * time.Second):
	}
	syscall.Kill(p.pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// saveState writes `show servers state` to the server state file, as an
// operator does before a reload, so a later start of the same DIR keeps
// which servers are in maintenance.
func (p *haproxyProcess) saveState(ctx context.Context) error {
	state, err := RunHAProxyCommand(ctx, p.info.HAProxySocket, "show servers state")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(state, haproxyStateVersion+"\n") {
		return fmt.Errorf("unexpected answer to show servers state: %.200q", state)
	}
	return writeFileAtomic(filepath.Join(haproxyDir(p.info.Root), HAProxyStateFile), []byte(state), 0o644)
}

// keepMatchingServerState drops from a saved server state every server that
// is not in servers with the same port (a re-`up` may have moved a port, and
// the state would carry the old one), and writes an empty state when there
// is none, which HAProxy would warn about.
func keepMatchingServerState(path string, servers []haproxyServer) error {
	want := map[string]int{}
	for _, s := range servers {
		want[s.name] = s.port
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 2 || lines[0] != haproxyStateVersion || !strings.HasPrefix(lines[1], "# ") {
		lines = []string{haproxyStateVersion, "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"}
	}
	header := strings.Fields(strings.TrimPrefix(lines[1], "# "))
	col := func(name string) int {
		for i, h := range header {
			if h == name {
				return i
			}
		}
		return -1
	}
	be, srv, port := col("be_name"), col("srv_name"), col("srv_port")
	kept := lines[:2:2]
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if be < 0 || srv < 0 || port < 0 || len(f) <= max(be, srv, port) {
			continue
		}
		if p, ok := want[f[srv]]; ok && f[be] == HAProxyBackend && f[port] == strconv.Itoa(p) {
			kept = append(kept, l)
		}
	}
	return writeFileAtomic(path, []byte(strings.Join(kept, "\n")+"\n"), 0o644)
}

// stopStaleHAProxy stops an HAProxy an earlier run of this DIR left behind
// (its testenv was killed): it would hold the LB port.
func stopStaleHAProxy(root, marker string) {
	if pid := readPID(filepath.Join(haproxyDir(root), haproxyPIDFile)); pid > 0 && isMarked(pid, marker) {
		stopPID(pid)
	}
}

// startLBs starts the HAProxy of every E-lb host. Those that started are
// kept even on error, for Close.
func (c *Cluster) startLBs(ctx context.Context, haproxyBin string, infos []HostInfo) error {
	var errs *multierror.Error
	for _, h := range infos {
		if !h.HasRole(RoleLB) {
			continue
		}
		p, err := startHAProxy(ctx, haproxyBin, c.dir, h, lbServers(h.Env, infos), c.log)
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s: %w", h.Name, err))
			continue
		}
		c.haproxies = append(c.haproxies, p)
	}
	return errs.ErrorOrNil()
}

// stopLBs saves each HAProxy's server state, then stops it.
func (c *Cluster) stopLBs() error {
	var errs *multierror.Error
	for _, p := range c.haproxies {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		if err := p.saveState(ctx); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s: save HAProxy server state: %w", p.info.Name, err))
		}
		cancel()
		p.stop()
	}
	return errs.ErrorOrNil()
}

// LB returns env's load balancer host (E-lb); false without Options.Traffic.
func (c *Cluster) LB(env string) (HostInfo, bool) {
	for _, h := range c.hosts {
		if h.info.Env == env && h.info.HasRole(RoleLB) {
			return h.info.clone(), true
		}
	}
	return HostInfo{}, false
}

// HostsWithRole lists env's hosts with role, in order.
func (c *Cluster) HostsWithRole(env, role string) []HostInfo {
	var out []HostInfo
	for _, h := range c.hosts {
		if h.info.Env == env && h.info.HasRole(role) {
			out = append(out, h.info.clone())
		}
	}
	return out
}

// HAProxyCommand runs one runtime API command (e.g. "show servers state
// search") on env's load balancer, straight on its admin socket, and returns
// HAProxy's answer.
func (c *Cluster) HAProxyCommand(ctx context.Context, env, cmd string) (string, error) {
	lb, ok := c.LB(env)
	if !ok {
		return "", fmt.Errorf("testenv: environment %q has no load balancer (start the cluster with Options.Traffic)", env)
	}
	out, err := RunHAProxyCommand(ctx, lb.HAProxySocket, cmd)
	if err != nil {
		return "", fmt.Errorf("%s: %w", lb.Name, err)
	}
	return out, nil
}

// RunHAProxyCommand sends one command to the HAProxy admin socket at
// socket and returns the answer (HAProxy closes the connection after it).
func RunHAProxyCommand(ctx context.Context, socket, cmd string) (string, error) {
	if cmd == "" || strings.ContainsAny(cmd, "\r\n") {
		return "", fmt.Errorf("haproxy runtime API: one command on one line, got %q", cmd)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API: %w", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API: %q: %w", cmd, err)
	}
	var b strings.Builder
	if _, err := io.Copy(&b, bufio.NewReader(conn)); err != nil {
		return "", fmt.Errorf("haproxy runtime API: %q: %w", cmd, err)
	}
	return b.String(), nil
}
