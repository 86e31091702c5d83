package healthcheck_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
)

// localHost is a real Host on this machine: commands run with /bin/sh -c and
// dials go through net.Dialer. It follows transport.Conn's contract: a
// non-zero exit is a *transport.CommandError carrying the output's tail.
type localHost struct {
	name  string
	dials atomic.Int32
}

func (l *localHost) Host() string { return l.name }

func (l *localHost) Run(ctx context.Context, cmd string, _ transport.RunOptions) (*transport.Result, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = 5 * time.Second // a grandchild holding the pipes must not hang the test
	err := c.Run()
	res := &transport.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return res, err
	}
	ce := &transport.CommandError{Host: l.name, Command: cmd, ExitCode: ee.ExitCode()}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		ce.Signal = ws.Signal().String()
	}
	tail := stderr.String()
	if strings.TrimSpace(tail) == "" {
		tail = stdout.String()
	}
	lines := strings.Split(strings.TrimRight(tail, "\n"), "\n")
	ce.Tail = strings.Join(lines[max(0, len(lines)-5):], "\n")
	res.ExitCode = ce.ExitCode
	return res, ce
}

func (l *localHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	l.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentAddr accepts connections and never answers, until the test ends.
func silentAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
