package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"
)

// daemonEnv marks the daemon process Up spawned, so Down signals the right
// pid even when the socket no longer answers (pids get reused).
const daemonEnv = "RELCTL_TESTENV_DAEMON"

// ErrNotRunning: no daemon answers on DIR/testenv.sock.
var ErrNotRunning = errors.New("no testenv daemon is running")

// Status is what `relctl testenv status` shows.
type Status struct {
	Dir     string       `json:"dir"`
	PID     int          `json:"pid"` // the daemon's; 0 when none runs
	Running bool         `json:"running"`
	Monit   bool         `json:"monit"`             // every host runs its own monit daemon
	Traffic bool         `json:"traffic,omitempty"` // load balancers, app hosts and spares (Options.Traffic)
	Hosts   []HostStatus `json:"hosts"`
}

// hasLB is how a status read from testenv.json knows Options.Traffic.
func hasLB(hosts []HostInfo) bool {
	return slices.ContainsFunc(hosts, func(h HostInfo) bool { return h.HasRole(RoleLB) })
}

// HostStatus is one host as the daemon sees it.
type HostStatus struct {
	HostInfo
	SSHUp      bool      `json:"ssh_up"`
	Handshakes int       `json:"handshakes"`
	Faults     FaultSpec `json:"faults"` // active faults; zero when none
	Held       int       `json:"held"`   // commands held by a HangStep fault now
}

type controlRequest struct {
	Op   string `json:"op"` // status | fault
	Host string `json:"host,omitempty"`
	// With Faults: replace the host's faults. Without: set only DropSSH
	// to SSHDown (what older clients send).
	SSHDown bool       `json:"ssh_down,omitempty"`
	Faults  *FaultSpec `json:"faults,omitempty"`
}

type controlResponse struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

func (c *Cluster) status() *Status {
	st := &Status{Dir: c.dir, PID: os.Getpid(), Running: true, Monit: c.monit, Traffic: hasLB(c.Hosts())}
	for _, h := range c.hosts {
		st.Hosts = append(st.Hosts, HostStatus{HostInfo: h.info.clone(), SSHUp: h.sshUp(), Handshakes: int(h.handshakes.Load()), Faults: h.faults(), Held: int(h.held.Load())})
	}
	return st
}

func absDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("testenv: a directory is required")
	}
	return filepath.Abs(dir)
}

func socketPath(dir string) (string, error) {
	p := filepath.Join(dir, SocketFile)
	if len(p) >= 108 { // sun_path
		return "", fmt.Errorf("testenv: directory path too long for a unix socket: %s", p)
	}
	return p, nil
}

// Serve runs a cluster as a daemon until ctx is cancelled: it starts the
// hosts, writes DIR/testenv.json and answers status and fault requests on
// DIR/testenv.sock; then it stops everything (Close).
func Serve(ctx context.Context, opts Options) (err error) {
	opts, err = opts.normalize()
	if err != nil {
		return err
	}
	sock, err := socketPath(opts.Dir)
	if err != nil {
		return err
	}
	log := zerolog.Ctx(ctx)
	c, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			err = multierror.Append(err, cerr).ErrorOrNil()
		}
		log.Info().Str("dir", opts.Dir).Msg("testenv stopped")
	}()

	// Start found no daemon answering, so a socket file here is stale.
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	defer ln.Close()
	if err := os.Chmod(sock, 0o600); err != nil {
		return err
	}
	if err := writeState(opts.Dir, &stateFile{Dir: opts.Dir, PID: os.Getpid(), Monit: opts.Monit, Hosts: c.Hosts()}); err != nil {
		return err
	}
	defer writeState(opts.Dir, &stateFile{Dir: opts.Dir, Monit: opts.Monit, Hosts: c.Hosts()})

	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go c.serveControl(conn)
		}
	}()
	log.Info().Str("dir", opts.Dir).Int("pid", os.Getpid()).Int("hosts", len(c.hosts)).Msg("testenv ready")
	<-ctx.Done()
	log.Info().Str("dir", opts.Dir).Msg("testenv stopping")
	return nil
}

func (c *Cluster) serveControl(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var req controlRequest
	var resp controlResponse
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	switch {
	case err != nil:
		resp.Error = "bad request: " + err.Error()
	case req.Op == "status":
		resp.OK, resp.Status = true, c.status()
	case req.Op == "fault":
		var err error
		if req.Faults != nil {
			err = c.SetFault(req.Host, *req.Faults)
		} else {
			err = c.SetSSHDown(req.Host, req.SSHDown)
		}
		if err != nil {
			resp.Error = err.Error()
		} else {
			resp.OK, resp.Status = true, c.status()
		}
	default:
		resp.Error = fmt.Sprintf("unknown request %q", req.Op)
	}
	b, _ := json.Marshal(resp) // plain data always marshals
	conn.Write(append(b, '\n'))
}

// queryDaemon sends one request to the daemon of dir; ErrNotRunning when
// nothing answers.
func queryDaemon(ctx context.Context, dir string, req controlRequest) (*Status, error) {
	sock, err := socketPath(dir)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("%w for %s", ErrNotRunning, dir)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%w for %s: %v", ErrNotRunning, dir, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("%w for %s: no answer: %v", ErrNotRunning, dir, err)
	}
	var resp controlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("testenv daemon for %s: bad answer: %w", dir, err)
	}
	if !resp.OK {
		return nil, errors.New(resp.Error)
	}
	return resp.Status, nil
}

// GetStatus reports the daemon of dir and its hosts. When none runs,
// Running is false and the hosts (if any were ever started) come from
// DIR/testenv.json with SSHUp false.
func GetStatus(ctx context.Context, dir string) (*Status, error) {
	dir, err := absDir(dir)
	if err != nil {
		return nil, err
	}
	st, err := queryDaemon(ctx, dir, controlRequest{Op: "status"})
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, ErrNotRunning) {
		return nil, err
	}
	out := &Status{Dir: dir}
	saved, err := readState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out.Monit = saved.Monit
	out.Traffic = hasLB(saved.Hosts)
	for _, h := range saved.Hosts {
		out.Hosts = append(out.Hosts, HostStatus{HostInfo: h})
	}
	return out, nil
}

// Fault sets or clears only the "SSH port closed" fault (DropSSH) on one
// host of the running daemon of dir; its other faults stay.
func Fault(ctx context.Context, dir, host string, sshDown bool) error {
	return sendFault(ctx, dir, controlRequest{Op: "fault", Host: host, SSHDown: sshDown})
}

// SetHostFault replaces the faults of one host of the running daemon of
// dir, as Cluster.SetFault does; FaultSpec{} clears them.
func SetHostFault(ctx context.Context, dir, host string, f FaultSpec) error {
	if err := f.validate(); err != nil {
		return err
	}
	return sendFault(ctx, dir, controlRequest{Op: "fault", Host: host, Faults: &f})
}

func sendFault(ctx context.Context, dir string, req controlRequest) error {
	dir, err := absDir(dir)
	if err != nil {
		return err
	}
	_, err = queryDaemon(ctx, dir, req)
	if errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("testenv: no cluster is running for %s (start one with `relctl testenv up`)", dir)
	}
	return err
}

// MonitFlag is the flag Up adds to serveArgv when Options.Monit is set (if
// serveArgv lacks it): the serve command must accept it and set
// Options.Monit.
const MonitFlag = "--monit"

// TrafficFlag is the flag Up adds to serveArgv when Options.Traffic is set
// (if serveArgv lacks it): the serve command must accept it and set
// Options.Traffic.
const TrafficFlag = "--traffic"

// Up starts the daemon (serveArgv, e.g. relctl testenv serve --dir DIR)
// in its own session with output to DIR/testenv.log, and returns its status
// once the control socket answers and every host speaks SSH (and, with
// Options.Monit, every host's monit answers; with Options.Traffic, every
// load balancer and app). If the daemon dies first, the
// error carries the log's tail.
func Up(ctx context.Context, opts Options, serveArgv []string) (*Status, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if len(serveArgv) == 0 {
		return nil, errors.New("testenv: no command to run the daemon")
	}
	if serveArgv, err = daemonArgv(opts, serveArgv); err != nil {
		return nil, err
	}
	if _, err := socketPath(opts.Dir); err != nil {
		return nil, err
	}
	if pid := runningDaemon(ctx, opts.Dir); pid > 0 {
		return nil, fmt.Errorf("testenv: already running for %s (pid %d); run `relctl testenv down` first", opts.Dir, pid)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	d, err := startDaemon(opts.Dir, serveArgv)
	if err != nil {
		return nil, err
	}
	return d.waitReady(ctx, opts)
}

// daemonArgv checks the programs opts need (said here rather than buried in
// the daemon's log) and adds their flags to serveArgv where it lacks them.
func daemonArgv(opts Options, serveArgv []string) ([]string, error) {
	if opts.Monit {
		if _, err := findMonit(); err != nil {
			return nil, err
		}
		if !slices.Contains(serveArgv[1:], MonitFlag) {
			serveArgv = append(slices.Clone(serveArgv), MonitFlag)
		}
	}
	if opts.Traffic {
		if _, err := findHAProxy(); err != nil {
			return nil, err
		}
		if !slices.Contains(serveArgv[1:], TrafficFlag) {
			serveArgv = append(slices.Clone(serveArgv), TrafficFlag)
		}
	}
	return serveArgv, nil
}

// startingDaemon is a daemon Up started and waits for.
type startingDaemon struct {
	argv    []string
	pid     int
	logPath string     // its output
	exited  chan error // receives when it exits
}

// startDaemon starts argv in dir, in its own session, with output to
// dir/testenv.log.
func startDaemon(dir string, argv []string) (*startingDaemon, error) {
	logPath := filepath.Join(dir, LogFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(withoutEnv(os.Environ(), MarkerEnv, daemonEnv), daemonEnv+"="+dir)
	// Its own session: the daemon outlives the terminal and the CLI that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return nil, fmt.Errorf("testenv: start daemon: %w", err)
	}
	d := &startingDaemon{argv: argv, pid: cmd.Process.Pid, logPath: logPath, exited: make(chan error, 1)}
	go func() { d.exited <- cmd.Wait() }() // reaps it if it dies while we live
	return d, nil
}

// stop ends a daemon that did not come up as asked.
func (d *startingDaemon) stop() {
	syscall.Kill(d.pid, syscall.SIGTERM)
	if waitGone([]int{d.pid}, 20*time.Second) != nil {
		syscall.Kill(d.pid, syscall.SIGKILL)
	}
}

// waitReady polls the daemon's control socket until it serves hosts that
// all speak SSH, and returns its status.
func (d *startingDaemon) waitReady(ctx context.Context, opts Options) (*Status, error) {
	deadline := time.After(2 * time.Minute) // only against a hang
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case werr := <-d.exited:
			return nil, fmt.Errorf("testenv: daemon exited during start-up (%v); last lines of %s:\n%s", werr, d.logPath, logTail(d.logPath, 20))
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		case <-deadline:
			d.stop()
			return nil, fmt.Errorf("testenv: daemon not ready after 2m; last lines of %s:\n%s", d.logPath, logTail(d.logPath, 20))
		case <-tick.C:
		}
		st, err := queryDaemon(ctx, opts.Dir, controlRequest{Op: "status"})
		// serveArgv decides the host count; any hosts, all up, is ready.
		if err != nil || st.PID != d.pid || len(st.Hosts) == 0 || !hostsSpeakSSH(ctx, st) {
			continue
		}
		if err := d.servesOptions(opts, st); err != nil {
			d.stop()
			return nil, err
		}
		return st, nil
	}
}

// hostsSpeakSSH reports whether every host in st answers SSH.
func hostsSpeakSSH(ctx context.Context, st *Status) bool {
	for _, h := range st.Hosts {
		if !h.SSHUp || checkSSHBanner(ctx, h.Address) != nil {
			return false
		}
	}
	return true
}

// servesOptions checks that the ready daemon runs what opts asked for: a
// serve command that ignores a flag would start a cluster without it.
func (d *startingDaemon) servesOptions(opts Options, st *Status) error {
	if opts.Monit && !st.Monit {
		return fmt.Errorf("testenv: the daemon (%s) runs without monit: its serve command must turn %s into Options.Monit", strings.Join(d.argv, " "), MonitFlag)
	}
	if opts.Traffic && !st.Traffic {
		return fmt.Errorf("testenv: the daemon (%s) runs without load balancers: its serve command must turn %s into Options.Traffic", strings.Join(d.argv, " "), TrafficFlag)
	}
	return nil
}

// runningDaemon returns the pid of the daemon serving dir, or 0.
func runningDaemon(ctx context.Context, dir string) int {
	if st, err := queryDaemon(ctx, dir, controlRequest{Op: "status"}); err == nil {
		return st.PID
	}
	if saved, err := readState(dir); err == nil && isDaemonFor(saved.PID, dir) {
		return saved.PID
	}
	return 0
}

func isDaemonFor(pid int, dir string) bool {
	if !processAlive(pid) {
		return false
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if kv == daemonEnv+"="+dir {
			return true
		}
	}
	return false
}

// Down stops the daemon of dir (SIGTERM, then SIGKILL if it hangs), then
// kills any process still carrying the cluster's marker. It succeeds when
// nothing runs. Keys, ports and files stay for the next Up.
func Down(ctx context.Context, dir string) error {
	dir, err := absDir(dir)
	if err != nil {
		return err
	}
	log := zerolog.Ctx(ctx)
	if pid := runningDaemon(ctx, dir); pid > 0 {
		log.Info().Int("pid", pid).Str("dir", dir).Msg("stopping testenv daemon")
		syscall.Kill(pid, syscall.SIGTERM)
		if left := waitGoneCtx(ctx, pid, time.Minute); left {
			syscall.Kill(pid, syscall.SIGKILL)
			waitGoneCtx(ctx, pid, 10*time.Second)
		}
	}
	var errs *multierror.Error
	if err := sweepMarked(dir); err != nil {
		errs = multierror.Append(errs, err)
	}
	if err := os.Remove(filepath.Join(dir, SocketFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = multierror.Append(errs, err)
	}
	if saved, err := readState(dir); err == nil && saved.PID != 0 {
		saved.PID = 0
		if err := writeState(dir, saved); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if err := ctx.Err(); err != nil {
		errs = multierror.Append(errs, err)
	}
	return errs.ErrorOrNil()
}

// waitGoneCtx waits for pid to end; true when it is still alive.
func waitGoneCtx(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for processAlive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
