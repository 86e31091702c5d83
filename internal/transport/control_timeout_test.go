package transport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/testenv"
)

// The timeouts of these tests: far apart, so which one cut a command is
// plain from the error, without timing anything.
const (
	testControlTimeout = time.Second
	testCommandTimeout = 4 * time.Second
	testStepTimeout    = 2 * time.Second
)

// TestControlTimeoutAgainstHungCommands runs commands on a testenv host
// whose commands of one label never end (they run, send half their output,
// then hold the session open, as a wedged mount or a wrapper whose child
// kept stdout does). relctl's own commands are cut at ssh.control_timeout;
// a command with its own timeout (a step) and one marked CommandLimit (the
// upload) are not.
func TestControlTimeoutAgainstHungCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // only keeps a broken test from hanging
	defer cancel()
	c, err := testenv.Start(ctx, testenv.Options{Dir: t.TempDir(), Hosts: 1, Envs: []string{"staging"}})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	h := c.Hosts()[0]
	pool, err := transport.NewPool(transport.Options{
		User:           "relctl",
		IdentityFile:   filepath.Join(c.Dir(), testenv.ClientKeyFile),
		KnownHostsFile: filepath.Join(c.Dir(), testenv.KnownHostsFile),
		HostKeyPolicy:  transport.PolicyStrict,
		ConnectTimeout: 30 * time.Second,
		CommandTimeout: testCommandTimeout,
		ControlTimeout: testControlTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	conn, err := pool.Get(ctx, transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}})
	if err != nil {
		t.Fatal(err)
	}
	fault := func(t *testing.T, step string) {
		t.Helper()
		if err := c.SetFault(h.Name, testenv.FaultSpec{NeverEndsStep: step}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.SetFault(h.Name, testenv.FaultSpec{}) })
	}
	// released: the cut command's session is gone from the host, and the
	// connection still runs the next command.
	released := func(t *testing.T) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); c.Held()[h.Name] != 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the cut command is still held on %s", h.Name)
			}
		}
		if res, err := conn.Run(ctx, "echo ok", transport.RunOptions{Label: "other"}); err != nil || string(res.Stdout) != "ok\n" {
			t.Fatalf("next command on the same connection: %v", err)
		}
	}
	wantTimeout := func(t *testing.T, err error, label, setting string, limit time.Duration) {
		t.Helper()
		var te *transport.TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("err = %v, want a *transport.TimeoutError", err)
		}
		if te.Host != h.Name || te.Label != label || te.Setting != setting || te.Limit != limit {
			t.Errorf("TimeoutError %+v, want host %s, label %q, %s %v", *te, h.Name, label, setting, limit)
		}
		// Callers classify it as they did the command_timeout: a deadline,
		// not a lost connection (a rollback does not retry it as unreachable).
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, transport.ErrConnectionLost) {
			t.Errorf("err %v: want it to match context.DeadlineExceeded and not ErrConnectionLost", err)
		}
		for _, part := range []string{h.Name, label, setting} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("err %q does not name %q", err, part)
			}
		}
	}

	t.Run("relctl's own command is cut at control_timeout", func(t *testing.T) {
		fault(t, "read-state")
		_, err := conn.Run(ctx, "printf 'current 1.0.0\\nreleases 1.0.0\\n'", transport.RunOptions{Label: "read-state"})
		wantTimeout(t, err, "read-state", transport.SettingControlTimeout, testControlTimeout)
		want := h.Name + ": [read-state] ssh.control_timeout 1s reached (the command did not end; raise it in relctl.toml [ssh] if the host is just slow)"
		if err.Error() != want {
			t.Errorf("error:\n%s\nwant:\n%s", err, want)
		}
		released(t)
	})

	t.Run("a step's own timeout replaces control_timeout", func(t *testing.T) {
		fault(t, "activate/restart")
		_, err := conn.Run(ctx, "echo restarting", transport.RunOptions{Label: "activate/restart", Timeout: testStepTimeout})
		wantTimeout(t, err, "activate/restart", transport.SettingStepTimeout, testStepTimeout)
		released(t)
	})

	t.Run("a step that outlasts control_timeout finishes", func(t *testing.T) {
		res, err := conn.Run(ctx, "sleep 2; echo done", transport.RunOptions{Label: "activate/restart", Timeout: time.Minute})
		if err != nil || string(res.Stdout) != "done\n" {
			t.Fatalf("Run = %v, want the step to finish", err)
		}
	})

	t.Run("a CommandLimit command outlasts control_timeout", func(t *testing.T) {
		res, err := conn.Run(ctx, "sleep 2; echo pruned", transport.RunOptions{Label: "post/prune", Limit: transport.CommandLimit})
		if err != nil || string(res.Stdout) != "pruned\n" {
			t.Fatalf("Run = %v, want it to finish", err)
		}
		// ...and is cut at command_timeout when it never ends.
		fault(t, "prune")
		_, err = conn.Run(ctx, "echo pruning", transport.RunOptions{Label: "post/prune", Limit: transport.CommandLimit})
		wantTimeout(t, err, "post/prune", transport.SettingCommandTimeout, testCommandTimeout)
		released(t)
	})

	t.Run("the upload is bounded by command_timeout", func(t *testing.T) {
		body := bytes.Repeat([]byte("relctl\n"), 1000)
		sum := sha256.Sum256(body)
		remote := path.Join(h.BaseDir, "upload-test", "artifact.tar.gz")
		if err := conn.Upload(ctx, bytes.NewReader(body), remote, 0o644, hex.EncodeToString(sum[:])); err != nil {
			t.Fatalf("Upload: %v", err)
		}
		fault(t, "upload")
		err := conn.Upload(ctx, bytes.NewReader(body), remote, 0o644, hex.EncodeToString(sum[:]))
		wantTimeout(t, err, "upload "+remote, transport.SettingCommandTimeout, testCommandTimeout)
		released(t)
	})

	// A host that stops answering altogether while relctl's command runs is
	// unreachable, not slow: the error is ErrConnectionLost (a rollback
	// reconnects and retries it), whether the keepalive notices before the
	// control timeout fires or while the timed-out command is being killed.
	t.Run("a connection that dies under a timed-out command is lost", func(t *testing.T) {
		kaPool, err := transport.NewPool(transport.Options{
			User:           "relctl",
			IdentityFile:   filepath.Join(c.Dir(), testenv.ClientKeyFile),
			KnownHostsFile: filepath.Join(c.Dir(), testenv.KnownHostsFile),
			HostKeyPolicy:  transport.PolicyStrict,
			ConnectTimeout: 30 * time.Second,
			CommandTimeout: time.Minute,
			ControlTimeout: 500 * time.Millisecond,
			Keepalive:      time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kaPool.Close() })
		kaConn, err := kaPool.Get(ctx, transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}})
		if err != nil {
			t.Fatal(err)
		}
		fault(t, "read-state")
		errc := make(chan error, 1)
		go func() {
			_, err := kaConn.Run(ctx, "echo reading", transport.RunOptions{Label: "read-state"})
			errc <- err
		}()
		for deadline := time.Now().Add(time.Minute); c.Held()[h.Name] != 1; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the command was never held")
			}
		}
		if err := c.SetFault(h.Name, testenv.FaultSpec{NeverEndsStep: "read-state", Hang: true}); err != nil {
			t.Fatal(err)
		}
		err = <-errc
		if !errors.Is(err, transport.ErrConnectionLost) || !strings.Contains(err.Error(), h.Name) {
			t.Fatalf("err = %v, want the connection to %s lost", err, h.Name)
		}
	})
}
