package metric_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/healthcheck/metric"
	"github.com/relctl/relctl/internal/metricstest"
)

// fill stores n values of size bytes in memcached at addr, with the plain
// text protocol; a full cache answers SERVER_ERROR for some, which is fine.
func fill(t *testing.T, addr string, prefix string, n, size int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	value := strings.Repeat("v", size)
	for i := 0; i < n; i++ {
		if _, err := fmt.Fprintf(c, "set %s%d 0 0 %d\r\n%s\r\n", prefix, i, size, value); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line != "STORED\r\n" && !strings.HasPrefix(line, "SERVER_ERROR") {
			t.Fatalf("set: %q", line)
		}
	}
}

// TestMemcached reads stats fields from a real memcached with 1 MiB of
// memory, filled until it evicts.
func TestMemcached(t *testing.T) {
	ctx := testCtx(t)
	srv := metricstest.Memcached(t, metricstest.MemcachedOptions{MemoryMB: 1})
	opts := metric.Options{Dial: direct, Timeout: 10 * time.Second}
	field := func(name string, m func(*metric.Spec)) metric.Spec {
		s := metric.Spec{Type: "memcached", Address: srv.Addr, Field: name}
		m(&s)
		return s
	}

	fill(t, srv.Addr, "small", 10, 1000)
	ratio := func(max float64) metric.Spec {
		return field("bytes/limit_maxbytes", func(s *metric.Spec) { s.Max = f(max) })
	}
	expect(t, metric.Check(ctx, ratio(0.9), opts, metric.Sample{}), metric.Pass, "of limit_maxbytes 1048576)", nil)
	r := metric.Check(ctx, ratio(0.001), opts, metric.Sample{})
	expect(t, r, metric.Fail, "memcached bytes/limit_maxbytes = 0.01", metric.ErrThreshold)
	expect(t, r, metric.Fail, "> max 0.001 (bytes ", nil)

	evictions := field("evictions", func(s *metric.Spec) { s.MaxIncrease = f(0) })
	o := opts
	o.Now = clock(t0, t0.Add(10*time.Second), t0.Add(20*time.Second))
	first := metric.Check(ctx, evictions, o, metric.Sample{})
	expect(t, first, metric.Pending, "memcached evictions = 0; max_increase from the next sample", nil)

	fill(t, srv.Addr, "big", 3000, 1000) // 3 MB into 1 MiB
	second := metric.Check(ctx, evictions, o, first.Next)
	expect(t, second, metric.Fail, "memcached evictions rose by ", metric.ErrThreshold)
	expect(t, second, metric.Fail, " in 10s (0 → ", nil)
	if !(second.Value > 0) || second.Limit != "max_increase" {
		t.Errorf("compared %v with %s", second.Value, second.Limit)
	}
	third := metric.Check(ctx, evictions, o, second.Next)
	expect(t, third, metric.Pass, "rose by 0 in 10s", nil)

	t.Run("unknown field", func(t *testing.T) {
		r := metric.Check(ctx, field("evictionz", func(s *metric.Spec) { s.Max = f(0) }), opts, metric.Sample{})
		expect(t, r, metric.Fail, `memcached evictionz: stats has no field "evictionz"`, metric.ErrNoField)
	})
	t.Run("not a number", func(t *testing.T) {
		r := metric.Check(ctx, field("version", func(s *metric.Spec) { s.Max = f(0) }), opts, metric.Sample{})
		expect(t, r, metric.Fail, `stats field version is "1.6.`, metric.ErrNotNumber)
	})
	t.Run("unreachable", func(t *testing.T) {
		s := ratio(0.9)
		s.Address = closedAddr(t)
		expect(t, metric.Check(ctx, s, opts, metric.Sample{}), metric.Fail, "memcached bytes/limit_maxbytes: connection refused", metric.ErrUnreachable)
	})
	t.Run("through a counting dialer whose connections refuse deadlines", func(t *testing.T) {
		var d countingDialer
		r := metric.Check(ctx, ratio(0.99), metric.Options{Dial: d.Dial, Timeout: 10 * time.Second}, metric.Sample{})
		expect(t, r, metric.Pass, "memcached bytes/limit_maxbytes = ", nil)
		if d.n.Load() != 1 {
			t.Errorf("%d dials, want 1 through Options.Dial", d.n.Load())
		}
	})
}

// TestMemcachedBadServers reads from fake servers that answer garbage or
// never finish: each is a failed sample, within the timeout.
func TestMemcachedBadServers(t *testing.T) {
	ctx := testCtx(t)
	tests := []struct {
		name   string
		answer func(c net.Conn, done <-chan struct{})
		reason string
		kind   error
	}{
		{"garbage", func(c net.Conn, _ <-chan struct{}) { fmt.Fprint(c, "HTTP/1.1 400 Bad Request\r\n\r\n") },
			`memcached evictions: not a memcached stats answer: "HTTP/1.1 400 Bad Request"`, metric.ErrProtocol},
		{"an error reply", func(c net.Conn, _ <-chan struct{}) { fmt.Fprint(c, "ERROR\r\n") },
			"memcached evictions: memcached refused stats: ERROR", metric.ErrProtocol},
		{"closed mid-answer", func(c net.Conn, _ <-chan struct{}) { fmt.Fprint(c, "STAT pid 1\r\nSTAT evictions 3\r\n") },
			"memcached evictions: connection closed before the stats answer's END", metric.ErrProtocol},
		{"never ends, slowly", func(c net.Conn, done <-chan struct{}) {
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(c, "STAT s%d %d\r\n", i, i); err != nil {
					return
				}
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}, "memcached evictions: timed out after 500ms", metric.ErrTimeout},
		{"never ends, fast", func(c net.Conn, done <-chan struct{}) {
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(c, "STAT s%d %d\r\n", i, i); err != nil {
					return
				}
			}
		}, "stats answer has more than 1000 lines without END", metric.ErrProtocol},
		{"never ends, long lines", func(c net.Conn, done <-chan struct{}) {
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(c, "STAT s%d %s\r\n", i, strings.Repeat("9", 900)); err != nil {
					return
				}
			}
		}, "stats answer is larger than 65536 bytes without END", metric.ErrProtocol},
		{"an endless line", func(c net.Conn, done <-chan struct{}) {
			fmt.Fprint(c, "STAT version ")
			for {
				if _, err := fmt.Fprint(c, strings.Repeat("9", 512)); err != nil {
					return
				}
			}
		}, "stats answer has a line longer than 1024 bytes", metric.ErrProtocol},
		{"silent", func(c net.Conn, done <-chan struct{}) { <-done }, "memcached evictions: timed out after 500ms", metric.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeServer(t, tt.answer)
			start := time.Now()
			r := metric.Check(ctx, metric.Spec{Type: "memcached", Address: addr, Field: "evictions", Max: f(0)},
				metric.Options{Dial: direct, Timeout: 500 * time.Millisecond}, metric.Sample{})
			expect(t, r, metric.Fail, tt.reason, tt.kind)
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("took %s for a 500ms timeout", el)
			}
		})
	}
}

// fakeServer serves answer to every connection after reading its first
// line, until the test ends.
func fakeServer(t *testing.T, answer func(c net.Conn, done <-chan struct{})) string {
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
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				answer(c, done)
			}()
		}
	}()
	return l.Addr().String()
}
