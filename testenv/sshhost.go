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
	held       atomic.Int64   // commands a HangStep fault holds right now
	wg         sync.WaitGroup // accept loops and connection handlers

	done chan struct{} // closed by close: releases everything held by a fault

	mu      sync.Mutex
	ln      net.Listener // nil while SSH is down
	closed  bool
	conns   map[*ssh.ServerConn]*liveConn
	pending map[net.Conn]chan struct{} // accepted while hung, before the handshake
	groups  map[int]struct{}           // process groups of running commands
	fault   FaultSpec
	hang    chan struct{} // non-nil while Hang is on; closed when it is lifted
	// stepChanged is closed (and replaced) when the step faults change, so
	// held commands look again.
	stepChanged chan struct{}
	// unreadable is the applied Unreadable fault; nil when there is none.
	unreadable *unreadableFile
}

// liveConn is an established connection; gone ends every wait a fault put
// its goroutines in.
type liveConn struct {
	gone chan struct{}
	once sync.Once
}

func (l *liveConn) end() { l.once.Do(func() { close(l.gone) }) }

func newSSHHost(ctx context.Context, info HostInfo, marker string, hostKey ssh.Signer, clientKey ssh.PublicKey, log zerolog.Logger) *sshHost {
	h := &sshHost{
		ctx:     ctx,
		info:    info,
		marker:  marker,
		hostKey: hostKey,
		log:     log.With().Str("host", info.Name).Logger(),
		done:    make(chan struct{}),
		conns:   map[*ssh.ServerConn]*liveConn{},
		pending: map[net.Conn]chan struct{}{},
		groups:  map[int]struct{}{},

		stepChanged: make(chan struct{}),
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

func (h *sshHost) faults() FaultSpec {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fault
}

// editFault replaces the host's faults with edit's result, atomically.
// When the port cannot be reopened, nothing changes.
func (h *sshHost) editFault(edit func(FaultSpec) FaultSpec) (FaultSpec, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return h.fault, errors.New("cluster is closed")
	}
	f := edit(h.fault)
	if err := f.validate(); err != nil {
		return h.fault, err
	}
	if f.Unreadable != "" {
		if _, err := h.resolveUnreadable(f.Unreadable); err != nil {
			return h.fault, err
		}
	}
	if f.Unreadable != h.fault.Unreadable {
		// The files first: when that fails, nothing else changes (the
		// spec says which file, if any, is still unreadable).
		err := h.swapUnreadableLocked(f.Unreadable)
		h.fault.Unreadable = ""
		if h.unreadable != nil {
			h.fault.Unreadable = h.unreadable.name
		}
		if err != nil {
			return h.fault, err
		}
	}
	if err := h.setDownLocked(f.DropSSH); err != nil {
		return h.fault, err
	}
	switch {
	case f.Hang && h.hang == nil:
		h.hang = make(chan struct{})
	case !f.Hang && h.hang != nil:
		close(h.hang)
		h.hang = nil
	}
	if f.stepFaults() != h.fault.stepFaults() {
		close(h.stepChanged)
		h.stepChanged = make(chan struct{})
	}
	h.fault = f
	return f, nil
}

// swapUnreadableLocked restores the file of the current Unreadable fault,
// then applies name's ("" applies none).
func (h *sshHost) swapUnreadableLocked(name string) error {
	if u := h.unreadable; u != nil {
		kept, err := u.restore()
		h.unreadable = nil
		if err != nil {
			return fmt.Errorf("testenv: %s: restoring %s: %w", h.info.Name, u.name, err)
		}
		if kept != "" {
			h.log.Warn().Str("file", kept).Msg("the unreadable file was written to while faulted: left as it is, the original beside it as .testenv-original")
		}
	}
	if name == "" {
		return nil
	}
	u, err := h.makeUnreadable(name)
	if err != nil {
		return err
	}
	h.unreadable = u
	return nil
}

// setDownLocked closes the listener and drops live connections (like a
// host that fell off the network; processes it runs keep running), or
// reopens the listener on the same port.
func (h *sshHost) setDownLocked(down bool) error {
	if down {
		if h.ln == nil {
			return nil
		}
		err := h.ln.Close()
		h.ln = nil
		h.dropConnsLocked()
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

func (h *sshHost) dropConnsLocked() {
	for c, l := range h.conns {
		c.Close()
		l.end()
	}
	for nc, gone := range h.pending {
		nc.Close()
		close(gone)
		delete(h.pending, nc)
	}
}

// close stops the host: listener, connections, whatever a fault holds, and
// the process groups of commands still running.
func (h *sshHost) close() {
	h.mu.Lock()
	wasClosed := h.closed
	h.closed = true
	if h.ln != nil {
		h.ln.Close()
		h.ln = nil
	}
	// Connections first: what done releases must find them gone, so a
	// client sees the host vanish rather than a session closed early.
	h.dropConnsLocked()
	if !wasClosed {
		close(h.done)
	}
	for pgid := range h.groups {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if !wasClosed {
		// The files of a host outlive it: give the original back.
		if err := h.swapUnreadableLocked(""); err != nil {
			h.log.Warn().Err(err).Msg("unreadable fault")
		}
	}
	h.mu.Unlock()
}

// waitAnswering returns true at once while the host is not hung; else it
// waits for the Hang fault to be lifted (true), or for gone or the host's
// end (false).
func (h *sshHost) waitAnswering(gone <-chan struct{}) bool {
	for {
		h.mu.Lock()
		hang := h.hang
		h.mu.Unlock()
		if hang == nil {
			return true
		}
		select {
		case <-hang:
		case <-gone:
			return false
		case <-h.done:
			return false
		}
	}
}

// holdNewConn keeps a connection accepted while hung from seeing even the
// SSH banner, until the fault is lifted (true) or the connection is dropped.
func (h *sshHost) holdNewConn(nc net.Conn) bool {
	h.mu.Lock()
	if h.hang == nil {
		h.mu.Unlock()
		return true
	}
	gone := make(chan struct{})
	h.pending[nc] = gone
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.pending[nc] == gone {
			delete(h.pending, nc)
		}
		h.mu.Unlock()
	}()
	return h.waitAnswering(gone)
}

// gatedWriter stops a stream while the host is hung.
type gatedWriter struct {
	h    *sshHost
	w    io.Writer
	gone <-chan struct{}
}

var errHostGone = errors.New("connection or host gone")

func (g gatedWriter) Write(p []byte) (int, error) {
	if !g.h.waitAnswering(g.gone) {
		return 0, errHostGone
	}
	return g.w.Write(p)
}

func (h *sshHost) serveConn(nc net.Conn) {
	if !h.holdNewConn(nc) {
		nc.Close()
		return
	}
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
	live := &liveConn{gone: make(chan struct{})}
	h.conns[sc] = live
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
		// While hung, keepalives get no answer until the fault is lifted.
		for req := range reqs {
			if h.waitAnswering(live.gone) && req.WantReply {
				req.Reply(false, nil)
			}
		}
	}()

	var chWG sync.WaitGroup
	for nch := range chans {
		chWG.Add(1)
		go func() {
			defer chWG.Done()
			// While hung, a new session gets no answer at all.
			if !h.waitAnswering(live.gone) {
				nch.Reject(ssh.ConnectionFailed, "host is going away")
				return
			}
			switch nch.ChannelType() {
			case "session":
				h.serveSession(sc.User(), nch, live.gone)
			case "direct-tcpip":
				h.serveDirectTCPIP(nch)
			default:
				nch.Reject(ssh.UnknownChannelType, "unsupported channel type "+nch.ChannelType())
			}
		}()
	}
	live.end()
	chWG.Wait()
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (h *sshHost) serveSession(user string, nch ssh.NewChannel, gone <-chan struct{}) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer func() {
		ch.Close()
		go ssh.DiscardRequests(reqs) // never leave the mux blocked on us
	}()

	s := &session{h: h, user: user, ch: ch, gone: gone, proc: newSessionProcess(), done: make(chan struct{})}
	for {
		var req *ssh.Request
		select {
		case req = <-reqs:
		case <-s.done:
			return
		}
		if req == nil {
			// The client closed the channel. Like sshd without a pty, a
			// command still running is left alone; its output goes nowhere.
			// A command held by a step fault is dropped.
			close(s.proc.abandon)
			<-waitOrDone(s.started, s.done)
			return
		}
		// While hung, requests wait unanswered.
		if !h.waitAnswering(gone) {
			return
		}
		s.handle(req)
	}
}

// session is one session channel being served: the environment its client
// set and the one command it may run.
type session struct {
	h       *sshHost
	user    string
	ch      ssh.Channel
	gone    <-chan struct{} // closed when the connection ends
	env     []string
	started bool
	proc    *sessionProcess
	done    chan struct{} // closed when the command has finished
}

// handle answers one request of the session.
func (s *session) handle(req *ssh.Request) {
	switch req.Type {
	case "env":
		var kv struct{ Name, Value string }
		ok := ssh.Unmarshal(req.Payload, &kv) == nil && envNameRE.MatchString(kv.Name) && kv.Name != MarkerEnv
		if ok {
			s.env = append(s.env, kv.Name+"="+kv.Value)
		}
		reply(req, ok)
	case "exec":
		s.exec(req)
	case "signal":
		var sig struct{ Signal string }
		if ssh.Unmarshal(req.Payload, &sig) == nil {
			if sg, ok := signalsByName[sig.Signal]; ok {
				s.proc.signal(sg)
			}
		}
		reply(req, false)
	case "shell", "pty-req", "subsystem":
		fmt.Fprintf(s.ch.Stderr(), "testenv: %s: %s is not supported here; run a command (exec) instead\n", s.h.info.Name, req.Type)
		reply(req, false)
	default:
		reply(req, false)
	}
}

// exec starts the session's command, or the step fault that holds it; the
// reply goes before anything the command writes.
func (s *session) exec(req *ssh.Request) {
	h := s.h
	var cmd struct{ Command string }
	if s.started || ssh.Unmarshal(req.Payload, &cmd) != nil {
		reply(req, false)
		return
	}
	env := s.env // as the command starts with it
	step := stepOf(env)
	if act, _, _, out := h.stepAction(step); act != runNow || !out.none() {
		// Accepted like any command; what happens is decided later.
		s.started = true
		reply(req, true)
		go func() {
			defer close(s.done)
			h.runFaultedStep(s.user, cmd.Command, env, s.ch, step, s.proc, s.gone)
		}()
		return
	}
	c, err := h.startCommand(s.user, cmd.Command, env, s.ch, s.gone, false)
	if err != nil {
		fmt.Fprintf(s.ch.Stderr(), "testenv: %s: cannot run command: %v\n", h.info.Name, err)
		reply(req, false)
		return
	}
	s.started = true
	s.proc.started(c.pgid)
	reply(req, true)
	go func() {
		defer close(s.done)
		c.finish(h)
	}()
}

// sessionProcess routes a session's signals: to the command's process
// group once it runs, to a held step before (which then ends).
type sessionProcess struct {
	abandon chan struct{} // closed when the client closes the session

	mu   sync.Mutex
	pgid int
	sigs chan syscall.Signal // the first signal sent before the command ran
}

func newSessionProcess() *sessionProcess {
	return &sessionProcess{abandon: make(chan struct{}), sigs: make(chan syscall.Signal, 1)}
}

func (p *sessionProcess) signal(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pgid != 0 {
		syscall.Kill(-p.pgid, s)
		return
	}
	select {
	case p.sigs <- s:
	default:
	}
}

// started records the command's process group and delivers a signal that
// came while it was being started.
func (p *sessionProcess) started(pgid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pgid = pgid
	select {
	case s := <-p.sigs:
		syscall.Kill(-pgid, s)
	default:
	}
}

// exited routes signals to the session again once the command is gone
// (NeverEndsStep holds the session open after it).
func (p *sessionProcess) exited() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pgid = 0
}

type stepFault int

const (
	runNow stepFault = iota
	failNow
	holdStep
)

// stepAction is what the host's faults do to a command of step now, the
// fault's step name, a channel closed when the step faults change, and
// (when it runs) what happens to its output.
func (h *sshHost) stepAction(step string) (stepFault, string, <-chan struct{}, outputFault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case stepMatches(h.fault.FailStep, step):
		return failNow, h.fault.FailStep, h.stepChanged, outputFault{}
	case stepMatches(h.fault.HangStep, step):
		return holdStep, h.fault.HangStep, h.stepChanged, outputFault{}
	}
	return runNow, "", h.stepChanged, h.fault.outputFaultFor(step)
}

// runFaultedStep serves an accepted exec hit by a step fault: it fails it,
// or holds it until the faults change (then looks again), a signal comes,
// or the session, connection or host ends.
func (h *sshHost) runFaultedStep(user, command string, env []string, ch ssh.Channel, step string, proc *sessionProcess, gone <-chan struct{}) {
	defer ch.Close()
	for {
		act, name, changed, out := h.stepAction(step)
		switch act {
		case failNow:
			h.log.Debug().Str("step", step).Msg("injected step failure")
			fmt.Fprintf(ch.Stderr(), "testenv: injected failure in step %s on %s\n", name, h.info.Name)
			h.sendExit(ch, gone, exitStatus(1))
			return
		case runNow:
			c, err := h.startCommand(user, command, env, ch, gone, !out.none())
			if err != nil {
				fmt.Fprintf(ch.Stderr(), "testenv: %s: cannot run command: %v\n", h.info.Name, err)
				h.sendExit(ch, gone, exitStatus(255))
				return
			}
			proc.started(c.pgid)
			if out.none() {
				c.finish(h)
				return
			}
			h.runDamaged(c, step, out, proc, changed)
			return
		}
		h.log.Debug().Str("step", step).Msg("step held by fault")
		h.held.Add(1)
		select {
		case <-changed:
			h.held.Add(-1)
			continue
		case s := <-proc.sigs:
			h.held.Add(-1)
			h.sendExit(ch, gone, exitSignal(s, false))
			return
		case <-proc.abandon:
		case <-gone:
		case <-h.done:
		}
		h.held.Add(-1)
		return
	}
}

// runDamaged finishes a command whose stdout was captured: it sends the
// output damaged, and for NeverEndsStep only its first half, then holds.
func (h *sshHost) runDamaged(c *runningCommand, step string, out outputFault, proc *sessionProcess, changed <-chan struct{}) {
	ended := c.wait(h)
	proc.exited()
	stdout := out.damage(c.stdout.Bytes(), h.info.Name+" "+step)
	w := gatedWriter{h, c.ch, c.gone}
	if !out.neverEnds {
		w.Write(stdout)
		h.sendExit(c.ch, c.gone, ended)
		return
	}
	h.log.Debug().Str("step", step).Msg("injected never-ending command")
	half := len(stdout) / 2
	w.Write(stdout[:half])
	if h.holdNeverEnding(step, changed, proc.sigs, proc.abandon, c.gone, func(s syscall.Signal) {
		h.sendExit(c.ch, c.gone, exitSignal(s, false))
	}) {
		w.Write(stdout[half:])
		h.sendExit(c.ch, c.gone, ended)
	}
}

// holdNeverEnding waits until the NeverEndsStep fault no longer covers
// step (true), or a signal (reported through killed), the client going
// away or the host ending (false).
func (h *sshHost) holdNeverEnding(step string, changed <-chan struct{}, sigs <-chan syscall.Signal, abandon, gone <-chan struct{}, killed func(syscall.Signal)) bool {
	h.held.Add(1)
	defer h.held.Add(-1)
	for {
		select {
		case <-changed:
			_, _, next, out := h.stepAction(step)
			if out.neverEnds {
				changed = next
				continue
			}
			return true
		case s := <-sigs:
			if killed != nil {
				killed(s)
			}
			return false
		case <-abandon:
		case <-gone:
		case <-h.done:
		}
		return false
	}
}

// exitReport is the request that tells the client how a command ended.
type exitReport struct {
	req     string
	payload []byte
}

func exitStatus(code int) exitReport {
	return exitReport{"exit-status", ssh.Marshal(struct{ Status uint32 }{uint32(code)})}
}

func exitSignal(s syscall.Signal, coreDumped bool) exitReport {
	return exitReport{"exit-signal", ssh.Marshal(struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}{signalName(s), coreDumped, "", ""})}
}

// sendExit ends the channel's output and reports how the command ended,
// once the host answers again.
func (h *sshHost) sendExit(ch ssh.Channel, gone <-chan struct{}, r exitReport) {
	if !h.waitAnswering(gone) {
		return
	}
	ch.CloseWrite()
	ch.SendRequest(r.req, false, r.payload)
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
	gone   <-chan struct{} // the connection's end
	copies sync.WaitGroup
	// stdout holds the command's output instead of the channel when an
	// output fault is to damage it; read after wait.
	stdout bytes.Buffer
}

// startCommand runs command for a session; with capture, its stdout is
// kept in runningCommand.stdout instead of going to the client.
func (h *sshHost) startCommand(user, command string, clientEnv []string, ch ssh.Channel, gone <-chan struct{}, capture bool) (*runningCommand, error) {
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

	c := &runningCommand{cmd: cmd, pgid: cmd.Process.Pid, ch: ch, gone: gone}
	go func() {
		// Ends at the client's EOF, or when the channel closes after exit.
		io.Copy(gatedWriter{h, inW, gone}, ch)
		inW.Close()
	}()
	// Output goes through the Hang gate: a hung host's commands go quiet.
	c.copies.Add(2)
	var stdout io.Writer = gatedWriter{h, ch, gone}
	if capture {
		stdout = &c.stdout
	}
	go c.copyOut(stdout, outR)
	go c.copyOut(gatedWriter{h, ch.Stderr(), gone}, errR)
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
	h.sendExit(c.ch, c.gone, c.wait(h))
	c.ch.Close()
}

// wait waits for the command and its output and says how it ended.
func (c *runningCommand) wait(h *sshHost) exitReport {
	c.copies.Wait()
	err := c.cmd.Wait()
	h.mu.Lock()
	delete(h.groups, c.pgid)
	h.mu.Unlock()

	ws, _ := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		h.log.Debug().Str("signal", signalName(ws.Signal())).Msg("command killed")
		return exitSignal(ws.Signal(), ws.CoreDump())
	}
	status := c.cmd.ProcessState.ExitCode()
	if status < 0 {
		status = 255
	}
	h.log.Debug().Int("status", status).AnErr("wait", err).Msg("command exited")
	return exitStatus(status)
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
	label := ForwardLabel + " " + addr
	_, _, changed, out := h.stepAction(label)
	clientDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(clientDone)
		io.Copy(tc, ch)
		tc.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		defer ch.CloseWrite()
		if out.none() {
			io.Copy(ch, tc)
			return
		}
		// Damaged: what the service answers, all at once when it is done.
		b, _ := io.ReadAll(tc)
		b = out.damage(b, h.info.Name+" "+label)
		if !out.neverEnds {
			ch.Write(b)
			return
		}
		half := len(b) / 2
		ch.Write(b[:half])
		if h.holdNeverEnding(label, changed, nil, clientDone, nil, nil) {
			ch.Write(b[half:])
		}
	}()
	wg.Wait()
	tc.Close()
	ch.Close()
}
