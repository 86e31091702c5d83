package metricstest_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/metricstest"
)

// TestServersStartAndStop starts each real server, talks to it, closes it
// and checks the port is free again: Close really ends the process.
func TestServersStartAndStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	t.Run("redis", func(t *testing.T) {
		s := metricstest.Redis(t, metricstest.RedisOptions{Password: "s3cret-pass", MaxMemory: "2mb", MaxMemoryPolicy: "allkeys-lru"})
		if got := ask(t, s.Addr, "AUTH s3cret-pass\r\nCONFIG GET maxmemory\r\n", 6); !strings.Contains(got, "2097152") {
			t.Fatalf("CONFIG GET maxmemory: %q", got)
		}
		s.Close()
		assertClosed(t, s.Addr)
	})
	t.Run("memcached", func(t *testing.T) {
		s := metricstest.Memcached(t, metricstest.MemcachedOptions{})
		if got := ask(t, s.Addr, "stats\r\n", 200); !strings.Contains(got, "STAT limit_maxbytes 1048576") {
			t.Fatalf("stats: %q", got)
		}
		s.Close()
		assertClosed(t, s.Addr)
	})
	t.Run("prometheus scrapes an exporter", func(t *testing.T) {
		e := metricstest.StartExporter(t)
		e.Set(`queue_depth{queue="jobs"}`, 7)
		p := metricstest.Prometheus(t, metricstest.PrometheusOptions{Targets: []string{e.Addr}})
		if err := p.WaitForValue(ctx, `queue_depth{queue="jobs"}`, 7); err != nil {
			t.Fatal(err)
		}
		e.Set(`queue_depth{queue="jobs"}`, 9)
		if err := p.WaitForValue(ctx, `queue_depth{queue="jobs"}`, 9); err != nil {
			t.Fatal(err)
		}
		p.Close()
		assertClosed(t, p.Addr)
	})
}

// ask sends request and returns up to lines lines of the answer.
func ask(t *testing.T, addr, request string, lines int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	r := bufio.NewReader(c)
	for i := 0; i < lines; i++ {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil || strings.HasPrefix(line, "END") {
			break
		}
	}
	return b.String()
}

func assertClosed(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Close", addr)
	}
}
