package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// statusOutput is `relctl status --output json`.
type statusOutput struct {
	*deploy.EnvStatus
	Lock *lockStatus `json:"lock,omitempty"`
	// BrokenLocks are locks no run holds the way relctl makes them.
	BrokenLocks []brokenLock `json:"broken_locks,omitempty"`
	// UnlockBroken is the command that removes them.
	UnlockBroken string `json:"unlock_broken,omitempty"`
}

// brokenLock is a host's lock in a form relctl does not make.
type brokenLock struct {
	Host    string `json:"host"`
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

// lockStatus is the environment lock as the hosts report it.
type lockStatus struct {
	RunID       string   `json:"run_id"`
	Env         string   `json:"env"` // the holder's environment: hosts may be shared
	Command     string   `json:"command"`
	Release     string   `json:"release"`
	Operator    string   `json:"operator"`
	Controller  string   `json:"controller"`
	PID         int      `json:"pid"`
	Heartbeat   string   `json:"heartbeat"`
	Stale       bool     `json:"stale"`
	StaleReason string   `json:"stale_reason,omitempty"`
	Hosts       []string `json:"hosts"`
	// Finished is the run's result when it ended but its lock stayed behind.
	Finished string `json:"finished,omitempty"`
}

// StatusOptions are `relctl status`'s inputs.
type StatusOptions struct {
	IO          *output.IOStreams
	Stop        <-chan struct{}
	Project     func() (*playbooks.Project, error)
	OpenSession openSessionFunc

	Env    string
	Format string
}

func newCmdStatus(f *Factory, runF func(*StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{IO: f.IOStreams, Stop: f.Stop, Project: f.Project, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "status --env ENV",
		Short: "Show per host: reachable, current and previous release, healthy now; and any run holding the lock",
		Long: `Status connects to every host of the environment, reads its release layout
(current symlink and .relctl/history.json) and its lock, and runs the
playbook's health checks once against the current release. It changes
nothing. A lock whose holder is gone names the interrupted run and the
commands that finish it (deploy --resume) or revert it (rollback --to prev).`,
		Example: `  relctl status --env production
  relctl status --env staging --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return statusRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVarP(&opts.Format, "output", "o", "text", "output format: text or json")
	return cmd
}

func statusRun(ctx context.Context, opts *StatusOptions) error {
	proj, sess, _, err := openForReading(opts.Project, opts.OpenSession, "status")
	if err != nil {
		return err
	}
	ctx, cancel := stopOrCancel(ctx, opts.Stop)
	defer cancel()
	defer sess.Close()
	out, err := readStatus(ctx, sess, proj, opts.Env)
	if err != nil {
		return err
	}
	if opts.Format == "json" {
		return writeJSON(opts.IO.Out, out)
	}
	printStatus(opts.IO.Out, opts.Env, out)
	return nil
}

// readStatus reads every host's releases and health, and the locks over
// env's lock scope.
func readStatus(ctx context.Context, sess *session, proj *playbooks.Project, env string) (*statusOutput, error) {
	st, err := deploy.Status(ctx, sess.pool, proj, env, proj.Config.SSH.MaxParallel)
	if err != nil {
		return nil, err
	}
	out := &statusOutput{EnvStatus: st}
	if targets, _, err := envLockScope(ctx, sess.pool, proj, env, nil); err == nil {
		locks, _ := state.InspectLocks(ctx, targets, state.LockOptions{TTL: proj.Config.LockTTL.Duration})
		out.Lock = summarizeLocks(locks)
		out.BrokenLocks, out.UnlockBroken = brokenLocks(env, locks)
		if out.Lock != nil && out.Lock.Stale {
			out.Lock.Finished = runResult(ctx, targets, out.Lock)
		}
	}
	return out, ctx.Err()
}

// printStatus is the host table, then the lock and any broken locks. Up to
// perHostMax hosts the table has a row per host; with more, a row per
// state (reachable, releases, healthy, note) with its hosts folded, every
// host not reachable, not healthy or with a note named.
func printStatus(w io.Writer, env string, out *statusOutput) {
	note := func(h *deploy.HostStatus) string {
		note := h.Error
		for _, b := range out.BrokenLocks {
			if b.Host == h.Name {
				note = strings.TrimPrefix(note+"; broken lock: "+b.Problem, "; ")
			}
		}
		return note
	}
	if len(out.Hosts) > perHostMax {
		printStatusGrouped(w, out, note)
	} else {
		t := newTable(w, "HOST", "ADDRESS", "REACHABLE", "CURRENT", "PREVIOUS", "HEALTHY", "NOTE")
		for _, h := range out.Hosts {
			t.row(h.Name, h.Address, yesNo(h.Reachable), orDash(h.Current), orDash(h.Previous), yesNo(h.Healthy), note(h))
		}
		t.flush()
	}
	printLock(w, env, out.Lock, out.EnvStatus)
	printBrokenLocks(w, out.BrokenLocks, out.UnlockBroken)
}

// printStatusGrouped is the status table of a large environment: a row
// per state, HOSTS last (addresses: --output json).
func printStatusGrouped(w io.Writer, out *statusOutput, note func(*deploy.HostStatus) string) {
	groups := groupHosts(len(out.Hosts), func(i int) (string, []string) {
		h := out.Hosts[i]
		return h.Name, []string{yesNo(h.Reachable), orDash(h.Current), orDash(h.Previous), yesNo(h.Healthy), note(h)}
	})
	t := newTable(w, "COUNT", "REACHABLE", "CURRENT", "PREVIOUS", "HEALTHY", "HOSTS", "NOTE")
	for _, g := range groups {
		names := someHosts(g.hosts)
		if g.cols[0] != "yes" || g.cols[3] != "yes" || g.cols[4] != "" {
			names = allHosts(g.hosts)
		}
		t.row(fmt.Sprint(len(g.hosts)), g.cols[0], g.cols[1], g.cols[2], g.cols[3], names, g.cols[4])
	}
	t.flush()
}

// summarizeLocks folds the per-host lock states into the run holding them.
func summarizeLocks(locks []state.HostLockState) *lockStatus {
	var ls *lockStatus
	for _, l := range locks {
		if !l.Held || l.Owner == nil || l.Broken != "" {
			continue
		}
		if ls == nil {
			o := l.Owner
			ls = &lockStatus{RunID: o.RunID, Env: o.Env, Command: o.Command, Release: o.Release, Operator: o.Operator,
				Controller: o.Controller, PID: o.PID, Heartbeat: o.Heartbeat.UTC().Format(time.RFC3339),
				Stale: l.Stale, StaleReason: l.StaleReason}
		}
		ls.Hosts = append(ls.Hosts, l.Host)
	}
	if ls != nil {
		sort.Strings(ls.Hosts)
	}
	return ls
}

// brokenLocks lists the broken locks and the command that removes them.
func brokenLocks(env string, locks []state.HostLockState) ([]brokenLock, string) {
	var out []brokenLock
	var hosts []string
	for _, l := range locks {
		if l.Broken != "" {
			out = append(out, brokenLock{Host: l.Host, Path: l.Path, Problem: l.Broken})
			hosts = append(hosts, l.Host)
		}
	}
	if len(out) == 0 {
		return nil, ""
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, state.UnlockCommand(env, hosts)
}

func printBrokenLocks(w io.Writer, broken []brokenLock, unlock string) {
	if len(broken) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, b := range broken {
		fmt.Fprintf(w, "Broken lock on %s at %s: %s\n", b.Host, b.Path, b.Problem)
	}
	fmt.Fprintf(w, "No run holds it and relctl never takes it over: every run that locks the host exits 5 until it is gone.\n")
	fmt.Fprintf(w, "Look at it on the host, then remove it: %s\n", unlock)
}

func printLock(w io.Writer, env string, l *lockStatus, st *deploy.EnvStatus) {
	if l == nil {
		return
	}
	in := ""
	if l.Env != "" {
		in = " in " + l.Env
	}
	who := fmt.Sprintf("run %s (%s %s%s by %s@%s, pid %d)", l.RunID, l.Command, l.Release, in, l.Operator, l.Controller, l.PID)
	if l.Env != "" && l.Env != env {
		// A host this environment shares with another (a load balancer):
		// the run is that environment's to finish or revert.
		fmt.Fprintf(w, "\nIn progress in environment %s: %s holds the lock on %s (shared with %s); see relctl status --env %s.\n",
			l.Env, who, allHosts(l.Hosts), env, l.Env)
		return
	}
	if !l.Stale {
		fmt.Fprintf(w, "\nIn progress: %s holds the lock on %s.\n", who, allHosts(l.Hosts))
		return
	}
	current := map[string]string{}
	for _, h := range st.Hosts {
		if h.Reachable {
			current[h.Name] = h.Current
		}
	}
	if l.Finished != "" {
		fmt.Fprintf(w, "\nLeft behind: %s finished (%s) but its lock remains on %s (%s).\n", who, l.Finished, allHosts(l.Hosts), l.StaleReason)
		fmt.Fprintf(w, "Hosts now: %s\n", describeFleetWith(hostVersions(st), allHosts))
		fmt.Fprintf(w, "Remove it: relctl unlock --env %s --force --reason TEXT\n", env)
		return
	}
	fmt.Fprintf(w, "\nInterrupted: %s stopped without finishing (%s); its lock remains on %s.\n", who, l.StaleReason, allHosts(l.Hosts))
	fmt.Fprintf(w, "Hosts now: %s\n", describeFleetWith(current, allHosts))
	switched := false
	for _, v := range current {
		switched = switched || v == l.Release
	}
	if l.Command == deploy.KindRollback {
		fmt.Fprintf(w, "Finish it: relctl rollback --env %s --to %s\n", env, l.Release)
		return
	}
	if l.Command == deploy.KindDeploy {
		fmt.Fprintf(w, "Finish it: relctl deploy --env %s --resume\n", env)
		if !switched {
			fmt.Fprintf(w, "No host was switched to %s, so there is nothing to revert; to give up on it: relctl unlock --env %s --force --reason TEXT\n", l.Release, env)
			return
		}
	}
	fmt.Fprintf(w, "Revert it: relctl rollback --env %s --to prev\n", env)
}

// runResult is the result a host's run summary records for the lock's run,
// or "" when no host has one (the run never finished).
func runResult(ctx context.Context, targets []state.LockTarget, l *lockStatus) string {
	for _, t := range targets {
		if !slices.Contains(l.Hosts, t.Host) {
			continue
		}
		summaries, err := state.ReadHostRunSummaries(ctx, t.Conn, t.Layout)
		if err != nil {
			continue
		}
		for _, s := range summaries {
			if s.RunID == l.RunID {
				return s.Result
			}
		}
	}
	return ""
}

func hostVersions(st *deploy.EnvStatus) map[string]string {
	out := map[string]string{}
	for _, h := range st.Hosts {
		if h.Reachable {
			out[h.Name] = h.Current
		}
	}
	return out
}
