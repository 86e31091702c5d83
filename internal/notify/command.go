package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/relctl/relctl/playbooks"
)

// outputKept is how much of a command's output is kept for its error.
const outputKept = 4 << 10

// runCommand runs the entry's argv without a shell, in its own process
// group (killed whole at the timeout), the event as JSON on stdin and its
// main fields in the environment.
func (n *Notifier) runCommand(ctx context.Context, c *playbooks.NotifyConfig, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, c.Command[0], c.Command[1:]...)
	cmd.Dir = n.opts.Dir
	cmd.Stdin = bytes.NewReader(append(body, '\n'))
	cmd.Env = append(n.environ(),
		"RELCTL_EVENT="+ev.Type, "RELCTL_RUN="+ev.Run, "RELCTL_ENV="+ev.Env,
		"RELCTL_RELEASE="+ev.Release, "RELCTL_RESULT="+ev.Result)
	out := &tailBuffer{max: outputKept}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a script's children (curl, sleep) go with it.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A child left holding stdout (a daemon) does not hold relctl up.
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // it exited 0; only a child it left kept the output open
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err() // deliver says how long it was given
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("%s: %w", c.Command[0], err)
	}
	msg := fmt.Sprintf("%s: %s", c.Command[0], ee.ProcessState)
	if text := lastLine(out.String()); text != "" {
		msg += ": " + OneLine(text, bodyShown)
	}
	return errors.New(msg)
}

// environ is relctl's environment without the variables secrets are read
// from.
func (n *Notifier) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(n.opts.DropEnv, name) {
			env = append(env, kv)
		}
	}
	return env
}

// lastLine is the last non-empty line of s: what a failing program said last.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tailBuffer keeps the last max bytes written to it (what a program said
// last is why it failed).
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
