package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

func newFinalizeCmd(g *globalOptions) *cobra.Command {
	var env, playbook string
	var yes bool
	cmd := &cobra.Command{
		Use:   "finalize --env ENV",
		Short: "Finish a host move: retire the old hosts (until then, rollback moves back)",
		Long: `After a deploy with [move], the old hosts keep running, untouched, and
` + "`relctl rollback --to prev`" + ` moves traffic and dependents back to them.
Finalize ends that: the old hosts' servers stay in maint on every load
balancer for good, and the playbook's move.retire command runs on each old
host (e.g. stop the service). The move record on the new hosts then says
finalized, and rollback works on the new hosts' own history again.`,
		Example: `  relctl finalize --env production
  relctl finalize --env production --playbook solr-upgrade-and-move --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", env); err != nil {
				return err
			}
			proj, err := g.loadProject()
			if err != nil {
				return err
			}
			runID := state.NewRunID(time.Now())
			sess, err := openSession(g, proj.Config, "read-"+runID, false)
			if err != nil {
				return err
			}
			move, err := deploy.ReadMoveRecords(cmd.Context(), sess.pool, proj, env, playbook)
			sess.Close()
			switch {
			case err != nil:
				return err
			case move == nil:
				return usageErrorf("no host move to finalize in %s (no move record on the new hosts of a playbook with [move]; choose one with --playbook)", env)
			}
			return runMove(cmd.Context(), g, proj, deploy.MoveRunOptions{Env: env, Playbook: move.Playbook, RunID: runID, Kind: deploy.KindFinalize, Record: move}, yes)
		},
	}
	cmd.Flags().StringVarP(&env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVar(&playbook, "playbook", "", "the playbook with [move], when the environment has several")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// runMove moves back or finalizes a host move.
func runMove(ctx context.Context, g *globalOptions, proj *playbooks.Project, opts deploy.MoveRunOptions, yes bool) error {
	p, err := deploy.BuildMovePlan(proj, opts)
	if err != nil {
		return err
	}
	rec := opts.Record
	verb := "Moving back"
	if opts.Kind == deploy.KindFinalize {
		verb = "Finalizing"
	}
	fmt.Fprintf(g.io.ErrOut, "%s the move of %s %s in %s (run %s): old hosts %s, new hosts %s, dependents %s\n", verb, rec.Playbook, rec.Release,
		opts.Env, rec.RunID, strings.Join(rec.OldHosts, ", "), strings.Join(rec.NewHosts, ", "), orDash(strings.Join(p.Move.Dependents, ", ")))
	if !yes && g.io.CanPrompt() {
		ok, err := g.io.Confirm(fmt.Sprintf("\n%s the move in %s?", verb, opts.Env), g.stop)
		if err != nil {
			return err
		}
		if !ok {
			return usageErrorf("cancelled: nothing was changed")
		}
	}
	return runPlan(ctx, g, proj, p, func(e *deploy.Engine) { e.TakeOverStaleLocks = opts.Kind == deploy.KindMoveBack })
}
