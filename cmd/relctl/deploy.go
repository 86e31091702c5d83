package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// readLocksFunc reports the lock on every reachable host of env.
type readLocksFunc func(ctx context.Context, proj *playbooks.Project, env string) ([]state.HostLockState, error)

// DeployOptions are `relctl deploy`'s inputs.
type DeployOptions struct {
	IO          *output.IOStreams
	Stop        <-chan struct{}
	Project     func() (*playbooks.Project, error)
	StateDir    func(*playbooks.Config) string
	OpenSession openSessionFunc
	ReadLocks   readLocksFunc

	releaseFlags
	viewFlags
	Yes              bool
	Resume           bool
	ProveSupervision bool
	SkipRehearsal    bool
	Reason           string
}

func newCmdDeploy(f *Factory, runF func(*DeployOptions) error) *cobra.Command {
	opts := &DeployOptions{
		IO: f.IOStreams, Stop: f.Stop, Project: f.Project, StateDir: f.StateDir, OpenSession: f.OpenSession,
		ReadLocks: func(ctx context.Context, proj *playbooks.Project, env string) ([]state.HostLockState, error) {
			return readLocks(ctx, f.OpenSession, proj, env)
		},
	}
	cmd := &cobra.Command{
		Use:   "deploy --env ENV --release VERSION",
		Short: "Push a release to an environment: preflight, canary, then batches; roll back on failure",
		Long: `Deploy connects to every targeted host (one SSH connection each for the whole
run), takes the environment lock on every host, and runs the preflight phase
everywhere (including a check that the release now current is intact, so it
can be rolled back to) before any host changes. Then it works through the
batches, canary first; in each batch every host runs the stage, activate,
verify, cutover and post phases in step.

If a step or health check fails, or on the first interrupt, no new step
starts, running steps finish, and every host this run touched is rolled back:
its completed steps are undone in reverse order (current switched back, run
steps' undo commands), the playbook's [rollback] steps run, and the health
checks run against the restored release. A second interrupt aborts at once.

--resume finishes a deploy that was interrupted (e.g. relctl was killed): it
takes over the dead run's lock and deploys its release again, skipping hosts
the local journal shows finished.

An environment with require_rehearsal (e.g. production requiring staging)
takes only a release that passed ` + "`relctl rehearse`" + ` there: a signed record,
verified against allowed_signers, for the same release digest, started from
the release the environment runs now, passed, younger than
rehearsal_max_age. Otherwise deploy exits 6 naming the failed condition and
the command that fixes it. --skip-rehearsal --reason TEXT overrides the
gate; the override is written to every host's history.

On a terminal, deploy shows the plan and asks for confirmation unless --yes.`,
		Example: `  relctl deploy --env staging --release 1.1.0
  relctl deploy --env production --release 1.1.0 --yes
  relctl deploy --env production --release 1.1.0 --hosts production-1 --yes
  relctl deploy --env production --resume --yes
  relctl deploy --env production --release 1.1.1 --skip-rehearsal --reason "hotfix for INC-123"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if !opts.Resume {
				if err := requireFlag(cmd, "release", opts.Release); err != nil {
					return err
				}
			}
			if err := opts.viewFlags.check(); err != nil {
				return err
			}
			if opts.SkipRehearsal != (opts.Reason != "") {
				return usageErrorf("--skip-rehearsal and --reason go together: say why the rehearsal gate is skipped (it is written to every host's history)")
			}
			if runF != nil {
				return runF(opts)
			}
			return deployRun(cmd.Context(), opts)
		},
	}
	opts.releaseFlags.AddFlags(cmd.Flags())
	opts.viewFlags.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.Resume, "resume", false, "finish the environment's interrupted deploy")
	cmd.Flags().BoolVar(&opts.SkipRehearsal, "skip-rehearsal", false, "deploy although the environment's rehearsal gate refuses (needs --reason)")
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "with --skip-rehearsal: why; written to every host's history")
	cmd.Flags().BoolVar(&opts.ProveSupervision, "prove-supervision", false, "with a [watchdog]: after monit runs the service, kill it and require monit to restart it")
	return cmd
}

func deployRun(ctx context.Context, opts *DeployOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	po := opts.planOptions()
	po.ProveSupervision = opts.ProveSupervision
	// One session for everything before and during the run: one SSH
	// connection per host.
	sess := &lazySession{open: func() (*session, error) {
		s, err := opts.OpenSession(proj.Config, po.RunID, true)
		if s != nil {
			s.view = opts.viewFlags
		}
		return s, err
	}}
	defer sess.Close()
	prep := deploy.PrepareOptions{Plan: po, Connector: sess, Notice: noticeTo(opts.IO.ErrOut),
		Gate: func(ctx context.Context, p *deploy.Plan) (deploy.GateDecision, error) {
			return rehearsalGate(ctx, opts.IO.ErrOut, opts.StateDir(proj.Config), proj, sess, p, opts.Reason)
		}}
	if opts.Resume {
		if prep.Resume, err = resumeTarget(ctx, opts, proj); err != nil {
			return err
		}
	}
	prepared, err := deploy.Prepare(ctx, proj, prep)
	if err != nil {
		return err
	}
	run, err := sess.get()
	if err != nil {
		return err
	}
	p := prepared.Plan
	if err := compatibilityGate(ctx, opts.IO.ErrOut, proj, run.pool, deployCompat(proj, p)); err != nil {
		return err
	}
	question := fmt.Sprintf("\nDeploy %s %s to %s?", p.Playbook, p.Version, p.Env)
	if err := confirm(opts.IO, opts.Stop, opts.Yes, p, question, "deploy cancelled: nothing was changed"); err != nil {
		return err
	}
	notes := notifyRunStart(ctx, proj, run, p) // [[notify]]: start now, the end when deployRun returns
	defer notes.finish(&err)
	_, err = run.execute(ctx, run.newEngine(proj), p, prepared.Run, opts.IO.Out, nil)
	return err
}

// deployCompat asks whether the release keeps the environment's
// components compatible, with the constraints its playbook declares.
func deployCompat(proj *playbooks.Project, p *deploy.Plan) rollback.CompatRequest {
	return rollback.CompatRequest{
		Env: p.Env, Kind: deploy.KindDeploy, Playbook: p.Playbook, Version: p.Version,
		Requires: proj.Playbooks[p.Playbook].Requires, RequiresKnown: true,
		Retry: fmt.Sprintf("relctl deploy --env %s --playbook %s --release %s", p.Env, p.Playbook, p.Version),
	}
}

// noticeTo writes deploy.Prepare's notices to w, a line each.
func noticeTo(w io.Writer) func(format string, args ...any) {
	return func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
}
