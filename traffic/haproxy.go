package traffic

import (
	"context"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/shellquote"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/traffic/haproxyspec"
)

// Runtime talks to one HAProxy's runtime API over an SSH connection to its host.
type Runtime struct {
	Conn   transport.Conn
	Host   string // LB host name, for errors
	Socket string // admin socket path on that host
	// Socat is the socat program on the host; empty: "socat" from its PATH.
	Socat string
}

// Limits of `set weight` in HAProxy 2.6 (SRV_UWGHT_MAX).
const (
	MinWeight = 0
	MaxWeight = 256
)

// DefaultDrainInterval is how often Drain polls when given no interval.
const DefaultDrainInterval = time.Second

// runLabel names every API call in the run log.
const runLabel = "traffic/haproxy"

// socatMissingStatus is the exit status of the shell line when socat is not
// on the host; socat itself never exits with it.
const socatMissingStatus = 127

// ErrSocketUnreachable: socat could not connect to the admin socket.
var ErrSocketUnreachable = errors.New("haproxy admin socket unreachable")

// validName refuses, with haproxyspec's rule (the one relctl validate
// applies to the config), a name HAProxy could not have.
func validName(kind, name string) error {
	if err := haproxyspec.Name(kind, name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	return nil
}

func validServer(backend, server string) error {
	if err := validName("backend", backend); err != nil {
		return err
	}
	return validName("server", server)
}

func (r *Runtime) host() string {
	if r.Host != "" {
		return r.Host
	}
	if r.Conn != nil {
		return r.Conn.Host()
	}
	return "load balancer"
}

// send runs one API command line (commands separated by ';') through socat
// on the load balancer host and returns HAProxy's whole answer. The command
// goes on stdin, so nothing of it reaches the shell.
func (r *Runtime) send(ctx context.Context, command string, quiet bool) (string, error) {
	if r.Conn == nil {
		return "", fmt.Errorf("%s: haproxy runtime API: no connection", r.host())
	}
	if err := haproxyspec.Socket(r.Socket); err != nil {
		return "", fmt.Errorf("%s: %w", r.host(), err)
	}
	socat := r.Socat
	if socat == "" {
		socat = "socat"
	}
	line := fmt.Sprintf("command -v %s >/dev/null 2>&1 || exit %d; exec %s -t 5 stdio UNIX-CONNECT:%s",
		shellquote.Quote(socat), socatMissingStatus, shellquote.Quote(socat), shellquote.Quote(r.Socket))
	res, err := r.Conn.Run(ctx, line, transport.RunOptions{
		Stdin: strings.NewReader(command + "\n"),
		Label: runLabel,
		// show stat is polled while a server drains: its CSV would flood the run log.
		QuietStdout: quiet,
	})
	if err == nil {
		return string(res.Stdout), nil
	}
	var cmdErr *transport.CommandError
	if !errors.As(err, &cmdErr) {
		return "", fmt.Errorf("haproxy runtime API on %s: %w", r.host(), err)
	}
	if cmdErr.ExitCode == socatMissingStatus {
		looked := ""
		if socat != "socat" {
			looked = " (looked for " + socat + ")"
		}
		return "", fmt.Errorf("socat not found on %s%s: install it (apt-get install socat): %w", r.host(), looked, ErrSocatMissing)
	}
	stderr := cmdErr.Tail
	if res != nil && len(res.Stderr) > 0 {
		stderr = string(res.Stderr)
	}
	if reason, ok := socatConnectError(stderr); ok {
		return "", fmt.Errorf("%s: haproxy admin socket %s: %s (does haproxy run there with `stats socket %s level admin`?): %w",
			r.host(), r.Socket, reason, r.Socket, ErrSocketUnreachable)
	}
	return "", fmt.Errorf("haproxy runtime API on %s via socat: %w", r.host(), err)
}

// socatConnectError finds socat's report of a failed connect, e.g.
// `socat[42] E connect(5, AF=1 "/run/haproxy.sock", 21): No such file or directory`.
func socatConnectError(stderr string) (string, bool) {
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.Contains(l, " E connect(") {
			continue
		}
		if i := strings.LastIndex(l, "): "); i >= 0 {
			return strings.TrimSpace(l[i+3:]), true
		}
		return strings.TrimSpace(l), true
	}
	return "", false
}

// set sends one command that answers nothing when it worked: any answer is
// HAProxy refusing it.
func (r *Runtime) set(ctx context.Context, backend, server, command string) error {
	answer, err := r.send(ctx, command, false)
	if err != nil {
		return err
	}
	if a := strings.TrimSpace(answer); a != "" {
		return &APIError{Host: r.host(), Backend: backend, Server: server, Command: command, Answer: a}
	}
	return nil
}

// Servers reads every server of backend: `show servers state` for addresses,
// admin state and weights, `show stat` for sessions and check status, in
// one call.
func (r *Runtime) Servers(ctx context.Context, backend string) ([]Server, error) {
	if err := validName("backend", backend); err != nil {
		return nil, err
	}
	stateCmd := "show servers state " + backend
	statCmd := "show stat " + backend + " 4 -1" // type 4: servers only; -1: all of them
	answer, err := r.send(ctx, stateCmd+"; "+statCmd, true)
	if err != nil {
		return nil, err
	}
	// Each command's answer ends with an empty line.
	stateAnswer, statAnswer, _ := strings.Cut(answer, "\n\n")

	servers, err := parseServersState(stateAnswer)
	if errors.Is(err, errNotAnAnswer) {
		return nil, &APIError{Host: r.host(), Backend: backend, Command: stateCmd, Answer: strings.TrimSpace(stateAnswer)}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: haproxy backend %s: %w", r.host(), backend, err)
	}
	rows, err := parseStat(statAnswer)
	if errors.Is(err, errNotAnAnswer) {
		return nil, &APIError{Host: r.host(), Backend: backend, Command: statCmd, Answer: strings.TrimSpace(statAnswer)}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: haproxy backend %s: %w", r.host(), backend, err)
	}
	stats := make(map[string]statRow, len(rows))
	for _, row := range rows {
		if row.Backend == backend {
			stats[row.Server] = row
		}
	}
	out := servers[:0]
	for _, s := range servers {
		if s.Backend != backend {
			continue
		}
		row, ok := stats[s.Name]
		if !ok {
			// Zero sessions must never be assumed: a drain would end early.
			return nil, fmt.Errorf("%s: haproxy %s/%s: show stat has no row for it", r.host(), backend, s.Name)
		}
		s.Sessions, s.Queued, s.Check = row.Sessions, row.Queued, row.Status
		out = append(out, s)
	}
	return out, nil
}

// Server reads one server of backend.
func (r *Runtime) Server(ctx context.Context, backend, name string) (*Server, error) {
	if err := validServer(backend, name); err != nil {
		return nil, err
	}
	servers, err := r.Servers(ctx, backend)
	if err != nil {
		return nil, err
	}
	for i := range servers {
		if servers[i].Name == name {
			return &servers[i], nil
		}
	}
	return nil, fmt.Errorf("%s: haproxy %s/%s: backend %s has no server %s: %w", r.host(), backend, name, backend, name, ErrUnknownServer)
}

// SetAdmin sets the server's admin state: ready, drain or maint.
func (r *Runtime) SetAdmin(ctx context.Context, backend, name, state string) error {
	if err := validServer(backend, name); err != nil {
		return err
	}
	switch state {
	case AdminReady, AdminDrain, AdminMaint:
	default:
		return fmt.Errorf("%s: haproxy %s/%s: admin state %q: want ready, drain or maint", r.host(), backend, name, state)
	}
	return r.set(ctx, backend, name, fmt.Sprintf("set server %s/%s state %s", backend, name, state))
}

// SetWeight sets the server's weight (0-256).
func (r *Runtime) SetWeight(ctx context.Context, backend, name string, weight int) error {
	if err := validServer(backend, name); err != nil {
		return err
	}
	if weight < MinWeight || weight > MaxWeight {
		return fmt.Errorf("%s: haproxy %s/%s: weight %d out of range %d-%d", r.host(), backend, name, weight, MinWeight, MaxWeight)
	}
	return r.set(ctx, backend, name, fmt.Sprintf("set weight %s/%s %d", backend, name, weight))
}

// Drain sets drain, waits (polling every interval) until the server has 0
// current sessions and nothing queued or timeout passes, then sets maint. On
// timeout it still sets maint and returns a *DrainTimeoutError saying how
// many sessions were left (callers decide). A server already forced into
// maint is not lowered to drain; only its sessions are waited for. When ctx
// ends first the server is left in drain.
func (r *Runtime) Drain(ctx context.Context, backend, name string, timeout, interval time.Duration) error {
	if err := validServer(backend, name); err != nil {
		return err
	}
	if interval <= 0 {
		interval = DefaultDrainInterval
	}
	cur, err := r.Server(ctx, backend, name)
	if err != nil {
		return err
	}
	if cur.AdminBits&admFMaint == 0 {
		if err := r.SetAdmin(ctx, backend, name, AdminDrain); err != nil {
			return err
		}
		cur.Admin = AdminDrain
	}

	deadline := time.NewTimer(max(timeout, 0))
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	interrupted := func() error {
		return fmt.Errorf("%s: haproxy %s/%s: drain interrupted with %s left, server left in %s: %w",
			r.host(), backend, name, plural(cur.Sessions, "session"), cur.Admin, ctx.Err())
	}
	timedOut := false
	for {
		s, err := r.Server(ctx, backend, name)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted()
			}
			return err
		}
		cur = s
		if cur.Sessions == 0 && cur.Queued == 0 || timedOut {
			break
		}
		select {
		case <-ctx.Done():
			return interrupted()
		case <-deadline.C:
			timedOut = true // one more read, so the error tells what is left now
		case <-tick.C:
		}
	}
	if err := r.SetAdmin(ctx, backend, name, AdminMaint); err != nil {
		return err
	}
	if timedOut && (cur.Sessions > 0 || cur.Queued > 0) {
		return &DrainTimeoutError{Host: r.host(), Backend: backend, Server: name,
			Timeout: timeout, Sessions: cur.Sessions, Queued: cur.Queued}
	}
	return nil
}

// Ready sets the server's weight to w (w>0) and then ready: the weight is in
// place before the first new session arrives.
func (r *Runtime) Ready(ctx context.Context, backend, name string, weight int) error {
	if err := validServer(backend, name); err != nil {
		return err
	}
	if weight <= 0 {
		return fmt.Errorf("%s: haproxy %s/%s: ready with weight %d: a ready server needs a weight above 0", r.host(), backend, name, weight)
	}
	if err := r.SetWeight(ctx, backend, name, weight); err != nil {
		return err
	}
	return r.SetAdmin(ctx, backend, name, AdminReady)
}

// Restore puts a server back as saved: its forced admin state and its
// weight. Going to ready, the weight is set first (while no new sessions
// come); going to drain or maint, the state first. It reads the server back
// and fails unless admin state and weight match the saved ones.
//
// Only the forced bits are the API's to set: inherited maint/drain follows
// the tracked server, and CMAINT (`disabled`) is the configuration's. Each
// `set server ... state` leaves exactly one forced bit (or none, for ready),
// so the forced bits come back exactly as saved.
func (r *Runtime) Restore(ctx context.Context, saved Server) error {
	backend, name := saved.Backend, saved.Name
	if err := validServer(backend, name); err != nil {
		return err
	}
	if saved.Weight < MinWeight || saved.Weight > MaxWeight {
		return fmt.Errorf("%s: haproxy %s/%s: saved weight %d out of range %d-%d", r.host(), backend, name, saved.Weight, MinWeight, MaxWeight)
	}
	want := saved.forcedAdmin()
	switch want {
	case AdminReady, AdminDrain, AdminMaint:
	default:
		return fmt.Errorf("%s: haproxy %s/%s: saved admin state %q: want ready, drain or maint", r.host(), backend, name, saved.Admin)
	}
	cur, err := r.Server(ctx, backend, name)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	forced := cur.AdminBits & (admFMaint | admFDrain)
	setWeight := func() error {
		if cur.Weight == saved.Weight {
			return nil
		}
		return r.SetWeight(ctx, backend, name, saved.Weight)
	}

	wantBits := map[string]int{AdminReady: 0, AdminDrain: admFDrain, AdminMaint: admFMaint}[want]
	setState := func() error {
		if forced == wantBits {
			return nil
		}
		return r.SetAdmin(ctx, backend, name, want)
	}
	steps := []func() error{setWeight, setState}
	if want != AdminReady {
		steps = []func() error{setState, setWeight}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}

	after, err := r.Server(ctx, backend, name)
	if err != nil {
		return fmt.Errorf("restore: checking the result: %w", err)
	}
	if after.AdminBits&(admFMaint|admFDrain) != wantBits || after.Weight != saved.Weight {
		return fmt.Errorf("%s: haproxy %s/%s: restore did not take: now %s with weight %d, saved %s with weight %d",
			r.host(), backend, name, after.Admin, after.Weight, want, saved.Weight)
	}
	return nil
}
