package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
)

// DialError is a host that could not be reached or would not let us in:
// TCP connect, SSH handshake or authentication failed.
type DialError struct {
	Host    string
	Address string
	Err     error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("%s (%s): %v", e.Host, e.Address, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// ErrConnectionLost is wrapped by every error caused by a connection that
// went away (keepalive unanswered, server gone) after it was established.
var ErrConnectionLost = errors.New("connection lost")

// lostError names the host whose connection went away and why.
type lostError struct {
	host  string
	cause error
}

func (e *lostError) Error() string {
	return fmt.Sprintf("connection to %s lost: %v", e.host, e.cause)
}

func (e *lostError) Unwrap() []error { return []error{ErrConnectionLost, e.cause} }

// The limits a TimeoutError names.
const (
	SettingControlTimeout = "ssh.control_timeout"
	SettingCommandTimeout = "ssh.command_timeout"
	SettingStepTimeout    = "step timeout"
)

// TimeoutError is a command that was killed because it ran past its limit.
// It matches context.DeadlineExceeded, as a command ended by ctx's deadline
// does, and not ErrConnectionLost: the connection was alive, the command did
// not end (a hung mount, a stuck wrapper). Callers classify it as before.
type TimeoutError struct {
	Host    string
	Label   string        // the command's RunOptions.Label
	Setting string        // SettingControlTimeout, SettingCommandTimeout or SettingStepTimeout
	Limit   time.Duration // the setting's value
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: [%s] %s", e.Host, e.Label, e.reason())
}

// reason is the error without host and label, for the run log.
func (e *TimeoutError) reason() string {
	r := fmt.Sprintf("%s %s reached", e.Setting, e.Limit)
	if e.Setting == SettingControlTimeout || e.Setting == SettingCommandTimeout {
		r += " (the command did not end; raise it in relctl.toml [ssh] if the host is just slow)"
	}
	return r
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// Host key check outcomes, in HostKeyError.Kind.
const (
	HostKeyUnknown = "unknown"
	HostKeyChanged = "changed"
	HostKeyRevoked = "revoked"
)

// HostKeyError is a host whose key could not be verified against known_hosts.
// A changed key is refused whatever the policy.
type HostKeyError struct {
	Host    string
	Address string // as dialled, host:port
	Kind    string // HostKeyUnknown | HostKeyChanged | HostKeyRevoked
	// HostKeyAlias is the name the key was looked up under instead of
	// Address, when the server has one.
	HostKeyAlias string
	// KnownHostsFile is the first file consulted, the one accept-new
	// writes to; KnownHostsFiles are all of them.
	KnownHostsFile  string
	KnownHostsFiles []string
	// KeyType and Fingerprint describe the key the server presented.
	KeyType     string
	Fingerprint string // SHA256:...
	// OffendingFile and OffendingLine locate the known key that no longer
	// matches (Kind changed) or the revocation (Kind revoked).
	OffendingFile string
	OffendingLine int
}

func (e *HostKeyError) Error() string {
	name := knownHostsName(e.Address)
	if e.HostKeyAlias != "" {
		name = e.HostKeyAlias
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): ", e.Host, e.Address)
	switch e.Kind {
	case HostKeyChanged:
		b.WriteString("host key verification failed:\n")
		b.WriteString("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n")
		b.WriteString("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n")
		b.WriteString("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n")
		b.WriteString("IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n")
		b.WriteString("Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n")
		b.WriteString("It is also possible that a host key has just been changed.\n")
		fmt.Fprintf(&b, "The fingerprint for the %s key sent by the remote host is\n%s.\n", e.KeyType, e.Fingerprint)
		fmt.Fprintf(&b, "Host key for %s has changed and relctl refuses changed keys under every host_key_policy.\n", name)
		fmt.Fprintf(&b, "Offending key in %s:%d\n", e.OffendingFile, e.OffendingLine)
		fmt.Fprintf(&b, "  remove with:\n  ssh-keygen -f %s -R %s\n", shellquote.Quote(e.OffendingFile), shellquote.Quote(name))
		b.WriteString("Host key verification failed.")
	case HostKeyRevoked:
		fmt.Fprintf(&b, "Host key verification failed: the %s key %s of %s is revoked in %s:%d",
			e.KeyType, e.Fingerprint, name, e.OffendingFile, e.OffendingLine)
	default:
		files := e.KnownHostsFile
		switch {
		case len(e.KnownHostsFiles) > 1:
			files = strings.Join(e.KnownHostsFiles, ", ")
		case files == "" && e.KnownHostsFiles != nil:
			files = "(no known_hosts file)"
		}
		fmt.Fprintf(&b, "Host key verification failed: no key for %s in %s "+
			"(run with host_key_policy = \"accept-new\" or add it with ssh-keyscan); "+
			"the host offered %s key %s", name, files, e.KeyType, e.Fingerprint)
	}
	return b.String()
}
