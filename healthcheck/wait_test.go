package healthcheck_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"

	"github.com/relctl/relctl/healthcheck"
)

// scriptedServer answers request i with statuses[i] (the last one repeats)
// and counts the TCP connections it accepted.
type scriptedServer struct {
	*httptest.Server
	requests, conns atomic.Int32
}

func newScriptedServer(t *testing.T, statuses ...int) *scriptedServer {
	t.Helper()
	s := &scriptedServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := int(s.requests.Add(1)) - 1
		code := statuses[min(i, len(statuses)-1)]
		w.WriteHeader(code)
		fmt.Fprint(w, http.StatusText(code))
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// pattern renders attempts as P (pass) and F (fail), e.g. "FFFPP".
func pattern(attempts []healthcheck.Attempt) string {
	var b strings.Builder
	for i, a := range attempts {
		if a.N != i+1 {
			return fmt.Sprintf("attempt %d numbered %d", i+1, a.N)
		}
		if a.OK {
			b.WriteByte('P')
		} else {
			b.WriteByte('F')
		}
	}
	return b.String()
}

func TestWaitPolicy(t *testing.T) {
	const ok, bad = 200, 500
	tests := []struct {
		name                string
		statuses            []int
		healthyFor, retries int
		wantPattern         string
		wantHealthy         bool
		wantSummary         string // prefix; healthy summaries end with the elapsed time
	}{
		{
			name: "first pass is enough", statuses: []int{ok}, healthyFor: 1, retries: 0,
			wantPattern: "P", wantHealthy: true,
			wantSummary: "health ok after 1 attempt (1 consecutive pass, ",
		},
		{
			name: "becomes healthy after 3 failures", statuses: []int{bad, bad, bad, ok}, healthyFor: 2, retries: 5,
			wantPattern: "FFFPP", wantHealthy: true,
			wantSummary: "health ok after 5 attempts (2 consecutive passes, ",
		},
		{
			name: "flapping needs the streak", statuses: []int{ok, bad, ok, ok}, healthyFor: 2, retries: 2,
			wantPattern: "PFPP", wantHealthy: true,
			wantSummary: "health ok after 4 attempts (2 consecutive passes, ",
		},
		{
			name: "flapping gives up when a streak no longer fits", statuses: []int{ok, bad, ok, ok}, healthyFor: 2, retries: 1,
			wantPattern: "PF", wantHealthy: false,
			wantSummary: "health failed after 2 attempts: HTTP 500: Internal Server Error",
		},
		{
			name: "always failing uses every retry", statuses: []int{bad}, healthyFor: 1, retries: 3,
			wantPattern: "FFFF", wantHealthy: false,
			wantSummary: "health failed after 4 attempts: HTTP 500: Internal Server Error",
		},
		{
			name: "no retries", statuses: []int{bad, ok}, healthyFor: 1, retries: 0,
			wantPattern: "F", wantHealthy: false,
			wantSummary: "health failed after 1 attempt: HTTP 500: Internal Server Error",
		},
		{
			name: "healthy_for 3 all passing", statuses: []int{ok}, healthyFor: 3, retries: 0,
			wantPattern: "PPP", wantHealthy: true,
			wantSummary: "health ok after 3 attempts (3 consecutive passes, ",
		},
		{
			name: "healthy_for below 1 counts as 1", statuses: []int{ok}, healthyFor: 0, retries: 0,
			wantPattern: "P", wantHealthy: true,
			wantSummary: "health ok after 1 attempt (1 consecutive pass, ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newScriptedServer(t, tt.statuses...)
			s := healthcheck.Spec{
				Name: "ready", Type: "http", URL: srv.URL + "/healthz",
				Timeout: 10 * time.Second, Interval: time.Millisecond,
				HealthyFor: tt.healthyFor, Retries: tt.retries,
			}
			o := healthcheck.Wait(t.Context(), s, &localHost{name: "web-1"})

			if got := pattern(o.Attempts); got != tt.wantPattern {
				t.Errorf("attempts %s, want %s", got, tt.wantPattern)
			}
			if o.Healthy != tt.wantHealthy {
				t.Errorf("Healthy = %v, want %v (err %v)", o.Healthy, tt.wantHealthy, o.Err)
			}
			if o.Healthy != (o.Err == nil) {
				t.Errorf("Healthy = %v but Err = %v", o.Healthy, o.Err)
			}
			if got := o.Summary(); !strings.HasPrefix(got, tt.wantSummary) {
				t.Errorf("Summary() = %q, want prefix %q", got, tt.wantSummary)
			}
			if o.Host != "web-1" || o.Check != "ready" {
				t.Errorf("outcome names host %q check %q", o.Host, o.Check)
			}
			// Each attempt is its own request on its own connection: a
			// restarted service is really re-checked.
			if n := int(srv.requests.Load()); n != len(o.Attempts) {
				t.Errorf("server saw %d requests for %d attempts", n, len(o.Attempts))
			}
			if n := int(srv.conns.Load()); n != len(o.Attempts) {
				t.Errorf("server saw %d connections for %d attempts", n, len(o.Attempts))
			}
			if !o.Healthy {
				var ce *healthcheck.CheckError
				if !errors.As(o.Err, &ce) || !errors.Is(o.Err, healthcheck.ErrUnexpected) {
					t.Fatalf("Err = %#v, want a *CheckError wrapping ErrUnexpected", o.Err)
				}
				want := `web-1: check "ready": ` + tt.wantSummary
				if o.Err.Error() != want {
					t.Errorf("Err = %q, want %q", o.Err, want)
				}
			}
		})
	}
}

// returnsWithin runs wait and fails the test if it hangs; the bound only
// keeps a broken Wait from hanging the suite, it asserts no speed.
func returnsWithin(t *testing.T, wait func() healthcheck.Outcome) healthcheck.Outcome {
	t.Helper()
	done := make(chan healthcheck.Outcome, 1)
	go func() { done <- wait() }()
	select {
	case o := <-done:
		return o
	case <-time.After(60 * time.Second):
		t.Fatal("Wait did not return after its context was cancelled")
		return healthcheck.Outcome{}
	}
}

func TestWaitStopsOnCancel(t *testing.T) {
	t.Run("during the pause between attempts", func(t *testing.T) {
		srv := newScriptedServer(t, 500)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		// Cancel as soon as the first attempt is logged, i.e. right before the
		// hour-long pause.
		log := zerolog.New(nil).Level(zerolog.DebugLevel).Hook(zerolog.HookFunc(
			func(*zerolog.Event, zerolog.Level, string) { cancel() }))
		ctx = log.WithContext(ctx)
		s := healthcheck.Spec{Name: "ready", Type: "http", URL: srv.URL, Interval: time.Hour, Retries: 100, Timeout: time.Hour}

		o := returnsWithin(t, func() healthcheck.Outcome { return healthcheck.Wait(ctx, s, &localHost{name: "web-1"}) })
		if o.Healthy || !errors.Is(o.Err, context.Canceled) {
			t.Fatalf("Healthy %v, Err %v; want context.Canceled", o.Healthy, o.Err)
		}
		if got := pattern(o.Attempts); got != "F" {
			t.Errorf("attempts %s, want F", got)
		}
		want := "health check stopped after 1 attempt: context canceled (last: HTTP 500: Internal Server Error)"
		if got := o.Summary(); got != want {
			t.Errorf("Summary() = %q, want %q", got, want)
		}
		if want := `web-1: check "ready": ` + want; o.Err.Error() != want {
			t.Errorf("Err = %q, want %q", o.Err, want)
		}
	})

	t.Run("during an attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		release := make(chan struct{})
		defer close(release)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel() // the request has arrived: stop the Wait while it is waiting for us
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		s := healthcheck.Spec{Name: "ready", Type: "http", URL: srv.URL, Retries: 100, Timeout: time.Hour}

		o := returnsWithin(t, func() healthcheck.Outcome { return healthcheck.Wait(ctx, s, &localHost{name: "web-1"}) })
		if o.Healthy || !errors.Is(o.Err, context.Canceled) || len(o.Attempts) != 0 {
			t.Fatalf("Healthy %v, %d attempts, Err %v; want no attempt and context.Canceled", o.Healthy, len(o.Attempts), o.Err)
		}
		if got, want := o.Summary(), "health check stopped after 0 attempts: context canceled"; got != want {
			t.Errorf("Summary() = %q, want %q", got, want)
		}
	})

	t.Run("during a command", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		dir := t.TempDir()
		// Cancel once the command shows it is running.
		marker := dir + "/started"
		go func() {
			for {
				if _, err := os.Stat(marker); err == nil {
					cancel()
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		s := healthcheck.Spec{Name: "cmd", Type: "command", Command: "touch " + marker + "; exec sleep 600", Timeout: time.Hour, Retries: 5}
		o := returnsWithin(t, func() healthcheck.Outcome { return healthcheck.Wait(ctx, s, &localHost{name: "web-1"}) })
		if o.Healthy || !errors.Is(o.Err, context.Canceled) || len(o.Attempts) != 0 {
			t.Fatalf("Healthy %v, %d attempts, Err %v; want no attempt and context.Canceled", o.Healthy, len(o.Attempts), o.Err)
		}
	})
}

func TestWaitLogsAttemptsWithoutSecrets(t *testing.T) {
	var gotUser atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		gotUser.Store(user)
		w.WriteHeader(500)
		fmt.Fprint(w, "failing")
	}))
	defer srv.Close()
	var buf syncBuffer
	ctx := zerolog.New(&buf).Level(zerolog.DebugLevel).WithContext(t.Context())
	url := strings.Replace(srv.URL, "http://", "http://deployer:s3cret@", 1)
	s := healthcheck.Spec{Name: "ready", Type: "http", URL: url, Retries: 1, Interval: time.Millisecond}

	o := healthcheck.Wait(ctx, s, &localHost{name: "web-1"})

	if u, _ := gotUser.Load().(string); u != "deployer" {
		t.Errorf("server saw basic auth user %q, want the URL's credentials to be used", u)
	}
	logged := buf.String()
	for _, text := range []string{logged, o.Summary(), o.Err.Error()} {
		if strings.Contains(text, "s3cret") {
			t.Errorf("secret printed: %s", text)
		}
	}
	lines := strings.Split(strings.TrimSpace(logged), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want one per attempt:\n%s", len(lines), logged)
	}
	for _, want := range []string{`"level":"debug"`, `"host":"web-1"`, `"check":"ready"`, `"attempt":2`, `"observed":"HTTP 500: failing"`} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("log line %s lacks %s", lines[1], want)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestWaitAll(t *testing.T) {
	okSrv := newScriptedServer(t, 200)
	closed := closedAddr(t)
	tests := []struct {
		name        string
		specs       []healthcheck.Spec
		wantHealthy []bool
		wantErrs    []string
	}{
		{
			name: "all healthy",
			specs: []healthcheck.Spec{
				{Name: "http", Type: "http", URL: okSrv.URL},
				{Name: "port", Type: "tcp", Address: okSrv.Listener.Addr().String()},
				{Name: "pid", Type: "command", Command: "true"},
			},
			wantHealthy: []bool{true, true, true},
		},
		{
			name: "unhealthy ones are collected",
			specs: []healthcheck.Spec{
				{Name: "http", Type: "http", URL: okSrv.URL},
				{Name: "port", Type: "tcp", Address: closed},
				{Name: "pid", Type: "command", Command: "echo 'no pid file' >&2; exit 1", Retries: 1},
			},
			wantHealthy: []bool{true, false, false},
			wantErrs: []string{
				`web-1: check "port": health failed after 1 attempt: connection refused`,
				`web-1: check "pid": health failed after 2 attempts: exit 1: no pid file`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outs, err := healthcheck.WaitAll(t.Context(), tt.specs, &localHost{name: "web-1"})
			if len(outs) != len(tt.specs) {
				t.Fatalf("%d outcomes for %d specs", len(outs), len(tt.specs))
			}
			for i, o := range outs {
				if o.Check != tt.specs[i].Name || o.Healthy != tt.wantHealthy[i] {
					t.Errorf("outcome %d: check %q healthy %v, want %q healthy %v (%s)",
						i, o.Check, o.Healthy, tt.specs[i].Name, tt.wantHealthy[i], o.Summary())
				}
			}
			if tt.wantErrs == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var merr *multierror.Error
			if !errors.As(err, &merr) {
				t.Fatalf("err = %T %v, want *multierror.Error", err, err)
			}
			var got []string
			for _, e := range merr.Errors {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.wantErrs, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.wantErrs, "\n"))
			}
		})
	}
}

func TestSummary(t *testing.T) {
	pass := func(n int) healthcheck.Attempt { return healthcheck.Attempt{N: n, OK: true, Observed: "HTTP 200"} }
	fail := func(n int, obs string) healthcheck.Attempt { return healthcheck.Attempt{N: n, Observed: obs} }
	failed := func(attempts int, obs string, err error) error {
		return &healthcheck.CheckError{Host: "web-1", Check: "ready", Attempts: attempts, Observed: obs, Err: err}
	}
	tests := []struct {
		name string
		o    healthcheck.Outcome
		want string
	}{
		{
			name: "healthy at once",
			o:    healthcheck.Outcome{Healthy: true, Attempts: []healthcheck.Attempt{pass(1)}, Elapsed: 12 * time.Millisecond},
			want: "health ok after 1 attempt (1 consecutive pass, 0.0s)",
		},
		{
			name: "healthy after a failure",
			o: healthcheck.Outcome{Healthy: true, Elapsed: 600 * time.Millisecond,
				Attempts: []healthcheck.Attempt{fail(1, "connection refused"), pass(2), pass(3)}},
			want: "health ok after 3 attempts (2 consecutive passes, 0.6s)",
		},
		{
			name: "failed",
			o: healthcheck.Outcome{Elapsed: 26 * time.Second,
				Attempts: []healthcheck.Attempt{fail(1, "connection refused"), fail(2, `HTTP 500: {"status":"failing"}`)},
				Err:      failed(2, `HTTP 500: {"status":"failing"}`, healthcheck.ErrUnexpected)},
			want: `health failed after 2 attempts: HTTP 500: {"status":"failing"}`,
		},
		{
			name: "timed out",
			o: healthcheck.Outcome{Attempts: []healthcheck.Attempt{fail(1, "timed out after 5s")},
				Err: failed(1, "timed out after 5s", healthcheck.ErrTimeout)},
			want: "health failed after 1 attempt: timed out after 5s",
		},
		{
			name: "stopped by the caller's deadline",
			o: healthcheck.Outcome{Attempts: []healthcheck.Attempt{fail(1, "exit 1: not ready"), fail(2, "exit 1: not ready")},
				Err: failed(2, "exit 1: not ready", context.DeadlineExceeded)},
			want: "health check stopped after 2 attempts: context deadline exceeded (last: exit 1: not ready)",
		},
		{
			name: "not checked",
			o:    healthcheck.Outcome{Err: failed(0, "", fmt.Errorf("%w \"ready\": command is empty", healthcheck.ErrInvalidSpec))},
			want: `health not checked: invalid health check "ready": command is empty`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.o.Summary(); got != tt.want {
				t.Errorf("Summary()\n got %q\nwant %q", got, tt.want)
			}
			if tt.o.Err != nil {
				if got, want := tt.o.Err.Error(), `web-1: check "ready": `+tt.want; got != want {
					t.Errorf("Err\n got %q\nwant %q", got, want)
				}
			}
		})
	}
}

// TestWaitReportsElapsed: the outcome's elapsed time covers the pauses between attempts.
func TestWaitReportsElapsed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	s := healthcheck.Spec{Name: "health", Type: healthcheck.TypeHTTP, URL: srv.URL, Via: healthcheck.ViaController, Interval: 20 * time.Millisecond, HealthyFor: 2, Retries: 1}
	o := healthcheck.Wait(t.Context(), s, &localHost{name: "web-1"})
	if !o.Healthy || o.Elapsed < s.Interval {
		t.Fatalf("healthy=%v elapsed=%v; want healthy and elapsed at least one interval (%v): %s", o.Healthy, o.Elapsed, s.Interval, o.Summary())
	}
}
