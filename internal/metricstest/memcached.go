package metricstest

import (
	"context"
	"os"
	"strconv"
	"testing"
)

// MemcachedOptions configure StartMemcached.
type MemcachedOptions struct {
	// MemoryMB is memcached's item memory (-m); 0 means 1, so that a
	// test fills it (and makes it evict) with a few megabytes.
	MemoryMB int
	// Args are more command-line arguments.
	Args []string
}

// StartMemcached starts memcached on a free 127.0.0.1 port, TCP only.
func StartMemcached(ctx context.Context, dir string, opts MemcachedOptions) (*Server, error) {
	mb := opts.MemoryMB
	if mb <= 0 {
		mb = 1
	}
	return start(ctx, launch{
		name: "memcached", bin: MemcachedPath, pkg: "memcached", dir: dir,
		args: func(port int) ([]string, error) {
			args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", strconv.Itoa(mb), "-c", "64"}
			if mb < 2 {
				// The default 1 MiB item size limit must be at most half the memory.
				args = append(args, "-I", "512k")
			}
			if os.Geteuid() == 0 {
				args = append(args, "-u", "root") // memcached refuses to run as root without it
			}
			return append(args, opts.Args...), nil
		},
		ready: func(ctx context.Context, addr string) bool {
			return askLine(ctx, addr, "version\r\n", "VERSION ")
		},
	})
}

// Memcached starts memcached for t (see StartMemcached), closed at cleanup.
func Memcached(t testing.TB, opts MemcachedOptions) *Server {
	t.Helper()
	Require(t, MemcachedPath, "memcached")
	ctx, cancel := testContext(t)
	defer cancel()
	s, err := StartMemcached(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("metricstest: %v", err)
	}
	forTest(t, s)
	return s
}
