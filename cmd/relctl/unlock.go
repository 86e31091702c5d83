package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/state"
)

func newUnlockCmd(g *globalOptions) *cobra.Command {
	var env, reason string
	var hosts []string
	var force bool
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
			if err := requireFlag(cmd, "env", env); err != nil {
				return err
			}
			if !force || reason == "" {
				return usageErrorf("unlock removes a lock another run may still hold: pass --force and --reason TEXT")
			}
			proj, err := g.loadProject()
			if err != nil {
				return err
			}
			runID := state.NewRunID(time.Now())
			sess, err := openSession(g, proj.Config, runID, true)
			if err != nil {
				return err
			}
			defer sess.Close()
			targets, failed, err := envLockScope(cmd.Context(), sess.pool, proj, env, hosts)
			if err != nil {
				return err
			}
			by := state.LockOwner{Operator: state.Operator(), Controller: state.Controller(), PID: os.Getpid(), RunID: runID, Env: env, Command: "unlock"}
			sess.journal.Append(state.JournalEvent{Kind: "run-start", Env: env, Command: "unlock", Operator: by.Operator, Controller: by.Controller, Detail: reason})
			removed, err := state.ForceUnlock(cmd.Context(), targets, by, reason)
			n := 0
			for _, r := range removed {
				if r.Held {
					n++
					if r.Broken != "" {
						fmt.Fprintf(g.io.Out, "%s: removed a broken lock at %s (%s)\n", r.Host, r.Path, r.Broken)
						continue
					}
					fmt.Fprintf(g.io.Out, "%s: removed lock of %s\n", r.Host, describeOwner(r))
				}
			}
			for _, host := range slices.Sorted(maps.Keys(failed)) {
				fmt.Fprintf(g.io.ErrOut, "%s: not reached: %v\n", host, failed[host])
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
				if len(hosts) > 0 {
					fmt.Fprintf(g.io.Out, "no lock on %s\n", strings.Join(hosts, ", "))
				} else {
					fmt.Fprintf(g.io.Out, "no host of %s was locked\n", env)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringSliceVar(&hosts, "hosts", nil, "only on these hosts (comma-separated names)")
	cmd.Flags().BoolVar(&force, "force", false, "really remove the lock, whoever holds it")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in every host's history)")
	return cmd
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
