package metric_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/healthcheck/metric"
)

// TestPrometheus runs queries against a real Prometheus (Debian's 2.42)
// scraping an exporter the test serves.
func TestPrometheus(t *testing.T) {
	p := prometheus(t)
	ctx := testCtx(t)
	opts := metric.Options{Dial: direct, Timeout: 10 * time.Second}
	spec := func(q string, m func(*metric.Spec)) metric.Spec {
		s := metric.Spec{Type: "prometheus", Address: p.URL, Query: q}
		if m != nil {
			m(&s)
		}
		return s
	}
	maxOf := func(v float64) func(*metric.Spec) { return func(s *metric.Spec) { s.Max = f(v) } }
	baselineOf := func(q string, ratio float64) func(*metric.Spec) {
		return func(s *metric.Spec) { s.Compare, s.BaselineQuery, s.MaxRatio = "baseline", q, f(ratio) }
	}

	tests := []struct {
		name    string
		spec    metric.Spec
		verdict metric.Verdict
		reason  string
		kind    error
	}{
		{"under max", spec("queue_depth", maxOf(10)), metric.Pass, "prometheus queue_depth = 7 ≤ max 10", nil},
		{"over max", spec(`http_errors_rate{host="canary"}`, maxOf(0.05)), metric.Fail,
			`prometheus http_errors_rate{host="canary"} = 0.12 > max 0.05`, metric.ErrThreshold},
		{"under min", spec("queue_depth", func(s *metric.Spec) { s.Min = f(10) }), metric.Fail, "prometheus queue_depth = 7 < min 10", metric.ErrThreshold},
		{"a scalar", spec("scalar(queue_depth) * 2", maxOf(10)), metric.Fail, "= 14 > max 10", metric.ErrThreshold},
		{"an aggregate of several series", spec(`avg(http_errors_rate{host=~"old.*"})`, maxOf(0.05)), metric.Pass, "= 0.05 ≤ max 0.05", nil},
		{"no series", spec(`http_errors_rate{host="nowhere"}`, maxOf(1)), metric.Fail,
			`prometheus http_errors_rate{host="nowhere"}: no series`, metric.ErrNoSeries},
		{"several series", spec("http_errors_rate", maxOf(1)), metric.Fail,
			`prometheus http_errors_rate: 4 series, want one (aggregate with sum, avg or max): {host="canary"}, {host="canary2"}, {host="old1"}, …`,
			metric.ErrManySeries},
		{"syntax error", spec(`rate(http_errors_rate[1m]) >`, maxOf(1)), metric.Fail,
			"prometheus rate(http_errors_rate[1m]) >: 1:29: parse error: unexpected end of input", metric.ErrQuery},
		{"unknown function", spec(`rote(queue_depth[1m])`, maxOf(1)), metric.Fail, `unknown function with name "rote"`, metric.ErrQuery},
		{"NaN", spec("nan_metric", maxOf(1)), metric.Fail, "prometheus nan_metric: NaN", metric.ErrNotNumber},
		{"division by zero", spec("queue_depth / zero_errors", maxOf(1)), metric.Fail, "+Inf (a division by zero?)", metric.ErrNotNumber},
		{"a range vector", spec("queue_depth[1m]", maxOf(1)), metric.Fail, "a range vector, want an instant value", metric.ErrNotNumber},
		{"a string", spec(`"hello"`, maxOf(1)), metric.Fail, `prometheus "hello": unexpected value type "string", want a number`, metric.ErrNotNumber},

		{"baseline: within the ratio", spec(`http_errors_rate{host="canary2"}`, baselineOf(`avg(http_errors_rate{host=~"old.*"})`, 1.5)),
			metric.Pass, `= 0.06 ≤ baseline 0.05 × max_ratio 1.5 = 0.075`, nil},
		{"baseline: canary worse", spec(`http_errors_rate{host="canary"}`, baselineOf(`avg(http_errors_rate{host=~"old.*"})`, 1.5)),
			metric.Fail, `prometheus http_errors_rate{host="canary"} = 0.12 > baseline 0.05 × max_ratio 1.5 = 0.075`, metric.ErrThreshold},
		{"baseline 0 allows only 0", spec(`http_errors_rate{host="canary"}`, baselineOf("zero_errors", 1.5)),
			metric.Fail, "= 0.12 > baseline 0 (a baseline of 0 allows only 0; set max to allow a small value)", metric.ErrThreshold},
		{"baseline 0 with max", spec(`http_errors_rate{host="canary"}`, func(s *metric.Spec) { baselineOf("zero_errors", 1.5)(s); s.Max = f(0.2) }),
			metric.Pass, "= 0.12 ≤ max 0.2 (baseline 0: judged by max alone)", nil},
		{"baseline 0 and canary 0", spec("zero_errors", baselineOf("zero_errors", 1.5)), metric.Pass, "zero_errors = 0 with baseline 0", nil},
		{"higher is better", spec(`throughput{host="canary"}`, func(s *metric.Spec) {
			baselineOf(`throughput{host="old1"}`, 1.5)(s)
			s.Direction = "higher_is_better"
		}), metric.Fail, `= 50 < baseline 100 ÷ max_ratio 1.5 = 66.67`, metric.ErrThreshold},
		{"baseline without series", spec(`http_errors_rate{host="canary"}`, baselineOf(`http_errors_rate{host="old9"}`, 1.5)),
			metric.Fail, "baseline_query: no series (no host left on the previous release?)", metric.ErrNoSeries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p := tt.spec.Validate(); p != nil {
				t.Fatalf("spec invalid: %q", p)
			}
			r := metric.Check(ctx, tt.spec, opts, metric.Sample{})
			expect(t, r, tt.verdict, tt.reason, tt.kind)
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		r := metric.Check(ctx, metric.Spec{Type: "prometheus", Address: "http://" + closedAddr(t), Query: "up", Max: f(1)}, opts, metric.Sample{})
		expect(t, r, metric.Fail, "prometheus up: connection refused", metric.ErrUnreachable)
	})
	t.Run("timeout", func(t *testing.T) {
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The server notices the client leaving only once the body is read.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
		}))
		defer hang.Close()
		defer hang.CloseClientConnections()
		start := time.Now()
		r := metric.Check(ctx, metric.Spec{Type: "prometheus", Address: hang.URL, Query: "up", Max: f(1)},
			metric.Options{Dial: direct, Timeout: 300 * time.Millisecond}, metric.Sample{})
		expect(t, r, metric.Fail, "prometheus up: timed out after 300ms", metric.ErrTimeout)
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %s for a 300ms timeout", el)
		}
	})
	t.Run("not a Prometheus", func(t *testing.T) {
		notProm := httptest.NewServer(http.NotFoundHandler())
		defer notProm.Close()
		r := metric.Check(ctx, metric.Spec{Type: "prometheus", Address: notProm.URL, Query: "up", Max: f(1)}, opts, metric.Sample{})
		expect(t, r, metric.Fail, "client error: 404: 404 page not found (is address a Prometheus server?)", metric.ErrProtocol)
	})
	t.Run("an endless answer", func(t *testing.T) {
		big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[`))
			for i := 0; i < 1<<16 && r.Context().Err() == nil; i++ {
				w.Write([]byte(`{"metric":{"x":"` + strings.Repeat("y", 100) + `"},"value":[1,"1"]},`))
			}
		}))
		defer big.Close()
		r := metric.Check(ctx, metric.Spec{Type: "prometheus", Address: big.URL, Query: "up", Max: f(1)}, opts, metric.Sample{})
		expect(t, r, metric.Fail, "answer larger than 1048576 bytes", metric.ErrProtocol)
	})
	t.Run("a canceled caller is stopped, not failed", func(t *testing.T) {
		cctx, cancel := contextCanceled(ctx)
		defer cancel()
		r := metric.Check(cctx, spec("queue_depth", maxOf(10)), opts, metric.Sample{})
		expect(t, r, metric.Stopped, "stopped: context canceled", nil)
	})
	t.Run("through a counting dialer whose connections refuse deadlines", func(t *testing.T) {
		var d countingDialer
		r := metric.Check(ctx, spec("queue_depth", maxOf(10)), metric.Options{Dial: d.Dial, Timeout: 10 * time.Second}, metric.Sample{})
		expect(t, r, metric.Pass, "= 7 ≤ max 10", nil)
		if d.n.Load() == 0 {
			t.Error("the query did not go through Options.Dial")
		}
	})
	t.Run("no dialer", func(t *testing.T) {
		r := metric.Check(ctx, spec("queue_depth", maxOf(10)), metric.Options{}, metric.Sample{})
		expect(t, r, metric.Fail, "no dialer", metric.ErrInvalidSpec)
	})
}

// TestPreflightQuery asks the real server to parse queries, as relctl does
// before a deploy: its parser, not a newer one, decides.
func TestPreflightQuery(t *testing.T) {
	p := prometheus(t)
	ctx := testCtx(t)
	opts := metric.Options{Dial: direct, Timeout: 10 * time.Second}
	tests := []struct {
		name, query, baseline string
		want                  error
		msg                   string
	}{
		{name: "fine", query: "sum(rate(http_errors_rate[1m]))"},
		{name: "no series yet is fine", query: `sum(rate(http_errors_total{version="9.9.9"}[1m]))`},
		// Prometheus 3 renamed holt_winters; 2.42 (Debian's) still runs it.
		{name: "what this server runs", query: "holt_winters(queue_depth[5m], 0.5, 0.5)"},
		{name: "syntax error", query: "sum(rate(x[1m])) by", want: metric.ErrQuery, msg: "query: 1:20: parse error: unexpected end of input"},
		{name: "baseline syntax error", query: "up", baseline: "avg(up) by", want: metric.ErrQuery, msg: "baseline_query: 1:11: parse error: unexpected end of input in grouping opts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := metric.Spec{Type: "prometheus", Address: p.URL, Query: tt.query, Max: f(1)}
			if tt.baseline != "" {
				s.Compare, s.BaselineQuery, s.MaxRatio, s.Max = "baseline", tt.baseline, f(1.5), nil
			}
			err := metric.PreflightQuery(ctx, s, opts)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("PreflightQuery = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("PreflightQuery = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		err := metric.PreflightQuery(ctx, metric.Spec{Type: "prometheus", Address: "http://" + closedAddr(t), Query: "up", Max: f(1)}, opts)
		if !errors.Is(err, metric.ErrUnreachable) {
			t.Fatalf("PreflightQuery = %v, want ErrUnreachable", err)
		}
	})
}
