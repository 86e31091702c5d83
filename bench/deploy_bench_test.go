// Package bench measures relctl against a local testenv cluster: `make bench`.
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/testenv"
)

const benchHosts = 50

// BenchmarkDeploy50Hosts deploys a release to 50 testenv SSH hosts per
// iteration (alternating 1.0.0 and 1.1.0, so every iteration really switches
// every host) and prints wall time and SSH handshakes per host per run.
func BenchmarkDeploy50Hosts(b *testing.B) {
	ctx := zerolog.Nop().WithContext(context.Background())
	dir := b.TempDir()
	c, err := testenv.Start(ctx, testenv.Options{Dir: dir, Hosts: benchHosts, Envs: []string{"staging"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	proj, err := playbooks.Load(filepath.Join(dir, testenv.ConfigFile))
	if err != nil {
		b.Fatal(err)
	}

	type row struct {
		version    string
		wall       time.Duration
		handshakes map[string]int
	}
	var rows []row
	versions := []string{"1.0.0", "1.1.0"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := versions[i%2]
		runID := state.NewRunID(time.Now())
		plan, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "staging", Version: v, RunID: runID})
		if err != nil {
			b.Fatal(err)
		}
		log, err := transport.OpenRunLog(state.RunLogPath(filepath.Join(dir, ".relctl"), runID))
		if err != nil {
			b.Fatal(err)
		}
		pool, err := transport.NewPool(transportOptions(proj.Config, log))
		if err != nil {
			b.Fatal(err)
		}
		engine := &deploy.Engine{Connector: pool, Log: log, Operator: "bench", Controller: "bench", MaxParallel: proj.Config.SSH.MaxParallel}
		start := time.Now()
		if _, err := engine.Run(ctx, plan, deploy.RunOptions{}); err != nil {
			b.Fatalf("deploy %s: %v", v, err)
		}
		wall := time.Since(start)
		rows = append(rows, row{version: v, wall: wall, handshakes: pool.Handshakes()})
		pool.Close()
		log.Close()
	}
	b.StopTimer()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "run\trelease\thosts\twall time\thandshakes/host (min)\thandshakes/host (max)\t\n")
	for i, r := range rows {
		lo, hi := minMax(r.handshakes)
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%d\t\n", i+1, r.version, len(r.handshakes), r.wall.Round(time.Millisecond), lo, hi)
		if lo != 1 || hi != 1 || len(r.handshakes) != benchHosts {
			b.Errorf("run %d: %d hosts, handshakes per host %d..%d; want %d hosts with exactly 1", i+1, len(r.handshakes), lo, hi, benchHosts)
		}
	}
	tw.Flush()
	// The server side counts too: one handshake per host per run.
	for name, n := range c.Handshakes() {
		if n != b.N {
			b.Errorf("%s: server counted %d handshakes over %d runs", name, n, b.N)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/deploy")
}

func transportOptions(cfg *playbooks.Config, log *transport.RunLog) transport.Options {
	return transport.Options{
		User: cfg.SSH.User, IdentityFile: cfg.ResolvePath(cfg.SSH.IdentityFile),
		KnownHostsFile: cfg.ResolvePath(cfg.SSH.KnownHosts), HostKeyPolicy: cfg.SSH.HostKeyPolicy,
		ConnectTimeout: cfg.SSH.ConnectTimeout.Duration, CommandTimeout: cfg.SSH.CommandTimeout.Duration,
		Keepalive: cfg.SSH.Keepalive.Duration, Output: log,
	}
}

func minMax(m map[string]int) (int, int) {
	lo, hi := -1, 0
	for _, n := range m {
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	return max(lo, 0), hi
}
