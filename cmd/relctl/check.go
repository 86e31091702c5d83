package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// CheckOptions are `relctl check`'s inputs.
type CheckOptions struct {
	IO          *output.IOStreams
	Stop        <-chan struct{}
	Project     func() (*playbooks.Project, error)
	OpenSession openSessionFunc

	Env      string
	Release  string
	Playbook string
	Hosts    []string
	Format   string
}

func newCmdCheck(f *Factory, runF func(*CheckOptions) error) *cobra.Command {
	opts := &CheckOptions{IO: f.IOStreams, Stop: f.Stop, Project: f.Project, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "check --env ENV [--release VERSION]",
		Short: "Run a deploy's preflight and health checks on every host, changing nothing",
		Long: `Check connects to every host and runs, changing nothing: rollback readiness
of the current release (its directory, artifact sha256 and required files),
the current release's watchdog config (monit -t on a scratch copy, pidfile
directories, start/stop programs, ports vs health checks) and one probe of
each health check. With --release it also checks the candidate: room on disk
for its artifact, and its watchdog snippet, read from the local artifact.
Exit 0 when everything passes, 6 when a check fails.`,
		Example: `  relctl check --env production
  relctl check --env production --release 1.3.0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return checkRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVarP(&opts.Release, "release", "r", "", "also check this candidate release")
	cmd.Flags().StringVar(&opts.Playbook, "playbook", "", "playbook, when the environment has several")
	cmd.Flags().StringSliceVar(&opts.Hosts, "hosts", nil, "only these hosts (comma-separated names)")
	cmd.Flags().StringVarP(&opts.Format, "output", "o", "text", "output format: text or json")
	return cmd
}

func checkRun(ctx context.Context, opts *CheckOptions) error {
	proj, sess, id, err := openForReading(opts.Project, opts.OpenSession, "check")
	if err != nil {
		return err
	}
	runID := "check-" + id
	ctx, cancel := stopOrCancel(ctx, opts.Stop)
	defer cancel()
	defer sess.Close()
	// Changing nothing, the check needs neither journal nor reconnects.
	engine := &deploy.Engine{Connector: sess.pool, Log: sess.log, Operator: state.Operator(), Controller: state.Controller(),
		MaxParallel: proj.Config.SSH.MaxParallel}
	rep, err := engine.Check(ctx, proj, deploy.CheckOptions{Env: opts.Env, Release: opts.Release, Playbook: opts.Playbook, Hosts: opts.Hosts, RunID: runID})
	if rep == nil {
		return err
	}
	if opts.Format == "json" {
		if jerr := writeJSON(opts.IO.Out, rep); jerr != nil {
			return jerr
		}
		return err
	}
	printCheckReport(opts.IO.Out, rep)
	return err
}

// printCheckReport is one row per host and check.
func printCheckReport(w io.Writer, rep *deploy.CheckReport) {
	t := newTable(w, "HOST", "CHECK", "RESULT", "DETAIL")
	for _, h := range rep.Hosts {
		if !h.Reached {
			t.row(h.Name, "reachable", "FAILED", firstLine(h.Error))
			continue
		}
		for _, s := range h.Steps {
			detail := s.Detail
			if s.Error != "" {
				detail = firstLine(s.Error)
			}
			t.row(h.Name, s.Name, map[string]string{deploy.StatusOK: "ok", deploy.StatusFailed: "FAILED"}[s.Status], detail)
		}
	}
	t.flush()
}
