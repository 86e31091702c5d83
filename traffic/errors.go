package traffic

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/transport"
)

// Sentinels callers branch on with errors.Is.
var (
	// ErrUnknownBackend: HAProxy has no backend by that name.
	ErrUnknownBackend = errors.New("no such backend")
	// ErrUnknownServer: the backend has no server by that name.
	ErrUnknownServer = errors.New("no such server")
	// ErrInvalidName: a backend or server name HAProxy could not have;
	// refused before anything is sent.
	ErrInvalidName = errors.New("invalid haproxy name")
	// ErrSocatMissing: the load balancer host has no socat to reach the socket with.
	ErrSocatMissing = errors.New("socat not found")
)

// APIError is an answer of the runtime API that reports a failure. HAProxy
// answers errors in the body of a successful connection, so they are only
// caught by reading what it said.
type APIError struct {
	Host    string // the load balancer host
	Backend string
	Server  string // empty for backend-wide commands
	Command string // the API command sent
	Answer  string // what HAProxy said, trimmed
}

func (e *APIError) Error() string {
	answer := transport.Printable(e.Answer, 300)
	if strings.TrimSpace(answer) == "" {
		answer = "an empty answer"
	}
	return fmt.Sprintf("%s: haproxy %s: %s (answer to %q)", e.Host, e.target(), answer, e.Command)
}

func (e *APIError) target() string {
	if e.Server == "" {
		return "backend " + e.Backend
	}
	return e.Backend + "/" + e.Server
}

// Is maps HAProxy's own wording of a missing backend or server to the sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnknownBackend:
		return strings.HasPrefix(e.Answer, "Can't find backend") ||
			strings.HasPrefix(e.Answer, "No such backend") ||
			strings.HasPrefix(e.Answer, "No such proxy")
	case ErrUnknownServer:
		return strings.HasPrefix(e.Answer, "No such server")
	}
	return false
}

// DrainTimeoutError is a drain whose sessions did not end in time. The
// server was set to maint anyway; the sessions it still had keep running
// until they end (HAProxy does not cut them), so the caller decides
// whether that is acceptable.
type DrainTimeoutError struct {
	Host     string
	Backend  string
	Server   string
	Timeout  time.Duration
	Sessions int // current sessions when the timeout passed
	Queued   int // requests queued for the server when the timeout passed
}

func (e *DrainTimeoutError) Error() string {
	left := plural(e.Sessions, "session")
	if e.Queued > 0 {
		left += " and " + plural(e.Queued, "queued request")
	}
	return fmt.Sprintf("%s: haproxy %s/%s: drain timed out after %s with %s left; server set to maint anyway",
		e.Host, e.Backend, e.Server, e.Timeout, left)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
