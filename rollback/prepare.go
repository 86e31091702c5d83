package rollback

import (
	"context"
	"fmt"
	"strings"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/hostlist"
	"github.com/relctl/relctl/playbooks"
)

// Request is what `relctl rollback` is asked for.
type Request struct {
	Env      string
	To       string // "prev" or a version
	Playbook string
	Hosts    []string
	// ParallelAll: every host in one batch, no canary (emergencies).
	ParallelAll bool
	RunID       string
}

// Prepared is a rollback ready to run: its plan (a move back when the
// environment's newest change is a host move not yet finalized), and what
// it was decided from.
type Prepared struct {
	Plan *deploy.Plan
	// Move is the move a move back undoes (nil for a release rollback).
	Move *deploy.MoveRecord
	// Fleet, Target and From: the hosts as read, the release they go back
	// to and the one they leave (release rollbacks).
	Fleet        *Fleet
	Target, From string
}

// Prepare makes a rollback's decisions once, reading the hosts and
// changing nothing: a host move not yet finalized whose run is the newest
// on its new hosts is moved back (--to prev); otherwise every host is read
// (all must answer, and with --to prev all histories must be readable),
// the target release resolved and checked against the rehearsal gate, and
// a rollback plan built.
func Prepare(ctx context.Context, conn deploy.Connector, proj *playbooks.Project, req Request) (*Prepared, error) {
	if move, err := moveToUndo(ctx, conn, proj, req); err != nil || move != nil {
		if err != nil {
			return nil, err
		}
		p, err := deploy.BuildMovePlan(proj, deploy.MoveRunOptions{Env: req.Env, Playbook: move.Playbook, RunID: req.RunID, Kind: deploy.KindMoveBack, Record: move})
		if err != nil {
			return nil, err
		}
		return &Prepared{Plan: p, Move: move}, nil
	}
	fleet, target, from, err := resolveTarget(ctx, conn, proj, req)
	if err != nil {
		return nil, err
	}
	p, err := deploy.BuildRollbackPlan(proj, deploy.RollbackPlanOptions{
		Env: req.Env, Playbook: req.Playbook, RunID: req.RunID, Target: target, From: from,
		Hosts: req.Hosts, ParallelAll: req.ParallelAll, Current: fleet.Current(),
	})
	if err != nil {
		return nil, err
	}
	return &Prepared{Plan: p, Fleet: fleet, Target: target, From: from}, nil
}

// moveToUndo is the host move that --to prev moves back: one cut over (or
// cutting over) whose run is the newest activation on its new hosts.
func moveToUndo(ctx context.Context, conn deploy.Connector, proj *playbooks.Project, req Request) (*deploy.MoveRecord, error) {
	// A record that cannot be read fails the rollback whatever --to says:
	// it may say the move is what a rollback must undo.
	move, err := deploy.ReadMoveRecords(ctx, conn, proj, req.Env, req.Playbook)
	if err != nil || move == nil || req.To != "prev" {
		return nil, err
	}
	if move.State != deploy.MoveCutOver && move.State != deploy.MoveCuttingOver {
		return nil, nil
	}
	// After a later release of the new hosts, --to prev rolls that back.
	fleet, err := ReadFleet(ctx, conn, proj, req.Env, move.Playbook, nil, proj.Config.SSH.MaxParallel)
	if err == nil && !fleet.NewestRunIs(move.RunID) {
		return nil, nil
	}
	return move, nil
}

// resolveTarget reads the fleet and resolves --to into the release to go
// back to (target) and the one it leaves (from).
func resolveTarget(ctx context.Context, conn deploy.Connector, proj *playbooks.Project, req Request) (_ *Fleet, target, from string, _ error) {
	fleet, err := ReadFleet(ctx, conn, proj, req.Env, req.Playbook, req.Hosts, proj.Config.SSH.MaxParallel)
	if err != nil {
		return nil, "", "", err
	}
	refuse := func(err error) error {
		return &deploy.Failure{Phase: "preflight", Report: &deploy.Report{Kind: deploy.KindRollback, Env: req.Env, Version: req.To}, Err: err}
	}
	if bad := fleet.Unreachable(); len(bad) > 0 {
		return nil, "", "", refuse(fmt.Errorf("cannot read every host (leave dead ones out with --hosts):\n  %s", strings.Join(bad, "\n  ")))
	}
	if bad := fleet.Unreadable(); req.To == "prev" && len(bad) > 0 {
		// Their histories may hold the newest release: guessing could
		// send the others one release too far back.
		return nil, "", "", refuse(fmt.Errorf("cannot work out the fleet's previous release while %s cannot be read: name the release with --to VERSION", hostlist.Compress(bad)))
	}
	if target, from, err = fleet.Resolve(req.To); err != nil {
		return nil, "", "", err
	}
	if e, _ := proj.Environment(req.Env); e != nil {
		if err := fleet.CheckGatedTarget(e, target); err != nil {
			return nil, "", "", err
		}
	}
	return fleet, target, from, nil
}
