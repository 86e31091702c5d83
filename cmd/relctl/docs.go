package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/relctl/relctl/internal/output"
)

// DocsOptions are `relctl docs man|markdown`'s inputs.
type DocsOptions struct {
	IO     *output.IOStreams
	Format string // man or markdown
	Dir    string
	// Root is the command tree to document.
	Root *cobra.Command
}

// docFormats are the formats `relctl docs` writes: a file name for a
// command and the generator of its page.
var docFormats = map[string]struct {
	short, example string
	fileName       func(*cobra.Command) string
	write          func(*cobra.Command, io.Writer) error
}{
	"man": {
		short:   "Write a man page (section 1) for every command into DIR",
		example: "  relctl docs man /usr/local/share/man/man1\n  relctl docs man ./man && man ./man/relctl-deploy.1",
		// relctl-deploy.1, as the pages' SEE ALSO sections name them.
		fileName: func(c *cobra.Command) string { return strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1" },
		write: func(c *cobra.Command, w io.Writer) error {
			// A fresh header per page: GenMan fills in the page's title.
			// The date is SOURCE_DATE_EPOCH's, else today's.
			return doc.GenMan(c, &doc.GenManHeader{Section: "1", Source: "relctl " + version, Manual: "relctl manual"}, w)
		},
	},
	"markdown": {
		short:   "Write a Markdown reference page for every command into DIR",
		example: "  relctl docs markdown docs/commands",
		// relctl_deploy.md, as the pages' links name them.
		fileName: func(c *cobra.Command) string { return strings.ReplaceAll(c.CommandPath(), " ", "_") + ".md" },
		write:    doc.GenMarkdown,
	},
}

func newCmdDocs(f *Factory, runF func(*DocsOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "docs",
		Short: "Write man pages or a Markdown command reference, generated from relctl's commands",
		Long: `Docs writes one page per command (flags, examples, see-also links), generated
from the commands themselves, so the pages match the binary that wrote them.
DIR is created if needed; each file written is printed. Man pages carry the
date from SOURCE_DATE_EPOCH when it is set (reproducible builds), else today's.`,
		Example: `  relctl docs man ./man
  relctl docs markdown docs/commands`,
		Args: cobra.NoArgs,
	}
	for _, format := range []string{"man", "markdown"} {
		cmd.AddCommand(newCmdDocsFormat(f, format, runF))
	}
	return cmd
}

func newCmdDocsFormat(f *Factory, format string, runF func(*DocsOptions) error) *cobra.Command {
	opts := &DocsOptions{IO: f.IOStreams, Format: format}
	cmd := &cobra.Command{
		Use:     format + " DIR",
		Short:   docFormats[format].short,
		Example: docFormats[format].example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir, opts.Root = args[0], cmd.Root()
			if runF != nil {
				return runF(opts)
			}
			return docsRun(opts)
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveFilterDirs
		},
	}
	return cmd
}

// docsRun writes a page for every command a user can run (not hidden ones,
// nor help), printing each file's path.
func docsRun(opts *DocsOptions) error {
	format := docFormats[opts.Format]
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return err
	}
	var cmds []*cobra.Command
	walkCommands(opts.Root, func(c *cobra.Command) {
		if c == opts.Root || (c.IsAvailableCommand() && !c.IsAdditionalHelpTopicCommand() && availableParents(c)) {
			cmds = append(cmds, c)
		}
	})
	for _, c := range cmds {
		// Without cobra's "Auto generated ... on DATE" line, the same binary
		// writes the same pages.
		c.DisableAutoGenTag = true
		path := filepath.Join(opts.Dir, format.fileName(c))
		if err := writeDocPage(path, c, format.write); err != nil {
			return err
		}
		fmt.Fprintln(opts.IO.Out, path)
	}
	return nil
}

// availableParents reports whether every command above c is shown too (a
// hidden command's subcommands get no page).
func availableParents(c *cobra.Command) bool {
	for p := c.Parent(); p != nil && p.HasParent(); p = p.Parent() {
		if !p.IsAvailableCommand() {
			return false
		}
	}
	return true
}

func writeDocPage(path string, c *cobra.Command, write func(*cobra.Command, io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(c, f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
