package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// UnlockOptions are `relctl unlock`'s inputs.
type UnlockOptions struct {
	IO          *output.IOStreams
	Project     func() (*playbooks.Project, error)
	OpenSession openSessionFunc

	Env    string
	Hosts  []string
	Force  bool
	Reason string
}

func newCmdUnlock(f *Factory, runF func(*UnlockOptions) error) *cobra.Command {
	opts := &UnlockOptions{IO: f.IOStreams, Project: f.Project, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "unlock --env ENV --force --reason TEXT",
		Short: "Remove the environment's lock from every host (the reason goes into history)",
		Long: `Unlock removes the environment lock on every host a run in the environment
may lock (the playbooks' targets, their load balancers, a move's old hosts
and dependents), whoever holds it; with --hosts, only on those. Use it when
a run's lock outlived the run and you cannot wait for it to go stale
(relctl rollback takes over a stale lock by itself), or to remove a broken
lock (a plain file, a directory without owner.json, an owner.json that is
not a run's), which relctl never takes over. Whatever is at the lock path
is moved aside and deleted; a symbolic link is removed, never followed.
The reason, who removed the lock and what it was are appended to each
such host's history.`,
		Example: `  relctl unlock --env production --force --reason "laptop died mid-deploy, checked with alice"
  relctl unlock --env production --hosts production-2 --force --reason "removing a broken lock"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if !opts.Force || opts.Reason == "" {
				return usageErrorf("unlock removes a lock another run may still hold: pass --force and --reason TEXT")
			}
			if runF != nil {
				return runF(opts)
			}
			return unlockRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringSliceVar(&opts.Hosts, "hosts", nil, "only on these hosts (comma-separated names)")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "really remove the lock, whoever holds it")
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why (recorded in every host's history)")
	return cmd
}

func unlockRun(ctx context.Context, opts *UnlockOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	runID := state.NewRunID(time.Now())
	sess, err := opts.OpenSession(proj.Config, runID, true)
	if err != nil {
		return err
	}
	defer sess.Close()
	targets, failed, err := envLockScope(ctx, sess.pool, proj, opts.Env, opts.Hosts)
	if err != nil {
		return err
	}
	by := state.LockOwner{Operator: state.Operator(), Controller: state.Controller(), PID: os.Getpid(), RunID: runID, Env: opts.Env, Command: "unlock"}
	sess.journal.Append(state.JournalEvent{Kind: "run-start", Env: opts.Env, Command: "unlock", Operator: by.Operator, Controller: by.Controller, Detail: opts.Reason})
	removed, err := state.ForceUnlock(ctx, targets, by, opts.Reason)
	n := printRemovedLocks(opts.IO.Out, removed)
	for _, host := range slices.Sorted(maps.Keys(failed)) {
		fmt.Fprintf(opts.IO.ErrOut, "%s: not reached: %v\n", host, failed[host])
	}
	result := "succeeded"
	if err != nil || len(failed) > 0 {
		result = "failed"
	}
	sess.journal.Append(state.JournalEvent{Kind: "run-end", Result: result})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d hosts not reached: their locks (if any) remain", len(failed))
	}
	if n == 0 {
		if len(opts.Hosts) > 0 {
			fmt.Fprintf(opts.IO.Out, "no lock on %s\n", allHosts(opts.Hosts))
		} else {
			fmt.Fprintf(opts.IO.Out, "no host of %s was locked\n", opts.Env)
		}
	}
	return nil
}

// printRemovedLocks says whose lock was removed from each host; n is how many were.
func printRemovedLocks(w io.Writer, removed []state.HostLockState) (n int) {
	for _, r := range removed {
		if !r.Held {
			continue
		}
		n++
		if r.Broken != "" {
			fmt.Fprintf(w, "%s: removed a broken lock at %s (%s)\n", r.Host, r.Path, r.Broken)
			continue
		}
		fmt.Fprintf(w, "%s: removed lock of %s\n", r.Host, describeOwner(r))
	}
	return n
}

func describeOwner(s state.HostLockState) string {
	if s.Broken != "" {
		return fmt.Sprintf("a broken lock at %s (%s)", s.Path, s.Broken)
	}
	if s.Owner == nil {
		return "an unknown holder"
	}
	o := s.Owner
	d := fmt.Sprintf("run %s (%s %s in %s by %s@%s, pid %d)", o.RunID, o.Command, o.Release, o.Env, o.Operator, o.Controller, o.PID)
	if s.Stale {
		d += ", stale: " + s.StaleReason
	}
	return d
}
