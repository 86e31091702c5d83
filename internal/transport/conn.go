package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"

	"github.com/relctl/relctl/internal/shellquote"
)

// killGrace bounds how long a killed command may take to report back; a
// dead peer or a blocked stdin reader must not hold the caller.
const killGrace = 5 * time.Second

// tailLines is how much output a CommandError carries.
const tailLines = 10

// pidPrefix makes every command report its shell's pid as the first
// stderr line (taken out of the output again), so a timed-out command can
// be killed with its children. It adds no shell: the login shell runs it.
const (
	pidMarker = "relctl-pid:"
	pidPrefix = "printf '" + pidMarker + "%s\\n' \"$$\" >&2; "
)

var errConnClosed = errors.New("connection closed")

// stepEnv carries RunOptions.Label to the host with every command.
const stepEnv = "RELCTL_STEP"

// sshConn is one SSH connection; every Run is its own session on it.
type sshConn struct {
	host   string
	client *ssh.Client
	log    *RunLog
	// cmdTimeout and controlTimeout are Options.CommandTimeout and
	// Options.ControlTimeout; RunOptions.Limit picks one.
	cmdTimeout     time.Duration
	controlTimeout time.Duration
	logger         *zerolog.Logger
	gone           chan struct{} // closed once the connection has ended
	// via is the bastion connection this one runs in (a direct-tcpip
	// channel); nil: a TCP connection of its own. This connection is lost
	// once via is.
	via *sshConn
	// agentSock is the local agent this host's sessions get forwarded
	// (Target.ForwardAgent); empty: none.
	agentSock string

	mu           sync.Mutex
	endErr       error // why the connection ended; nil while it is up
	closing      bool
	agentRefused bool // the host refused agent forwarding (noted once)
}

var _ Conn = (*sshConn)(nil)

func (c *sshConn) Host() string { return c.host }

// watch serves the connection until it ends, on one goroutine: it turns
// down what the server opens or asks (the same answers ssh.Client gives;
// the one forwarding relctl offers is the agent's, to a host whose
// Target asks for it), sends keepalives every `every` (0: none),
// and records why the connection ended. ssh.Client would spend a goroutine
// each on the first two; with 1,000 hosts every goroutine per connection is
// 1,000 stacks.
func (c *sshConn) watch(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, every time.Duration) {
	ka := keepaliveState{every: every}
	if every > 0 {
		tick := time.NewTicker(every)
		defer tick.Stop()
		ka.tick = tick.C
	}
	defer ka.stop()
	for chans != nil || reqs != nil {
		select {
		case ch, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			if ch.ChannelType() == agentChannelType && c.forwardsAgent() {
				go c.serveAgent(ch)
				continue
			}
			_ = ch.Reject(ssh.UnknownChannelType, ch.ChannelType())
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			// OpenSSH's own keepalives (ClientAliveInterval) land here.
			_ = r.Reply(false, nil)
		case <-ka.tick:
			if ka.reply == nil {
				ka.reply = c.keepalive()
				ka.timer = time.NewTimer(3 * every)
			}
		case err := <-ka.reply:
			ka.stop()
			if err != nil {
				c.drop(fmt.Errorf("keepalive: %w", err))
			}
		case <-ka.expired():
			ka.stop()
			c.drop(fmt.Errorf("keepalive: no reply within %s", 3*every))
		}
	}
	err := c.client.Wait()
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("the server closed the connection")
	}
	if c.via != nil {
		// The channel ends first when the bastion's connection is lost.
		select {
		case <-c.via.gone:
		case <-time.After(viaGrace):
		}
		if verr := c.via.lost(); verr != nil {
			err = bastionLost(verr)
		}
	}
	c.end(err)
	close(c.gone)
}

// keepaliveState is watch's keepalive: the ticker's channel, and the
// request in flight with its deadline.
type keepaliveState struct {
	every time.Duration
	tick  <-chan time.Time
	reply <-chan error
	timer *time.Timer
}

func (k *keepaliveState) expired() <-chan time.Time {
	if k.timer == nil {
		return nil
	}
	return k.timer.C
}

func (k *keepaliveState) stop() {
	if k.timer != nil {
		k.timer.Stop()
	}
	k.reply, k.timer = nil, nil
}

// keepalive sends one keepalive request; any reply proves liveness (OpenSSH
// answers with a failure).
func (c *sshConn) keepalive() <-chan error {
	reply := make(chan error, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	return reply
}

// drop ends a connection whose server stopped answering, so later Runs fail
// fast instead of hanging on a dead peer.
func (c *sshConn) drop(cause error) {
	c.end(cause)
	c.logger.Warn().Str("host", c.host).Err(cause).Msg("ssh connection lost")
	_ = c.client.Close()
}

// end sets the reason the connection ended, first reason wins.
func (c *sshConn) end(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endErr != nil {
		return
	}
	if c.closing {
		c.endErr = fmt.Errorf("%s: %w", c.host, errConnClosed)
		return
	}
	c.endErr = &lostError{host: c.host, cause: cause}
}

// lost returns why the connection is unusable, or nil. A connection
// through a bastion is lost as soon as the bastion's is.
func (c *sshConn) lost() error {
	c.mu.Lock()
	err, closing := c.endErr, c.closing
	c.mu.Unlock()
	if err != nil || c.via == nil {
		return err
	}
	if verr := c.via.lost(); verr != nil {
		if closing {
			return fmt.Errorf("%s: %w", c.host, errConnClosed)
		}
		return &lostError{host: c.host, cause: bastionLost(verr)}
	}
	return nil
}

// bastionLost is the cause of a connection's loss when its bastion's was.
func bastionLost(bastionErr error) error {
	return fmt.Errorf("its bastion's connection ended (%w)", bastionErr)
}

// Close ends the connection; it is not an error to close a lost one.
func (c *sshConn) Close() error {
	c.mu.Lock()
	c.closing = true
	alreadyEnded := c.endErr != nil
	c.mu.Unlock()
	err := c.client.Close()
	if alreadyEnded || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Run runs cmd in a new session; the remote login shell interprets it.
func (c *sshConn) Run(ctx context.Context, cmd string, opts RunOptions) (*Result, error) {
	label := opts.Label
	if label == "" {
		label = "run"
	}
	if err := c.lost(); err != nil {
		return nil, err
	}
	if limit, setting := c.limit(opts); limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, limit, &TimeoutError{Host: c.host, Label: label, Setting: setting, Limit: limit})
		defer cancel()
	}

	sess, err := c.openSession(ctx, label, c.forwardsAgent())
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	r, stdin, err := c.start(sess, cmd, label, opts)
	if err != nil {
		return nil, err
	}
	// Stdin is fed by our own goroutine rather than by the session, whose
	// Wait would report a write error (EOF) when the command exits without
	// reading all of it, hiding the command's real outcome. A truncated
	// upload is still caught: Upload verifies the sha256 on the host.
	if stdin != nil {
		go func() {
			copyStdin(stdin, opts.Stdin)
			_ = stdin.Close()
		}()
	}
	r.done = make(chan error, 1)
	go func() { r.done <- r.readStderrAndWait() }()
	waitErr, err := c.wait(ctx, r)
	if err != nil {
		return nil, err
	}
	return c.outcome(r, cmd, waitErr)
}

// stdinChunk is the most copyStdin writes to a session at once, so the
// largest SSH packet relctl sends. x/crypto/ssh keeps each connection's
// encryption buffer as large as the largest packet it ever sent, for the
// connection's life: with io.Copy's 32 KiB writes every host that was sent
// a file held 33 KiB more until the end of the command (33 MiB at 1,000
// hosts); now 8 KiB. 64 bytes under 8 KiB, so that the sealed packet (data
// header, padding, tag) still fits the allocator's 8 KiB size class, not
// its 9.25 KiB one. A 1 MiB artifact takes 130 packets instead of 32.
const stdinChunk = 8<<10 - 64

var stdinBufs = sync.Pool{New: func() any { b := make([]byte, stdinChunk); return &b }}

// copyStdin copies r to a session's stdin in writes of stdinChunk.
func copyStdin(w io.Writer, r io.Reader) {
	bp := stdinBufs.Get().(*[]byte)
	defer stdinBufs.Put(bp)
	// The structs hide io.WriterTo and io.ReaderFrom (an *os.File has both,
	// and its WriteTo would copy through a 32 KiB buffer of its own).
	_, _ = io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, *bp)
}

// running is a command started in its session.
type running struct {
	sess           *ssh.Session
	label          string
	stdout, stderr *outputSink
	stderrPipe     io.Reader // read by Run's waiting goroutine
	start          time.Time
	done           chan error // the session's Wait (Run's goroutine)
}

// readStderrAndWait reads the command's stderr to its end, then waits for
// the session. Reading stderr here rather than on a goroutine of the
// session's own (what setting Session.Stderr does) saves a goroutine per
// running command; stdout is still read meanwhile by the session's, so
// neither stream can stall the other.
func (r *running) readStderrAndWait() error {
	_, readErr := r.stderr.ReadFrom(r.stderrPipe)
	if err := r.sess.Wait(); err != nil {
		return err
	}
	return readErr
}

// start starts cmd in sess, its output going to the run log (stdout not,
// with QuietStdout) and to the result; with opts.Stdin it returns the pipe
// to feed it through.
func (c *sshConn) start(sess *ssh.Session, cmd, label string, opts RunOptions) (r *running, stdin io.WriteCloser, err error) {
	r = &running{sess: sess, label: label,
		stdout: newOutputSink(c.log, c.host, label, "out", ""),
		stderr: newOutputSink(c.log, c.host, label, "err", pidMarker)}
	r.stdout.quiet = opts.QuietStdout
	sess.Stdout = r.stdout
	if r.stderrPipe, err = sess.StderrPipe(); err != nil {
		return nil, nil, fmt.Errorf("%s: [%s] stderr: %w", c.host, label, err)
	}
	if opts.Stdin != nil {
		if stdin, err = sess.StdinPipe(); err != nil {
			return nil, nil, fmt.Errorf("%s: [%s] stdin: %w", c.host, label, err)
		}
	}
	c.log.line(c.host, "["+label+"] $ "+cmd)
	r.start = time.Now()
	if err := sess.Start(pidPrefix + cmd); err != nil {
		if lost := c.lost(); lost != nil {
			return nil, nil, lost
		}
		return nil, nil, fmt.Errorf("%s: [%s] start: %w", c.host, label, err)
	}
	return r, stdin, nil
}

// wait waits for r to end and returns how (the session's Wait error). When
// ctx ends first the command is killed, its process group too, and the
// error is the context's (or the connection's, when that died meanwhile);
// when the connection is lost first, that is the error.
func (c *sshConn) wait(ctx context.Context, r *running) (waitErr, err error) {
	select {
	case waitErr = <-r.done:
		r.stdout.flush()
		r.stderr.flush()
		return waitErr, nil
	case <-ctx.Done():
		return nil, c.kill(ctx, r)
	case <-c.gone:
		r.stdout.flush()
		r.stderr.flush()
		lost := c.lost()
		c.log.line(c.host, fmt.Sprintf("[%s] %v", r.label, lost))
		return nil, lost
	}
}

// kill ends r, whose context ended: SIGKILL to the session and to the
// remote process group, then a short grace for the session to end.
func (c *sshConn) kill(ctx context.Context, r *running) error {
	_ = r.sess.Signal(ssh.SIGKILL)
	if pid := r.stderr.remotePID(); pid > 0 {
		c.killGroup(ctx, pid)
	}
	_ = r.sess.Close()
	grace := time.NewTimer(killGrace)
	select {
	case <-r.done:
	case <-grace.C:
	}
	grace.Stop()
	r.stdout.flush()
	r.stderr.flush()
	var timeout *TimeoutError
	cause := context.Cause(ctx)
	if errors.As(cause, &timeout) {
		cause = errors.New(timeout.reason())
	}
	c.log.line(c.host, fmt.Sprintf("[%s] killed: %v (%s)", r.label, cause, time.Since(r.start).Round(time.Millisecond)))
	if lost := c.lost(); lost != nil && timeout != nil {
		// The connection died while the command ran (keepalive, or the
		// kill found nobody): the host is unreachable, not slow.
		c.log.line(c.host, fmt.Sprintf("[%s] %v", r.label, lost))
		return lost
	}
	return c.contextError(ctx, r.label)
}

// outcome turns how r ended into its result: exit 0, a *CommandError for
// another exit status or a signal, ErrConnectionLost when the session ended
// with no status because the connection died.
func (c *sshConn) outcome(r *running, cmd string, waitErr error) (*Result, error) {
	res := &Result{Stdout: r.stdout.bytes(), Stderr: r.stderr.bytes()}
	took := time.Since(r.start).Round(time.Millisecond)

	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	signal := ""
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &exitErr):
		res.ExitCode = exitErr.ExitStatus()
		if s := exitErr.Signal(); s != "" {
			res.ExitCode, signal = -1, s
		}
	case errors.As(waitErr, &missing):
		// A session that ends without an exit status is most often a dying
		// connection whose end is seen before the connection's: give the
		// connection a moment to report it, so callers see ErrConnectionLost.
		select {
		case <-c.gone:
		case <-time.After(missingExitGrace):
		}
		if lost := c.lost(); lost != nil {
			c.log.line(c.host, fmt.Sprintf("[%s] %v", r.label, lost))
			return nil, lost
		}
		res.ExitCode = -1
	default:
		c.log.line(c.host, fmt.Sprintf("[%s] error: %v (%s)", r.label, waitErr, took))
		return nil, fmt.Errorf("%s: [%s]: %w", c.host, r.label, waitErr)
	}
	if signal != "" {
		c.log.line(c.host, fmt.Sprintf("[%s] killed by signal %s (%s)", r.label, signal, took))
	} else {
		c.log.line(c.host, fmt.Sprintf("[%s] exit %d (%s)", r.label, res.ExitCode, took))
	}
	if res.ExitCode == 0 {
		return res, nil
	}
	tail := res.Stderr
	if len(strings.TrimSpace(string(tail))) == 0 {
		tail = res.Stdout
	}
	return res, &CommandError{
		Host:     c.host,
		Command:  cmd,
		ExitCode: res.ExitCode,
		Signal:   signal,
		Tail:     lastLines(string(tail), tailLines),
	}
}

// limit is the timeout that bounds a command and the setting it comes from:
// its own, else the connection's control or command timeout.
func (c *sshConn) limit(opts RunOptions) (time.Duration, string) {
	switch {
	case opts.Timeout > 0:
		return opts.Timeout, SettingStepTimeout
	case opts.Limit == ControlLimit && c.controlTimeout > 0:
		return c.controlTimeout, SettingControlTimeout
	default:
		return c.cmdTimeout, SettingCommandTimeout
	}
}

// killGroup kills the command's process group from a second session.
// missingExitGrace bounds the wait for a connection to report its loss after
// a session ended without an exit status.
const missingExitGrace = 2 * time.Second

// session.Signal alone is not enough: OpenSSH refuses signals for root
// logins ("session signalling requires privilege separation"), and it
// reaches only the shell, not what the shell started. sshd makes every
// session's command a process group leader, so -PID is the whole command.
func (c *sshConn) killGroup(ctx context.Context, pid int) {
	if pid <= 1 {
		return // no marker seen: never signal init or every process
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killGrace)
	defer cancel()
	sess, err := c.openSession(kctx, "kill", false)
	if err != nil {
		return
	}
	defer sess.Close()
	done := make(chan error, 1)
	go func() {
		done <- sess.Run(fmt.Sprintf("kill -KILL -- -%d 2>/dev/null || kill -KILL %d 2>/dev/null", pid, pid))
	}()
	select {
	case <-done:
	case <-kctx.Done():
	}
}

// openSession honours ctx and connection loss, which NewSession alone does
// not. With forwardAgent the session is offered the local agent before
// its command starts.
func (c *sshConn) openSession(ctx context.Context, label string, forwardAgent bool) (*ssh.Session, error) {
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := c.client.NewSession()
		if err == nil {
			// Names the step to the host (testenv injects faults by it).
			// No reply asked: it costs no round trip, cannot hang, and
			// OpenSSH's default AcceptEnv refusal must not fail the command.
			_, _ = s.SendRequest("env", false, ssh.Marshal(struct{ Name, Value string }{stepEnv, label}))
			if forwardAgent {
				c.requestAgent(s, label)
			}
		}
		ch <- opened{s, err}
	}()
	abandon := func() {
		go func() {
			if o := <-ch; o.s != nil {
				_ = o.s.Close()
			}
		}()
	}
	select {
	case o := <-ch:
		if o.err != nil {
			if lost := c.lost(); lost != nil {
				return nil, lost
			}
			return nil, fmt.Errorf("%s: [%s] open session: %w", c.host, label, o.err)
		}
		return o.s, nil
	case <-ctx.Done():
		abandon()
		return nil, c.contextError(ctx, label)
	case <-c.gone:
		abandon()
		return nil, c.lost()
	}
}

// contextError names host and command and wraps ctx.Err(); a limit of the
// command's own is its *TimeoutError, which names the setting.
func (c *sshConn) contextError(ctx context.Context, label string) error {
	cause := context.Cause(ctx)
	var timeout *TimeoutError
	if errors.As(cause, &timeout) {
		return timeout
	}
	if cause != nil && cause != ctx.Err() {
		return fmt.Errorf("%s: [%s] %v: %w", c.host, label, cause, ctx.Err())
	}
	return fmt.Errorf("%s: [%s] %w", c.host, label, ctx.Err())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// uploadMismatchExit is the exit status of Upload's script when the sum it
// computed is not the one wanted (it has removed the temp file).
const uploadMismatchExit = 97

// Upload writes r to a temp file next to remotePath, checks its sha256 on
// the host, then sets mode and renames it into place, all in one session:
// the host compares the sum it computed with the one wanted and, on a
// mismatch, removes the temp file and exits uploadMismatchExit; the sum it
// printed is checked here too. It needs only sh and coreutils on the host
// (no sftp).
func (c *sshConn) Upload(ctx context.Context, r io.Reader, remotePath string, mode uint32, wantSHA256 string) error {
	want := strings.ToLower(wantSHA256)
	if b, err := hex.DecodeString(want); err != nil || len(b) != 32 {
		return fmt.Errorf("%s: upload %s: want sha256 %q is not 64 hex digits", c.host, remotePath, wantSHA256)
	}
	if remotePath == "" || strings.HasSuffix(remotePath, "/") {
		return fmt.Errorf("%s: upload: remote path %q does not name a file", c.host, remotePath)
	}
	if mode&^0o7777 != 0 {
		return fmt.Errorf("%s: upload %s: mode %o has bits beyond 07777", c.host, remotePath, mode)
	}
	dir, base := path.Dir(remotePath), path.Base(remotePath)
	tmp := path.Join(dir, "."+base+".relctl-"+randomHex(8))
	label := "upload " + remotePath
	qtmp := shellquote.Quote(tmp)

	// umask 077: nobody else may read the file before its final mode is set.
	// Sending and hashing take as long as the file is big: command_timeout.
	res, err := c.Run(ctx, fmt.Sprintf("mkdir -p %s && umask 077 && cat > %s && relctl_sum=$(sha256sum < %s) && printf '%%s\\n' \"$relctl_sum\" && "+
		"case $relctl_sum in %s' '*) chmod %04o %s && mv -f -T %s %s ;; *) rm -f %s; exit %d ;; esac",
		shellquote.Quote(dir), qtmp, qtmp, shellquote.Quote(want), mode, qtmp, qtmp, shellquote.Quote(remotePath), qtmp, uploadMismatchExit),
		RunOptions{Stdin: r, Label: label, Limit: CommandLimit})
	var got string
	if res != nil {
		got, _, _ = strings.Cut(strings.TrimSpace(string(res.Stdout)), " ")
	}
	var cmdErr *CommandError
	switch {
	case err == nil && got == want:
		return nil
	case err == nil, errors.As(err, &cmdErr) && cmdErr.ExitCode == uploadMismatchExit:
		// A mismatch: the host removed the temp file. Or the host matched
		// the sum and put the file in place, but its answer is not that sum
		// (a wrapper's output, a damaged stream): relctl cannot confirm
		// what the host has, so the upload fails as it did when the check
		// was made here.
		return fmt.Errorf("%s: upload %s: sha256 mismatch: the host computed %s, want %s", c.host, remotePath, Printable(got, 80), want)
	default:
		c.removeTemp(ctx, tmp, label)
		return fmt.Errorf("%s: upload %s: %w", c.host, remotePath, err)
	}
}

// removeTemp cleans up after a failed upload, even when ctx has ended.
func (c *sshConn) removeTemp(ctx context.Context, tmp, label string) {
	if c.lost() != nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := c.Run(cctx, "rm -f "+shellquote.Quote(tmp), RunOptions{Label: label}); err != nil {
		zerolog.Ctx(ctx).Warn().Str("host", c.host).Err(err).Msg("removing upload temp file")
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DialContext opens a TCP connection from the host (direct-tcpip).
func (c *sshConn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := c.lost(); err != nil {
		return nil, err
	}
	nc, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		if lost := c.lost(); lost != nil {
			return nil, lost
		}
		return nil, fmt.Errorf("%s: dial %s %s through ssh: %w", c.host, network, addr, err)
	}
	return nc, nil
}
