package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// rehearsalGate applies the environment's require_rehearsal before a
// deploy, on the deploy's own connections, and returns its decision for the
// run. With a skip reason a refusal becomes an override the engine writes
// to every host's history.
func rehearsalGate(ctx context.Context, w io.Writer, stateDir string, proj *playbooks.Project, conn deploy.Connector, p *deploy.Plan, skipReason string) (deploy.GateDecision, error) {
	var gate deploy.GateDecision
	env, err := proj.Environment(p.Env)
	if err != nil || env.RequireRehearsal == "" {
		if skipReason != "" {
			return gate, usageErrorf("--skip-rehearsal: environment %s has no rehearsal gate (no require_rehearsal in relctl.toml)", p.Env)
		}
		return gate, nil
	}
	res, err := rollback.CheckGate(ctx, rollback.GateOptions{
		Project: proj, Plan: p, StateDir: stateDir, Connector: conn,
		MaxParallel: proj.Config.SSH.MaxParallel, Now: time.Now(),
	})
	var gerr *rollback.GateError
	switch {
	case errors.As(err, &gerr) && skipReason != "":
		fmt.Fprintf(w, "Rehearsal gate of %s: REFUSED, overridden with --skip-rehearsal\n  refusal: %s\n  reason: %s (written to every host's history)\n", p.Env, gerr.Reason, skipReason)
		return deploy.GateDecision{Skipped: skipReason, Record: "gate skipped: " + skipReason}, nil
	case err != nil:
		return gate, err
	case res.Note != "":
		fmt.Fprintf(w, "Rehearsal gate of %s: not needed: %s\n", p.Env, res.Note)
	default:
		rec := res.Record
		gate = deploy.GateDecision{From: res.From, Until: rec.Finished.Add(env.RehearsalMaxAge.Duration),
			Record: fmt.Sprintf("rehearsed in %s from %s, finished %s, signed by %s (%s)", rec.Environment, rec.From,
				rec.Finished.Format(time.RFC3339), strings.Join(res.Signer.Principals, ","), res.Signer.Fingerprint)}
		printGatePassed(w, p.Env, res)
	}
	if skipReason != "" {
		fmt.Fprintf(w, "  (--skip-rehearsal not needed: nothing to override)\n")
	}
	return gate, nil
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
