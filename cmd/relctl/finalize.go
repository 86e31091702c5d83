package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// FinalizeOptions are `relctl finalize`'s inputs.
type FinalizeOptions struct {
	IO          *output.IOStreams
	Stop        <-chan struct{}
	Project     func() (*playbooks.Project, error)
	OpenSession openSessionFunc

	Env      string
	Playbook string
	Yes      bool
	DryRun   bool
	viewFlags
}

func newCmdFinalize(f *Factory, runF func(*FinalizeOptions) error) *cobra.Command {
	opts := &FinalizeOptions{IO: f.IOStreams, Stop: f.Stop, Project: f.Project, OpenSession: f.OpenSession}
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
  relctl finalize --env production --playbook solr-upgrade-and-move --yes
  relctl finalize --env production --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if err := opts.viewFlags.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return finalizeRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVar(&opts.Playbook, "playbook", "", "the playbook with [move], when the environment has several")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the plan (every step, with its host) and stop: nothing is locked or changed")
	opts.viewFlags.AddFlags(cmd.Flags())
	return cmd
}

func finalizeRun(ctx context.Context, opts *FinalizeOptions) error {
	// One session: the record is read, and the finalize runs, on the same
	// connections.
	proj, sess, runID, err := openForReading(opts.Project, opts.OpenSession, "")
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.view = opts.viewFlags
	move, err := deploy.ReadMoveRecords(ctx, sess.pool, proj, opts.Env, opts.Playbook)
	switch {
	case err != nil:
		return err
	case move == nil:
		return usageErrorf("no host move to finalize in %s (no move record on the new hosts of a playbook with [move]; choose one with --playbook)", opts.Env)
	}
	p, err := deploy.BuildMovePlan(proj, deploy.MoveRunOptions{Env: opts.Env, Playbook: move.Playbook, RunID: runID, Kind: deploy.KindFinalize, Record: move})
	if err != nil {
		return err
	}
	return runMove(ctx, opts.IO, opts.Stop, sess, runChoice{Yes: opts.Yes, DryRun: opts.DryRun}, proj, p, move)
}

// openForReading loads the project and opens a session (run log, no
// journal yet) for reading the hosts; runID is the id of a run that may
// follow on the same connections (session.runPlan). Its run log is named
// "<what>-<runID>", or for what "" the run's own.
func openForReading(project func() (*playbooks.Project, error), open openSessionFunc, what string) (_ *playbooks.Project, _ *session, runID string, _ error) {
	proj, err := project()
	if err != nil {
		return nil, nil, "", err
	}
	runID = state.NewRunID(time.Now())
	name := runID
	if what != "" {
		name = what + "-" + runID
	}
	sess, err := open(proj.Config, name, false)
	if err != nil {
		return nil, nil, "", err
	}
	return proj, sess, runID, nil
}

// runChoice is how a run that changes hosts starts: asked on a terminal
// unless Yes; DryRun prints the plan to stdout and stops.
type runChoice struct{ Yes, DryRun bool }

// runMove moves back or finalizes a host move, after asking on a terminal
// unless yes.
func runMove(ctx context.Context, io *output.IOStreams, stop <-chan struct{}, sess *session, choice runChoice, proj *playbooks.Project, p *deploy.Plan, rec *deploy.MoveRecord) error {
	verb := "Moving back"
	if p.Kind == deploy.KindFinalize {
		verb = "Finalizing"
	}
	var deps []string
	for _, d := range rec.Dependents {
		if !slices.Contains(deps, d.Host) {
			deps = append(deps, d.Host)
		}
	}
	fmt.Fprintf(io.ErrOut, "%s the move of %s %s in %s (run %s): old hosts %s, new hosts %s, dependents changed %s\n", verb, rec.Playbook, rec.Release,
		p.Env, rec.RunID, someHosts(rec.OldHosts), someHosts(rec.NewHosts), orDash(someHosts(deps)))
	if choice.DryRun {
		printPlan(sess.view.resultsTo(io), p, true)
		return nil
	}
	if err := confirm(io, stop, choice.Yes, p, fmt.Sprintf("\n%s the move in %s?", verb, p.Env), "cancelled: nothing was changed"); err != nil {
		return err
	}
	return sess.runPlan(ctx, sess.view.resultsTo(io), proj, p, deploy.RunOptions{TakeOverStaleLocks: p.Verb() == deploy.VerbMoveBack})
}
