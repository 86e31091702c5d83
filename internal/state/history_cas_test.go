package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/rs/zerolog"
)

// localConn runs scripts with a local shell, like a host whose login shell is that shell.
type localConn struct{ shell string }

func (l *localConn) Host() string { return "local" }
func (l *localConn) Run(ctx context.Context, cmd string, o transport.RunOptions) (*transport.Result, error) {
	c := exec.CommandContext(ctx, l.shell, "-c", cmd)
	c.Stdin = o.Stdin
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	if err != nil {
		return &transport.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}, &transport.CommandError{Host: "local", ExitCode: c.ProcessState.ExitCode(), Tail: errb.String()}
	}
	return &transport.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}, nil
}
func (l *localConn) Upload(context.Context, io.Reader, string, uint32, string) error { return nil }
func (l *localConn) DialContext(context.Context, string, string) (net.Conn, error)   { return nil, nil }
func (l *localConn) Close() error                                                    { return nil }

// slowReader delivers its bytes after a delay (an activation's history body on its way over SSH).
type slowReader struct {
	d    time.Duration
	r    io.Reader
	done bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	if !s.done {
		time.Sleep(s.d)
		s.done = true
	}
	return s.r.Read(p)
}

// TestHistoryCASChecksAfterTheBody: an activation whose history body is
// still on its way must not replace a history written meanwhile (here a
// forced unlock's event): the compare-and-swap runs after the body arrived.
func TestHistoryCASChecksAfterTheBody(t *testing.T) {
	ctx := zerolog.Nop().WithContext(context.Background())
	base := t.TempDir()
	l := Layout{BaseDir: base}
	os.MkdirAll(filepath.Join(base, "releases", "1.0"), 0o755)
	os.MkdirAll(filepath.Join(base, "releases", "2.0"), 0o755)
	os.MkdirAll(l.StateDir(), 0o755)
	h0 := History{Activations: []Activation{{Version: "1.0", RunID: "r0"}}}
	b0, _ := json.Marshal(h0)
	os.WriteFile(l.HistoryFile(), b0, 0o644)
	sum := sha256.Sum256(b0)
	sum0 := hex.EncodeToString(sum[:])

	// The deploy's activation: read sum0, body streaming in for 1s.
	hA := History{Activations: append(h0.Activations, Activation{Version: "2.0", Previous: "1.0", RunID: "rA"})}
	bA, _ := json.Marshal(hA)
	done := make(chan error)
	go func() {
		_, err := (&localConn{"sh"}).Run(ctx, l.ActivateScriptIfUnchanged("2.0", "rA", sum0),
			transport.RunOptions{Stdin: &slowReader{d: time.Second, r: bytes.NewReader(append(bA, '\n'))}})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	// Meanwhile: relctl unlock --force records its event (CAS on history.json).
	if err := AppendHistoryEvent(ctx, &localConn{"sh"}, l, HistoryEvent{Kind: "unlock", Reason: "on-call"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		if _, serr := os.Stat(l.HistoryFile() + ".tmp.rA"); serr == nil {
			t.Errorf("the refused activation left its temporary history behind")
		}
		if cur, _ := os.Readlink(l.Current()); cur != "" {
			t.Errorf("the refused activation switched current to %s", cur)
		}
		return // refused: the event is kept
	}
	final, _ := os.ReadFile(l.HistoryFile())
	var h History
	json.Unmarshal(final, &h)
	t.Logf("final history: %d activations, %d events", len(h.Activations), len(h.Events))
	if len(h.Events) == 0 {
		t.Errorf("the unlock event written in between was overwritten by a compare-and-swap that compared before it")
	}
}
