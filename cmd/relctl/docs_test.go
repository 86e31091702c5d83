package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relctl/relctl/internal/output"
)

// TestDocs: `relctl docs man|markdown DIR` creates DIR, writes one page per
// command a user can run (hidden ones and help excepted), each naming every
// flag the command takes, and prints the files it wrote.
func TestDocs(t *testing.T) {
	root := newRootCmd(output.Test(nil, nil, nil), nil)
	root.InitDefaultCompletionCmd() // as Execute adds it
	type page struct {
		path  []string // command path below relctl
		flags []string
	}
	var pages []page
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		p := page{path: path}
		for _, fs := range []*pflag.FlagSet{c.NonInheritedFlags(), c.InheritedFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if !f.Hidden {
					p.flags = append(p.flags, f.Name)
				}
			})
		}
		pages = append(pages, p)
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(root, nil)
	for _, want := range [][]string{{"deploy"}, {"history", "show"}, {"docs", "man"}, {"completion", "bash"}} {
		if !slices.ContainsFunc(pages, func(p page) bool { return slices.Equal(p.path, want) }) {
			t.Fatalf("no page expected for relctl %s", strings.Join(want, " "))
		}
	}

	for _, tt := range []struct {
		format, sep, ext string
		flag             func(string) string // how a page shows --name
	}{
		{"man", "-", ".1", func(n string) string { return `\fB--` + n + `\fP` }},
		{"markdown", "_", ".md", func(n string) string { return "--" + n + " " }},
	} {
		t.Run(tt.format, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a", "b") // created
			var out, errOut bytes.Buffer
			if code := run([]string{"docs", tt.format, dir}, output.Test(nil, &out, &errOut)); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			var want []string
			for _, p := range pages {
				name := strings.Join(append([]string{"relctl"}, p.path...), tt.sep) + tt.ext
				file := filepath.Join(dir, name)
				want = append(want, file)
				b, err := os.ReadFile(file)
				if err != nil {
					t.Errorf("relctl %s: %v", strings.Join(p.path, " "), err)
					continue
				}
				for _, f := range p.flags {
					if !bytes.Contains(b, []byte(tt.flag(f))) {
						t.Errorf("%s does not mention --%s", name, f)
					}
				}
				if bytes.Contains(b, []byte("Auto generated")) {
					t.Errorf("%s has cobra's dated auto-generated line", name)
				}
			}
			got := strings.Fields(out.String())
			if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
				t.Errorf("printed %q\nwant %q", got, want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(want) {
				t.Errorf("%d files in %s, want %d", len(entries), dir, len(want))
			}
			if _, err := os.Stat(filepath.Join(dir, "relctl"+tt.sep+"testenv"+tt.sep+"serve"+tt.ext)); err == nil {
				t.Errorf("a page for the hidden testenv serve")
			}
		})
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"docs", "man"}, output.Test(nil, &out, &errOut)); code != exitUsage || !strings.Contains(errOut.String(), "accepts 1 arg") {
		t.Errorf("docs man without DIR: exit %d, stderr %q", code, errOut.String())
	}
}
