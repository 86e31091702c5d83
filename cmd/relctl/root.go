package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globalOptions are the flags every command has.
type globalOptions struct {
	io *output.IOStreams
	// stop is closed by the first interrupt.
	stop      <-chan struct{}
	config    string
	stateDir  string
	logFormat string
	logLevel  string
}

func (g *globalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&g.config, "config", "c", "", "path to relctl.toml (default: ./relctl.toml)")
	fs.StringVar(&g.stateDir, "state-dir", "", "where run logs are kept (default: state_dir from relctl.toml, .relctl next to it)")
	fs.StringVar(&g.logFormat, "log-format", "auto", "diagnostics format: console, json, or auto (console on a terminal)")
	fs.StringVar(&g.logLevel, "log-level", "warn", "diagnostics level: debug, info, warn, error")
}

// loadProject reads relctl.toml and its playbooks.
func (g *globalOptions) loadProject() (*playbooks.Project, error) {
	path := g.config
	if path == "" {
		path = "relctl.toml"
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, usageErrorf("no relctl.toml in the current directory: cd into your project or pass --config FILE (try `relctl testenv up --dir DIR` for a local cluster with one)")
		}
	}
	proj, err := playbooks.Load(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &usageError{err}
	}
	return proj, err
}

// resolveStateDir is --state-dir, else the config's state_dir.
func (g *globalOptions) resolveStateDir(cfg *playbooks.Config) string {
	if g.stateDir != "" {
		abs, err := filepath.Abs(g.stateDir)
		if err == nil {
			return abs
		}
		return g.stateDir
	}
	return cfg.ResolvePath(cfg.StateDir)
}

// stopOrCancel is a context cancelled by the first interrupt too, for
// commands that have nothing to roll back.
func (g *globalOptions) stopOrCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	fanout.Go(ctx, "waiting for an interrupt", func() {
		select {
		case <-g.stop:
			cancel()
		case <-ctx.Done():
		}
	}, nil)
	return ctx, cancel
}

// transportOptions turns [ssh] into transport options.
func transportOptions(cfg *playbooks.Config, log *transport.RunLog) transport.Options {
	s := cfg.SSH
	useAgent := os.Getenv("SSH_AUTH_SOCK") != ""
	if s.UseAgent != nil {
		useAgent = *s.UseAgent && useAgent
	}
	opts := transport.Options{
		User: s.User, UseAgent: useAgent, HostKeyPolicy: s.HostKeyPolicy,
		ConnectTimeout: s.ConnectTimeout.Duration, CommandTimeout: s.CommandTimeout.Duration,
		ControlTimeout: s.ControlTimeout.Duration, Keepalive: s.Keepalive.Duration, Output: log,
	}
	if s.IdentityFile != "" {
		opts.IdentityFile = cfg.ResolvePath(s.IdentityFile)
	}
	if s.KnownHosts != "" {
		opts.KnownHostsFile = cfg.ResolvePath(s.KnownHosts)
	} else if home, err := os.UserHomeDir(); err == nil {
		opts.KnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
	}
	return opts
}

func newRootCmd(io *output.IOStreams, stop <-chan struct{}) *cobra.Command {
	g := &globalOptions{io: io, stop: stop}
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
			logger, err := output.NewLogger(io.ErrOut, g.logFormat, g.logLevel, io.IsStderrTTY())
			if err != nil {
				return &usageError{err}
			}
			cmd.SetContext(logger.WithContext(contextOf(cmd)))
			return nil
		},
	}
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	g.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newValidateCmd(g),
		newPlanCmd(g),
		newDeployCmd(g),
		newRehearseCmd(g),
		newStatusCmd(g),
		newCheckCmd(g),
		newRollbackCmd(g),
		newFinalizeCmd(g),
		newHistoryCmd(g),
		newUnlockCmd(g),
		newParityCmd(g),
		newTestenvCmd(g),
	)
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
