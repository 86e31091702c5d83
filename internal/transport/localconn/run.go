package localconn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/relctl/relctl/internal/transport"
)

// tailLines is how much output a CommandError carries, as over ssh.
const tailLines = 10

// Run runs cmd with /bin/sh -c in the host's directory, after the host's
// faults had their say. A non-zero exit is a *transport.CommandError; a
// cancelled ctx kills the command's whole process group.
func (c *Conn) Run(ctx context.Context, cmd string, opts transport.RunOptions) (*transport.Result, error) {
	label := opts.Label
	if label == "" {
		label = "run"
	}
	res, err := c.run(ctx, cmd, label, opts)
	exit := -1
	if res != nil {
		exit = res.ExitCode
	}
	c.host.record(Command{Label: label, Text: cmd, Exit: exit, Err: err})
	return res, err
}

func (c *Conn) run(ctx context.Context, cmd, label string, opts transport.RunOptions) (*transport.Result, error) {
	if err := c.dead(); err != nil {
		return nil, err
	}
	f := c.host.fault(label, cmd)
	if f != nil && f.OnStart != nil {
		f.OnStart()
	}
	switch {
	case f == nil:
	case f.Lose && f.RunFirst:
		_, _ = c.shell(ctx, cmd, label, opts)
		return nil, c.host.lostAt(c, f)
	case f.Lose:
		return nil, c.host.lostAt(c, f)
	case f.Exit != 0:
		res := &transport.Result{Stderr: []byte(f.Stderr), ExitCode: f.Exit}
		return res, c.commandError(cmd, res, "")
	}
	return c.shell(ctx, cmd, label, opts)
}

// shell runs cmd for real.
func (c *Conn) shell(ctx context.Context, cmd, label string, opts transport.RunOptions) (*transport.Result, error) {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, opts.Timeout,
			&transport.TimeoutError{Host: c.host.Name, Label: label, Setting: transport.SettingStepTimeout, Limit: opts.Timeout})
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return nil, c.contextError(ctx, label)
	}
	sh := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	sh.Dir = c.host.Root
	sh.Env = append(os.Environ(), "HOME="+c.host.Root, "RELCTL_STEP="+label)
	sh.Stdin = opts.Stdin
	var stdout, stderr bytes.Buffer
	sh.Stdout, sh.Stderr = &stdout, &stderr
	// The command and everything it started go together, as over ssh.
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sh.Cancel = func() error { return syscall.Kill(-sh.Process.Pid, syscall.SIGKILL) }
	sh.WaitDelay = 5 * time.Second // a grandchild holding the pipes must not hang the test
	err := sh.Run()
	res := &transport.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		return nil, c.contextError(ctx, label)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee):
		signal := ""
		res.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode, signal = -1, ws.Signal().String()
		}
		return res, c.commandError(cmd, res, signal)
	}
	return nil, fmt.Errorf("%s: [%s]: %w", c.host.Name, label, err)
}

func (c *Conn) commandError(cmd string, res *transport.Result, signal string) error {
	tail := res.Stderr
	if len(bytes.TrimSpace(tail)) == 0 {
		tail = res.Stdout
	}
	lines := strings.Split(strings.TrimRight(string(tail), "\n"), "\n")
	return &transport.CommandError{Host: c.host.Name, Command: cmd, ExitCode: res.ExitCode, Signal: signal,
		Tail: strings.Join(lines[max(0, len(lines)-tailLines):], "\n")}
}

// contextError is the ssh transport's: a limit of the command's own is its
// *transport.TimeoutError, anything else wraps ctx.Err().
func (c *Conn) contextError(ctx context.Context, label string) error {
	var timeout *transport.TimeoutError
	if errors.As(context.Cause(ctx), &timeout) {
		return timeout
	}
	return fmt.Errorf("%s: [%s] %w", c.host.Name, label, ctx.Err())
}

// Upload writes r to remotePath atomically (a temp file next to it, renamed
// into place) once its sha256 is wantSHA256. Faults apply to it under the
// label "upload <remotePath>".
func (c *Conn) Upload(ctx context.Context, r io.Reader, remotePath string, mode uint32, wantSHA256 string) error {
	label := "upload " + remotePath
	err := c.upload(ctx, r, remotePath, label, mode, wantSHA256)
	exit := 0
	if err != nil {
		exit = 1
	}
	c.host.record(Command{Label: label, Exit: exit, Err: err})
	return err
}

func (c *Conn) upload(ctx context.Context, r io.Reader, remotePath, label string, mode uint32, wantSHA256 string) error {
	if err := c.dead(); err != nil {
		return err
	}
	if f := c.host.fault(label, ""); f != nil {
		if f.OnStart != nil {
			f.OnStart()
		}
		switch {
		case f.Lose && f.RunFirst:
			if err := c.write(ctx, r, remotePath, mode, wantSHA256); err != nil {
				return err
			}
			return c.host.lostAt(c, f)
		case f.Lose:
			return c.host.lostAt(c, f)
		case f.Exit != 0:
			res := &transport.Result{Stderr: []byte(f.Stderr), ExitCode: f.Exit}
			return fmt.Errorf("%s: upload %s: %w", c.host.Name, remotePath, c.commandError(label, res, ""))
		}
	}
	return c.write(ctx, r, remotePath, mode, wantSHA256)
}

// write is the upload itself.
func (c *Conn) write(ctx context.Context, r io.Reader, remotePath string, mode uint32, wantSHA256 string) error {
	if err := ctx.Err(); err != nil {
		return c.contextError(ctx, "upload "+remotePath)
	}
	dir := filepath.Dir(remotePath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s: upload %s: %w", c.host.Name, remotePath, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(remotePath)+".relctl-*")
	if err != nil {
		return fmt.Errorf("%s: upload %s: %w", c.host.Name, remotePath, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: upload %s: %w", c.host.Name, remotePath, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(wantSHA256) {
		return fmt.Errorf("%s: upload %s: sha256 mismatch: the host computed %s, want %s", c.host.Name, remotePath, got, wantSHA256)
	}
	if err := os.Chmod(tmp.Name(), os.FileMode(mode&0o7777)); err != nil {
		return fmt.Errorf("%s: upload %s: %w", c.host.Name, remotePath, err)
	}
	if err := os.Rename(tmp.Name(), remotePath); err != nil {
		return fmt.Errorf("%s: upload %s: %w", c.host.Name, remotePath, err)
	}
	return nil
}
