package metricstest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// RedisOptions configure StartRedis.
type RedisOptions struct {
	// Password, when set, is required of clients (requirepass).
	Password string
	// MaxMemory is redis's maxmemory ("2mb"); empty: no limit.
	MaxMemory string
	// MaxMemoryPolicy is redis's maxmemory-policy ("allkeys-lru" evicts,
	// so evicted_keys grows); empty: redis's default, noeviction.
	MaxMemoryPolicy string
	// Config is more redis.conf lines.
	Config []string
}

// StartRedis starts redis-server on a free 127.0.0.1 port with its files
// in dir: no persistence (save "", appendonly no), the config (with the
// password) in a file only we can read rather than on the command line.
func StartRedis(ctx context.Context, dir string, opts RedisOptions) (*Server, error) {
	return start(ctx, launch{
		name: "redis-server", bin: RedisServerPath, pkg: "redis-server", dir: dir,
		args: func(port int) ([]string, error) {
			lines := []string{
				"port " + strconv.Itoa(port),
				"bind 127.0.0.1",
				"protected-mode yes",
				`save ""`,
				"appendonly no",
				"daemonize no",
				"dir " + quoteConf(dir),
				`logfile ""`,
			}
			if opts.Password != "" {
				lines = append(lines, "requirepass "+quoteConf(opts.Password))
			}
			if opts.MaxMemory != "" {
				lines = append(lines, "maxmemory "+opts.MaxMemory)
			}
			if opts.MaxMemoryPolicy != "" {
				lines = append(lines, "maxmemory-policy "+opts.MaxMemoryPolicy)
			}
			lines = append(lines, opts.Config...)
			conf := filepath.Join(dir, "redis.conf")
			if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
				return nil, err
			}
			return []string{conf}, nil
		},
		ready: func(ctx context.Context, addr string) bool {
			// Without the password redis still answers PING with NOAUTH.
			return askLine(ctx, addr, "PING\r\n", "+PONG", "-NOAUTH")
		},
	})
}

// quoteConf quotes a redis.conf argument.
func quoteConf(s string) string { return fmt.Sprintf("%q", s) }

// Redis starts redis-server for t (see StartRedis), closed at cleanup.
func Redis(t testing.TB, opts RedisOptions) *Server {
	t.Helper()
	Require(t, RedisServerPath, "redis-server")
	ctx, cancel := testContext(t)
	defer cancel()
	s, err := StartRedis(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("metricstest: %v", err)
	}
	forTest(t, s)
	return s
}
