package testenv

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

// Set by the daemon tests: Up re-runs this test binary, which then serves a
// cluster instead of running tests.
const (
	serveDirEnv   = "RELCTL_TESTENV_SERVE_DIR"
	serveHostsEnv = "RELCTL_TESTENV_SERVE_HOSTS"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(serveDirEnv); dir != "" {
		os.Exit(serveForTest(dir))
	}
	os.Exit(m.Run())
}

func serveForTest(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := zerolog.New(os.Stderr).With().Timestamp().Logger()
	ctx = logger.WithContext(ctx)
	hosts, _ := strconv.Atoi(os.Getenv(serveHostsEnv))
	// As `relctl testenv serve` does with the flags Up adds.
	monit := slices.Contains(os.Args[1:], MonitFlag)
	traffic := slices.Contains(os.Args[1:], TrafficFlag)
	if err := Serve(ctx, Options{Dir: dir, Hosts: hosts, Monit: monit, Traffic: traffic}); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}
