// Package healthcheck owns the probes that decide whether a host's service is
// healthy before traffic moves to it (http, tcp, command) and the policy that
// turns single probes into a verdict: retries, interval and "healthy for N
// consecutive passes". It receives fully resolved values; templating and
// defaults belong to the playbooks package.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/relctl/relctl/internal/transport"
)

// Check types.
const (
	TypeHTTP    = "http"
	TypeTCP     = "tcp"
	TypeCommand = "command"
)

// Where http and tcp checks dial from.
const (
	ViaHost       = "host"       // through the host's SSH connection (the default)
	ViaController = "controller" // directly from the machine running relctl
)

// DefaultTimeout bounds an attempt whose Spec has no Timeout: an unbounded
// attempt could hang a deploy forever.
const DefaultTimeout = 5 * time.Second

// Spec is one resolved health check.
type Spec struct {
	Name string
	Type string // "http" | "tcp" | "command"

	// http
	URL          string
	ExpectStatus int // 0 means 200
	BodyContains string
	BodyRegex    *regexp.Regexp

	// tcp: host:port
	Address string

	// command: run on the host; exit 0 passes. Already shell-safe.
	Command string

	// Via is "host" (default when empty) or "controller"; http and tcp only.
	Via string

	// Timeout bounds one attempt (0 means DefaultTimeout). Interval is the
	// pause after an attempt before the next one (0 means none).
	Timeout, Interval time.Duration

	// HealthyFor is how many consecutive passes make the host healthy (values
	// below 1 mean 1). Retries is how many attempts may be wasted on top of
	// those: Wait makes at most HealthyFor+Retries attempts (see Wait).
	Retries, HealthyFor int
}

// Host is what a check needs from a host; transport.Conn satisfies it.
type Host interface {
	Host() string
	Run(ctx context.Context, cmd string, opts transport.RunOptions) (*transport.Result, error)
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

var _ Host = transport.Conn(nil)

// Kinds of probe failure, for errors.Is. The caller's own context ending is
// reported as its error (context.Canceled or context.DeadlineExceeded), never
// as ErrTimeout, so "the check timed out" and "the deploy was stopped" differ.
var (
	// ErrInvalidSpec: the spec cannot be probed (unknown type, missing URL…).
	// Wait does not retry it.
	ErrInvalidSpec = errors.New("invalid health check")
	// ErrTimeout: one attempt ran longer than Spec.Timeout.
	ErrTimeout = errors.New("timed out")
	// ErrRefused: nothing listens at the address (directly or via the host).
	ErrRefused = errors.New("connection refused")
	// ErrUnexpected: the target answered, but not as the spec expects
	// (status, body, non-zero exit).
	ErrUnexpected = errors.New("unexpected answer")
)

// Attempt is one probe as Wait saw it.
type Attempt struct {
	N        int // 1-based
	OK       bool
	Observed string // e.g. `HTTP 500: {"status":"failing"}`, "connection refused", "exit 1: <tail>"
	Elapsed  time.Duration
}

// Outcome is the verdict of Wait for one check on one host.
type Outcome struct {
	Check, Host string
	Healthy     bool
	Attempts    []Attempt
	Elapsed     time.Duration
	// Err is nil when Healthy; otherwise a *CheckError naming host and check
	// that wraps the last probe's error, or the caller's context error when
	// Wait was stopped.
	Err error
}

// CheckError is why a check did not pass on a host.
type CheckError struct {
	Host, Check string
	Attempts    int
	// Observed is the last attempt's observation ("" when none ran).
	Observed string
	// Err is the last probe's error, ErrInvalidSpec, or the context error.
	Err error
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("%s: check %q: %s", e.Host, e.Check, failureLine(e.Attempts, e.Observed, e.Err))
}

func (e *CheckError) Unwrap() error { return e.Err }

// Summary is the one line a user reads about the outcome, e.g.
// "health ok after 3 attempts (2 consecutive passes, 0.6s)" or
// `health failed after 26 attempts: HTTP 500: {"status":"failing"}`.
func (o Outcome) Summary() string {
	if o.Healthy {
		streak := 0
		for i := len(o.Attempts) - 1; i >= 0 && o.Attempts[i].OK; i-- {
			streak++
		}
		return fmt.Sprintf("health ok after %s (%d consecutive %s, %.1fs)",
			plural(len(o.Attempts), "attempt", "attempts"), streak,
			pluralWord(streak, "pass", "passes"), o.Elapsed.Seconds())
	}
	observed := ""
	if n := len(o.Attempts); n > 0 {
		observed = o.Attempts[n-1].Observed
	}
	cause := o.Err
	var ce *CheckError
	if errors.As(o.Err, &ce) {
		cause = ce.Err
	}
	return failureLine(len(o.Attempts), observed, cause)
}

// failureLine words an unhealthy verdict the same way for Summary and CheckError.
func failureLine(attempts int, observed string, cause error) string {
	switch {
	case errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded):
		s := fmt.Sprintf("health check stopped after %s: %v", plural(attempts, "attempt", "attempts"), cause)
		if observed != "" {
			s += " (last: " + observed + ")"
		}
		return s
	case attempts == 0:
		return fmt.Sprintf("health not checked: %v", cause)
	default:
		if observed == "" && cause != nil {
			observed = cause.Error()
		}
		return fmt.Sprintf("health failed after %s: %s", plural(attempts, "attempt", "attempts"), observed)
	}
}

func plural(n int, one, many string) string {
	return fmt.Sprintf("%d %s", n, pluralWord(n, one, many))
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
