package metric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/relctl/relctl/healthcheck"
)

// dialError marks an error from Options.Dial, so that a failure to reach
// the server is told apart from one after reaching it, whichever client
// library wrapped it on the way.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// boundedDialer wraps dial so that it returns when ctx ends even if dial
// does not honour ctx (an SSH channel open can wait on a stuck connection),
// marks its errors as dial errors, and gives its connections deadlines even
// when they have none of their own (see deadlineConn).
func boundedDialer(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := healthcheck.BoundedDial(ctx, dial, network, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return &deadlineConn{Conn: c}, nil
	}
}

// deadlineConn gives a connection that refuses deadlines (an SSH
// direct-tcpip channel: "ssh: tcpChan: deadline not supported") a coarse
// one: when a deadline passes, the connection is closed. Every connection
// here serves one sample and is then dropped, so closing is as good as
// timing out. Connections that support deadlines keep their own.
type deadlineConn struct {
	net.Conn

	mu     sync.Mutex
	timer  *time.Timer
	read   time.Time
	write  time.Time
	native bool // the wrapped conn accepted a deadline
	tried  bool
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	return c.set(t, true, true)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error { return c.set(t, true, false) }

func (c *deadlineConn) SetWriteDeadline(t time.Time) error { return c.set(t, false, true) }

func (c *deadlineConn) set(t time.Time, read, write bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tried || c.native {
		var err error
		switch {
		case read && write:
			err = c.Conn.SetDeadline(t)
		case read:
			err = c.Conn.SetReadDeadline(t)
		default:
			err = c.Conn.SetWriteDeadline(t)
		}
		c.tried, c.native = true, err == nil
		if c.native {
			return nil
		}
	}
	if read {
		c.read = t
	}
	if write {
		c.write = t
	}
	first := c.read
	if first.IsZero() || (!c.write.IsZero() && c.write.Before(first)) {
		first = c.write
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if !first.IsZero() {
		c.timer = time.AfterFunc(time.Until(first), func() { _ = c.Conn.Close() })
	}
	return nil
}

func (c *deadlineConn) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// classify turns a failed reading's error into one of the package's kinds.
// The caller's context ending wins over everything (the sample is Stopped,
// not failed); this sample's own deadline is ErrTimeout.
func (r reader) classify(err error) error {
	if perr := r.parent.Err(); perr != nil {
		return perr
	}
	var re *readError
	if errors.As(err, &re) {
		return err
	}
	// url.Error repeats the URL, userinfo included; the inner error is enough.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case r.ctx.Err() != nil || isTimeout(err):
		// The cause is dropped on purpose: it may wrap
		// context.DeadlineExceeded, which callers read as "the caller's
		// deadline passed".
		return failf(ErrTimeout, fmt.Sprintf("timed out after %s", r.timeout))
	case errors.Is(err, syscall.ECONNREFUSED) ||
		strings.Contains(strings.ToLower(err.Error()), "connection refused"): // ssh direct-tcpip only says it in text
		return &readError{kind: ErrUnreachable, msg: "connection refused", cause: err}
	}
	var de *dialError
	if errors.As(err, &de) {
		return &readError{kind: ErrUnreachable, msg: "cannot connect: " + r.scrub(de.err.Error()), cause: err}
	}
	return &readError{kind: ErrProtocol, msg: r.scrub(err.Error()), cause: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// scrub makes server or library text safe for a one-line reason: the
// password removed wherever it appears (no client should echo it; this is
// the last line of defence), control characters and URL userinfo dropped.
func (r reader) scrub(text string) string {
	if len(r.password) >= 4 { // shorter: replacing it would mangle the text, and relctl refuses such secrets
		text = strings.ReplaceAll(text, r.password, "********")
	}
	return oneLine(text)
}

// maxReason keeps a reason to one readable line.
const maxReason = 200

// oneLine makes text safe for a one-line reason: valid UTF-8, no control
// characters, whitespace collapsed, credentials in URLs removed, at most
// maxReason bytes.
func oneLine(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, text)
	text = strings.Join(strings.Fields(text), " ")
	text = redactUserinfo(text)
	return truncate(text, maxReason)
}

// truncate cuts text to at most n bytes on a rune boundary, marked "…".
func truncate(text string, n int) string {
	if len(text) <= n {
		return text
	}
	cut := n - len("…")
	for cut > 0 && !utf8RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// redactUserinfo drops "user:pass@" after any "scheme://" in text.
func redactUserinfo(text string) string {
	var b strings.Builder
	for {
		i := strings.Index(text, "://")
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i+3])
		rest := text[i+3:]
		end := strings.IndexAny(rest, "/?# ")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			rest = rest[at+1:]
		}
		text = rest
	}
}
