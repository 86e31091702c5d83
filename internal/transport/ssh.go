package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Options configure every connection of a Pool. The login settings
// (User to ConnectTimeout) are defaults: each Endpoint of a Target, the
// host's and each bastion's, may replace them for its own server.
type Options struct {
	// User is the login name when an Endpoint has none; empty: the local user.
	User string
	// IdentityFile is a private key in OpenSSH/PEM format, for Endpoints
	// without IdentityFiles. An encrypted key is usable only through an
	// ssh-agent that holds it.
	IdentityFile string
	// UseAgent adds the keys of the agent at $SSH_AUTH_SOCK to every login
	// (with IdentitiesOnly, only its copies of the identity files' keys).
	UseAgent bool
	// KnownHostsFile is the known_hosts file of Endpoints without
	// KnownHostsFiles; empty: ~/.ssh/known_hosts.
	KnownHostsFile string
	// HostKeyPolicy is PolicyStrict (default) or PolicyAcceptNew, as
	// OpenSSH's StrictHostKeyChecking. A changed key is refused under both.
	HostKeyPolicy string
	// ConnectTimeout bounds TCP connect plus SSH handshake of each hop
	// (host or bastion); 0: only ctx.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each Run with RunOptions.Limit CommandLimit and
	// no Timeout of its own, unless ctx ends earlier; 0: only ctx.
	CommandTimeout time.Duration
	// ControlTimeout bounds each Run with RunOptions.Limit ControlLimit (the
	// default) and no Timeout of its own; 0: CommandTimeout does.
	ControlTimeout time.Duration
	// Keepalive is the interval of keepalive@openssh.com requests; a request
	// unanswered for three intervals drops the connection. 0 disables.
	Keepalive time.Duration
	// Output receives every command, output line and exit; may be nil.
	Output *RunLog
}

// Pool holds one SSH connection per host name for a whole run. It is safe
// for concurrent use.
type Pool struct {
	opts Options
	// agentSock is $SSH_AUTH_SOCK when the pool was made.
	agentSock            string
	defaultKnownHosts    string // Options.KnownHostsFile, else ~/.ssh/known_hosts
	defaultKnownHostsErr error  // no home directory to find the latter in

	agentMu     sync.Mutex
	agentConn   net.Conn
	agentClient agent.ExtendedAgent
	agentClosed bool

	// loadMu guards the maps of what is loaded once per pool, by path:
	// identity files, known_hosts files, and checkers by (files, policy).
	loadMu     sync.Mutex
	identities map[string]*identityLoad
	knownHosts map[string]*knownHostsFile
	checkers   map[string]*hostKeyChecker

	mu sync.Mutex
	// conns and dialing are keyed by host name, and for bastions by
	// "\x00" and their chain (every setting of each login along it).
	conns      map[string]*sshConn
	dialing    map[string]*dialCall
	handshakes map[string]int // by host name and bastionName
	closed     bool
}

// dialCall is a dial in progress that concurrent Gets for the same host (or
// bastion) wait on.
type dialCall struct {
	done chan struct{}
	conn *sshConn
	err  error
}

var errPoolClosed = errors.New("transport: pool is closed")

// NewPool checks the options and loads Options.IdentityFile (and the
// agent, with UseAgent) up front, so a missing or unusable default key
// fails before any host is touched. Identity files of targets are loaded
// when first used (CheckTargets loads them all at once).
func NewPool(opts Options) (*Pool, error) {
	policy, err := checkPolicy(opts.HostKeyPolicy)
	if err != nil {
		return nil, err
	}
	opts.HostKeyPolicy = policy
	p := &Pool{
		opts:              opts,
		agentSock:         os.Getenv("SSH_AUTH_SOCK"),
		defaultKnownHosts: opts.KnownHostsFile,
		identities:        map[string]*identityLoad{},
		knownHosts:        map[string]*knownHostsFile{},
		checkers:          map[string]*hostKeyChecker{},
		conns:             map[string]*sshConn{},
		dialing:           map[string]*dialCall{},
		handshakes:        map[string]int{},
	}
	if p.defaultKnownHosts == "" {
		p.defaultKnownHosts, p.defaultKnownHostsErr = defaultKnownHosts()
	}
	if opts.UseAgent {
		if p.agentSock == "" {
			return nil, errors.New("ssh agent requested but SSH_AUTH_SOCK is not set")
		}
		if _, err := p.agent(); err != nil {
			return nil, err
		}
	}
	if opts.IdentityFile != "" {
		if _, err := p.identity(opts.IdentityFile); err != nil {
			_ = p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Get returns the connection to t, dialling it on first use. Concurrent
// calls for the same host share one dial; a connection that was lost is
// dialled again. A target behind bastions (Jumps) is reached over a
// direct-tcpip channel of its last bastion's connection, which the pool
// dials once for every host behind it that reaches it the same way (and
// again once it is lost). Every hop is dialled with its own settings.
func (p *Pool) Get(ctx context.Context, t Target) (Conn, error) {
	p.mu.Lock()
	c := p.conns[t.Name]
	p.mu.Unlock()
	if c != nil && c.lost() == nil {
		return c, nil
	}
	h, err := p.targetHop(t)
	if err != nil {
		return nil, err
	}
	c, err = p.getHop(ctx, h)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// hop is one connection the pool makes: to a host, or to a bastion.
type hop struct {
	key     string // the pool's key: the host's name, or "\x00"+the bastion's chain
	name    string // in errors, logs and Handshakes
	login   *login
	chain   []hop    // a host's bastions, first first
	via     *sshConn // the bastion it is dialled through; nil: directly
	bastion bool
	logFor  string // a bastion's: the host whose Get dialled it, for the run log
}

// getHop is Get for a host or a bastion.
func (p *Pool) getHop(ctx context.Context, h hop) (*sshConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		if c := p.conns[h.key]; c != nil && c.lost() == nil {
			p.mu.Unlock()
			return c, nil
		}
		call := p.dialing[h.key]
		if call == nil {
			call = &dialCall{done: make(chan struct{})}
			p.dialing[h.key] = call
			p.mu.Unlock()
			return p.dialFor(ctx, h, call)
		}
		p.mu.Unlock()

		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: waiting for connection: %w", h.name, ctx.Err())
		}
		// The dialling caller's own cancellation is not ours: try again.
		if call.err != nil && isContextErr(call.err) && ctx.Err() == nil {
			continue
		}
		if call.err != nil {
			return nil, call.err
		}
		return call.conn, nil
	}
}

func (p *Pool) dialFor(ctx context.Context, h hop, call *dialCall) (*sshConn, error) {
	var conn *sshConn
	var err error
	if len(h.chain) > 0 {
		h.via, err = p.bastion(ctx, h.name, h.chain)
		if err != nil {
			err = fmt.Errorf("%s (%s): %w", h.name, h.login.address, err)
		}
	}
	if err == nil {
		conn, err = p.dial(ctx, h)
	}
	p.mu.Lock()
	delete(p.dialing, h.key)
	if err == nil && p.closed {
		_ = conn.Close()
		conn, err = nil, errPoolClosed
	}
	if err == nil {
		if old := p.conns[h.key]; old != nil {
			_ = old.Close()
		}
		p.conns[h.key] = conn
		p.handshakes[h.name]++
	}
	n := p.handshakes[h.name]
	call.conn, call.err = conn, err
	close(call.done)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// The run log counts connections: one per host (and per bastion) per
	// command, unless one was lost and dialled again.
	switch {
	case h.bastion:
		p.opts.Output.Event(h.logFor, "ssh: connected to %s (handshake %d with this bastion in this command)", h.name, n)
	case h.via != nil:
		p.opts.Output.Event(h.name, "ssh: connected (handshake %d with this host in this command) through %s", n, h.via.host)
	default:
		p.opts.Output.Event(h.name, "ssh: connected (handshake %d with this host in this command)", n)
	}
	return conn, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Handshakes reports successful SSH handshakes per host name so far, and
// per bastion as "bastion user@host:port" ("bastion a>b" for the second
// bastion of a chain a,b); the connections of two different logins to one
// bastion (another identity, known_hosts file, ...) count under its one
// name.
func (p *Pool) Handshakes() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]int, len(p.handshakes))
	for k, v := range p.handshakes {
		m[k] = v
	}
	return m
}

// Close closes every connection and the agent; later Gets fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*sshConn{}
	p.mu.Unlock()
	var result *multierror.Error
	// Hosts first, then the bastions they run through.
	for _, bastions := range []bool{false, true} {
		for key, c := range conns {
			if strings.HasPrefix(key, "\x00") != bastions {
				continue
			}
			if err := c.Close(); err != nil {
				result = multierror.Append(result, err)
			}
		}
	}
	p.agentMu.Lock()
	p.agentClosed = true
	if p.agentConn != nil {
		if err := p.agentConn.Close(); err != nil {
			result = multierror.Append(result, fmt.Errorf("ssh-agent: %w", err))
		}
		p.agentConn, p.agentClient = nil, nil
	}
	p.agentMu.Unlock()
	return result.ErrorOrNil()
}

func withDefaultPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), "22")
}

// dial connects and authenticates with h's own settings; its
// ConnectTimeout covers TCP (or the bastion's channel) and the handshake.
func (p *Pool) dial(ctx context.Context, h hop) (*sshConn, error) {
	// The host goes on each message: a logger made With it holds a 500-byte
	// buffer for the connection's life.
	logger := zerolog.Ctx(ctx)
	l := h.login
	for _, err := range l.skipped {
		p.opts.Output.Event(h.name, "ssh: identity left out as unusable (as ssh does): %v", err)
	}
	algos, err := l.hostKeys.algorithms(l.lookup)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.name, err)
	}
	cfg := &ssh.ClientConfig{
		User:              l.user,
		Auth:              []ssh.AuthMethod{p.auth(l)},
		HostKeyCallback:   l.hostKeys.callback(l.hostKeyDial(h.name)),
		HostKeyAlgorithms: algos,
		Timeout:           l.timeout,
	}

	dctx := ctx
	if l.timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	start := time.Now()
	cc, chans, reqs, err := p.handshake(dctx, h, cfg)
	if err != nil {
		return nil, err
	}
	logger.Debug().Str("host", h.name).Str("address", l.address).Str("user", l.user).
		Dur("took", time.Since(start)).Msg("ssh connected")

	// Not ssh.NewClient, which starts three goroutines per connection: two
	// that turn down what the server opens or asks, which watch does, and
	// one that waits for the end to close remote forwards, which relctl
	// never opens. Sessions and direct-tcpip only need Conn.
	c := &sshConn{
		host:           h.name,
		client:         &ssh.Client{Conn: cc},
		via:            h.via,
		log:            p.opts.Output,
		cmdTimeout:     p.opts.CommandTimeout,
		controlTimeout: p.opts.ControlTimeout,
		logger:         logger,
		gone:           make(chan struct{}),
	}
	if l.forwardAgent && !h.bastion {
		c.agentSock = p.agentSock
	}
	go c.watch(chans, reqs, p.opts.Keepalive)
	return c, nil
}

// handshake opens the byte stream to h (TCP, or a direct-tcpip channel of
// its bastion's connection) and runs the SSH handshake on it. Cancelling
// dctx aborts a handshake stuck on a silent server.
func (p *Pool) handshake(dctx context.Context, h hop, cfg *ssh.ClientConfig) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	nc, err := p.connect(dctx, h)
	if err != nil {
		return nil, nil, nil, err
	}
	if deadline, ok := dctx.Deadline(); ok {
		_ = nc.SetDeadline(deadline)
	}
	// A bastion's channel has no deadlines: closing it ends the handshake.
	stop := context.AfterFunc(dctx, func() {
		if nc.SetDeadline(time.Unix(1, 0)) != nil {
			_ = nc.Close()
		}
	})
	cc, chans, reqs, err := ssh.NewClientConn(nc, h.login.address, cfg)
	interrupted := !stop()
	if err == nil && interrupted {
		_ = cc.Close()
		err = dctx.Err()
	}
	if err != nil {
		_ = nc.Close()
		if refused := hostKeyRefusal(err); refused != nil {
			return nil, nil, nil, refused
		}
		if lost := h.viaLost(); lost != nil {
			return nil, nil, nil, &DialError{Host: h.name, Address: h.login.address, Err: lost}
		}
		// The conn deadline (= dctx's) may fire a moment before dctx notices.
		if cause := dctx.Err(); cause != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			if cause == nil {
				cause = context.DeadlineExceeded
			}
			err = fmt.Errorf("ssh handshake: %w", cause)
		}
		return nil, nil, nil, &DialError{Host: h.name, Address: h.login.address, Err: err}
	}
	_ = nc.SetDeadline(time.Time{})
	return cc, chans, reqs, nil
}

// connect opens a TCP connection to h, from its bastion when it has one
// (the bastion's sshd connects: OpenSSH's direct-tcpip).
func (p *Pool) connect(dctx context.Context, h hop) (net.Conn, error) {
	if h.via == nil {
		var d net.Dialer
		nc, err := d.DialContext(dctx, "tcp", h.login.address)
		if err != nil {
			return nil, &DialError{Host: h.name, Address: h.login.address, Err: connectCause(dctx, err)}
		}
		return nc, nil
	}
	nc, err := h.via.client.DialContext(dctx, "tcp", h.login.address)
	if err != nil {
		if lost := h.viaLost(); lost != nil {
			err = lost
		} else if dctx.Err() != nil {
			err = fmt.Errorf("connect: %w", dctx.Err())
		}
		return nil, &DialError{Host: h.name, Address: h.login.address, Err: fmt.Errorf("connect through %s: %w", h.via.host, err)}
	}
	return nc, nil
}

// viaLost is why h's bastion connection ended, or nil.
func (h hop) viaLost() error {
	if h.via == nil {
		return nil
	}
	return h.via.lost()
}

// connectCause strips net.OpError's "dial tcp ADDR:" since DialError names
// the address already: "connect: connection refused".
func connectCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("connect: %w", ctx.Err())
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
