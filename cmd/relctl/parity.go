package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// ParityOptions are `relctl parity`'s inputs.
type ParityOptions struct {
	IO          *output.IOStreams
	Stop        <-chan struct{}
	Project     func() (*playbooks.Project, error)
	OpenSession openSessionFunc

	Envs     []string
	Playbook string
	Format   string
}

// parityOutput is `relctl parity --output json`.
type parityOutput struct {
	Environments []*rollback.Fingerprint `json:"environments"`
	Differences  []rollback.Difference   `json:"differences"`
}

func newCmdParity(f *Factory, runF func(*ParityOptions) error) *cobra.Command {
	opts := &ParityOptions{IO: f.IOStreams, Stop: f.Stop, Project: f.Project, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "parity --env A --env B",
		Short: "Compare two environments: roles, OS, watchdog, current release, release files",
		Long: `Parity reads a fingerprint of two environments over SSH and compares them:
how many hosts have each role, the OS (PRETTY_NAME from /etc/os-release),
the watchdog's version (monit or systemd, per the playbook's [watchdog]),
the current release, and the sha256 of the release files the playbook names
(the watchdog snippet and every [rollback].requires entry) in the current
release. It changes nothing.

Each value is the set of distinct values across the environment's hosts, so
3 staging hosts and 5 production hosts on the same OS compare equal. A
rehearsal on staging only tells something about production where the two
match.

Exit status: 0 whether or not the environments differ; 1 when a host could
not be read (what could be read is still printed, the hosts are listed on
stderr); 2 on a usage error.`,
		Example: `  relctl parity --env staging --env production
  relctl parity --env staging --env production --playbook search
  relctl parity --env staging --env production --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(opts.Envs) != 2 {
				return usageErrorf("relctl parity compares two environments: give --env twice (got %d), e.g. --env staging --env production", len(opts.Envs))
			}
			if opts.Envs[0] == opts.Envs[1] {
				return usageErrorf("relctl parity: --env %s given twice; name two different environments", opts.Envs[0])
			}
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return parityRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringArrayVarP(&opts.Envs, "env", "e", nil, "environment to compare (from relctl.toml); give exactly two")
	cmd.Flags().StringVar(&opts.Playbook, "playbook", "", "playbook whose hosts and files to compare (default: the environment's only playbook)")
	cmd.Flags().StringVarP(&opts.Format, "output", "o", "text", "output format: text or json")
	return cmd
}

func parityRun(ctx context.Context, opts *ParityOptions) error {
	proj, sess, _, err := openForReading(opts.Project, opts.OpenSession, "parity")
	if err != nil {
		return err
	}
	ctx, cancel := stopOrCancel(ctx, opts.Stop)
	defer cancel()
	defer sess.Close()
	// One environment after the other: max_parallel bounds the hosts
	// worked on at once across the whole command.
	fps := make([]*rollback.Fingerprint, len(opts.Envs))
	for i, env := range opts.Envs {
		if fps[i], err = rollback.ReadFingerprint(ctx, sess.pool, proj, env, opts.Playbook, proj.Config.SSH.MaxParallel); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	a, b := fps[0], fps[1]
	if opts.Format == "json" {
		diffs := rollback.CompareFingerprints(a, b)
		if diffs == nil {
			diffs = []rollback.Difference{}
		}
		if err := writeJSON(opts.IO.Out, parityOutput{Environments: fps, Differences: diffs}); err != nil {
			return err
		}
	} else {
		printParity(opts.IO.Out, a, b)
	}
	return unreadableError(opts.IO.ErrOut, fps)
}

// printParity prints every compared key side by side, then the verdict.
func printParity(w io.Writer, a, b *rollback.Fingerprint) {
	t := newTable(w, "WHAT", strings.ToUpper(a.Env), strings.ToUpper(b.Env), "SAME?")
	differences := 0
	for _, row := range rollback.SideBySide(a, b) {
		same := "same"
		if !row.Same() {
			same = "DIFFERENT"
			differences++
		}
		t.row(row.Key, row.A, row.B, same)
	}
	t.flush()
	if differences == 0 {
		fmt.Fprintf(w, "\n%s and %s match.\n", a.Env, b.Env)
		return
	}
	fmt.Fprintf(w, "\n%d difference%s between %s and %s.\n", differences, plural(differences), a.Env, b.Env)
}

// unreadableError lists on stderr the hosts whose fingerprint could not be
// read: the comparison above is incomplete without them.
func unreadableError(w io.Writer, fps []*rollback.Fingerprint) error {
	var names []string
	for _, fp := range fps {
		for _, h := range fp.Hosts {
			if h.Error != "" {
				fmt.Fprintf(w, "unreadable: %s (%s): %s\n", h.Name, fp.Env, h.Error)
				names = append(names, h.Name)
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("parity is incomplete: %d host%s could not be read: %s", len(names), plural(len(names)), allHosts(names))
}
