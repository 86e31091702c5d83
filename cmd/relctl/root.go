package main

import (
	"context"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCmd(io *output.IOStreams, stop <-chan struct{}) *cobra.Command {
	f := &Factory{IOStreams: io, Stop: stop, secrets: &secretsHolder{}}
	// Every byte relctl prints goes through the secrets' mask, error
	// messages included (exitCode prints to the same streams).
	io.Out, io.ErrOut = f.secrets.writer(io.Out), f.secrets.writer(io.ErrOut)
	root := &cobra.Command{
		Use:   "relctl",
		Short: "Release orchestrator: push a release over SSH, canary then batches, health-checked",
		Long: `relctl pushes a release (an artifact and a playbook) across a cluster over SSH:
preflight on every host, then a canary batch, then the remaining batches, each
host's release switched atomically and health-checked before the next batch.

Configuration is relctl.toml (hosts per environment, SSH settings) and
playbooks/*.toml next to it (steps, health checks, strategy).`,
		Example: `  # try it on a local cluster of SSH hosts
  relctl testenv up --dir /tmp/relctl-demo && cd /tmp/relctl-demo
  relctl plan --env staging --release 1.1.0
  relctl deploy --env staging --release 1.1.0 --yes
  relctl status --env staging`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := f.Logger()
			if err != nil {
				return err
			}
			cmd.SetContext(logger.WithContext(contextOf(cmd)))
			return nil
		},
	}
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	f.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newCmdValidate(f, nil),
		newCmdPlan(f, nil),
		newCmdDeploy(f, nil),
		newCmdRehearse(f, nil),
		newCmdStatus(f, nil),
		newCmdCheck(f, nil),
		newCmdRollback(f, nil),
		newCmdFinalize(f, nil),
		newCmdHistory(f, nil),
		newCmdUnlock(f, nil),
		newCmdParity(f, nil),
		newCmdTestenv(f),
		newCmdDocs(f, nil),
	)
	registerCompletions(root, f)
	return root
}

func contextOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return zerolog.Nop().WithContext(context.TODO())
}

// requireFlag reports a missing mandatory flag as a usage error with the command's example.
func requireFlag(cmd *cobra.Command, name, value string) error {
	if value == "" {
		return usageErrorf("%s needs --%s (see `%s --help`)", cmd.CommandPath(), name, cmd.CommandPath())
	}
	return nil
}

// confirm asks question on a terminal (after showing p, when there is one)
// unless yes; a no is a usage error saying cancelled.
func confirm(io *output.IOStreams, stop <-chan struct{}, yes bool, p *deploy.Plan, question, cancelled string) error {
	if yes || !io.CanPrompt() {
		return nil
	}
	if p != nil {
		printPlan(io.ErrOut, p, false)
	}
	ok, err := io.Confirm(question, stop)
	if err != nil {
		return err
	}
	if !ok {
		return usageErrorf("%s", cancelled)
	}
	return nil
}
