package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Factory is what every command's options are built from (cli/cli's
// cmdutil.Factory): the terminal, the interrupt, the project with its state
// directory, and sessions against hosts. The global flags it reads are
// parsed after the commands are built, so it reads them when a command runs.
type Factory struct {
	IOStreams *output.IOStreams
	// Stop is closed by the first interrupt.
	Stop  <-chan struct{}
	flags globalFlags
	// secrets are the command's resolved secrets (nil in tests that build
	// a Factory themselves: then each session has its own).
	secrets *secretsHolder
}

// globalFlags are the flags every command has.
type globalFlags struct {
	config    string
	stateDir  string
	logFormat string
	logLevel  string
}

func (g *globalFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&g.config, "config", "c", "", "path to relctl.toml (default: ./relctl.toml)")
	fs.StringVar(&g.stateDir, "state-dir", "", "where run logs are kept (default: state_dir from relctl.toml, .relctl next to it)")
	fs.StringVar(&g.logFormat, "log-format", "auto", "diagnostics format: console, json, or auto (console on a terminal)")
	fs.StringVar(&g.logLevel, "log-level", "warn", "diagnostics level: debug, info, warn, error")
}

// Logger is the diagnostics logger --log-format and --log-level ask for.
func (f *Factory) Logger() (zerolog.Logger, error) {
	logger, err := output.NewLogger(f.IOStreams.ErrOut, f.flags.logFormat, f.flags.logLevel, f.IOStreams.IsStderrTTY())
	if err != nil {
		return logger, &usageError{err}
	}
	return logger, nil
}

// Project reads relctl.toml (--config, else the current directory's) and
// its playbooks.
func (f *Factory) Project() (*playbooks.Project, error) {
	path := f.flags.config
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

// StateDir is --state-dir, else the config's state_dir.
func (f *Factory) StateDir(cfg *playbooks.Config) string {
	if f.flags.stateDir != "" {
		abs, err := filepath.Abs(f.flags.stateDir)
		if err == nil {
			return abs
		}
		return f.flags.stateDir
	}
	return cfg.ResolvePath(cfg.StateDir)
}

// openSessionFunc opens a session against cfg's hosts: its run log (named
// for runID), its journal when withJournal, and its connection pool.
type openSessionFunc func(cfg *playbooks.Config, runID string, withJournal bool) (*session, error)

// OpenSession opens a session whose progress goes to stderr and whose runs
// stop on the first interrupt.
func (f *Factory) OpenSession(cfg *playbooks.Config, runID string, withJournal bool) (*session, error) {
	stateDir := f.StateDir(cfg)
	s := &session{stateDir: stateDir, logPath: state.RunLogPath(stateDir, runID), errOut: f.IOStreams.ErrOut, stop: f.Stop, ios: f.IOStreams}
	holder := f.secrets
	if holder == nil {
		holder = &secretsHolder{}
	}
	s.secrets = holder.forConfig(cfg)
	var err error
	if s.log, err = transport.OpenRunLog(s.logPath); err != nil {
		return nil, fmt.Errorf("opening run log: %w", err)
	}
	s.log.SetRedactor(s.secrets.Redact)
	if withJournal {
		if s.journal, err = state.OpenJournal(stateDir, runID); err != nil {
			s.log.Close()
			return nil, fmt.Errorf("opening journal: %w", err)
		}
		s.journal.SetRedactor(s.secrets.Redact)
	}
	if s.pool, err = transport.NewPool(transportOptions(cfg, s.log)); err != nil {
		s.Close()
		return nil, &usageError{err}
	}
	return s, nil
}

// stopOrCancel is a context cancelled by the first interrupt (stop) too,
// for commands that have nothing to roll back.
func stopOrCancel(ctx context.Context, stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	fanout.Go(ctx, "waiting for an interrupt", func() {
		select {
		case <-stop:
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
