package localconn_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/internal/transport/localconn"
)

func get(t *testing.T, c *localconn.Connector, name string) transport.Conn {
	t.Helper()
	conn, err := c.Get(t.Context(), transport.Target{Name: name, Endpoint: transport.Endpoint{Address: name + ":22"}})
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	return conn
}

func TestRunInHostDirectory(t *testing.T) {
	c := localconn.NewConnector(t.TempDir())
	conn := get(t, c, "web-1")
	res, err := conn.Run(t.Context(), `pwd; echo "$RELCTL_STEP"; cat`, transport.RunOptions{Label: "stage/x", Stdin: strings.NewReader("in\n")})
	if err != nil {
		t.Fatal(err)
	}
	root := c.Host("web-1").Root
	if want := root + "\nstage/x\nin\n"; string(res.Stdout) != want {
		t.Errorf("stdout = %q, want %q", res.Stdout, want)
	}
	_, err = conn.Run(t.Context(), "echo one >&2; echo two >&2; exit 3", transport.RunOptions{Label: "fails"})
	var ce *transport.CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Tail != "one\ntwo" || ce.Host != "web-1" {
		t.Fatalf("err = %#v, want a CommandError with exit 3 and tail one, two", err)
	}
	if got := c.Host("web-1").Labels(); strings.Join(got, ",") != "stage/x,fails" {
		t.Errorf("labels = %q", got)
	}
	if cmds := c.Host("web-1").Commands(); cmds[1].Exit != 3 || cmds[1].Err == nil {
		t.Errorf("recorded %+v, want exit 3 and its error", cmds[1])
	}
}

func TestFaults(t *testing.T) {
	c := localconn.NewConnector(t.TempDir())
	h := c.Host("web-1")
	h.Fail(localconn.Fault{Label: "a", Exit: 7, Stderr: "injected", Skip: 1, Times: 1})
	marker := filepath.Join(h.Root, "ran")
	conn := get(t, c, "web-1")

	if _, err := conn.Run(t.Context(), "true", transport.RunOptions{Label: "a"}); err != nil {
		t.Fatalf("the skipped first match failed: %v", err)
	}
	_, err := conn.Run(t.Context(), "touch ran", transport.RunOptions{Label: "a"})
	var ce *transport.CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 7 || ce.Tail != "injected" {
		t.Fatalf("first run: %v, want exit 7 injected", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("a failed command ran anyway (%v)", err)
	}
	if _, err := conn.Run(t.Context(), "touch ran", transport.RunOptions{Label: "a"}); err != nil {
		t.Fatalf("second run (Times: 1 used up): %v", err)
	}

	h.Fail(localconn.Fault{Text: "rm -f ran", Lose: true, RunFirst: true, ThenUnreachable: 2})
	_, err = conn.Run(t.Context(), "rm -f ran", transport.RunOptions{Label: "b"})
	if !errors.Is(err, transport.ErrConnectionLost) {
		t.Fatalf("lost: err = %v, want ErrConnectionLost", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("RunFirst: the command did not run before the connection was lost")
	}
	if _, err := conn.Run(t.Context(), "true", transport.RunOptions{}); !errors.Is(err, transport.ErrConnectionLost) {
		t.Fatalf("a lost connection ran a command: %v", err)
	}
	for i := range 2 {
		_, err := c.Get(t.Context(), transport.Target{Name: "web-1", Endpoint: transport.Endpoint{Address: "a:22"}})
		var dial *transport.DialError
		if !errors.As(err, &dial) || dial.Host != "web-1" {
			t.Fatalf("dial %d: %v, want a DialError", i+1, err)
		}
	}
	conn = get(t, c, "web-1")
	if _, err := conn.Run(t.Context(), "true", transport.RunOptions{}); err != nil {
		t.Fatalf("after the host came back: %v", err)
	}
	if h.Dials() != 4 {
		t.Errorf("dials = %d, want 4", h.Dials())
	}
	if get(t, c, "web-1") != conn {
		t.Errorf("a live connection was not reused")
	}
}

func TestCancelKillsTheCommand(t *testing.T) {
	c := localconn.NewConnector(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	h := c.Host("web-1")
	started := make(chan struct{})
	h.Fail(localconn.Fault{Label: "slow", OnStart: func() { close(started) }})
	go func() { <-started; cancel() }()
	_, err := get(t, c, "web-1").Run(ctx, "sleep 60 & wait", transport.RunOptions{Label: "slow"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}

	_, err = get(t, c, "web-1").Run(t.Context(), "sleep 60", transport.RunOptions{Label: "limited", Timeout: 50 * time.Millisecond})
	var te *transport.TimeoutError
	if !errors.As(err, &te) || te.Label != "limited" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a TimeoutError", err)
	}
}

func TestUpload(t *testing.T) {
	c := localconn.NewConnector(t.TempDir())
	conn := get(t, c, "web-1")
	dst := filepath.Join(c.Host("web-1").Root, "srv", "a", "art.tar.gz")
	body := "artifact\n"
	sum := sha256.Sum256([]byte(body))
	if err := conn.Upload(t.Context(), strings.NewReader(body), dst, 0o640, hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("uploaded file: %v, %v", st, err)
	}
	err = conn.Upload(t.Context(), strings.NewReader("other"), dst, 0o644, hex.EncodeToString(sum[:]))
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("err = %v, want a sha256 mismatch", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != body {
		t.Errorf("a refused upload replaced the file: %q", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}
}
