package transport

import (
	"context"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/sshdtest"
)

// fixture is n real sshd servers, a client key and a known_hosts file listing them.
type fixture struct {
	dir        string
	key        string
	knownHosts string
	servers    []*sshdtest.Server
	user       string
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	dir := t.TempDir()
	key, pub := sshdtest.NewClientKey(t, dir)
	f := &fixture{dir: dir, key: key, knownHosts: filepath.Join(dir, "known_hosts")}
	f.servers = sshdtest.Start(t, n, pub)
	sshdtest.WriteKnownHosts(t, f.knownHosts, f.servers)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	f.user = u.Username
	return f
}

func (f *fixture) options() Options {
	return Options{
		User:           f.user,
		IdentityFile:   f.key,
		KnownHostsFile: f.knownHosts,
		HostKeyPolicy:  PolicyStrict,
		ConnectTimeout: 30 * time.Second,
	}
}

// pool opens a Pool with f.options() changed by edit; closed at cleanup.
func (f *fixture) pool(t *testing.T, edit func(*Options)) *Pool {
	t.Helper()
	opts := f.options()
	if edit != nil {
		edit(&opts)
	}
	p, err := NewPool(opts)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func target(s *sshdtest.Server) Target {
	return Target{Name: s.Name, Endpoint: Endpoint{Address: s.Addr}}
}

// conn connects to the first server.
func (f *fixture) conn(t *testing.T, edit func(*Options)) Conn {
	t.Helper()
	c, err := f.pool(t, edit).Get(testContext(t), target(f.servers[0]))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return c
}

// testContext is generous: it only keeps a broken test from hanging.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
