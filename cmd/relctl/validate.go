package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/playbooks"
)

// ValidateOptions are `relctl validate`'s inputs.
type ValidateOptions struct {
	IO      *output.IOStreams
	Project func() (*playbooks.Project, error)
	// ExplainSSH names a host whose connection settings are shown, each
	// with where it came from; Env picks its environment when several have it.
	ExplainSSH string
	Env        string
}

func newCmdValidate(f *Factory, runF func(*ValidateOptions) error) *cobra.Command {
	opts := &ValidateOptions{IO: f.IOStreams, Project: f.Project}
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check relctl.toml and the playbooks without touching any host",
		Long: `Validate loads relctl.toml and every playbook it applies with strict decoding
(unknown keys are errors), checks them as a whole, and renders every step and
check for every targeted host. Problems are printed as file:line:column.`,
		Example: `  relctl validate
  relctl validate --config deploy/relctl.toml
  relctl validate --explain-ssh web-1 --env production`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			if opts.ExplainSSH != "" {
				return explainSSHRun(opts)
			}
			return validateRun(opts)
		},
	}
	cmd.Flags().StringVar(&opts.ExplainSSH, "explain-ssh", "", "show how `HOST` is reached: every SSH setting and where it came from (relctl.toml, ~/.ssh/config, default)")
	cmd.Flags().StringVar(&opts.Env, "env", "", "the environment of --explain-ssh's host, when several have one of that name")
	return cmd
}

func validateRun(opts *ValidateOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	envs := make([]string, 0, len(proj.Config.Environments))
	for name := range proj.Config.Environments {
		envs = append(envs, name)
	}
	sort.Strings(envs)
	hosts := 0
	for _, env := range envs {
		pbs, err := proj.PlaybooksFor(env)
		if err != nil {
			return err
		}
		for _, pb := range pbs {
			p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: env, Version: "0.0.0-validate", Playbook: pb.Name, RunID: "validate", SkipArtifact: true})
			if err != nil {
				return fmt.Errorf("environment %s, playbook %s: %w", env, pb.Name, err)
			}
			hosts += len(p.Hosts())
		}
	}
	fmt.Fprintf(opts.IO.Out, "%s: ok (%d environment%s, %d playbook%s, %d host targets)\n",
		proj.Config.Path, len(envs), plural(len(envs)), len(proj.Playbooks), plural(len(proj.Playbooks)), hosts)
	return nil
}
