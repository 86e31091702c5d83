package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// rehearsalGate applies the environment's require_rehearsal before a
// deploy, on the deploy's own connections (rollback.DecideGate decides),
// says on w what it decided, and returns the decision for the run.
func rehearsalGate(ctx context.Context, w io.Writer, stateDir string, proj *playbooks.Project, conn deploy.Connector, p *deploy.Plan, skipReason string) (deploy.GateDecision, error) {
	out, err := rollback.DecideGate(ctx, rollback.GateOptions{
		Project: proj, Plan: p, StateDir: stateDir, Connector: conn,
		MaxParallel: proj.Config.SSH.MaxParallel, Now: time.Now(),
	}, skipReason)
	notifyGate(ctx, w, proj, conn, p, out, err) // [[notify]] gate-refused: a refusal, or its override
	switch {
	case err != nil:
		return deploy.GateDecision{}, err
	case !out.Gated:
		return out.Decision, nil
	case out.Overridden != nil:
		fmt.Fprintf(w, "Rehearsal gate of %s: REFUSED, overridden with --skip-rehearsal\n  refusal: %s\n  reason: %s (written to every host's history)\n", p.Env, out.Overridden.Reason, skipReason)
		return out.Decision, nil
	case out.Result.Note != "":
		fmt.Fprintf(w, "Rehearsal gate of %s: not needed: %s\n", p.Env, out.Result.Note)
	default:
		printGatePassed(w, p.Env, out.Result)
	}
	if skipReason != "" {
		fmt.Fprintf(w, "  (--skip-rehearsal not needed: nothing to override)\n")
	}
	return out.Decision, nil
}

// printGatePassed says which rehearsal record let the release through, and
// how the rehearsal environment differs from env.
func printGatePassed(w io.Writer, env string, res *rollback.GateResult) {
	rec := res.Record
	fmt.Fprintf(w, "Rehearsal gate of %s: passed: %s %s was rehearsed in %s (%d cycle%s, rolled back to %s) on %s by %s\n",
		env, rec.Playbook, rec.Release, rec.Environment, len(rec.Cycles), plural(len(rec.Cycles)), rec.From,
		rec.Finished.Local().Format(time.DateTime), rec.Operator)
	fmt.Fprintf(w, "  record: %s, signed by %s (%s)\n", res.Source, rec.Signer, res.Signer.Fingerprint)
	for _, d := range res.Differences {
		fmt.Fprintf(w, "  warning: %s differs: %s (%s, rehearsed) vs %s (%s, now)\n", d.Key, d.A, rec.Environment, d.B, env)
	}
}

// compatibilityGate refuses a release that would break a constraint
// between the environment's components, before any host changes, and shows
// on w what it checked when the environment uses constraints.
func compatibilityGate(ctx context.Context, w io.Writer, proj *playbooks.Project, conn deploy.Connector, req rollback.CompatRequest) error {
	rep, err := rollback.CheckRelease(ctx, conn, proj, proj.Config.SSH.MaxParallel, req)
	if err != nil {
		return err
	}
	if !rep.InUse || len(rep.Checked)+len(rep.Notes) == 0 {
		return nil
	}
	fmt.Fprintf(w, "Compatibility with what %s runs: ok\n", req.Env)
	for _, c := range rep.Checked {
		fmt.Fprintf(w, "  %s\n", c)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	return nil
}
