package metric_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relctl/relctl/healthcheck/metric"
	"github.com/relctl/relctl/internal/metricstest"
)

// One Prometheus serves every test of the package: it takes a few seconds
// to start and scrape, and the tests only read from it.
var shared struct {
	once sync.Once
	dir  string
	prom *metricstest.PrometheusServer
	exp  *metricstest.Exporter
	err  error
}

// The series the shared exporter serves.
var exported = map[string]float64{
	`queue_depth`:                      7,
	`http_errors_rate{host="canary"}`:  0.12,
	`http_errors_rate{host="canary2"}`: 0.06,
	`http_errors_rate{host="old1"}`:    0.05,
	`http_errors_rate{host="old2"}`:    0.05,
	`throughput{host="canary"}`:        50,
	`throughput{host="old1"}`:          100,
	`zero_errors`:                      0,
	`nan_metric`:                       0, // set to NaN below: a map literal cannot hold it readably
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.prom != nil {
		shared.prom.Close()
	}
	if shared.exp != nil {
		shared.exp.Close()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// prometheus returns the shared Prometheus, started on first use, once
// it has scraped the exporter.
func prometheus(t *testing.T) *metricstest.PrometheusServer {
	t.Helper()
	metricstest.Require(t, metricstest.PrometheusPath, "prometheus")
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if shared.dir, shared.err = os.MkdirTemp("", "metric-test-prometheus-"); shared.err != nil {
			return
		}
		if shared.exp, shared.err = metricstest.NewExporter(); shared.err != nil {
			return
		}
		for series, v := range exported {
			shared.exp.Set(series, v)
		}
		shared.exp.Set("nan_metric", nan())
		shared.prom, shared.err = metricstest.StartPrometheus(ctx, shared.dir, metricstest.PrometheusOptions{Targets: []string{shared.exp.Addr}})
		if shared.err != nil {
			return
		}
		// Every series comes in the same scrape: one is enough to wait for.
		shared.err = shared.prom.WaitForValue(ctx, "queue_depth", 7)
	})
	if shared.err != nil {
		t.Fatalf("starting Prometheus: %v", shared.err)
	}
	return shared.prom
}

func nan() float64 { var zero float64; return zero / zero }

// direct dials from the test, as via = "controller" does.
var direct = (&net.Dialer{}).DialContext

// testCtx bounds a test that talks to servers: generous, it only keeps a
// broken test from hanging.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// closedAddr is a 127.0.0.1 address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// countingDialer dials directly, counts the dials, and hands out
// connections that refuse deadlines, as an SSH direct-tcpip channel does.
type countingDialer struct{ n atomic.Int32 }

func (d *countingDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.n.Add(1)
	c, err := direct(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return noDeadlineConn{c}, nil
}

type noDeadlineConn struct{ net.Conn }

var errNoDeadline = errors.New("ssh: tcpChan: deadline not supported")

func (noDeadlineConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (noDeadlineConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (noDeadlineConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

// expect checks a Result's verdict, reason and error kind.
func expect(t *testing.T, r metric.Result, verdict metric.Verdict, reason string, kind error) {
	t.Helper()
	t.Logf("%s: %s", r.Verdict, r.Reason)
	if r.Verdict != verdict {
		t.Errorf("verdict %s, want %s (reason %q, err %v)", r.Verdict, verdict, r.Reason, r.Err)
	}
	if !strings.Contains(r.Reason, reason) {
		t.Errorf("reason %q, want it to contain %q", r.Reason, reason)
	}
	if kind != nil && !errors.Is(r.Err, kind) {
		t.Errorf("err %v, want it to match %v", r.Err, kind)
	}
	if kind == nil && r.Err != nil && (verdict == metric.Pass || verdict == metric.Pending) {
		t.Errorf("err %v on %s", r.Err, r.Verdict)
	}
}

// contextCanceled is a context canceled before the sample starts, as after
// SIGINT.
func contextCanceled(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	cancel()
	return ctx, cancel
}
