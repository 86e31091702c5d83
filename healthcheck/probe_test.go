package healthcheck_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/healthcheck"
)

// reply is a handler that answers every request the same way.
func reply(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

func TestProbeHTTP(t *testing.T) {
	long := strings.Repeat("x", 1000)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		spec    healthcheck.Spec // URL is filled in
		wantObs string
		wantErr error // nil: the attempt passes
	}{
		{
			name:    "200 passes",
			handler: reply(200, "ok"),
			wantObs: "HTTP 200",
		},
		{
			name:    "500 fails with the body",
			handler: reply(500, `{"status":"failing","detail":"db down"}`),
			wantObs: `HTTP 500: {"status":"failing","detail":"db down"}`,
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "500 with an empty body",
			handler: reply(500, ""),
			wantObs: "HTTP 500",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "long body is cut to 200 bytes",
			handler: reply(503, long),
			wantObs: "HTTP 503: " + long[:200] + "...",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "cut on a character boundary",
			handler: reply(500, "x"+strings.Repeat("é", 150)),
			wantObs: "HTTP 500: x" + strings.Repeat("é", 99) + "...",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "binary body stays printable",
			handler: reply(500, "bad\x00\xff\x1b[31mred"),
			wantObs: "HTTP 500: bad \uFFFD [31mred",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "multi-line body becomes one line",
			handler: reply(500, "panic: nil map\n\tgoroutine 1\r\n"),
			wantObs: "HTTP 500: panic: nil map goroutine 1",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "expected 204 passes",
			handler: reply(204, ""),
			spec:    healthcheck.Spec{ExpectStatus: 204},
			wantObs: "HTTP 204",
		},
		{
			name:    "200 when 204 is expected",
			handler: reply(200, "ok"),
			spec:    healthcheck.Spec{ExpectStatus: 204},
			wantObs: "HTTP 200 (want 204): ok",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "body_contains hit",
			handler: reply(200, `{"status":"ready"}`),
			spec:    healthcheck.Spec{BodyContains: "ready"},
			wantObs: "HTTP 200",
		},
		{
			name:    "body_contains miss",
			handler: reply(200, `{"status":"starting"}`),
			spec:    healthcheck.Spec{BodyContains: "ready"},
			wantObs: `HTTP 200: body does not contain "ready": {"status":"starting"}`,
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "status is checked before the body",
			handler: reply(500, `{"status":"starting"}`),
			spec:    healthcheck.Spec{BodyContains: "ready"},
			wantObs: `HTTP 500: {"status":"starting"}`,
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "body_regex hit",
			handler: reply(200, `{"version":"2.1.0"}`),
			spec:    healthcheck.Spec{BodyRegex: regexp.MustCompile(`"version":"2\.`)},
			wantObs: "HTTP 200",
		},
		{
			name:    "body_regex miss",
			handler: reply(200, `{"version":"1.4.0"}`),
			spec:    healthcheck.Spec{BodyRegex: regexp.MustCompile(`"version":"2\.`)},
			wantObs: `HTTP 200: body does not match /"version":"2\./: {"version":"1.4.0"}`,
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "body_contains before body_regex",
			handler: reply(200, `{"version":"1.4.0"}`),
			spec:    healthcheck.Spec{BodyContains: "ready", BodyRegex: regexp.MustCompile(`2\.`)},
			wantObs: `HTTP 200: body does not contain "ready": {"version":"1.4.0"}`,
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "only the first 64 KiB of the body are matched",
			handler: reply(200, strings.Repeat(" ", 64<<10)+"ready"),
			spec:    healthcheck.Spec{BodyContains: "ready"},
			wantObs: `HTTP 200: body does not contain "ready"`,
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "redirect is reported, not followed, credentials stripped",
			handler: reply(302, "", "Location", "http://admin:hunter2@example.com/login"),
			wantObs: "HTTP 302: redirect to http://example.com/login (redirects are not followed)",
			wantErr: healthcheck.ErrUnexpected,
		},
	}
	for _, tt := range tests {
		for _, via := range []string{"", healthcheck.ViaHost, healthcheck.ViaController} {
			t.Run(tt.name+"/via="+via, func(t *testing.T) {
				srv := httptest.NewServer(tt.handler)
				defer srv.Close()
				h := &localHost{name: "web-1"}
				s := tt.spec
				s.Name, s.Type, s.URL, s.Via, s.Timeout = "ready", healthcheck.TypeHTTP, srv.URL+"/healthz", via, 10*time.Second

				obs, err := healthcheck.Probe(t.Context(), s, h)
				if obs != tt.wantObs {
					t.Errorf("observed:\n got %q\nwant %q", obs, tt.wantObs)
				}
				if tt.wantErr == nil && err != nil {
					t.Errorf("err = %v, want a pass", err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
				if err != nil && err.Error() != obs {
					t.Errorf("err says %q, observed says %q", err, obs)
				}
				dialedViaHost := h.dials.Load() > 0
				if want := via != healthcheck.ViaController; dialedViaHost != want {
					t.Errorf("dialed through the host = %v, want %v", dialedViaHost, want)
				}
			})
		}
	}
}

func TestProbeNetworkFailures(t *testing.T) {
	// A server that sends its headers and then stalls in the body.
	stall := make(chan struct{})
	defer close(stall)
	stallSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer stallSrv.Close()
	closed := closedAddr(t)
	silent := silentAddr(t)

	tests := []struct {
		name    string
		spec    healthcheck.Spec
		wantObs string
		wantErr error
	}{
		{
			name:    "http closed port",
			spec:    healthcheck.Spec{Type: "http", URL: "http://" + closed + "/"},
			wantObs: "connection refused",
			wantErr: healthcheck.ErrRefused,
		},
		{
			name:    "http server never answers",
			spec:    healthcheck.Spec{Type: "http", URL: "http://" + silent + "/", Timeout: 300 * time.Millisecond},
			wantObs: "timed out after 300ms",
			wantErr: healthcheck.ErrTimeout,
		},
		{
			name:    "http body never ends",
			spec:    healthcheck.Spec{Type: "http", URL: stallSrv.URL, Timeout: 300 * time.Millisecond},
			wantObs: "HTTP 200: reading body: timed out after 300ms",
			wantErr: healthcheck.ErrTimeout,
		},
		{
			name:    "tcp open port",
			spec:    healthcheck.Spec{Type: "tcp", Address: silent},
			wantObs: "connected to " + silent,
		},
		{
			name:    "tcp closed port",
			spec:    healthcheck.Spec{Type: "tcp", Address: closed},
			wantObs: "connection refused",
			wantErr: healthcheck.ErrRefused,
		},
	}
	for _, tt := range tests {
		for _, via := range []string{healthcheck.ViaHost, healthcheck.ViaController} {
			t.Run(tt.name+"/via="+via, func(t *testing.T) {
				s := tt.spec
				s.Name, s.Via = "net", via
				obs, err := healthcheck.Probe(t.Context(), s, &localHost{name: "web-1"})
				if obs != tt.wantObs {
					t.Errorf("observed %q, want %q", obs, tt.wantObs)
				}
				if tt.wantErr == nil && err != nil {
					t.Errorf("err = %v, want a pass", err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
				// The attempt's own timeout must not look like the caller's deadline.
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err %v matches context.DeadlineExceeded", err)
				}
			})
		}
	}
}

func TestProbeCommand(t *testing.T) {
	tests := []struct {
		name    string
		command string
		timeout time.Duration
		wantObs string
		wantErr error
	}{
		{name: "exit 0 passes", command: "test -d /", wantObs: "exit 0"},
		{
			name:    "exit 1 shows the last stderr line",
			command: "echo starting >&2; echo 'not ready: pid file missing' >&2; echo noise; exit 1",
			wantObs: "exit 1: not ready: pid file missing",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "stdout when stderr is empty",
			command: "echo 'queue depth 9000'; exit 3",
			wantObs: "exit 3: queue depth 9000",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "no output",
			command: "exit 2",
			wantObs: "exit 2",
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "command that hangs times out",
			command: "exec sleep 60",
			timeout: 300 * time.Millisecond,
			wantObs: "timed out after 300ms",
			wantErr: healthcheck.ErrTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthcheck.Spec{Name: "cmd", Type: "command", Command: tt.command, Timeout: tt.timeout}
			obs, err := healthcheck.Probe(t.Context(), s, &localHost{name: "web-1"})
			if obs != tt.wantObs {
				t.Errorf("observed %q, want %q", obs, tt.wantObs)
			}
			if tt.wantErr == nil && err != nil {
				t.Errorf("err = %v, want a pass", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestProbeInvalidSpec(t *testing.T) {
	h := &localHost{name: "web-1"}
	tests := []struct {
		name string
		spec healthcheck.Spec
		host healthcheck.Host
		want string
	}{
		{"unknown type", healthcheck.Spec{Name: "c", Type: "grpc"}, h,
			`invalid health check "c": type must be "http", "tcp" or "command", not "grpc"`},
		{"unknown via", healthcheck.Spec{Name: "c", Type: "tcp", Address: "127.0.0.1:1", Via: "jump"}, h,
			`invalid health check "c": via must be "host" or "controller", not "jump"`},
		{"url not echoed: may hold credentials", healthcheck.Spec{Name: "c", Type: "http", URL: "ftp://u:hunter2@127.0.0.1/"}, h,
			`invalid health check "c": url must be an absolute http(s) URL`},
		{"relative url", healthcheck.Spec{Name: "c", Type: "http", URL: "/healthz"}, h,
			`invalid health check "c": url must be an absolute http(s) URL`},
		{"bad status", healthcheck.Spec{Name: "c", Type: "http", URL: "http://127.0.0.1/", ExpectStatus: 42}, h,
			`invalid health check "c": expect_status 42 is not an HTTP status`},
		{"tcp without port", healthcheck.Spec{Name: "c", Type: "tcp", Address: "127.0.0.1"}, h,
			`invalid health check "c": address must be host:port: address 127.0.0.1: missing port in address`},
		{"empty command", healthcheck.Spec{Name: "c", Type: "command", Command: "  "}, h,
			`invalid health check "c": command is empty`},
		{"command without a host", healthcheck.Spec{Name: "c", Type: "command", Command: "true"}, nil,
			`invalid health check "c": no host to run it through`},
		{"via host without a host", healthcheck.Spec{Name: "c", Type: "tcp", Address: "127.0.0.1:1"}, nil,
			`invalid health check "c": no host to run it through`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs, err := healthcheck.Probe(t.Context(), tt.spec, tt.host)
			if !errors.Is(err, healthcheck.ErrInvalidSpec) {
				t.Fatalf("err = %v, want ErrInvalidSpec", err)
			}
			if obs != tt.want || err.Error() != tt.want {
				t.Errorf("observed %q, err %q, want %q", obs, err, tt.want)
			}
			o := healthcheck.Wait(t.Context(), tt.spec, tt.host)
			if o.Healthy || len(o.Attempts) != 0 || !errors.Is(o.Err, healthcheck.ErrInvalidSpec) {
				t.Errorf("Wait = healthy %v, %d attempts, err %v; want no attempt and ErrInvalidSpec", o.Healthy, len(o.Attempts), o.Err)
			}
			if got, want := o.Summary(), "health not checked: "+tt.want; got != want {
				t.Errorf("Summary() = %q, want %q", got, want)
			}
		})
	}
}

func TestProbeControllerNeedsNoHost(t *testing.T) {
	srv := httptest.NewServer(reply(200, "ok"))
	defer srv.Close()
	s := healthcheck.Spec{Name: "lb", Type: "http", URL: srv.URL, Via: healthcheck.ViaController}
	if obs, err := healthcheck.Probe(t.Context(), s, nil); err != nil || obs != "HTTP 200" {
		t.Errorf("Probe = %q, %v; want HTTP 200", obs, err)
	}
}
