package transport

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
)

func TestRun(t *testing.T) {
	f := newFixture(t, 1)
	c := f.conn(t, nil)
	tests := []struct {
		name       string
		cmd        string
		stdin      string
		wantStdout string
		wantStderr string
		wantCode   int
		wantSignal string
		wantErr    string // CommandError.Error(); empty: no error
	}{
		{name: "stdout", cmd: "echo hello", wantStdout: "hello\n"},
		{name: "stderr", cmd: "echo oops >&2", wantStderr: "oops\n"},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "abc\n", wantStdout: "ABC\n"},
		{name: "posix sh", cmd: `x='a b'; set -- $x; echo "$#"`, wantStdout: "2\n"},
		{name: "exit code", cmd: "exit 3", wantCode: 3, wantErr: "command exited with status 3"},
		{
			name:       "tail is the last ten lines of stderr",
			cmd:        "echo out; for i in $(seq 1 15); do echo line$i >&2; done; exit 1",
			wantStdout: "out\n",
			wantStderr: "line1\nline2\nline3\nline4\nline5\nline6\nline7\nline8\nline9\nline10\nline11\nline12\nline13\nline14\nline15\n",
			wantCode:   1,
			wantErr: "command exited with status 1:\n    line6\n    line7\n    line8\n    line9\n    line10\n" +
				"    line11\n    line12\n    line13\n    line14\n    line15",
		},
		{
			name: "tail falls back to stdout", cmd: "echo only-stdout; exit 2",
			wantStdout: "only-stdout\n", wantCode: 2,
			wantErr: "command exited with status 2:\n    only-stdout",
		},
		{name: "signal", cmd: "kill -9 $$", wantCode: -1, wantSignal: "KILL", wantErr: "command killed by signal KILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := RunOptions{Label: "test"}
			if tt.stdin != "" {
				opts.Stdin = strings.NewReader(tt.stdin)
			}
			res, err := c.Run(testContext(t), tt.cmd, opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				var ce *CommandError
				if !errors.As(err, &ce) {
					t.Fatalf("Run error = %v (%T), want *CommandError", err, err)
				}
				if ce.Error() != tt.wantErr {
					t.Errorf("error:\n%s\nwant:\n%s", ce.Error(), tt.wantErr)
				}
				if ce.Host != "host-1" || ce.Command != tt.cmd || ce.ExitCode != tt.wantCode || ce.Signal != tt.wantSignal {
					t.Errorf("CommandError = %+v", ce)
				}
			}
			if res == nil {
				t.Fatal("no Result")
			}
			if string(res.Stdout) != tt.wantStdout || string(res.Stderr) != tt.wantStderr || res.ExitCode != tt.wantCode {
				t.Errorf("Result = stdout %q stderr %q exit %d; want %q %q %d",
					res.Stdout, res.Stderr, res.ExitCode, tt.wantStdout, tt.wantStderr, tt.wantCode)
			}
		})
	}
}

// Many sessions at once on one connection (OpenSSH's default MaxSessions is 10),
// reached through concurrent Gets as the engine would.
func TestRunConcurrentSessions(t *testing.T) {
	f := newFixture(t, 1)
	p := f.pool(t, nil)
	ctx := testContext(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Get(ctx, target(f.servers[0]))
			if err != nil {
				errs <- err
				return
			}
			res, err := c.Run(ctx, fmt.Sprintf("sleep 0.2; echo %d", i), RunOptions{Label: fmt.Sprint(i)})
			if err != nil {
				errs <- err
				return
			}
			if got, want := string(res.Stdout), fmt.Sprintf("%d\n", i); got != want {
				errs <- fmt.Errorf("session %d printed %q, want %q", i, got, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := p.Handshakes(); got["host-1"] != 1 {
		t.Errorf("Handshakes() = %v, want host-1: 1", got)
	}
}

func TestRunTimeoutKillsCommand(t *testing.T) {
	tests := []struct {
		name           string
		commandTimeout time.Duration
		ctxTimeout     time.Duration
		wantMsg        string
	}{
		{name: "command timeout", commandTimeout: 500 * time.Millisecond, wantMsg: "command_timeout 500ms reached"},
		{name: "earlier ctx deadline", commandTimeout: time.Hour, ctxTimeout: 500 * time.Millisecond, wantMsg: "context deadline exceeded"},
	}
	f := newFixture(t, 1)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.conn(t, func(o *Options) { o.CommandTimeout = tt.commandTimeout })
			ctx := testContext(t)
			if tt.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
				defer cancel()
			}
			// A unique argument lets us find the process on this machine afterwards.
			marker := fmt.Sprintf("60.%d%d", i+1, time.Now().UnixNano()%100000)
			_, err := c.Run(ctx, "exec sleep "+marker, RunOptions{Label: "nap"})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Run error = %v, want context.DeadlineExceeded", err)
			}
			if !strings.HasPrefix(err.Error(), "host-1: [nap] ") || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want host, label and %q", err, tt.wantMsg)
			}
			waitGone(t, "sleep "+marker)
		})
	}
}

// waitGone waits until no local process matches pattern (sshd runs on this machine).
func waitGone(t *testing.T, pattern string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("pgrep", "-f", "^"+pattern+"$").Output()
		if err != nil { // exit 1: no match
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %q still running (pids %s)", pattern, strings.TrimSpace(string(out)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestShellQuoteThroughRealShell(t *testing.T) {
	f := newFixture(t, 1)
	c := f.conn(t, nil)
	for _, s := range []string{"", "plain", "a b", "it's", `"double"`, "$(touch /tmp/pwned)", "`x`", "a\nb", "-n", "*", `back\slash`, "tab\there"} {
		t.Run(fmt.Sprintf("%q", s), func(t *testing.T) {
			res, err := c.Run(testContext(t), "printf '%s' "+shellquote.Quote(s), RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Stdout) != s {
				t.Errorf("printed %q, want %q", res.Stdout, s)
			}
		})
	}
}

// TestRunCommandIgnoringStdin: a command that exits without reading its
// stdin reports its own outcome, not a write error on the closed channel.
func TestRunCommandIgnoringStdin(t *testing.T) {
	f := newFixture(t, 1)
	p := f.pool(t, nil)
	ctx := testContext(t)
	c, err := p.Get(ctx, target(f.servers[0]))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 4<<20) // far more than the channel window
	for i := range 5 {
		res, err := c.Run(ctx, "echo gone", RunOptions{Label: "ignore-stdin", Stdin: strings.NewReader(big)})
		if err != nil || string(res.Stdout) != "gone\n" {
			t.Fatalf("run %d: stdout %q, err %v; want \"gone\" and no error", i, res.Stdout, err)
		}
		_, err = c.Run(ctx, "exit 3", RunOptions{Label: "ignore-stdin", Stdin: strings.NewReader(big)})
		var ce *CommandError
		if !errors.As(err, &ce) || ce.ExitCode != 3 {
			t.Fatalf("run %d: err %v, want exit status 3", i, err)
		}
	}
}
