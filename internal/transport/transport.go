// Package transport runs commands on hosts and moves files to them. The ssh
// implementation here is the only code in relctl that imports the
// x/crypto/ssh client; nothing in this package knows about releases.
package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Conn is one live connection to one host. It is safe for concurrent use:
// every Run opens its own session on the shared connection.
type Conn interface {
	// Host is the name the connection was opened for (used in errors and logs).
	Host() string
	// Run executes cmd with the host's login shell (sh on relctl's hosts). A non-zero exit is returned
	// as *CommandError, which carries the exit status and the output's tail.
	Run(ctx context.Context, cmd string, opts RunOptions) (*Result, error)
	// Upload streams r to remotePath (written via a temp file and renamed),
	// verifying on the host that its sha256 equals wantSHA256 (hex).
	Upload(ctx context.Context, r io.Reader, remotePath string, mode uint32, wantSHA256 string) error
	// DialContext opens a TCP connection from the host (ssh direct-tcpip),
	// so health checks see what the host sees.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// Close ends the connection.
	Close() error
}

// RunOptions tune one command.
type RunOptions struct {
	Stdin io.Reader
	// Label names the command in the run log (e.g. "stage/unpack").
	Label string
	// Timeout is the command's own limit (a step's or a check's timeout),
	// replacing the connection's; it may be longer or shorter.
	Timeout time.Duration
	// Limit picks the connection's limit for a command without Timeout:
	// ControlLimit (the zero value) unless its duration scales with data or
	// the playbook wrote it.
	Limit Limit
	// QuietStdout keeps stdout out of the run log: it may hold secrets
	// (e.g. a monit control file's credentials). It is still returned.
	QuietStdout bool
}

// Limit says which of the connection's timeouts bounds a command that has
// no Timeout of its own.
type Limit int

const (
	// ControlLimit is Options.ControlTimeout (ssh.control_timeout): relctl's
	// own bookkeeping (state reads and writes, locks, the activate script,
	// HAProxy and monit calls), seconds on a healthy host, so a host whose
	// commands hang is given up on quickly.
	ControlLimit Limit = iota
	// CommandLimit is Options.CommandTimeout (ssh.command_timeout): a command
	// whose duration scales with data (an upload, the sha256 of an artifact,
	// removing old releases) or that the playbook wrote (a [traffic] disable
	// command, a dependent's restart).
	CommandLimit
)

// Result is what a command printed and how it ended.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// CommandError is a command that ran and exited non-zero (or was killed).
type CommandError struct {
	Host     string
	Command  string
	ExitCode int    // -1 when the command ended by a signal or lost connection
	Signal   string // set when the remote process ended by a signal
	Tail     string // the last lines of stderr (or stdout when stderr was empty)
}

func (e *CommandError) Error() string {
	var b strings.Builder
	if e.Signal != "" {
		fmt.Fprintf(&b, "command killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "command exited with status %d", e.ExitCode)
	}
	if t := strings.TrimSpace(e.Tail); t != "" {
		b.WriteString(":\n    ")
		b.WriteString(strings.ReplaceAll(t, "\n", "\n    "))
	}
	return b.String()
}
