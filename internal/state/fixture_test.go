package state

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/testenv"
	"github.com/rs/zerolog"
)

// cluster is a real testenv cluster (SSH on 127.0.0.1) shared by the tests
// of this package; each test works in its own base directories.
type cluster struct {
	env   *testenv.Cluster
	pool  *transport.Pool
	hosts []testenv.HostInfo
}

var (
	clusterOnce sync.Once
	shared      *cluster
	sharedErr   error
	sharedDir   string
	baseSeq     atomic.Int64 // keeps every test's base directories apart
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.pool.Close()
		shared.env.Close()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

func testCtx(t *testing.T) context.Context {
	return zerolog.Nop().WithContext(t.Context())
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() {
		ctx := zerolog.Nop().WithContext(context.Background())
		sharedDir, sharedErr = os.MkdirTemp("", "state-test-")
		if sharedErr != nil {
			return
		}
		env, err := testenv.Start(ctx, testenv.Options{Dir: sharedDir, Hosts: 2, Envs: []string{"staging"}})
		if err != nil {
			sharedErr = err
			return
		}
		pool, err := transport.NewPool(transport.Options{
			User:           "relctl",
			IdentityFile:   filepath.Join(sharedDir, "id_ed25519"),
			KnownHostsFile: filepath.Join(sharedDir, "known_hosts"),
			HostKeyPolicy:  "strict",
			ConnectTimeout: 5 * time.Second,
			CommandTimeout: time.Minute,
		})
		if err != nil {
			env.Close()
			sharedErr = err
			return
		}
		shared = &cluster{env: env, pool: pool, hosts: env.Hosts()}
	})
	if sharedErr != nil {
		t.Fatalf("starting the test cluster: %v", sharedErr)
	}
	return shared
}

// targets gives each host a fresh base directory of its own for this test.
func (c *cluster) targets(t *testing.T) []LockTarget {
	t.Helper()
	var out []LockTarget
	for _, h := range c.hosts {
		conn, err := c.pool.Get(testCtx(t), transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}})
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Join(h.Root, "t", fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), baseSeq.Add(1)))
		out = append(out, LockTarget{Host: h.Name, Conn: conn, Layout: Layout{BaseDir: base}})
	}
	return out
}

// run runs a shell command on a host and fails the test if it fails.
func run(t *testing.T, tg LockTarget, cmd string, stdin string) string {
	t.Helper()
	opts := transport.RunOptions{}
	if stdin != "" {
		opts.Stdin = strings.NewReader(stdin)
	}
	res, err := tg.Conn.Run(testCtx(t), cmd, opts)
	if err != nil {
		t.Fatalf("%s: %s: %v", tg.Host, cmd, err)
	}
	return string(res.Stdout)
}

// readOwner reads a host's owner.json straight from its filesystem (the
// hosts live on this machine): what an operator would find there.
func readOwner(t *testing.T, tg LockTarget) *LockOwner {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tg.Layout.LockDir(), "owner.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var o LockOwner
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatalf("%s: owner.json: %v\n%s", tg.Host, err, data)
	}
	return &o
}

// plantLock leaves a lock as a run that crashed would have left it.
func plantLock(t *testing.T, tg LockTarget, o LockOwner) {
	t.Helper()
	body, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	run(t, tg, "mkdir -p "+shellquote.Quote(tg.Layout.LockDir())+" && cat > "+shellquote.Quote(tg.Layout.LockDir()+"/owner.json"), string(body))
}

// stateDirEntries lists .relctl on a host, to catch leftovers (lock.new.*, ...).
func stateDirEntries(t *testing.T, tg LockTarget) []string {
	t.Helper()
	entries, err := os.ReadDir(tg.Layout.StateDir())
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
