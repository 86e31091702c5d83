package metric_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relctl/relctl/healthcheck/metric"
	"github.com/relctl/relctl/internal/metricstest"
)

const redisPassword = "s3cret-redis-pass"

// seed runs commands on srv with a plain client (not the code under test).
func seed(t *testing.T, srv *metricstest.Server, db int, do func(ctx context.Context, c *redis.Client) error) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: redisPassword, DB: db, Protocol: 2})
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := do(ctx, c); err != nil {
		t.Fatalf("seeding redis: %v", err)
	}
}

// clock hands out the times given, then keeps the last one.
func clock(times ...time.Time) func() time.Time {
	return func() time.Time {
		now := times[0]
		if len(times) > 1 {
			times = times[1:]
		}
		return now
	}
}

// TestRedis reads queue lengths and INFO fields from a real redis-server.
func TestRedis(t *testing.T) {
	ctx := testCtx(t)
	queues := metricstest.Redis(t, metricstest.RedisOptions{Password: redisPassword})
	seed(t, queues, 0, func(ctx context.Context, c *redis.Client) error {
		items := make([]any, 1840)
		for i := range items {
			items[i] = i
		}
		if err := c.RPush(ctx, "jobs", items...).Err(); err != nil {
			return err
		}
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "events", Values: map[string]any{"k": "v"}}).Err(); err != nil {
			return err
		}
		return c.ZAdd(ctx, "delayed", redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2, Member: "b"}).Err()
	})
	seed(t, queues, 2, func(ctx context.Context, c *redis.Client) error { return c.RPush(ctx, "jobs", "x", "y").Err() })
	opts := metric.Options{Dial: direct, Password: redisPassword, Timeout: 10 * time.Second}
	key := func(command, key string, m func(*metric.Spec)) metric.Spec {
		s := metric.Spec{Type: "redis", Address: queues.Addr, Command: command, Key: key}
		m(&s)
		return s
	}
	maxOf := func(v float64) func(*metric.Spec) { return func(s *metric.Spec) { s.Max = f(v) } }

	tests := []struct {
		name    string
		spec    metric.Spec
		verdict metric.Verdict
		reason  string
		kind    error
	}{
		{"LLEN over max", key("llen", "jobs", maxOf(1000)), metric.Fail, "redis LLEN jobs = 1840 > max 1000", metric.ErrThreshold},
		{"LLEN under max", key("llen", "jobs", maxOf(5000)), metric.Pass, "redis LLEN jobs = 1840 ≤ max 5000", nil},
		{"XLEN", key("xlen", "events", maxOf(10)), metric.Pass, "redis XLEN events = 1 ≤ max 10", nil},
		{"ZCARD", key("zcard", "delayed", maxOf(1)), metric.Fail, "redis ZCARD delayed = 2 > max 1", metric.ErrThreshold},
		{"another db", key("llen", "jobs", func(s *metric.Spec) { s.DB, s.Max = 2, f(1) }), metric.Fail, "redis LLEN jobs (db 2) = 2 > max 1", metric.ErrThreshold},
		{"a missing key is an empty queue", key("llen", "nothing", maxOf(0)), metric.Pass, "redis LLEN nothing = 0 ≤ max 0", nil},
		{"wrong type", key("llen", "delayed", maxOf(1)), metric.Fail,
			"redis LLEN delayed: redis refused: WRONGTYPE Operation against a key holding the wrong kind of value (the key is not what command reads", metric.ErrProtocol},
		{"INFO field", metric.Spec{Type: "redis", Address: queues.Addr, Field: "connected_clients", Min: f(1)}, metric.Pass, "redis connected_clients = 1 ≥ min 1", nil},
		{"INFO without maxmemory", metric.Spec{Type: "redis", Address: queues.Addr, Field: "used_memory/maxmemory", Max: f(0.9)}, metric.Fail,
			"redis used_memory/maxmemory: maxmemory is 0 (no limit set?), so used_memory/maxmemory has no meaning", metric.ErrNoLimit},
		{"INFO unknown field", metric.Spec{Type: "redis", Address: queues.Addr, Field: "used_memroy", Max: f(1)}, metric.Fail,
			`redis used_memroy: INFO has no field "used_memroy"`, metric.ErrNoField},
		{"INFO field not a number", metric.Spec{Type: "redis", Address: queues.Addr, Field: "redis_version", Max: f(1)}, metric.Fail,
			`INFO field redis_version is "7.0.15", not a number`, metric.ErrNotNumber},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p := tt.spec.Validate(); p != nil {
				t.Fatalf("spec invalid: %q", p)
			}
			expect(t, metric.Check(ctx, tt.spec, opts, metric.Sample{}), tt.verdict, tt.reason, tt.kind)
		})
	}

	t.Run("LLEN growth per minute from two samples", func(t *testing.T) {
		s := key("llen", "jobs", func(s *metric.Spec) { s.MaxGrowthPerMinute = f(60) })
		o := opts
		o.Now = clock(t0, t0.Add(30*time.Second), t0.Add(60*time.Second))

		first := metric.Check(ctx, s, o, metric.Sample{})
		expect(t, first, metric.Pending, "redis LLEN jobs = 1840; max_growth_per_minute from the next sample", nil)

		seed(t, queues, 0, func(ctx context.Context, c *redis.Client) error {
			return c.RPush(ctx, "jobs", make([]any, 50)...).Err()
		})
		second := metric.Check(ctx, s, o, first.Next)
		expect(t, second, metric.Fail, "redis LLEN jobs grew by 50 in 30s (1840 → 1890) = 100/min > max_growth_per_minute 60", metric.ErrThreshold)
		if second.Value != 100 || second.Threshold != 60 || second.Limit != "max_growth_per_minute" {
			t.Errorf("compared %v with %s %v", second.Value, second.Limit, second.Threshold)
		}

		seed(t, queues, 0, func(ctx context.Context, c *redis.Client) error {
			return c.RPush(ctx, "jobs", make([]any, 20)...).Err()
		})
		third := metric.Check(ctx, s, o, second.Next)
		expect(t, third, metric.Pass, "redis LLEN jobs = 1910; grew by 20 in 30s (1890 → 1910) = 40/min ≤ max_growth_per_minute 60", nil)
	})

	t.Run("wrong password", func(t *testing.T) {
		const wrong = "not-the-password-42"
		r := metric.Check(ctx, key("llen", "jobs", maxOf(1)), metric.Options{Dial: direct, Password: wrong, Timeout: 10 * time.Second}, metric.Sample{})
		expect(t, r, metric.Fail, "redis LLEN jobs: authentication failed: WRONGPASS", metric.ErrAuth)
		for _, text := range []string{r.Reason, r.Err.Error(), r.Sample.Err.Error()} {
			if strings.Contains(text, wrong) || strings.Contains(text, redisPassword) {
				t.Errorf("a password leaked into %q", text)
			}
		}
	})
	t.Run("no password", func(t *testing.T) {
		r := metric.Check(ctx, key("llen", "jobs", maxOf(1)), metric.Options{Dial: direct, Timeout: 10 * time.Second}, metric.Sample{})
		expect(t, r, metric.Fail, "redis LLEN jobs: authentication failed: NOAUTH", metric.ErrAuth)
	})
	t.Run("unreachable", func(t *testing.T) {
		s := key("llen", "jobs", maxOf(1))
		s.Address = closedAddr(t)
		r := metric.Check(ctx, s, opts, metric.Sample{})
		expect(t, r, metric.Fail, "redis LLEN jobs: connection refused", metric.ErrUnreachable)
		if strings.Contains(r.Reason, redisPassword) {
			t.Errorf("the password leaked into %q", r.Reason)
		}
	})
	t.Run("one dial per sample, even when it fails", func(t *testing.T) {
		// go-redis re-dials in the background once failed dials reach its
		// pool size; through a host's SSH connection that would be a dial
		// nobody asked for, after the sample.
		var d countingDialer
		s := key("llen", "jobs", maxOf(1))
		s.Address = closedAddr(t)
		r := metric.Check(ctx, s, metric.Options{Dial: d.Dial, Password: redisPassword, Timeout: 10 * time.Second}, metric.Sample{})
		expect(t, r, metric.Fail, "connection refused", metric.ErrUnreachable)
		time.Sleep(300 * time.Millisecond) // the background dial, if any, starts at once
		if n := d.n.Load(); n != 1 {
			t.Errorf("%d dials, want 1", n)
		}
	})
	t.Run("timeout: a server that never answers", func(t *testing.T) {
		silent := silentServer(t)
		s := key("llen", "jobs", maxOf(1))
		s.Address = silent
		start := time.Now()
		r := metric.Check(ctx, s, metric.Options{Dial: direct, Password: redisPassword, Timeout: 300 * time.Millisecond}, metric.Sample{})
		expect(t, r, metric.Fail, "redis LLEN jobs: timed out after 300ms", metric.ErrTimeout)
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %s for a 300ms timeout", el)
		}
	})
	t.Run("through a counting dialer whose connections refuse deadlines", func(t *testing.T) {
		var d countingDialer
		r := metric.Check(ctx, key("llen", "jobs", maxOf(5000)), metric.Options{Dial: d.Dial, Password: redisPassword, Timeout: 10 * time.Second}, metric.Sample{})
		expect(t, r, metric.Pass, "redis LLEN jobs = 1910 ≤ max 5000", nil)
		if d.n.Load() == 0 {
			t.Error("the read did not go through Options.Dial")
		}
	})
	t.Run("a canceled caller is stopped, not failed", func(t *testing.T) {
		cctx, cancel := contextCanceled(ctx)
		defer cancel()
		expect(t, metric.Check(cctx, key("llen", "jobs", maxOf(5000)), opts, metric.Sample{}), metric.Stopped, "stopped", nil)
	})
}

// TestRedisMemory reads used_memory against maxmemory and evicted_keys
// from a real redis-server that evicts.
func TestRedisMemory(t *testing.T) {
	ctx := testCtx(t)
	srv := metricstest.Redis(t, metricstest.RedisOptions{Password: redisPassword, MaxMemory: "4mb", MaxMemoryPolicy: "allkeys-random"})
	opts := metric.Options{Dial: direct, Password: redisPassword, Timeout: 10 * time.Second}
	ratio := func(max float64) metric.Spec {
		return metric.Spec{Type: "redis", Address: srv.Addr, Field: "used_memory/maxmemory", Max: f(max)}
	}

	expect(t, metric.Check(ctx, ratio(0.99), opts, metric.Sample{}), metric.Pass, "of maxmemory 4194304)", nil)
	r := metric.Check(ctx, ratio(0.01), opts, metric.Sample{})
	expect(t, r, metric.Fail, "redis used_memory/maxmemory = 0.", metric.ErrThreshold)
	expect(t, r, metric.Fail, " > max 0.01 (used_memory ", metric.ErrThreshold)

	evicted := metric.Spec{Type: "redis", Address: srv.Addr, Field: "evicted_keys", MaxIncrease: f(0)}
	o := opts
	o.Now = clock(t0, t0.Add(10*time.Second), t0.Add(20*time.Second))
	first := metric.Check(ctx, evicted, o, metric.Sample{})
	expect(t, first, metric.Pending, "redis evicted_keys = 0; max_increase from the next sample", nil)

	// 8 MiB into 4 MiB: redis must evict.
	seed(t, srv, 0, func(ctx context.Context, c *redis.Client) error {
		value := strings.Repeat("v", 64<<10)
		for i := 0; i < 128; i++ {
			if err := c.Set(ctx, fmt.Sprintf("k%d", i), value, 0).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	second := metric.Check(ctx, evicted, o, first.Next)
	expect(t, second, metric.Fail, "redis evicted_keys rose by ", metric.ErrThreshold)
	expect(t, second, metric.Fail, " in 10s (0 → ", nil)
	expect(t, second, metric.Fail, ") > max_increase 0", nil)
	if !(second.Value > 0) || second.Limit != "max_increase" || second.Threshold != 0 {
		t.Errorf("compared %v with %s %v", second.Value, second.Limit, second.Threshold)
	}

	third := metric.Check(ctx, evicted, o, second.Next)
	expect(t, third, metric.Pass, "rose by 0 in 10s", nil)

	full := metric.Check(ctx, ratio(0.5), opts, metric.Sample{})
	expect(t, full, metric.Fail, "> max 0.5", metric.ErrThreshold)
}

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				<-done
			}()
		}
	}()
	return l.Addr().String()
}
