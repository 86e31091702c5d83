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
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// TestHelpShowsExamples: `relctl --help` and every command's help show examples.
func TestHelpShowsExamples(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(newRootCmd(output.Test(nil, nil, nil), nil), nil)
	if len(paths) < 9 {
		t.Fatalf("found %d commands, want at least 9: %v", len(paths), paths)
	}
	for _, path := range paths {
		t.Run("relctl "+strings.Join(path, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append(path, "--help"), output.Test(nil, &out, &errOut))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			_, examples, ok := strings.Cut(out.String(), "Examples:\n")
			if !ok || !strings.Contains(examples, "  relctl ") {
				t.Errorf("help has no examples:\n%s", out.String())
			}
		})
	}
}

// TestExitCodes maps command-line mistakes to exit 2 with a clear message.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"deploy"}, exitUsage, "needs --env"},
		{[]string{"deploy", "--env", "staging"}, exitUsage, "needs --release"},
		{[]string{"deploy", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"status", "--env", "x", "--output", "yaml"}, exitUsage, `invalid --output "yaml"`},
		{[]string{"validate", "--log-level", "loud"}, exitUsage, `invalid --log-level "loud"`},
		{[]string{"validate", "-c", "/nonexistent/relctl.toml"}, exitUsage, "/nonexistent/relctl.toml"},
		{[]string{"testenv", "up"}, exitUsage, "--dir is required"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, output.Test(nil, &out, &errOut))
			if code != tt.wantCode || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut.String(), tt.wantCode, tt.wantErr)
			}
		})
	}
}

// TestExitCodeMapping: the one switch that turns outcomes into exit codes.
func TestExitCodeMapping(t *testing.T) {
	host := func(before, after string, rb *deploy.HostRollback) *deploy.HostReport {
		return &deploy.HostReport{Name: "web-1", Before: before, After: after, Rollback: rb}
	}
	failure := func(interrupted bool, hosts ...*deploy.HostReport) error {
		return &deploy.Failure{Phase: "verify", Batch: 1, Interrupted: interrupted, Err: errors.New("boom"),
			Report: &deploy.Report{Env: "staging", Version: "1.2.0", RolledBack: true, Hosts: hosts}}
	}
	healthy := &deploy.HostRollback{Healthy: true}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, exitOK},
		{"rolled back, healthy", failure(false, host("1.1.0", "1.1.0", healthy)), exitFailedClean},
		{"rolled back, unhealthy", failure(false, host("1.1.0", "1.1.0", &deploy.HostRollback{})), exitUnknown},
		{"rollback failed", failure(false, host("1.1.0", "1.2.0", &deploy.HostRollback{Error: "unreachable"})), exitUnknown},
		{"left switched", failure(false, host("1.1.0", "1.2.0", nil)), exitUnknown},
		{"interrupted, rolled back", failure(true, host("1.1.0", "1.1.0", healthy)), exitInterrupted},
		{"interrupted, left switched", failure(true, host("1.1.0", "1.2.0", nil)), exitUnknown},
		{"locked", &state.LockedError{Env: "staging"}, exitLocked},
		{"nothing to roll back to", fmt.Errorf("%w: only 1.0.0", rollback.ErrNothingToRollBackTo), exitRefused},
		{"config problems", playbooks.Problems{{File: "relctl.toml", Line: 1, Column: 1, Message: "bad"}}, exitUsage},
		{"bad input", fmt.Errorf("%w: release", deploy.ErrBadInput), exitUsage},
		{"aborted", context.Canceled, exitInterrupted},
		{"unexpected", errors.New("disk full"), exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			if got := exitCode(output.Test(nil, io.Discard, &errOut), tt.err); got != tt.want {
				t.Errorf("exit %d, want %d (stderr %q)", got, tt.want, errOut.String())
			}
		})
	}
}
