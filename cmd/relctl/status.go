package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
)

func newStatusCmd(g *globalOptions) *cobra.Command {
	var env, format string
	cmd := &cobra.Command{
		Use:   "status --env ENV",
		Short: "Show per host: reachable, current and previous release, healthy now",
		Long: `Status connects to every host of the environment, reads its release layout
(current symlink and .relctl/history.json) and runs the playbook's health
checks once against the current release. It changes nothing.`,
		Example: `  relctl status --env production
  relctl status --env staging --output json`,
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
			sess, err := openSession(g, proj.Config, "status-"+state.NewRunID(time.Now()))
			if err != nil {
				return err
			}
			defer sess.Close()
			st, err := deploy.Status(cmd.Context(), sess.pool, proj, env, proj.Config.SSH.MaxParallel)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(g.io.Out, st)
			}
			t := newTable(g.io.Out, "HOST", "ADDRESS", "REACHABLE", "CURRENT", "PREVIOUS", "HEALTHY", "NOTE")
			for _, h := range st.Hosts {
				t.row(h.Name, h.Address, yesNo(h.Reachable), orDash(h.Current), orDash(h.Previous), yesNo(h.Healthy), h.Error)
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().StringVarP(&env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
