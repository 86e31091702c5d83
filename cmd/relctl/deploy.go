package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

func newDeployCmd(g *globalOptions) *cobra.Command {
	opts := &releaseOptions{}
	var yes bool
	cmd := &cobra.Command{
		Use:   "deploy --env ENV --release VERSION",
		Short: "Push a release to an environment: preflight, canary, then batches",
		Long: `Deploy connects to every targeted host (one SSH connection each for the whole
run), runs the preflight phase everywhere before any host changes, then works
through the batches, canary first. In each batch every host runs the stage,
activate, verify, cutover and post phases in step; a failing step stops the
run before the next phase or batch starts, and the report says exactly which
steps ran on which host. Every command's output goes to the run log in the
state directory.

On a terminal, deploy shows the plan and asks for confirmation unless --yes.`,
		Example: `  relctl deploy --env staging --release 1.1.0
  relctl deploy --env production --release 1.1.0 --yes
  relctl deploy --env production --release 1.1.0 --hosts production-1 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.check(cmd); err != nil {
				return err
			}
			proj, err := g.loadProject()
			if err != nil {
				return err
			}
			p, err := deploy.BuildPlan(proj, opts.planOptions())
			if err != nil {
				return err
			}
			if !yes && g.io.CanPrompt() {
				printPlan(g.io.ErrOut, p, false)
				ok, err := g.io.Confirm(fmt.Sprintf("\nDeploy %s %s to %s?", p.Playbook, p.Version, p.Env))
				if err != nil {
					return err
				}
				if !ok {
					return usageErrorf("deploy cancelled: nothing was changed")
				}
			}
			return runDeploy(cmd, g, proj, p)
		},
	}
	opts.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// session is what a run against hosts needs: the run log and the connections.
type session struct {
	logPath string
	log     *transport.RunLog
	pool    *transport.Pool
}

func openSession(g *globalOptions, cfg *playbooks.Config, runID string) (*session, error) {
	logPath := state.RunLogPath(g.resolveStateDir(cfg), runID)
	log, err := transport.OpenRunLog(logPath)
	if err != nil {
		return nil, fmt.Errorf("opening run log: %w", err)
	}
	pool, err := transport.NewPool(transportOptions(cfg, log))
	if err != nil {
		log.Close()
		return nil, &usageError{err}
	}
	return &session{logPath: logPath, log: log, pool: pool}, nil
}

func (s *session) Close() {
	s.pool.Close()
	s.log.Close()
}

func runDeploy(cmd *cobra.Command, g *globalOptions, proj *playbooks.Project, p *deploy.Plan) error {
	sess, err := openSession(g, proj.Config, p.RunID)
	if err != nil {
		return err
	}
	defer sess.Close()
	progress := newProgress(g.io.ErrOut, sess.logPath)
	engine := &deploy.Engine{
		Connector: sess.pool, Observe: progress.observe, Log: sess.log,
		Operator: state.Operator(), Controller: state.Controller(),
		MaxParallel: proj.Config.SSH.MaxParallel,
	}
	rep, err := engine.Deploy(cmd.Context(), p)
	printReport(g.io.Out, rep)
	var failure *deploy.Failure
	if errors.As(err, &failure) {
		printFailureHelp(g.io.ErrOut, p, rep, sess.logPath)
	}
	return err
}

// printReport is the result table: where each host was and is now.
func printReport(w interface{ Write([]byte) (int, error) }, rep *deploy.Report) {
	if rep == nil {
		return
	}
	t := newTable(w, "HOST", "BEFORE", "AFTER", "RESULT")
	for _, h := range rep.Hosts {
		t.row(h.Name, orDash(h.Before), orDash(h.After), hostResult(h))
	}
	t.flush()
}

func hostResult(h *deploy.HostReport) string {
	switch {
	case !h.Reached && h.Error != "":
		return "unreachable"
	case h.Error != "":
		for _, s := range h.Steps {
			if s.Status == deploy.StatusFailed {
				return "failed at " + s.ID()
			}
		}
		return "failed"
	case len(h.Steps) == 0 || h.Steps[len(h.Steps)-1].Name != "prune":
		if h.Changed() {
			return "changed, not finished"
		}
		return "not changed"
	}
	return "ok"
}

// printFailureHelp says, per host, which steps ran, and what to do next.
func printFailureHelp(w interface{ Write([]byte) (int, error) }, p *deploy.Plan, rep *deploy.Report, logPath string) {
	fmt.Fprintln(w, "\nSteps run per host:")
	for _, h := range rep.Hosts {
		if len(h.Steps) == 0 {
			continue
		}
		var parts []string
		for _, s := range h.Steps {
			parts = append(parts, s.ID()+" "+s.Status)
		}
		fmt.Fprintf(w, "  %s: %s\n", h.Name, strings.Join(parts, ", "))
	}
	changed := rep.Changed()
	if len(changed) == 0 {
		fmt.Fprintf(w, "No host's current release was changed.\n")
	} else {
		fmt.Fprintf(w, "Hosts switched to %s by this run: %s\n", p.Version, strings.Join(changed, ", "))
		prev := map[string][]string{}
		for _, h := range rep.Hosts {
			if h.Changed() && h.Before != "" {
				prev[h.Before] = append(prev[h.Before], h.Name)
			}
		}
		for v, hosts := range prev {
			fmt.Fprintf(w, "To put them back: relctl deploy --env %s --release %s --hosts %s\n", p.Env, v, strings.Join(hosts, ","))
		}
	}
	fmt.Fprintf(w, "Run log: %s\n", logPath)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
