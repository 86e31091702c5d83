package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/relctl/relctl/healthcheck/checkspec"
	"github.com/relctl/relctl/internal/transport"
)

// maxBody is how much of a response body is read and matched; a health
// endpoint that needs more is not a health endpoint.
const maxBody = 64 << 10

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// probeError is a failed attempt: Error() is the user-facing observation and
// errors.Is/As reach both the kind (ErrTimeout, …) and the underlying cause.
type probeError struct {
	kind     error
	observed string
	cause    error
}

func (e *probeError) Error() string { return e.observed }

func (e *probeError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.kind, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Probe runs exactly one attempt of s against h, bounded by s.Timeout.
// err is nil when the attempt passed; observed is what a user should read
// either way ("HTTP 200", `HTTP 500: {"status":"failing"}`, "connection
// refused", "exit 1: not ready"). A failed attempt's error matches one of
// ErrTimeout, ErrRefused, ErrUnexpected or ErrInvalidSpec when it fits; when
// ctx itself ends, err is ctx's error.
func Probe(ctx context.Context, s Spec, h Host) (observed string, err error) {
	if err := validate(s, h); err != nil {
		return err.Error(), err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	fail := func(err error) (string, error) { return classify(ctx, actx, timeout, err) }
	switch s.Type {
	case TypeHTTP:
		return probeHTTP(actx, s, dialerFor(s, h), fail)
	case TypeTCP:
		conn, err := dialerFor(s, h)(actx, "tcp", s.Address)
		if err != nil {
			return fail(err)
		}
		_ = conn.Close()
		return "connected to " + s.Address, nil
	default: // TypeCommand; validate rejected anything else
		return probeCommand(ctx, actx, timeout, s, h)
	}
}

func dialerFor(s Spec, h Host) dialFunc {
	if s.Via == ViaController {
		var d net.Dialer
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return BoundedDial(ctx, h.DialContext, network, addr)
	}
}

// BoundedDial returns when ctx ends even if the host's dialer does not honour
// it (an SSH channel open can wait on a stuck connection); a late conn is closed.
func BoundedDial(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := dial(ctx, network, addr)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func probeHTTP(ctx context.Context, s Spec, dial dialFunc, fail func(error) (string, error)) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("User-Agent", "relctl-healthcheck")
	// A fresh transport per attempt: no connection reuse, so a restarted
	// service is really re-checked; no proxy from the environment, since the
	// check must reach what the host (or controller) reaches directly.
	tr := &http.Transport{
		DialContext:            dial,
		DisableKeepAlives:      true,
		Proxy:                  nil,
		MaxResponseHeaderBytes: maxBody,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// Never follow: a redirect could lead off the host; report the 3xx instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	status := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if err != nil {
		obs, err := fail(err)
		return status + ": reading body: " + obs, err
	}

	want := s.ExpectStatus
	if want == 0 {
		want = http.StatusOK
	}
	unexpected := func(obs string) (string, error) {
		return obs, &probeError{kind: ErrUnexpected, observed: obs}
	}
	if resp.StatusCode != want {
		head := status
		if want != http.StatusOK {
			head += fmt.Sprintf(" (want %d)", want)
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			return unexpected(fmt.Sprintf("%s: redirect to %s (redirects are not followed)", head, RedactURL(loc)))
		}
		return unexpected(withExcerpt(head, body))
	}
	if s.BodyContains != "" && !bytes.Contains(body, []byte(s.BodyContains)) {
		return unexpected(withExcerpt(fmt.Sprintf("%s: body does not contain %q", status, s.BodyContains), body))
	}
	if s.BodyRegex != nil && !s.BodyRegex.Match(body) {
		return unexpected(withExcerpt(fmt.Sprintf("%s: body does not match /%s/", status, s.BodyRegex), body))
	}
	return status, nil
}

func probeCommand(parent, ctx context.Context, timeout time.Duration, s Spec, h Host) (string, error) {
	type result struct {
		res *transport.Result
		err error
	}
	// Bounded like boundedDial: the attempt ends at its timeout even if Run
	// does not return promptly on cancellation.
	done := make(chan result, 1)
	go func() {
		// The check's own timeout, not ssh.control_timeout, bounds it.
		res, err := h.Run(ctx, s.Command, transport.RunOptions{Label: "health/" + s.Name, Timeout: timeout})
		done <- result{res, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	if ctx.Err() != nil {
		return classify(parent, ctx, timeout, r.err)
	}
	var ce *transport.CommandError
	if errors.As(r.err, &ce) {
		obs := exitObserved(ce.ExitCode, ce.Signal, ce.Tail)
		return obs, &probeError{kind: ErrUnexpected, observed: obs, cause: r.err}
	}
	if r.err != nil {
		return classify(parent, ctx, timeout, r.err)
	}
	if r.res != nil && r.res.ExitCode != 0 {
		tail := r.res.Stderr
		if len(bytes.TrimSpace(tail)) == 0 {
			tail = r.res.Stdout
		}
		obs := exitObserved(r.res.ExitCode, "", string(tail))
		return obs, &probeError{kind: ErrUnexpected, observed: obs}
	}
	return "exit 0", nil
}

func exitObserved(code int, signal, tail string) string {
	head := fmt.Sprintf("exit %d", code)
	if signal != "" {
		head = "killed by signal " + signal
	}
	if line := lastLine(tail); line != "" {
		return head + ": " + line
	}
	return head
}

// classify turns a failed attempt's error into an observation and an error
// of the right kind. The caller's context ending wins over everything, so Wait
// can tell "stopped" from "failed".
func classify(parent, attempt context.Context, timeout time.Duration, err error) (string, error) {
	if perr := parent.Err(); perr != nil {
		return "stopped: " + perr.Error(), perr
	}
	// url.Error repeats the URL, userinfo included; the inner error is enough.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case attempt.Err() != nil || isTimeout(err):
		// The cause is dropped on purpose: it may wrap context.DeadlineExceeded,
		// which callers read as "the caller's deadline passed".
		obs := fmt.Sprintf("timed out after %s", timeout)
		return obs, &probeError{kind: ErrTimeout, observed: obs}
	case errors.Is(err, syscall.ECONNREFUSED) ||
		strings.Contains(strings.ToLower(err.Error()), "connection refused"): // ssh direct-tcpip only says it in text
		return "connection refused", &probeError{kind: ErrRefused, observed: "connection refused", cause: err}
	default:
		obs := oneLine(err.Error())
		return obs, &probeError{observed: obs, cause: err}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

func validate(s Spec, h Host) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidSpec, s.Name, fmt.Sprintf(format, args...))
	}
	switch s.Via {
	case "", ViaHost, ViaController:
	default:
		return bad("via must be %q or %q, not %q", ViaHost, ViaController, s.Via)
	}
	needHost := s.Type == TypeCommand || s.Via != ViaController
	if needHost && h == nil {
		return bad("no host to run it through")
	}
	switch s.Type {
	case TypeHTTP:
		// checkspec: the rule relctl validate applies to every rendered url.
		if err := checkspec.URL(s.URL); err != nil {
			return bad("%v", err)
		}
		if s.ExpectStatus != 0 && (s.ExpectStatus < 100 || s.ExpectStatus > 599) {
			return bad("expect_status %d is not an HTTP status", s.ExpectStatus)
		}
	case TypeTCP:
		if err := checkspec.Address(s.Address); err != nil {
			return bad("%v", err)
		}
	case TypeCommand:
		if strings.TrimSpace(s.Command) == "" {
			return bad("command is empty")
		}
	default:
		return bad("type must be %q, %q or %q, not %q", TypeHTTP, TypeTCP, TypeCommand, s.Type)
	}
	return nil
}
