package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Options configure every connection of a Pool.
type Options struct {
	// User is the login name when a Target has none; empty: the local user.
	User string
	// IdentityFile is a private key in OpenSSH/PEM format. An encrypted key
	// is usable only through an ssh-agent that holds it.
	IdentityFile string
	// UseAgent adds the keys of the agent at $SSH_AUTH_SOCK.
	UseAgent bool
	// KnownHostsFile is the known_hosts file; empty: ~/.ssh/known_hosts.
	KnownHostsFile string
	// HostKeyPolicy is PolicyStrict (default) or PolicyAcceptNew, as
	// OpenSSH's StrictHostKeyChecking. A changed key is refused under both.
	HostKeyPolicy string
	// ConnectTimeout bounds TCP connect plus SSH handshake; 0: only ctx.
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

// Target is one host to connect to.
type Target struct {
	Name    string // the inventory name, used in errors and logs
	Address string // host:port; the port defaults to 22
	User    string // overrides Options.User
	// ProxyJump is the bastions to reach the host through, in OpenSSH's
	// ProxyJump syntax: "[user@]host[:port]", comma-separated, first
	// first; "" or "none": dialled directly. Address is then dialled from
	// the last bastion. A string, so Target stays comparable; check it
	// with ParseProxyJump when the configuration is read.
	ProxyJump string
}

// Pool holds one SSH connection per host name for a whole run. It is safe
// for concurrent use.
type Pool struct {
	opts      Options
	auth      ssh.AuthMethod
	agentConn net.Conn
	hostKeys  *hostKeyChecker

	mu sync.Mutex
	// conns and dialing are keyed by host name, and for bastions by
	// "\x00" and their chain ("user@host:port", "a>b" for the second).
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

// NewPool checks the options and loads the identity (and agent) up front,
// so a missing or unusable key fails before any host is touched.
func NewPool(opts Options) (*Pool, error) {
	hk, err := newHostKeyChecker(opts.KnownHostsFile, opts.HostKeyPolicy)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		opts:       opts,
		hostKeys:   hk,
		conns:      map[string]*sshConn{},
		dialing:    map[string]*dialCall{},
		handshakes: map[string]int{},
	}

	fileSigners, encrypted, idCert, err := loadIdentity(opts.IdentityFile)
	if err != nil {
		return nil, err
	}

	var agentClient agent.ExtendedAgent
	if opts.UseAgent || encrypted != nil {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			if encrypted != nil {
				return nil, fmt.Errorf("identity file %s is encrypted and no ssh-agent is available "+
					"(SSH_AUTH_SOCK is not set): start ssh-agent and run ssh-add %s", opts.IdentityFile, opts.IdentityFile)
			}
			return nil, errors.New("ssh agent requested but SSH_AUTH_SOCK is not set")
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("ssh-agent at SSH_AUTH_SOCK: %w", err)
		}
		p.agentConn = c
		agentClient = agent.NewClient(c)
		if encrypted != nil {
			if err := agentHolds(agentClient, encrypted.PublicKey); err != nil {
				c.Close()
				return nil, fmt.Errorf("identity file %s is encrypted: %w", opts.IdentityFile, err)
			}
		}
	}
	if len(fileSigners) == 0 && agentClient == nil {
		return nil, errors.New("no SSH identity: set an identity file or use an ssh-agent")
	}
	p.auth = ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		signers := fileSigners
		if agentClient != nil {
			more, err := agentClient.Signers()
			if err != nil {
				return nil, fmt.Errorf("ssh-agent: %w", err)
			}
			// The identity's certificate also goes with the agent's copy
			// of its key (an encrypted identity file); agent keys that are
			// certificates are used as the agent gives them.
			if encrypted != nil {
				if more, err = withCert(more, idCert); err != nil {
					return nil, fmt.Errorf("ssh-agent: %w", err)
				}
			}
			signers = append(append([]ssh.Signer(nil), signers...), more...)
		}
		return signers, nil
	})
	return p, nil
}

// loadIdentity reads the identity file (none: nothing) and the
// certificate beside it. An encrypted key is returned as encrypted, for
// the agent to sign with; the certificate goes with the key wherever it is.
func loadIdentity(file string) (fileSigners []ssh.Signer, encrypted *ssh.PassphraseMissingError, idCert *ssh.Certificate, err error) {
	if file == "" {
		return nil, nil, nil, nil
	}
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("identity file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	var pub ssh.PublicKey
	switch {
	case errors.As(err, &encrypted):
		pub = encrypted.PublicKey
	case err != nil:
		return nil, nil, nil, fmt.Errorf("identity file %s: %w", file, err)
	default:
		fileSigners, pub = []ssh.Signer{signer}, signer.PublicKey()
	}
	if idCert, err = loadIdentityCert(file, pub, func() int64 { return time.Now().Unix() }); err != nil {
		return nil, nil, nil, err
	}
	if fileSigners, err = withCert(fileSigners, idCert); err != nil {
		return nil, nil, nil, fmt.Errorf("certificate %s-cert.pub: %w", file, err)
	}
	return fileSigners, encrypted, idCert, nil
}

// agentHolds checks that the agent can sign for an encrypted identity file.
func agentHolds(a agent.Agent, pub ssh.PublicKey) error {
	keys, err := a.List()
	if err != nil {
		return fmt.Errorf("ssh-agent: %w", err)
	}
	if pub == nil { // old key formats hide the public half; any agent key may do
		if len(keys) == 0 {
			return errors.New("ssh-agent holds no keys: run ssh-add")
		}
		return nil
	}
	for _, k := range keys {
		if bytes.Equal(k.Marshal(), pub.Marshal()) {
			return nil
		}
	}
	return fmt.Errorf("ssh-agent does not hold this key (%s): run ssh-add", ssh.FingerprintSHA256(pub))
}

// Get returns the connection to t, dialling it on first use. Concurrent
// calls for the same host share one dial; a connection that was lost is
// dialled again. A target behind bastions (ProxyJump) is reached over a
// direct-tcpip channel of its last bastion's connection, which the pool
// dials once for every host behind it (and again once it is lost).
func (p *Pool) Get(ctx context.Context, t Target) (Conn, error) {
	chain, err := ParseProxyJump(t.ProxyJump)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name, err)
	}
	c, err := p.getHop(ctx, hop{
		key:     t.Name,
		name:    t.Name,
		address: withDefaultPort(t.Address),
		user:    t.User,
		chain:   chain,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// hop is one connection the pool makes: to a host, or to a bastion.
type hop struct {
	key     string // the pool's key: the host's name, or "\x00"+the bastion's chain
	name    string // in errors, logs and Handshakes
	address string // host:port
	user    string // empty: Options.User, else the local user
	chain   []JumpHost
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
			err = fmt.Errorf("%s (%s): %w", h.name, h.address, err)
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
// bastion of a chain a,b).
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
	if p.agentConn != nil {
		if err := p.agentConn.Close(); err != nil {
			result = multierror.Append(result, fmt.Errorf("ssh-agent: %w", err))
		}
	}
	return result.ErrorOrNil()
}

func withDefaultPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), "22")
}

func (p *Pool) user(t Target) (string, error) {
	if t.User != "" {
		return t.User, nil
	}
	if p.opts.User != "" {
		return p.opts.User, nil
	}
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("%s: no ssh user given and the local user is unknown: %w", t.Name, err)
	}
	return u.Username, nil
}

// dial connects and authenticates; ConnectTimeout covers TCP (or the
// bastion's channel) and the handshake.
func (p *Pool) dial(ctx context.Context, h hop) (*sshConn, error) {
	// The host goes on each message: a logger made With it holds a 500-byte
	// buffer for the connection's life.
	logger := zerolog.Ctx(ctx)
	login, err := p.user(Target{Name: h.name, User: h.user})
	if err != nil {
		return nil, err
	}
	algos, err := p.hostKeys.algorithms(h.address)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.name, err)
	}
	cfg := &ssh.ClientConfig{
		User:              login,
		Auth:              []ssh.AuthMethod{p.auth},
		HostKeyCallback:   p.hostKeys.callback(h.name, h.address),
		HostKeyAlgorithms: algos,
		Timeout:           p.opts.ConnectTimeout,
	}

	dctx := ctx
	if p.opts.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, p.opts.ConnectTimeout)
		defer cancel()
	}
	start := time.Now()
	cc, chans, reqs, err := p.handshake(dctx, h, cfg)
	if err != nil {
		return nil, err
	}
	logger.Debug().Str("host", h.name).Str("address", h.address).Str("user", login).
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
	cc, chans, reqs, err := ssh.NewClientConn(nc, h.address, cfg)
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
			return nil, nil, nil, &DialError{Host: h.name, Address: h.address, Err: lost}
		}
		// The conn deadline (= dctx's) may fire a moment before dctx notices.
		if cause := dctx.Err(); cause != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			if cause == nil {
				cause = context.DeadlineExceeded
			}
			err = fmt.Errorf("ssh handshake: %w", cause)
		}
		return nil, nil, nil, &DialError{Host: h.name, Address: h.address, Err: err}
	}
	_ = nc.SetDeadline(time.Time{})
	return cc, chans, reqs, nil
}

// connect opens a TCP connection to h, from its bastion when it has one
// (the bastion's sshd connects: OpenSSH's direct-tcpip).
func (p *Pool) connect(dctx context.Context, h hop) (net.Conn, error) {
	if h.via == nil {
		var d net.Dialer
		nc, err := d.DialContext(dctx, "tcp", h.address)
		if err != nil {
			return nil, &DialError{Host: h.name, Address: h.address, Err: connectCause(dctx, err)}
		}
		return nc, nil
	}
	nc, err := h.via.client.DialContext(dctx, "tcp", h.address)
	if err != nil {
		if lost := h.viaLost(); lost != nil {
			err = lost
		} else if dctx.Err() != nil {
			err = fmt.Errorf("connect: %w", dctx.Err())
		}
		return nil, &DialError{Host: h.name, Address: h.address, Err: fmt.Errorf("connect through %s: %w", h.via.host, err)}
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
