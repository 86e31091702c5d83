package healthcheck_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/healthcheck"
	"github.com/relctl/relctl/internal/sshdtest"
	"github.com/relctl/relctl/internal/transport"
)

// TestProbesThroughSSH runs checks through a real OpenSSH sshd on 127.0.0.1:
// http and tcp dial from the host (ssh direct-tcpip), commands run in an
// ssh session.
func TestProbesThroughSSH(t *testing.T) {
	dir := t.TempDir()
	key, pub := sshdtest.NewClientKey(t, dir)
	servers := sshdtest.Start(t, 1, pub)
	knownHosts := filepath.Join(dir, "known_hosts")
	sshdtest.WriteKnownHosts(t, knownHosts, servers)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := transport.NewPool(transport.Options{
		User: me.Username, IdentityFile: key, KnownHostsFile: knownHosts,
		HostKeyPolicy: transport.PolicyStrict, ConnectTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// Generous: only keeps a broken test from hanging.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	conn, err := pool.Get(ctx, transport.Target{Name: "web-1", Endpoint: transport.Endpoint{Address: servers[0].Addr}})
	if err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Write([]byte(`{"status":"ready"}`))
			return
		}
		w.WriteHeader(500)
		w.Write([]byte(`{"status":"failing"}`))
	}))
	defer srv.Close()
	closed := closedAddr(t)

	tests := []struct {
		name    string
		spec    healthcheck.Spec
		wantObs string
		wantErr error
	}{
		{
			name:    "http ok",
			spec:    healthcheck.Spec{Type: "http", URL: srv.URL + "/healthz", BodyContains: "ready"},
			wantObs: "HTTP 200",
		},
		{
			name:    "http 500",
			spec:    healthcheck.Spec{Type: "http", URL: srv.URL + "/broken"},
			wantObs: `HTTP 500: {"status":"failing"}`,
			wantErr: healthcheck.ErrUnexpected,
		},
		{
			name:    "http closed port, as the host sees it",
			spec:    healthcheck.Spec{Type: "http", URL: "http://" + closed + "/"},
			wantObs: "connection refused",
			wantErr: healthcheck.ErrRefused,
		},
		{
			name:    "tcp ok",
			spec:    healthcheck.Spec{Type: "tcp", Address: srv.Listener.Addr().String()},
			wantObs: "connected to " + srv.Listener.Addr().String(),
		},
		{
			name:    "command ok",
			spec:    healthcheck.Spec{Type: "command", Command: "test -d /"},
			wantObs: "exit 0",
		},
		{
			name:    "command exit 1 with stderr",
			spec:    healthcheck.Spec{Type: "command", Command: "echo 'not ready: pid file missing' >&2; exit 1"},
			wantObs: "exit 1: not ready: pid file missing",
			wantErr: healthcheck.ErrUnexpected,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.spec
			s.Name, s.Timeout = "ssh", 30*time.Second
			obs, err := healthcheck.Probe(ctx, s, conn)
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

	t.Run("wait on one connection", func(t *testing.T) {
		s := healthcheck.Spec{Name: "ready", Type: "http", URL: srv.URL + "/healthz", HealthyFor: 3, Interval: time.Millisecond}
		o := healthcheck.Wait(ctx, s, conn)
		if !o.Healthy || !strings.HasPrefix(o.Summary(), "health ok after 3 attempts (3 consecutive passes, ") {
			t.Errorf("Summary() = %q, err %v", o.Summary(), o.Err)
		}
		if n := pool.Handshakes()["web-1"]; n != 1 {
			t.Errorf("%d SSH handshakes, want the checks to share one connection", n)
		}
	})
}
