package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// RollbackOptions are `relctl rollback`'s inputs.
type RollbackOptions struct {
	IO          *output.IOStreams
	Stop        <-chan struct{}
	Project     func() (*playbooks.Project, error)
	OpenSession openSessionFunc

	Env      string
	To       string
	Playbook string
	Hosts    []string
	Parallel string
	Yes      bool
	DryRun   bool
	viewFlags
}

func newCmdRollback(f *Factory, runF func(*RollbackOptions) error) *cobra.Command {
	opts := &RollbackOptions{IO: f.IOStreams, Stop: f.Stop, Project: f.Project, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "rollback --env ENV --to prev|VERSION",
		Short: "Put the environment back on its previous release (or a named one), from any machine",
		Long: `Rollback reads every host's release history (no local state is needed: it
works from a laptop that never ran the deploy) and works out the fleet's
previous release: the one active on the environment before its current one,
the same answer for every host even after a partial deploy. A mixed fleet
(some hosts on the new release, some on the old) converges to one version.

It takes over a stale lock (left by a run that died), proves the target
release is intact on every host before switching any, then switches hosts
back with the playbook's canary and batch strategy (--parallel all: every
host at once), runs the playbook's [rollback] steps and the health checks.
When there is nothing to roll back to, it says so and exits 6.

For a playbook with [move] whose move is cut over but not finalized,
--to prev moves back: every dependent's config as it was before the move
(restarted in batches, health-checked), then the load balancers' servers as
they were (the old hosts serve again, the new ones go back to maint). The
old hosts were never touched, so there is nothing to switch on them.`,
		Example: `  relctl rollback --env production --to prev
  relctl rollback --env production --to 1.1.0 --hosts production-2,production-3
  relctl rollback --env production --to prev --parallel all --yes
  relctl rollback --env production --to prev --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if err := requireFlag(cmd, "to", opts.To); err != nil {
				return err
			}
			if err := opts.viewFlags.check(); err != nil {
				return err
			}
			if opts.Parallel != "" && opts.Parallel != "all" {
				return usageErrorf("--parallel takes only \"all\"")
			}
			if runF != nil {
				return runF(opts)
			}
			return rollbackRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVar(&opts.To, "to", "", `"prev" (the fleet's previous release) or a version`)
	cmd.Flags().StringVar(&opts.Playbook, "playbook", "", "playbook, when the environment has several")
	cmd.Flags().StringSliceVar(&opts.Hosts, "hosts", nil, "only these hosts (comma-separated names)")
	cmd.Flags().StringVar(&opts.Parallel, "parallel", "", `"all": every host at once, no canary (emergencies)`)
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "read the hosts, print the plan (every step, with its host) and stop: nothing is locked or changed")
	opts.viewFlags.AddFlags(cmd.Flags())
	return cmd
}

func rollbackRun(ctx context.Context, opts *RollbackOptions) error {
	// One session for the whole command: the hosts are read to plan the
	// rollback, and it runs, on the same connections (one per host).
	proj, sess, runID, err := openForReading(opts.Project, opts.OpenSession, "")
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.view = opts.viewFlags
	prep, err := rollback.Prepare(ctx, sess.pool, proj, rollback.Request{
		Env: opts.Env, To: opts.To, Playbook: opts.Playbook, Hosts: opts.Hosts, ParallelAll: opts.Parallel == "all", RunID: runID,
	})
	if err != nil {
		return err
	}
	choice := runChoice{Yes: opts.Yes, DryRun: opts.DryRun}
	if prep.Move != nil {
		// A host move not yet finalized: traffic and dependents go back
		// to the old hosts.
		return runMove(ctx, opts.IO, opts.Stop, sess, choice, proj, prep.Plan, prep.Move)
	}
	if err := compatibilityGate(ctx, opts.IO.ErrOut, proj, sess.pool, rollbackCompat(opts, prep.Fleet, prep.Target)); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Rolling %s back from %s to %s (%s)\n", opts.Env, prep.From, prep.Target, describeFleetWith(prep.Fleet.Current(), someHosts))
	if opts.DryRun {
		printPlan(opts.viewFlags.resultsTo(opts.IO), prep.Plan, true)
		return nil
	}
	question := fmt.Sprintf("\nRoll %s back to %s?", opts.Env, prep.Target)
	if err := confirm(opts.IO, opts.Stop, opts.Yes, prep.Plan, question, "rollback cancelled: nothing was changed"); err != nil {
		return err
	}
	notes := notifyRunStart(ctx, proj, sess, prep.Plan) // [[notify]]: start now, the end from notes.ended
	return notes.ended(sess.runPlan(ctx, opts.viewFlags.resultsTo(opts.IO), proj, prep.Plan, deploy.RunOptions{TakeOverStaleLocks: true}))
}

// rollbackCompat checks the target with the constraints it was deployed with.
func rollbackCompat(opts *RollbackOptions, fleet *rollback.Fleet, target string) rollback.CompatRequest {
	compat := rollback.CompatRequest{Env: opts.Env, Kind: deploy.KindRollback, Playbook: opts.Playbook, Version: target,
		Retry: rollbackCommand(opts.Env, opts.Playbook, opts.To, opts.Hosts)}
	if a := fleet.ActivationOf(target); a != nil && a.Component != "" {
		compat.Requires, compat.RequiresKnown = a.Requires, true
	}
	return compat
}

// rollbackCommand is the rollback as the operator would type it again.
func rollbackCommand(env, playbook, to string, hosts []string) string {
	cmd := "relctl rollback --env " + env
	if playbook != "" {
		cmd += " --playbook " + playbook
	}
	cmd += " --to " + to
	if len(hosts) > 0 {
		cmd += " --hosts " + strings.Join(hosts, ",")
	}
	return cmd
}

// describeFleet says which hosts run which release, e.g. "1.2.0 on a, b;
// 1.1.0 on c", every host by name (history show).
func describeFleet(current map[string]string) string {
	return describeFleetWith(current, func(names []string) string { return strings.Join(names, ", ") })
}

// describeFleetWith is describeFleet with each release's hosts written by
// hosts: allHosts gives "1.2.0 on web[1-2]; 1.1.0 on web3".
func describeFleetWith(current map[string]string, hosts func([]string) string) string {
	by := map[string][]string{}
	var versions []string
	for host, v := range current {
		if v == "" {
			v = "none"
		}
		if by[v] == nil {
			versions = append(versions, v)
		}
		by[v] = append(by[v], host)
	}
	slices.Sort(versions)
	parts := make([]string, len(versions))
	for i, v := range versions {
		slices.Sort(by[v])
		parts[i] = v + " on " + hosts(by[v])
	}
	return strings.Join(parts, "; ")
}
