package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/state"
)

func newUnlockCmd(g *globalOptions) *cobra.Command {
	var env, reason string
	var force bool
	cmd := &cobra.Command{
		Use:   "unlock --env ENV --force --reason TEXT",
		Short: "Remove the environment's lock from every host (the reason goes into history)",
		Long: `Unlock removes the environment lock on every host, whoever holds it. Use it
when a run's lock outlived the run and you cannot wait for it to go stale
(relctl rollback takes over a stale lock by itself). The reason, who removed
the lock and whose lock it was are appended to every host's history.`,
		Example: `  relctl unlock --env production --force --reason "laptop died mid-deploy, checked with alice"`,
		Args:    cobra.NoArgs,
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
			targets, failed, err := envLockTargets(cmd.Context(), sess.pool, proj, env)
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
					fmt.Fprintf(g.io.Out, "%s: removed lock of %s\n", r.Host, describeOwner(r))
				}
			}
			for host, ferr := range failed {
				fmt.Fprintf(g.io.ErrOut, "%s: not reached: %v\n", host, ferr)
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
				fmt.Fprintf(g.io.Out, "no host of %s was locked\n", env)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().BoolVar(&force, "force", false, "really remove the lock, whoever holds it")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in every host's history)")
	return cmd
}

func describeOwner(s state.HostLockState) string {
	if s.Owner == nil {
		return "an unknown holder"
	}
	o := s.Owner
	d := fmt.Sprintf("run %s (%s %s by %s@%s, pid %d)", o.RunID, o.Command, o.Release, o.Operator, o.Controller, o.PID)
	if s.Stale {
		d += ", stale: " + s.StaleReason
	}
	return d
}
