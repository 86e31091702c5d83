package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// Options describe a cluster.
type Options struct {
	Dir   string   // where every file and host lives; created if missing
	Hosts int      // hosts per environment; default 3
	Envs  []string // default staging, production
	// Monit gives every host its own monit daemon (see HostInfo.MonitControl);
	// it requires monit to be installed (ErrMonitNotInstalled).
	Monit bool
	// Traffic adds to each environment E a load balancer E-lb (HAProxy in
	// front of the search hosts), app hosts E-app-1 and E-app-2 (clients of
	// the search hosts) and spare hosts E-next-1..N (the destination of a
	// host move); it requires HAProxy (ErrHAProxyNotInstalled).
	Traffic bool
}

// HostInfo describes one host of the cluster.
type HostInfo struct {
	Name        string `json:"name"`    // e.g. staging-1
	Env         string `json:"env"`     // e.g. staging
	Address     string `json:"address"` // 127.0.0.1:SSHPort
	SSHPort     int    `json:"ssh_port"`
	ServicePort int    `json:"service_port"` // the demo service's HTTP port (vars.port)
	Root        string `json:"root"`         // the host's filesystem: cwd and HOME of its commands
	BaseDir     string `json:"base_dir"`     // vars.base_dir: Root/srv/search

	// Set when the cluster runs monit (Options.Monit): the host's monit
	// control file (Root/monit/monitrc; `monit -c` it), the directory whose
	// *.monitrc it includes, and its httpd port on 127.0.0.1.
	MonitControl string `json:"monit_control,omitempty"`
	MonitConfDir string `json:"monit_confdir,omitempty"`
	MonitPort    int    `json:"monit_port,omitempty"`

	// What the host is for: RoleSearch, RoleSearchNext, RoleLB or RoleApp.
	// Empty in a testenv.json from before roles: those hosts were all search.
	Roles []string `json:"roles,omitempty"`

	// Set on a load balancer (RoleLB): its HAProxy frontend's port on
	// 127.0.0.1, and the admin socket and configuration of that HAProxy.
	LBPort        int    `json:"lb_port,omitempty"`
	HAProxySocket string `json:"haproxy_socket,omitempty"`
	HAProxyConfig string `json:"haproxy_config,omitempty"`

	// Set on an app host (RoleApp): the app's port on 127.0.0.1, its
	// directory (Root/app), its backends file and its restart script.
	AppPort    int    `json:"app_port,omitempty"`
	AppDir     string `json:"app_dir,omitempty"`
	AppConfig  string `json:"app_config,omitempty"`
	AppRestart string `json:"app_restart,omitempty"`
}

// HasRole reports whether the host has role; a host recorded before roles
// existed is a search host.
func (h HostInfo) HasRole(role string) bool {
	if len(h.Roles) == 0 {
		return role == RoleSearch
	}
	return slices.Contains(h.Roles, role)
}

// clone copies h so callers cannot change the cluster's own Roles.
func (h HostInfo) clone() HostInfo {
	h.Roles = slices.Clone(h.Roles)
	return h
}

// Cluster is a running set of SSH hosts on 127.0.0.1.
type Cluster struct {
	dir    string
	hosts  []*sshHost
	ctx    context.Context // the servers': Start's values, cancelled by Close
	cancel context.CancelFunc
	log    zerolog.Logger
	monit  bool
	// monitPIDs are the hosts' monit daemons; written only by Start.
	monitPIDs []int
	// haproxies run the load balancers (Options.Traffic); written only by Start.
	haproxies []*haproxyProcess

	closeOnce sync.Once
	closeErr  error
}

// maxHostsPerEnv bounds a cluster: 250 in-process SSH hosts per environment
// start in seconds on two cores (the console test deploys to 200).
const maxHostsPerEnv = 250

var envNameOK = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

func (o Options) normalize() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("testenv: a directory is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, err
	}
	o.Dir = dir
	if o.Hosts == 0 {
		o.Hosts = 3
	}
	if o.Hosts < 1 || o.Hosts > maxHostsPerEnv {
		return o, fmt.Errorf("testenv: hosts per environment must be between 1 and %d, got %d", maxHostsPerEnv, o.Hosts)
	}
	if len(o.Envs) == 0 {
		o.Envs = []string{"staging", "production"}
	}
	seen := map[string]bool{}
	for _, e := range o.Envs {
		if !envNameOK.MatchString(e) {
			return o, fmt.Errorf("testenv: environment name %q: use lower-case letters, digits, '-' and '_'", e)
		}
		if seen[e] {
			return o, fmt.Errorf("testenv: environment %q given twice", e)
		}
		seen[e] = true
	}
	return o, nil
}

// Start writes the cluster's files into opts.Dir and starts every host's SSH
// server in this process. It returns once every host answers SSH. Keys and
// ports of an earlier cluster in the same directory are reused when possible.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if st, err := queryDaemon(ctx, opts.Dir, controlRequest{Op: "status"}); err == nil {
		return nil, fmt.Errorf("testenv: a cluster is already running for %s (pid %d)", opts.Dir, st.PID)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	log := zerolog.Ctx(ctx).With().Str("testenv", opts.Dir).Logger()
	tools, err := findTools(opts)
	if err != nil {
		return nil, err
	}
	clientKey, err := writeClientKey(opts.Dir)
	if err != nil {
		return nil, err
	}

	// Servers outlive Start's ctx (it may carry a deadline) but keep its values.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Cluster{dir: opts.Dir, ctx: sctx, cancel: cancel, log: log, monit: opts.Monit}
	if err := c.startHosts(opts, clientKey); err != nil {
		c.Close()
		return nil, err
	}
	infos := c.Hosts()
	if err := c.writeFiles(opts, clientKey.PublicKey(), infos); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.startServices(ctx, opts, tools, infos); err != nil {
		c.Close()
		return nil, err
	}
	log.Info().Int("hosts", len(infos)).Msg("testenv cluster started")
	return c, nil
}

// toolPaths are the programs a cluster's options need besides its own
// servers: found before anything starts, so a missing one fails fast.
type toolPaths struct{ monit, haproxy string }

// findTools finds the programs opts need.
func findTools(opts Options) (toolPaths, error) {
	var t toolPaths
	var err error
	if opts.Monit {
		if t.monit, err = findMonit(); err != nil {
			return t, err
		}
	}
	if opts.Traffic {
		if t.haproxy, err = findHAProxy(); err != nil {
			return t, err
		}
	}
	return t, nil
}

// startHosts starts every host's SSH server, reusing the keys and ports an
// earlier cluster in the same directory recorded when it can.
func (c *Cluster) startHosts(opts Options, clientKey ssh.Signer) error {
	prev := map[string]HostInfo{}
	if st, err := readState(opts.Dir); err == nil {
		for _, h := range st.Hosts {
			prev[h.Name] = h
		}
	}
	usedPorts := map[int]bool{}
	for _, env := range opts.Envs {
		for _, spec := range hostSpecs(env, opts) {
			if err := c.startHost(opts, env, spec, prev[spec.name], usedPorts, clientKey); err != nil {
				return err
			}
		}
	}
	return nil
}

// startHost creates host spec of env (its root, host key and ports) and
// starts its SSH server.
func (c *Cluster) startHost(opts Options, env string, spec hostSpec, prev HostInfo, usedPorts map[int]bool, clientKey ssh.Signer) error {
	name := spec.name
	root := filepath.Join(opts.Dir, hostsDir, name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	hostKey, err := loadOrCreateKey(filepath.Join(opts.Dir, hostKeysDir, name), "relctl-testenv "+name)
	if err != nil {
		return fmt.Errorf("%s: host key: %w", name, err)
	}
	ln, err := listenLoopback(prev.SSHPort, usedPorts)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sshPort := ln.Addr().(*net.TCPAddr).Port
	info := HostInfo{
		Name:    name,
		Env:     env,
		Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(sshPort)),
		SSHPort: sshPort,
		Root:    root,
		Roles:   []string{spec.role},
	}
	if err := describeHost(&info, prev, opts, usedPorts); err != nil {
		ln.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	h := newSSHHost(c.ctx, info, opts.Dir, hostKey, clientKey.PublicKey(), c.log)
	h.mu.Lock()
	h.listen(ln)
	h.mu.Unlock()
	c.hosts = append(c.hosts, h)
	return nil
}

// writeFiles writes what relctl needs to reach the hosts (known_hosts,
// relctl.toml, allowed signers, a playbook, artifacts) and the cluster's
// state file.
func (c *Cluster) writeFiles(opts Options, clientKey ssh.PublicKey, infos []HostInfo) error {
	for _, write := range []func() error{
		func() error { return writeKnownHosts(opts.Dir, c.hosts) },
		func() error { return writeConfig(opts.Dir, opts.Envs, infos, opts.Traffic) },
		func() error { return writeAllowedSigners(opts.Dir, clientKey) },
		func() error { return writePlaybook(opts.Dir, opts.Monit, opts.Traffic) },
		func() error { return writeArtifacts(opts.Dir) },
		func() error { return writeState(opts.Dir, &stateFile{Dir: opts.Dir, Monit: opts.Monit, Hosts: infos}) },
	} {
		if err := write(); err != nil {
			return err
		}
	}
	return nil
}

// startServices waits for every host to answer SSH, then starts what runs
// beside the SSH servers: monit daemons, load balancers and apps.
func (c *Cluster) startServices(ctx context.Context, opts Options, tools toolPaths, infos []HostInfo) error {
	for _, h := range infos {
		if err := checkSSHBanner(ctx, h.Address); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	if opts.Monit {
		// Only the search-like hosts run a service for monit to supervise.
		supervised := slices.DeleteFunc(slices.Clone(infos), func(h HostInfo) bool { return h.MonitControl == "" })
		if err := c.startMonits(ctx, tools.monit, supervised); err != nil {
			return err
		}
	}
	if opts.Traffic {
		if err := c.startLBs(ctx, tools.haproxy, infos); err != nil {
			return err
		}
		if err := c.startApps(ctx, infos); err != nil {
			return err
		}
	}
	return nil
}

// hostSpec is one host Start creates: its name and role.
type hostSpec struct{ name, role string }

// hostSpecs are env's hosts in order: E-1..N, then with Traffic the spares
// E-next-1..N, the load balancer E-lb and the app hosts E-app-1..
func hostSpecs(env string, opts Options) []hostSpec {
	var out []hostSpec
	for i := 1; i <= opts.Hosts; i++ {
		out = append(out, hostSpec{fmt.Sprintf("%s-%d", env, i), RoleSearch})
	}
	if !opts.Traffic {
		return out
	}
	for i := 1; i <= opts.Hosts; i++ {
		out = append(out, hostSpec{fmt.Sprintf("%s-next-%d", env, i), RoleSearchNext})
	}
	out = append(out, hostSpec{env + "-lb", RoleLB})
	for i := 1; i <= AppsPerEnv; i++ {
		out = append(out, hostSpec{fmt.Sprintf("%s-app-%d", env, i), RoleApp})
	}
	return out
}

// describeHost fills in what info's role needs: ports (prev's when free),
// base_dir and the paths of the host's own daemons. It first stops what a
// killed earlier run of the same DIR left on this host, so its ports are
// free to reuse.
func describeHost(info *HostInfo, prev HostInfo, opts Options, used map[int]bool) error {
	root := info.Root
	var err error
	switch info.Roles[0] {
	case RoleSearch, RoleSearchNext:
		if info.ServicePort, err = freeLoopbackPort(prev.ServicePort, used); err != nil {
			return err
		}
		info.BaseDir = filepath.Join(root, "srv", "search")
		if opts.Monit {
			if info.MonitPort, err = freeLoopbackPort(prev.MonitPort, used); err != nil {
				return err
			}
			info.MonitControl = filepath.Join(monitDir(root), MonitControlFile)
			info.MonitConfDir = filepath.Join(monitDir(root), MonitConfDirName)
		}
	case RoleLB:
		stopStaleHAProxy(root, opts.Dir)
		if info.LBPort, err = freeLoopbackPort(prev.LBPort, used); err != nil {
			return err
		}
		info.BaseDir = filepath.Join(root, "srv", "lb")
		info.HAProxySocket = filepath.Join(haproxyDir(root), HAProxySocketFile)
		info.HAProxyConfig = filepath.Join(haproxyDir(root), HAProxyConfigFile)
		// relctl keeps its lock and history under base_dir; no deploy creates it here.
		return os.MkdirAll(info.BaseDir, 0o755)
	case RoleApp:
		info.AppDir = filepath.Join(root, appDirName)
		stopStaleApp(info.AppDir, opts.Dir)
		if info.AppPort, err = freeLoopbackPort(prev.AppPort, used); err != nil {
			return err
		}
		info.BaseDir = filepath.Join(root, "srv", "app")
		info.AppConfig = filepath.Join(info.AppDir, AppConfigFile)
		info.AppRestart = filepath.Join(info.AppDir, AppRestartFile)
		return os.MkdirAll(info.BaseDir, 0o755)
	}
	return nil
}

// listenLoopback listens on 127.0.0.1:want when it is free, else on any free port.
func listenLoopback(want int, used map[int]bool) (net.Listener, error) {
	if want > 0 && !used[want] {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(want))); err == nil {
			used[want] = true
			return ln, nil
		}
	}
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		if !used[p] {
			used[p] = true
			return ln, nil
		}
		ln.Close()
	}
	return nil, errors.New("no free port on 127.0.0.1")
}

// freeLoopbackPort picks a port for a service that starts later. It is
// taken below the kernel's ephemeral range (ip_local_port_range), where no
// other program's port-0 listener or outgoing connection can be given it
// between now and the service's start (tests run packages in parallel).
func freeLoopbackPort(want int, used map[int]bool) (int, error) {
	if want > 0 && !used[want] && portFree(want) {
		used[want] = true
		return want, nil
	}
	low, _ := ephemeralRange()
	const first = 20000
	if low <= first+1000 {
		// An unusual ephemeral range: fall back to asking the kernel.
		ln, err := listenLoopback(0, used)
		if err != nil {
			return 0, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		return p, nil
	}
	span := low - first
	start := rand.IntN(span)
	for i := range span {
		p := first + (start+i)%span
		if !used[p] && portFree(p) {
			used[p] = true
			return p, nil
		}
	}
	return 0, errors.New("no free port on 127.0.0.1 below the ephemeral range")
}

// portFree says whether a listener can bind port on 127.0.0.1 now.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// ephemeralRange is the kernel's range for port-0 listeners and outgoing
// connections (Linux; the common default elsewhere).
func ephemeralRange() (low, high int) {
	low, high = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return low, high
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if l, err := strconv.Atoi(f[0]); err == nil {
			low = l
		}
		if h, err := strconv.Atoi(f[1]); err == nil {
			high = h
		}
	}
	return low, high
}

// checkSSHBanner confirms that addr speaks SSH without a handshake, so
// readiness checks do not count as handshakes.
func checkSSHBanner(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read SSH banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("unexpected SSH banner %q", line)
	}
	return nil
}

// Dir is the cluster's absolute directory.
func (c *Cluster) Dir() string { return c.dir }

// Hosts lists every host, environments in order, then by number.
func (c *Cluster) Hosts() []HostInfo {
	out := make([]HostInfo, len(c.hosts))
	for i, h := range c.hosts {
		out[i] = h.info.clone()
	}
	return out
}

// Handshakes counts, per host name, the SSH handshakes that succeeded.
func (c *Cluster) Handshakes() map[string]int {
	out := make(map[string]int, len(c.hosts))
	for _, h := range c.hosts {
		out[h.info.Name] = int(h.handshakes.Load())
	}
	return out
}

func (c *Cluster) host(name string) (*sshHost, error) {
	names := make([]string, 0, len(c.hosts))
	for _, h := range c.hosts {
		if h.info.Name == name {
			return h, nil
		}
		names = append(names, h.info.Name)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("testenv: unknown host %q (hosts: %s)", name, strings.Join(names, ", "))
}

// Close stops every host and every process started through them, services
// included, so nothing is left behind. Files in the directory stay.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs *multierror.Error
		for _, h := range c.hosts {
			h.close()
		}
		c.stopMonits()
		if err := c.stopLBs(); err != nil {
			errs = multierror.Append(errs, err)
		}
		c.cancel()
		if err := sweepMarked(c.dir); err != nil {
			errs = multierror.Append(errs, err)
		}
		done := make(chan struct{})
		go func() {
			for _, h := range c.hosts {
				h.wg.Wait()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second): // only against a hang
			errs = multierror.Append(errs, errors.New("testenv: SSH handlers did not stop within 30s"))
		}
		c.closeErr = errs.ErrorOrNil()
	})
	return c.closeErr
}
