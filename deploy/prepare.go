package deploy

import (
	"context"

	"github.com/relctl/relctl/playbooks"
)

// PrepareOptions are what a deploy is asked to do, and how the decisions
// that depend on the hosts are made.
type PrepareOptions struct {
	Plan PlanOptions
	// Connector reads the hosts (the move record); the run uses the same
	// connections afterwards.
	Connector Connector
	// Gate applies the environment's rehearsal gate to the plan (nil: none).
	Gate func(ctx context.Context, p *Plan) (GateDecision, error)
	// Resume is the interrupted deploy this one finishes (nil: a new one).
	Resume *ResumePoint
	// Notice tells the operator what was decided and why (may be nil).
	Notice func(format string, args ...any)
}

// ResumePoint is an interrupted deploy to finish: its run, its release,
// and the hosts it had finished.
type ResumePoint struct {
	RunID   string
	Release string
	Skip    map[string]bool
}

// Prepared is a deploy ready to run: its plan, never changed afterwards,
// and the run's decisions.
type Prepared struct {
	Plan *Plan
	Run  RunOptions
	// Move is the playbook's move record as read from the new hosts (nil
	// when the playbook has no [move] or no host has a record).
	Move *MoveRecord
}

// Prepare makes a deploy's decisions once, before anything changes: which
// release (a resumed run's), whether the playbook's [move] is still to do,
// cut over already (then only the new hosts are released) or to be
// finished from an unfinished cutover, and what the rehearsal gate says.
func Prepare(ctx context.Context, proj *playbooks.Project, opts PrepareOptions) (*Prepared, error) {
	notice := opts.Notice
	if notice == nil {
		notice = func(string, ...any) {}
	}
	po := opts.Plan
	out := &Prepared{}
	if r := opts.Resume; r != nil {
		po.Version = r.Release
		out.Run = RunOptions{Skip: r.Skip, ResumeRun: r.RunID, TakeOverStaleLocks: true}
	}
	p, err := BuildPlan(proj, po)
	if err != nil {
		return nil, err
	}
	if p.Move != nil {
		if out.Move, err = ReadMoveRecords(ctx, opts.Connector, proj, po.Env, p.Playbook); err != nil {
			return nil, err
		}
		if rebuild := decideMove(out.Move, &po, notice); rebuild {
			if p, err = BuildPlan(proj, po); err != nil {
				return nil, err
			}
		}
	}
	if opts.Gate != nil {
		if out.Run.Gate, err = opts.Gate(ctx, p); err != nil {
			return nil, err
		}
	}
	out.Plan = p
	return out, nil
}

// decideMove sets po from the move record: a move already cut over (or
// finalized) makes the deploy a release of the new hosts, not another
// move; an unfinished one is finished with the states it saved. It says
// whether the plan must be built again.
func decideMove(rec *MoveRecord, po *PlanOptions, notice func(string, ...any)) bool {
	if rec == nil {
		return false
	}
	switch rec.State {
	case MoveCutOver, MoveFinalized:
		notice("The move of %s by run %s is %s: deploying to the new hosts only", rec.Playbook, rec.RunID, rec.State)
		po.MoveDone = true
		return true
	case MoveCuttingOver:
		notice("The move of %s by run %s did not finish: this deploy finishes it, keeping the states it saved", rec.Playbook, rec.RunID)
		po.MoveResume = rec
		return true
	}
	return false
}

// VerbMoveBack is Plan.Verb of a move back.
const VerbMoveBack = "move back"

// Verb says what kind of run a plan is, for a person: KindDeploy,
// KindRollback, VerbMoveBack or KindFinalize. (A move back's Kind is
// KindRollback: locks and history see a rollback.)
func (p *Plan) Verb() string {
	if p.UndoAfter {
		return VerbMoveBack
	}
	return p.Kind
}
