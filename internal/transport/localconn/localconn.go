// Package localconn is an in-process transport.Conn for unit tests, never
// for talking to hosts: each fake host is a directory on this machine, and
// every command runs there with a real local shell (/bin/sh -c), so relctl's
// own state, lock and activation scripts really run. A test points base_dir
// inside a host's Root (a t.TempDir()), so nothing outside it is touched.
//
// Faults are plain hooks a test sets on a Host: fail a command, lose the
// connection at one, make the host unreachable for the next dials, run a
// callback when a command starts. Every command is recorded.
package localconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/relctl/relctl/internal/transport"
)

// Connector hands out one Conn per host name, and a new one once the last
// was lost. It is safe for concurrent use.
type Connector struct {
	root  string
	mu    sync.Mutex
	hosts map[string]*Host
}

// NewConnector keeps every host's directory under root (<root>/<name>).
func NewConnector(root string) *Connector {
	return &Connector{root: root, hosts: map[string]*Host{}}
}

// Host returns the named host, creating its directory on first use.
func (c *Connector) Host(name string) *Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.hosts[name]
	if h == nil {
		h = &Host{Name: name, Root: filepath.Join(c.root, name)}
		if err := os.MkdirAll(h.Root, 0o755); err != nil {
			panic(fmt.Sprintf("localconn: %v", err)) // a test's temp dir that cannot be written
		}
		c.hosts[name] = h
	}
	return h
}

// Get returns the host's live connection, or dials a new one: a
// *transport.DialError while the host is unreachable.
func (c *Connector) Get(ctx context.Context, t transport.Target) (transport.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.Host(t.Name).dial(t.Address)
}

// Fault is what happens to the commands it matches: a command matches when
// its RunOptions.Label equals Label (any label when empty; a label joining
// several with "+", such as "lock+read-state", is matched by each) and its
// text contains Text (any text when empty). An Upload's label is
// "upload <path>" and its text empty.
type Fault struct {
	Label string
	Text  string
	// Skip lets the first Skip matching commands through untouched; Times
	// is how many matching commands the fault hits after them (0: every one).
	Skip  int
	Times int

	// OnStart is called when a matching command starts, before anything
	// else the fault does: to close a run's Stop channel, cancel its
	// context, or block until the test says go.
	OnStart func()
	// Exit, when not 0, fails the command without running it: it exits
	// with this status and Stderr.
	Exit   int
	Stderr string
	// Lose loses the connection at the command: it returns an error
	// wrapping transport.ErrConnectionLost and the Conn is dead from then
	// on. With RunFirst the command runs first (its effects stay, its
	// answer is lost). ThenUnreachable makes the next N dials fail (< 0:
	// every dial from then on).
	Lose            bool
	RunFirst        bool
	ThenUnreachable int

	seen, hits int
}

// Command is one command a host was asked to run, as recorded.
type Command struct {
	Label string
	Text  string
	Exit  int   // the exit status; -1 when it did not end by itself
	Err   error // what Run (or Upload) returned
}

// Host is one fake host: a directory, its faults and what it ran.
type Host struct {
	Name string
	Root string // the host's directory: the working directory and $HOME of its commands

	mu          sync.Mutex
	faults      []*Fault
	unreachable int // the next N dials fail; < 0: every one
	dials       int
	conn        *Conn
	commands    []Command
}

// Fail adds a fault; faults are tried in the order they were added, and
// the first that matches a command applies to it.
func (h *Host) Fail(f Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, &f)
}

// Unreachable makes the next n dials fail (n < 0: every dial until
// Reachable); the live connection, if any, is lost.
func (h *Host) Unreachable(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreachable = n
	if h.conn != nil {
		h.conn.lose("the host went away")
		h.conn = nil
	}
}

// Reachable lets dials through again.
func (h *Host) Reachable() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreachable = 0
}

// Dials is how many times the host was dialled (refused dials included).
func (h *Host) Dials() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dials
}

// Commands is every command the host was asked to run, in order.
func (h *Host) Commands() []Command {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Command(nil), h.commands...)
}

// Labels is the label of every command the host ran, in order.
func (h *Host) Labels() []string {
	var out []string
	for _, c := range h.Commands() {
		out = append(out, c.Label)
	}
	return out
}

// Ran says whether the host was asked to run a command with this label
// (or one that joins it with others by "+").
func (h *Host) Ran(label string) bool {
	for _, c := range h.Commands() {
		if labelMatches(label, c.Label) {
			return true
		}
	}
	return false
}

// ResetCommands forgets the commands recorded so far.
func (h *Host) ResetCommands() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.commands = nil
}

func (h *Host) dial(address string) (transport.Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dials++
	if h.unreachable != 0 {
		if h.unreachable > 0 {
			h.unreachable--
		}
		return nil, &transport.DialError{Host: h.Name, Address: address, Err: errors.New("connection refused (localconn: host unreachable)")}
	}
	if h.conn == nil || h.conn.dead() != nil {
		h.conn = &Conn{host: h}
	}
	return h.conn, nil
}

// fault returns the first fault matching a command and counts the hit.
func (h *Host) fault(label, text string) *Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.faults {
		if f.Times > 0 && f.hits >= f.Times {
			continue
		}
		if (f.Label == "" || labelMatches(f.Label, label)) && (f.Text == "" || strings.Contains(text, f.Text)) {
			if f.seen++; f.seen <= f.Skip {
				continue
			}
			f.hits++
			c := *f
			return &c
		}
	}
	return nil
}

func (h *Host) record(c Command) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.commands = append(h.commands, c)
}

// lostAt ends conn as Fault f says: it is lost, and the host may stay
// unreachable for a while.
func (h *Host) lostAt(conn *Conn, f *Fault) error {
	err := conn.lose("lost at " + f.describe())
	h.mu.Lock()
	defer h.mu.Unlock()
	if f.ThenUnreachable != 0 {
		h.unreachable = f.ThenUnreachable
	}
	return err
}

func (f *Fault) describe() string {
	if f.Label != "" {
		return "[" + f.Label + "]"
	}
	return fmt.Sprintf("a command containing %q", f.Text)
}

// Conn is one connection to a Host. It is safe for concurrent use.
type Conn struct {
	host *Host

	mu      sync.Mutex
	lostErr error
}

var _ transport.Conn = (*Conn)(nil)

// lostError is a connection that went away; it wraps
// transport.ErrConnectionLost, as the ssh transport's does.
type lostError struct{ host, why string }

func (e *lostError) Error() string { return fmt.Sprintf("connection to %s lost: %s", e.host, e.why) }
func (e *lostError) Unwrap() error { return transport.ErrConnectionLost }

func (c *Conn) lose(why string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lostErr == nil {
		c.lostErr = &lostError{host: c.host.Name, why: why}
	}
	return c.lostErr
}

func (c *Conn) dead() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lostErr
}

// Host is the host's name.
func (c *Conn) Host() string { return c.host.Name }

// Close does nothing: the host stays as it is for the next Get.
func (c *Conn) Close() error { return nil }

// DialContext dials from this machine (the host is this machine).
func (c *Conn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := c.dead(); err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// labelMatches says whether want names the command labelled label: the
// label itself, or one of the labels it joins with "+".
func labelMatches(want, label string) bool {
	if want == label {
		return true
	}
	for _, part := range strings.Split(label, "+") {
		if part == want {
			return true
		}
	}
	return false
}
