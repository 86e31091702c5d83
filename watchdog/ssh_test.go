package watchdog

import (
	"context"
	"errors"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/sshdtest"
	"github.com/relctl/relctl/internal/transport"
)

// TestMonitSyntaxCheckThroughSSH runs monit -t through a real OpenSSH sshd
// on 127.0.0.1 with ConnRunner: a failing monit is a MonitError with file
// and line, not a transport error.
func TestMonitSyntaxCheckThroughSSH(t *testing.T) {
	needMonit(t)
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
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // only keeps a broken test from hanging
	defer cancel()
	conn, err := pool.Get(ctx, transport.Target{Name: "web-1", Endpoint: transport.Endpoint{Address: servers[0].Addr}})
	if err != nil {
		t.Fatal(err)
	}
	runner := ConnRunner{Conn: conn}

	good := controlFile(t, dir, "good.monitrc", "check process search with pidfile /run/search.pid\n  start program = \"/bin/true\"\n", 0o600)
	if err := MonitSyntaxCheck(ctx, runner, good); err != nil {
		t.Fatalf("valid control file: %v", err)
	}
	bad := controlFile(t, dir, "bad.monitrc", "check process search with pidfile /run/search.pid\n  if failed port http then restart\n", 0o600)
	err = MonitSyntaxCheck(ctx, runner, bad)
	var merr *MonitError
	if !errors.As(err, &merr) {
		t.Fatalf("err = %v, want a *MonitError", err)
	}
	if merr.Kind != MonitSyntax || merr.File != bad || merr.Line != 6 || merr.Token != "http" {
		t.Errorf("got %+v, want syntax error 'http' at %s:6", merr, bad)
	}
}
