package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// MarkerEnv is set in the environment of every command a cluster runs, to
// the cluster's absolute directory, so Close and Down can find every process
// it ever started (services detach with setsid but keep their environment).
const MarkerEnv = "RELCTL_TESTENV"

const hostPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// sshHost is one simulated host: an SSH server on its own port whose
// commands run in the host's root directory.
type sshHost struct {
	ctx     context.Context // the cluster's: cancelled by Close
	info    HostInfo
	marker  string // abs cluster dir
	hostKey ssh.Signer
	config  *ssh.ServerConfig
	log     zerolog.Logger

	handshakes atomic.Int64
	wg         sync.WaitGroup // accept loops and connection handlers

	mu     sync.Mutex
	ln     net.Listener // nil while SSH is down
	closed bool
	conns  map[*ssh.ServerConn]struct{}
	groups map[int]struct{} // process groups of running commands
}

func newSSHHost(ctx context.Context, info HostInfo, marker string, hostKey ssh.Signer, clientKey ssh.PublicKey, log zerolog.Logger) *sshHost {
	h := &sshHost{
		ctx:     ctx,
		info:    info,
		marker:  marker,
		hostKey: hostKey,
		log:     log.With().Str("host", info.Name).Logger(),
		conns:   map[*ssh.ServerConn]struct{}{},
		groups:  map[int]struct{}{},
	}
	want := clientKey.Marshal()
	h.config = &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-relctl-testenv",
		// Any user name: the cluster stands in for hosts where relctl's user exists.
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), want) {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("unknown public key for %s", meta.User())
		},
	}
	h.config.AddHostKey(hostKey)
	return h
}

// listen opens the host's port and serves it; used at start and when a
// fault is lifted, always on the same address.
func (h *sshHost) listen(ln net.Listener) {
	h.ln = ln
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.serveConn(nc)
			}()
		}
	}()
}

func (h *sshHost) sshUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ln != nil
}

// setDown closes the listener and drops live connections (like a host that
// fell off the network; processes it runs keep running), or reopens the
// listener on the same port.
func (h *sshHost) setDown(down bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("cluster is closed")
	}
	if down {
		if h.ln == nil {
			return nil
		}
		err := h.ln.Close()
		h.ln = nil
		for c := range h.conns {
			c.Close()
		}
		return err
	}
	if h.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", h.info.Address)
	if err != nil {
		return fmt.Errorf("%s: reopen SSH port: %w", h.info.Name, err)
	}
	h.listen(ln)
	return nil
}

// close stops the host: listener, connections, and the process groups of
// commands still running.
func (h *sshHost) close() {
	h.mu.Lock()
	h.closed = true
	if h.ln != nil {
		h.ln.Close()
		h.ln = nil
	}
	for c := range h.conns {
		c.Close()
	}
	for pgid := range h.groups {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	h.mu.Unlock()
}

func (h *sshHost) serveConn(nc net.Conn) {
	// Bound the handshake so a silent client cannot pin a goroutine.
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(nc, h.config)
	if err != nil {
		h.log.Debug().Err(err).Str("remote", nc.RemoteAddr().String()).Msg("ssh handshake failed")
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	h.handshakes.Add(1)

	h.mu.Lock()
	if h.closed || h.ln == nil {
		// Closed or faulted while this handshake ran.
		h.mu.Unlock()
		sc.Close()
		return
	}
	h.conns[sc] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.conns, sc)
		h.mu.Unlock()
		sc.Close()
	}()
	h.log.Debug().Str("user", sc.User()).Str("remote", sc.RemoteAddr().String()).Msg("ssh connection")

	go func() {
		// OpenSSH answers false to requests it does not know, keepalive@openssh.com included.
		for req := range reqs {
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}()

	var chWG sync.WaitGroup
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			chWG.Add(1)
			go func() {
				defer chWG.Done()
				h.serveSession(sc.User(), nch)
			}()
		case "direct-tcpip":
			chWG.Add(1)
			go func() {
				defer chWG.Done()
				h.serveDirectTCPIP(nch)
			}()
		default:
			nch.Reject(ssh.UnknownChannelType, "unsupported channel type "+nch.ChannelType())
		}
	}
	chWG.Wait()
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (h *sshHost) serveSession(user string, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer func() {
		ch.Close()
		go ssh.DiscardRequests(reqs) // never leave the mux blocked on us
	}()

	var (
		env     []string
		started bool
		pgid    atomic.Int64 // set once the command runs; read by "signal"
		done    = make(chan struct{})
	)
	for {
		var req *ssh.Request
		select {
		case req = <-reqs:
		case <-done:
			return
		}
		if req == nil {
			// The client closed the channel. Like sshd without a pty, a
			// command still running is left alone; its output goes nowhere.
			<-waitOrDone(started, done)
			return
		}
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			ok := ssh.Unmarshal(req.Payload, &kv) == nil && envNameRE.MatchString(kv.Name) && kv.Name != MarkerEnv
			if ok {
				env = append(env, kv.Name+"="+kv.Value)
			}
			reply(req, ok)
		case "exec":
			var cmd struct{ Command string }
			if started || ssh.Unmarshal(req.Payload, &cmd) != nil {
				reply(req, false)
				continue
			}
			c, err := h.startCommand(user, cmd.Command, env, ch)
			if err != nil {
				fmt.Fprintf(ch.Stderr(), "testenv: %s: cannot run command: %v\n", h.info.Name, err)
				reply(req, false)
				continue
			}
			started = true
			pgid.Store(int64(c.pgid))
			reply(req, true)
			go func() {
				defer close(done)
				c.finish(h)
			}()
		case "signal":
			var sig struct{ Signal string }
			if ssh.Unmarshal(req.Payload, &sig) == nil && pgid.Load() != 0 {
				if s, ok := signalsByName[sig.Signal]; ok {
					syscall.Kill(-int(pgid.Load()), s)
				}
			}
			reply(req, false)
		case "shell", "pty-req", "subsystem":
			fmt.Fprintf(ch.Stderr(), "testenv: %s: %s is not supported here; run a command (exec) instead\n", h.info.Name, req.Type)
			reply(req, false)
		default:
			reply(req, false)
		}
	}
}

// waitOrDone is what a session waits for after the client went away: the
// command's end when one runs, nothing otherwise.
func waitOrDone(started bool, done chan struct{}) <-chan struct{} {
	if started {
		return done
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

func reply(req *ssh.Request, ok bool) {
	if req.WantReply {
		req.Reply(ok, nil)
	}
}

// runningCommand is one exec request's process and the goroutines copying
// its standard streams.
type runningCommand struct {
	cmd    *exec.Cmd
	pgid   int
	ch     ssh.Channel
	copies sync.WaitGroup
}

func (h *sshHost) startCommand(user, command string, clientEnv []string, ch ssh.Channel) (*runningCommand, error) {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = h.info.Root
	cmd.Env = append([]string{
		"HOME=" + h.info.Root,
		"PATH=" + hostPATH,
		"LANG=C",
		"USER=" + user,
		"LOGNAME=" + user,
		"SHELL=/bin/sh",
	}, clientEnv...)
	// Last, so a client cannot hide a process from the sweep.
	cmd.Env = append(cmd.Env, MarkerEnv+"="+h.marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	// Own pipes rather than exec's copying goroutines: Wait must not depend
	// on the client closing stdin, and output is read to EOF like sshd does.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		for _, f := range []*os.File{inR, inW, outR, outW, errR, errW} {
			f.Close()
		}
		return nil, errors.New("host is shutting down")
	}
	err = cmd.Start()
	if err == nil {
		h.groups[cmd.Process.Pid] = struct{}{}
	}
	h.mu.Unlock()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}

	c := &runningCommand{cmd: cmd, pgid: cmd.Process.Pid, ch: ch}
	go func() {
		// Ends at the client's EOF, or when the channel closes after exit.
		io.Copy(inW, ch)
		inW.Close()
	}()
	c.copies.Add(2)
	go c.copyOut(ch, outR)
	go c.copyOut(ch.Stderr(), errR)
	return c, nil
}

// copyOut forwards one output stream until EOF. If the client stops
// listening, the read end is closed so the writer gets EPIPE, as with sshd.
func (c *runningCommand) copyOut(w io.Writer, r *os.File) {
	defer c.copies.Done()
	io.Copy(w, r)
	r.Close()
}

// finish waits for the command and its output, then reports how it ended.
func (c *runningCommand) finish(h *sshHost) {
	c.copies.Wait()
	err := c.cmd.Wait()
	h.mu.Lock()
	delete(h.groups, c.pgid)
	h.mu.Unlock()

	c.ch.CloseWrite()
	ws, _ := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		name := signalName(ws.Signal())
		c.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{name, ws.CoreDump(), "", ""}))
		h.log.Debug().Str("signal", name).Msg("command killed")
	default:
		status := c.cmd.ProcessState.ExitCode()
		if status < 0 {
			status = 255
		}
		c.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
		h.log.Debug().Int("status", status).AnErr("wait", err).Msg("command exited")
	}
	c.ch.Close()
}

var signalsByName = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// signalName is the RFC 4254 name (no "SIG" prefix).
func signalName(s syscall.Signal) string {
	for name, sig := range signalsByName {
		if sig == s {
			return name
		}
	}
	return strconv.Itoa(int(s)) + "@testenv"
}

// direct-tcpip lets relctl run health checks from the host's point of view.
// Only loopback destinations: the cluster must never reach beyond 127.0.0.1.
func (h *sshHost) serveDirectTCPIP(nch ssh.NewChannel) {
	var req struct {
		DestAddr string
		DestPort uint32
		OrigAddr string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil {
		nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	host := req.DestAddr
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() || req.DestPort == 0 || req.DestPort > 65535 {
		nch.Reject(ssh.Prohibited, fmt.Sprintf("testenv: forwarding to %s is not allowed (loopback addresses only)",
			net.JoinHostPort(req.DestAddr, strconv.Itoa(int(req.DestPort)))))
		return
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(req.DestPort)))
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	var d net.Dialer
	tc, err := d.DialContext(ctx, "tcp", addr)
	cancel()
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		tc.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(tc, ch)
		tc.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		io.Copy(ch, tc)
		ch.CloseWrite()
	}()
	wg.Wait()
	tc.Close()
	ch.Close()
}
