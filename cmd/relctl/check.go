package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
)

func newCheckCmd(g *globalOptions) *cobra.Command {
	var env, release, playbook, format string
	var hosts []string
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
			if err := requireFlag(cmd, "env", env); err != nil {
				return err
			}
			if err := checkFormat(format); err != nil {
				return err
			}
			proj, err := g.loadProject()
			if err != nil {
				return err
			}
			ctx, cancel := g.stopOrCancel(cmd.Context())
			defer cancel()
			runID := "check-" + state.NewRunID(time.Now())
			sess, err := openSession(g, proj.Config, runID, false)
			if err != nil {
				return err
			}
			defer sess.Close()
			engine := &deploy.Engine{Connector: sess.pool, Log: sess.log, Operator: state.Operator(), Controller: state.Controller(),
				MaxParallel: proj.Config.SSH.MaxParallel}
			rep, err := engine.Check(ctx, proj, deploy.CheckOptions{Env: env, Release: release, Playbook: playbook, Hosts: hosts, RunID: runID})
			if rep == nil {
				return err
			}
			if format == "json" {
				if jerr := writeJSON(g.io.Out, rep); jerr != nil {
					return jerr
				}
			} else {
				t := newTable(g.io.Out, "HOST", "CHECK", "RESULT", "DETAIL")
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
			return err
		},
	}
	cmd.Flags().StringVarP(&env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVarP(&release, "release", "r", "", "also check this candidate release")
	cmd.Flags().StringVar(&playbook, "playbook", "", "playbook, when the environment has several")
	cmd.Flags().StringSliceVar(&hosts, "hosts", nil, "only these hosts (comma-separated names)")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}
