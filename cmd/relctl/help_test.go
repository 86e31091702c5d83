package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/output"
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
