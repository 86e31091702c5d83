package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// releaseFlags select an environment, a release and a playbook (deploy, plan).
type releaseFlags struct {
	Env      string
	Release  string
	Playbook string
	Hosts    []string
}

func (o *releaseFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Env, "env", "e", "", "environment to deploy to (from relctl.toml)")
	fs.StringVarP(&o.Release, "release", "r", "", "release version, e.g. 1.4.2")
	fs.StringVar(&o.Playbook, "playbook", "", "playbook to apply when the environment has several")
	fs.StringSliceVar(&o.Hosts, "hosts", nil, "only these hosts (comma-separated names)")
}

func (o *releaseFlags) planOptions() deploy.PlanOptions {
	return deploy.PlanOptions{Env: o.Env, Version: o.Release, Playbook: o.Playbook, Hosts: o.Hosts,
		RunID: state.NewRunID(time.Now())}
}

// PlanOptions are `relctl plan`'s inputs.
type PlanOptions struct {
	IO      *output.IOStreams
	Project func() (*playbooks.Project, error)

	releaseFlags
	Format string
}

func newCmdPlan(f *Factory, runF func(*PlanOptions) error) *cobra.Command {
	opts := &PlanOptions{IO: f.IOStreams, Project: f.Project}
	cmd := &cobra.Command{
		Use:   "plan --env ENV --release VERSION",
		Short: "Show the batches and, per host, the steps a deploy would run; touches no host",
		Example: `  relctl plan --env staging --release 1.1.0
  relctl plan --env production --release 1.1.0 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if err := requireFlag(cmd, "release", opts.Release); err != nil {
				return err
			}
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return planRun(opts)
		},
	}
	opts.releaseFlags.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&opts.Format, "output", "o", "text", "output format: text or json")
	return cmd
}

func planRun(opts *PlanOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	p, err := deploy.BuildPlan(proj, opts.planOptions())
	if err != nil {
		return err
	}
	if opts.Format == "json" {
		return writeJSON(opts.IO.Out, p)
	}
	printPlan(opts.IO.Out, p, true)
	if p.Move != nil {
		// plan reads no host; deploy reads the move record first.
		fmt.Fprintln(opts.IO.Out, "\nNote: deploy reads the move record on the new hosts first. If it says the move is cut over or finalized, deploy releases only the new hosts, each out of and back into the load balancers, and none of the steps after the last batch runs; if it says cutting-over, deploy finishes that move, keeping the states it saved.")
	}
	return nil
}

// printPlan writes the plan for a person; steps only when withSteps.
func printPlan(w io.Writer, p *deploy.Plan, withSteps bool) {
	hosts := p.Hosts()
	fmt.Fprintf(w, "Plan: %s (%d host%s in %d batch%s)\n", planTitle(p),
		len(hosts), plural(len(hosts)), len(p.Batches), pluralES(len(p.Batches)))
	switch {
	case p.Artifact.URL != "": // pulled by the hosts: its size is theirs to learn
		fmt.Fprintf(w, "Artifact: %s (fetched by each host, sha256 %s from %s)\n", p.Artifact.URL, p.Artifact.SHA256, p.Artifact.SHA256From)
	case p.Artifact.Path != "": // a rollback moves no artifact
		fmt.Fprintf(w, "Artifact: %s (%s, sha256 %s)\n", p.Artifact.Path, humanSize(p.Artifact.Size), p.Artifact.SHA256)
	}
	par := "batch size"
	if p.MaxParallel > 0 {
		par = fmt.Sprint(p.MaxParallel)
	}
	fmt.Fprintf(w, "Strategy: max parallel %s per batch, pause %s between batches, keep %d releases\n", par, p.Pause, p.KeepReleases)
	if m := p.Move; m != nil && p.Kind == deploy.KindDeploy {
		fmt.Fprintf(w, "Move: from %s (%s, never touched), after the last batch: load balancers to the new hosts, then dependents (%s) reconfigured and restarted in batches\n",
			m.FromRole, someHosts(m.OldHosts), orDash(someHosts(m.Dependents)))
	}
	for _, b := range p.Batches {
		printBatch(w, b, withSteps)
	}
	printAfter(w, p)
}

// planTitle says what the plan does: "deploy search 1.1.0 to staging".
func planTitle(p *deploy.Plan) string {
	switch p.Verb() {
	case deploy.VerbMoveBack:
		return fmt.Sprintf("move back %s %s in %s", p.Playbook, p.Version, p.Env)
	case deploy.KindFinalize:
		return fmt.Sprintf("finalize the move of %s %s in %s", p.Playbook, p.Version, p.Env)
	case deploy.KindRollback:
		return fmt.Sprintf("rollback %s to %s on %s", p.Playbook, p.Version, p.Env)
	}
	return fmt.Sprintf("deploy %s %s to %s", p.Playbook, p.Version, p.Env)
}

func printBatch(w io.Writer, b *deploy.Batch, withSteps bool) {
	fmt.Fprintf(w, "\n%s\n", batchHeading(b, 0))
	if !withSteps {
		return
	}
	for _, h := range b.Hosts {
		fmt.Fprintf(w, "  %s (%s)\n", h.Name, h.Address)
		if len(h.Steps) == 0 {
			fmt.Fprintf(w, "    (locked and read; no step changes it)\n")
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, s := range h.Steps {
			fmt.Fprintf(tw, "    %s\t%s\n", s.ID(), s.Describe)
		}
		tw.Flush()
	}
}

// printAfter writes the steps after the last batch, in the order they run,
// each with its host; for a move back, the undos the run walks through.
func printAfter(w io.Writer, p *deploy.Plan) {
	if len(p.After) == 0 {
		return
	}
	steps := p.After
	if p.UndoAfter {
		fmt.Fprintln(w, "\nMoving back, in this order (the move's steps undone from its record):")
		steps = nil
		for i := len(p.After) - 1; i >= 0; i-- {
			if p.After[i].Step.CanUndo() {
				steps = append(steps, p.After[i])
			}
		}
	} else {
		fmt.Fprintln(w, "\nAfter the last batch:")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, hs := range steps {
		s := hs.Step
		describe := s.Describe
		if p.UndoAfter {
			describe = s.Undo
			if needed, why := s.UndoNeeded(); !needed {
				describe = "skipped: " + why
			}
		} else if s.Undo != "" {
			describe += "\n\t\tundo: " + s.Undo
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", hs.Host, s.ID(), describe)
	}
	tw.Flush()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
