package metric_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/relctl/relctl/healthcheck/metric"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func value(at time.Time, v float64) metric.Sample {
	return metric.Sample{At: at, Value: v, Baseline: math.NaN()}
}

func baseline(c, b float64) metric.Sample {
	return metric.Sample{At: t0, Value: c, Baseline: b}
}

// TestEvaluate covers the comparisons without a server: thresholds, growth
// and increase between two samples, the baseline ratio and its edge cases.
func TestEvaluate(t *testing.T) {
	queue := metric.Spec{Type: "redis", Address: "r:6379", Command: "llen", Key: "jobs"}
	with := func(s metric.Spec, m func(*metric.Spec)) metric.Spec { m(&s); return s }
	errRate := metric.Spec{Type: "prometheus", Address: "http://p:9090", Query: "rate(http_errors_total[1m])",
		Compare: "baseline", BaselineQuery: "rate(old[1m])", MaxRatio: f(1.5)}
	throughput := with(errRate, func(s *metric.Spec) { s.Query, s.Direction = "rate(requests_total[1m])", "higher_is_better" })

	tests := []struct {
		name       string
		spec       metric.Spec
		prev, cur  metric.Sample
		verdict    metric.Verdict
		reason     string
		limit      string
		val, thr   float64
		wantErrIs  error
		wantNextAt time.Time
	}{
		{
			name: "under max", spec: with(queue, func(s *metric.Spec) { s.Max = f(1000) }), cur: value(t0, 12),
			verdict: metric.Pass, reason: "redis LLEN jobs = 12 ≤ max 1000", limit: "max", val: 12, thr: 1000,
		},
		{
			name: "over max", spec: with(queue, func(s *metric.Spec) { s.Max = f(1000) }), cur: value(t0, 1840),
			verdict: metric.Fail, reason: "redis LLEN jobs = 1840 > max 1000", limit: "max", val: 1840, thr: 1000, wantErrIs: metric.ErrThreshold,
		},
		{
			name: "under min", spec: with(queue, func(s *metric.Spec) { s.Min, s.Max = f(1), f(10) }), cur: value(t0, 0),
			verdict: metric.Fail, reason: "redis LLEN jobs = 0 < min 1", limit: "min", val: 0, thr: 1, wantErrIs: metric.ErrThreshold,
		},
		{
			name: "between min and max", spec: with(queue, func(s *metric.Spec) { s.Min, s.Max = f(1), f(10) }), cur: value(t0, 5),
			verdict: metric.Pass, reason: "redis LLEN jobs = 5 ≤ max 10; ≥ min 1", limit: "max", val: 5, thr: 10,
		},
		{
			name: "growth: first sample is pending", spec: with(queue, func(s *metric.Spec) { s.MaxGrowthPerMinute = f(60) }),
			cur: value(t0, 1840), verdict: metric.Pending, reason: "redis LLEN jobs = 1840; max_growth_per_minute from the next sample",
			limit: "max_growth_per_minute", val: 1840, thr: 60,
		},
		{
			name: "growth too fast", spec: with(queue, func(s *metric.Spec) { s.MaxGrowthPerMinute = f(60) }),
			prev: value(t0, 1840), cur: value(t0.Add(30*time.Second), 1890), verdict: metric.Fail,
			reason: "redis LLEN jobs grew by 50 in 30s (1840 → 1890) = 100/min > max_growth_per_minute 60",
			limit:  "max_growth_per_minute", val: 100, thr: 60, wantErrIs: metric.ErrThreshold,
		},
		{
			name: "draining is fine", spec: with(queue, func(s *metric.Spec) { s.Max, s.MaxGrowthPerMinute = f(5000), f(60) }),
			prev: value(t0, 1840), cur: value(t0.Add(time.Minute), 1200), verdict: metric.Pass,
			reason: "redis LLEN jobs = 1200 ≤ max 5000; grew by -640 in 1m0s (1840 → 1200) = -640/min ≤ max_growth_per_minute 60",
			limit:  "max", val: 1200, thr: 5000,
		},
		{
			name: "a failed previous sample does not count", spec: with(queue, func(s *metric.Spec) { s.MaxGrowthPerMinute = f(60) }),
			prev: metric.Sample{At: t0, Err: errors.New("connection refused")}, cur: value(t0.Add(time.Minute), 10),
			verdict: metric.Pending, limit: "max_growth_per_minute", val: 10, thr: 60,
			reason: "redis LLEN jobs = 10; max_growth_per_minute from the next sample",
		},
		{
			name: "evictions rose", spec: metric.Spec{Type: "memcached", Address: "m:11211", Field: "evictions", MaxIncrease: f(0)},
			prev: value(t0, 100), cur: value(t0.Add(10*time.Second), 137), verdict: metric.Fail,
			reason: "memcached evictions rose by 37 in 10s (100 → 137) > max_increase 0", limit: "max_increase", val: 37, thr: 0,
			wantErrIs: metric.ErrThreshold,
		},
		{
			name: "counter reset counts from 0", spec: metric.Spec{Type: "memcached", Address: "m:11211", Field: "evictions", MaxIncrease: f(10)},
			prev: value(t0, 100), cur: value(t0.Add(10*time.Second), 5), verdict: metric.Pass,
			reason: "memcached evictions = 5; rose by 5 in 10s (100 → 5), counter reset ≤ max_increase 10", limit: "max_increase", val: 5, thr: 10,
		},
		{
			name: "baseline: within ratio", spec: errRate, cur: baseline(0.06, 0.05), verdict: metric.Pass,
			reason: "prometheus rate(http_errors_total[1m]) = 0.06 ≤ baseline 0.05 × max_ratio 1.5 = 0.075",
			limit:  "max_ratio", val: 0.06, thr: 0.075,
		},
		{
			name: "baseline: canary worse", spec: errRate, cur: baseline(0.12, 0.05), verdict: metric.Fail,
			reason: "prometheus rate(http_errors_total[1m]) = 0.12 > baseline 0.05 × max_ratio 1.5 = 0.075",
			limit:  "max_ratio", val: 0.12, thr: 0.075, wantErrIs: metric.ErrThreshold,
		},
		{
			name: "baseline 0, canary 0", spec: errRate, cur: baseline(0, 0), verdict: metric.Pass,
			reason: "prometheus rate(http_errors_total[1m]) = 0 with baseline 0", limit: "max_ratio", val: 0, thr: 0,
		},
		{
			name: "baseline 0 allows only 0", spec: errRate, cur: baseline(0.01, 0), verdict: metric.Fail,
			reason: "prometheus rate(http_errors_total[1m]) = 0.01 > baseline 0 (a baseline of 0 allows only 0; set max to allow a small value)",
			limit:  "max_ratio", val: 0.01, thr: 0, wantErrIs: metric.ErrThreshold,
		},
		{
			name: "baseline 0 with max: judged by max", spec: with(errRate, func(s *metric.Spec) { s.Max = f(0.02) }), cur: baseline(0.01, 0),
			verdict: metric.Pass, reason: "prometheus rate(http_errors_total[1m]) = 0.01 ≤ max 0.02 (baseline 0: judged by max alone)",
			limit: "max", val: 0.01, thr: 0.02,
		},
		{
			name: "baseline 0 with max, over it", spec: with(errRate, func(s *metric.Spec) { s.Max = f(0.02) }), cur: baseline(0.05, 0),
			verdict: metric.Fail, reason: "prometheus rate(http_errors_total[1m]) = 0.05 > max 0.02 (baseline 0: judged by max alone)",
			limit: "max", val: 0.05, thr: 0.02, wantErrIs: metric.ErrThreshold,
		},
		{
			name: "baseline: absolute max still applies", spec: with(errRate, func(s *metric.Spec) { s.Max = f(0.1) }), cur: baseline(0.11, 0.1),
			verdict: metric.Fail, reason: "prometheus rate(http_errors_total[1m]) = 0.11 > max 0.1", limit: "max", val: 0.11, thr: 0.1,
			wantErrIs: metric.ErrThreshold,
		},
		{
			name: "higher is better: canary too slow", spec: throughput, cur: baseline(50, 100), verdict: metric.Fail,
			reason: "prometheus rate(requests_total[1m]) = 50 < baseline 100 ÷ max_ratio 1.5 = 66.67",
			limit:  "max_ratio", val: 50, thr: 100 / 1.5, wantErrIs: metric.ErrThreshold,
		},
		{
			name: "higher is better: baseline 0 passes", spec: throughput, cur: baseline(3, 0), verdict: metric.Pass,
			reason: "prometheus rate(requests_total[1m]) = 3 ≥ baseline 0 ÷ max_ratio 1.5 = 0", limit: "max_ratio", val: 3, thr: 0,
		},
		{
			name: "negative baseline", spec: errRate, cur: baseline(1, -3), verdict: metric.Fail,
			reason:    "prometheus rate(http_errors_total[1m]) = 1: baseline_query gave -3: a ratio needs a baseline of 0 or more",
			wantErrIs: metric.ErrNotNumber, val: 1, thr: math.NaN(),
		},
		{
			name: "a failed reading is a failure", spec: with(queue, func(s *metric.Spec) { s.Max = f(1000) }),
			cur:     metric.Sample{At: t0, Value: math.NaN(), Err: errors.New("connection refused")},
			verdict: metric.Fail, reason: "redis LLEN jobs: connection refused", limit: "max", val: math.NaN(), thr: 1000,
		},
		{
			name: "the caller stopping is not a failure", spec: with(queue, func(s *metric.Spec) { s.Max = f(1000) }),
			cur:     metric.Sample{At: t0, Value: math.NaN(), Err: context.Canceled},
			verdict: metric.Stopped, reason: "redis LLEN jobs: stopped: context canceled", val: math.NaN(), thr: math.NaN(),
			wantErrIs: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := metric.Evaluate(tt.spec, tt.prev, tt.cur)
			if r.Verdict != tt.verdict || r.Reason != tt.reason {
				t.Fatalf("Evaluate = %s %q, want %s %q", r.Verdict, r.Reason, tt.verdict, tt.reason)
			}
			if r.Limit != tt.limit || !same(r.Value, tt.val) || !same(r.Threshold, tt.thr) {
				t.Errorf("compared %v with %s %v, want %v with %s %v", r.Value, r.Limit, r.Threshold, tt.val, tt.limit, tt.thr)
			}
			if tt.wantErrIs != nil && !errors.Is(r.Err, tt.wantErrIs) {
				t.Errorf("Err = %v, want it to match %v", r.Err, tt.wantErrIs)
			}
			if (r.Verdict == metric.Pass || r.Verdict == metric.Pending) && r.Err != nil {
				t.Errorf("Err = %v on %s", r.Err, r.Verdict)
			}
			wantNext := tt.cur
			if tt.cur.Err != nil {
				wantNext = tt.prev
			}
			if !r.Next.At.Equal(wantNext.At) || !same(r.Next.Value, wantNext.Value) {
				t.Errorf("Next = %+v, want %+v", r.Next, wantNext)
			}
		})
	}
}

func same(a, b float64) bool {
	return a == b || (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) < 1e-9
}
