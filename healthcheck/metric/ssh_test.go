package metric_test

import (
	"context"
	"net"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relctl/relctl/healthcheck/metric"
	"github.com/relctl/relctl/internal/metricstest"
	"github.com/relctl/relctl/internal/sshdtest"
	"github.com/relctl/relctl/internal/transport"
)

// TestThroughSSH reads every kind of metric through a real OpenSSH sshd,
// as via = "host" does: Options.Dial is the host connection's DialContext
// (ssh direct-tcpip), whose channels refuse deadlines.
func TestThroughSSH(t *testing.T) {
	p := prometheus(t)
	rds := metricstest.Redis(t, metricstest.RedisOptions{Password: redisPassword})
	seed(t, rds, 0, func(ctx context.Context, c *redis.Client) error { return c.RPush(ctx, "jobs", "a", "b", "c").Err() })
	mc := metricstest.Memcached(t, metricstest.MemcachedOptions{})

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
	ctx := testCtx(t)
	conn, err := pool.Get(ctx, transport.Target{Name: "web-1", Endpoint: transport.Endpoint{Address: servers[0].Addr}})
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	viaHost := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return conn.DialContext(ctx, network, addr)
	}
	opts := metric.Options{Dial: viaHost, Password: redisPassword, Timeout: 10 * time.Second}

	tests := []struct {
		name    string
		spec    metric.Spec
		verdict metric.Verdict
		reason  string
		kind    error
	}{
		{"prometheus", metric.Spec{Type: "prometheus", Via: "host", Address: p.URL, Query: "queue_depth", Max: f(5)},
			metric.Fail, "prometheus queue_depth = 7 > max 5", metric.ErrThreshold},
		{"redis", metric.Spec{Type: "redis", Via: "host", Address: rds.Addr, Command: "llen", Key: "jobs", Max: f(5)},
			metric.Pass, "redis LLEN jobs = 3 ≤ max 5", nil},
		{"redis INFO", metric.Spec{Type: "redis", Via: "host", Address: rds.Addr, Field: "connected_clients", Max: f(50)},
			metric.Pass, "redis connected_clients = ", nil},
		{"memcached", metric.Spec{Type: "memcached", Via: "host", Address: mc.Addr, Field: "limit_maxbytes", Min: f(1 << 20)},
			metric.Pass, "memcached limit_maxbytes = 1048576 ≥ min 1048576", nil},
		{"unreachable, as the host sees it", metric.Spec{Type: "redis", Via: "host", Address: closedAddr(t), Command: "llen", Key: "jobs", Max: f(5)},
			metric.Fail, "redis LLEN jobs: connection refused", metric.ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dials.Load()
			r := metric.Check(ctx, tt.spec, opts, metric.Sample{})
			expect(t, r, tt.verdict, tt.reason, tt.kind)
			if dials.Load() == before {
				t.Error("the read did not dial through the SSH connection")
			}
			if strings.Contains(r.Reason, redisPassword) {
				t.Errorf("the password leaked into %q", r.Reason)
			}
		})
	}
}
