package metric_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/relctl/relctl/healthcheck/metric"
)

// TestDialerFailures checks that every kind reports what its dialer says,
// whichever client library sits in between: a refused SSH channel is
// ErrUnreachable, a dialer that ignores its context still ends at the
// sample's timeout.
func TestDialerFailures(t *testing.T) {
	ctx := testCtx(t)
	specs := []metric.Spec{
		{Type: "prometheus", Address: "http://metrics.internal:9090", Query: "up", Max: f(1)},
		{Type: "redis", Address: "queue.internal:6379", Command: "llen", Key: "jobs", Max: f(1)},
		{Type: "redis", Address: "queue.internal:6379", Field: "used_memory/maxmemory", Max: f(1)},
		{Type: "memcached", Address: "cache.internal:11211", Field: "evictions", MaxIncrease: f(0)},
	}
	refused := func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("ssh: rejected: administratively prohibited (open failed)")
	}
	stuck := func(context.Context, string, string) (net.Conn, error) {
		time.Sleep(3 * time.Second) // ignores its context, as a wedged SSH connection may
		return nil, errors.New("too late")
	}
	for _, s := range specs {
		t.Run(s.Label()+" refused by the SSH server", func(t *testing.T) {
			r := metric.Check(ctx, s, metric.Options{Dial: refused, Password: "pw-from-secrets"}, metric.Sample{})
			expect(t, r, metric.Fail, s.Label()+": cannot connect: ssh: rejected: administratively prohibited (open failed)", metric.ErrUnreachable)
		})
		t.Run(s.Label()+" with a stuck dialer", func(t *testing.T) {
			start := time.Now()
			r := metric.Check(ctx, s, metric.Options{Dial: stuck, Timeout: 200 * time.Millisecond}, metric.Sample{})
			expect(t, r, metric.Fail, s.Label()+": timed out after 200ms", metric.ErrTimeout)
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %s for a 200ms timeout", el)
			}
		})
	}
}
