package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/output"
)

// TestPanicInCommandNeverExits2: a panic outside any host's work (here in
// a command's RunE) is an internal error: exit 4 for a command that can
// change hosts, 1 for the others, the stack on stderr, and never 2.
func TestPanicInCommandNeverExits2(t *testing.T) {
	panics := func(name string) *cobra.Command {
		return &cobra.Command{Use: name, RunE: func(*cobra.Command, []string) error {
			var m map[string]int
			m[name]++ // a runtime panic
			return nil
		}}
	}
	newRoot := func() *cobra.Command {
		root := &cobra.Command{Use: "relctl", SilenceUsage: true, SilenceErrors: true}
		testenv := &cobra.Command{Use: "testenv"}
		testenv.AddCommand(panics("up"))
		root.AddCommand(panics("deploy"), panics("rollback"), panics("status"), testenv)
		return root
	}
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"deploy", "--", "x"}, exitUnknown},
		{[]string{"rollback"}, exitUnknown},
		{[]string{"status"}, exitError},
		{[]string{"testenv", "up"}, exitError},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var errOut bytes.Buffer
			io := output.Test(nil, io.Discard, &errOut)
			ctx := fanout.WithRecorder(context.Background(), stderrRecorder(io.ErrOut))
			got := runRoot(ctx, io, newRoot(), tt.args)
			if got != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tt.want, errOut.String())
			}
			for _, want := range []string{
				"relctl: internal error (panic): assignment to entry in nil map\ngoroutine ",
				"relctl: internal error (panic) in relctl: assignment to entry in nil map; the stack is in the output above\n",
			} {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
				}
			}
		})
	}
}

// TestExitCodePanics: a panic on a host the run changed is exit 4 even when
// its rollback passed; one before anything changed is an ordinary failure;
// one outside a run is exit 1, whatever else the error wraps - never 2.
func TestExitCodePanics(t *testing.T) {
	p := &fanout.PanicError{Host: "web-2", Value: "nil pointer", StackAt: "/runs/r1.log"}
	healthy := &deploy.HostRollback{Healthy: true}
	failure := func(rolledBack bool, hosts ...*deploy.HostReport) error {
		return &deploy.Failure{Phase: "activate", Batch: 2, Err: fmt.Errorf("web-2: step activate/restart: %w", p),
			Report: &deploy.Report{Env: "staging", Version: "1.2.0", RolledBack: rolledBack, Hosts: hosts}}
	}
	tests := []struct {
		name     string
		err      error
		want     int
		wantText []string
	}{
		{"touched, rolled back healthy", failure(true,
			&deploy.HostReport{Name: "web-1", Before: "1.1.0", After: "1.1.0", Touched: true, Rollback: healthy},
			&deploy.HostReport{Name: "web-2", Before: "1.1.0", After: "1.1.0", Touched: true, Rollback: healthy, Panic: "nil pointer"}),
			exitUnknown, []string{"web-2: internal error (panic) in relctl: nil pointer; the stack is in /runs/r1.log",
				"they look restored, but are not vouched for: web-2 (look with relctl status --env staging)"}},
		{"touched, rollback failed", failure(true,
			&deploy.HostReport{Name: "web-2", Before: "1.1.0", After: "1.2.0", Touched: true, Rollback: &deploy.HostRollback{Error: "x"}, Panic: "nil pointer"}),
			exitUnknown, []string{"rollback did not restore every host: web-2\n"}},
		{"preflight, nothing changed", &deploy.Failure{Phase: "preflight", Err: p,
			Report: &deploy.Report{Env: "staging", Version: "1.2.0", Hosts: []*deploy.HostReport{{Name: "web-2", Before: "1.1.0", After: "1.1.0", Panic: "nil pointer"}}}},
			exitFailedClean, []string{"failed in preflight: web-2: internal error (panic) in relctl"}},
		{"outside a run", fmt.Errorf("reading the fleet: %w", p), exitError, nil},
		{"outside a run, wrapped with bad input", fmt.Errorf("%w: %w", deploy.ErrBadInput, p), exitError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			if got := exitCode(output.Test(nil, io.Discard, &errOut), tt.err); got != tt.want {
				t.Errorf("exit %d, want %d (stderr %q)", got, tt.want, errOut.String())
			}
			for _, w := range tt.wantText {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
			if !errors.As(tt.err, new(*fanout.PanicError)) {
				t.Errorf("test error does not carry the panic")
			}
		})
	}
}
