package deploy

import (
	"context"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/shellquote"
	"path"
	"time"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/traffic"
)

// Move states, as the move record on the new hosts says. A record says
// cutting-over from before the first change until the last dependent
// passed its checks.
const (
	MoveCuttingOver = "cutting-over"
	MoveCutOver     = "cut-over"
	MoveMovedBack   = "moved-back"
	MoveFinalized   = "finalized"
)

// ErrMoveState: finalize or move back found the move in another state.
var ErrMoveState = errors.New("move is not in the expected state")

// MoveSummary is what `relctl plan` shows of a move.
type MoveSummary struct {
	FromRole   string   `json:"from_role"`
	OldHosts   []string `json:"old_hosts"`
	Dependents []string `json:"dependents"`
}

// MoveRecord is kept on every new host (<base_dir>/.relctl/move.json): what
// the move changed, so it can be undone (or finalized) from any machine.
type MoveRecord struct {
	RunID      string            `json:"run_id"`
	Playbook   string            `json:"playbook"`
	Release    string            `json:"release"`
	FromRole   string            `json:"from_role"`
	OldHosts   []string          `json:"old_hosts"`
	NewHosts   []string          `json:"new_hosts"`
	State      string            `json:"state"`
	Time       time.Time         `json:"time"`
	Servers    []MovedServer     `json:"servers,omitempty"`
	Dependents []MovedDependent  `json:"dependents,omitempty"`
	History    map[string]string `json:"history,omitempty"` // state -> run id that set it
}

// MovedServer is a load balancer server as it was before the move.
type MovedServer struct {
	LB    string         `json:"lb"`
	Saved traffic.Server `json:"saved"`
}

// MovedDependent is a dependent's config as it was before the move; Copy is
// where the host keeps those bytes.
type MovedDependent struct {
	Host    string `json:"host"`
	Config  string `json:"config"`
	Existed bool   `json:"existed"`
	Mode    uint32 `json:"mode"`
	Copy    string `json:"copy"`
}

// MoveRecordPath is the move record on a host.
func MoveRecordPath(l state.Layout) string { return path.Join(l.StateDir(), "move.json") }

// ReadMoveRecord reads a host's move record (nil when there is none). A
// record that cannot be read or is corrupt is an error naming the file.
func ReadMoveRecord(ctx context.Context, conn transport.Conn, l state.Layout) (*MoveRecord, error) {
	f, err := fleet.ReadFile(ctx, conn, MoveRecordPath(l), "")
	if err != nil || !f.Present {
		return nil, err
	}
	return parseMoveRecord(MoveRecordPath(l), f.Body)
}

// parseMoveRecord reads move.json's bytes (p names it in errors): a JSON
// object with a release and a state relctl writes.
func parseMoveRecord(p string, body []byte) (*MoveRecord, error) {
	var rec MoveRecord
	if err := state.DecodeJSONFile(p, body, &rec); err != nil {
		return nil, err
	}
	corrupt := func(problem string) error {
		return &state.StateError{Path: p, Problem: problem,
			Fix: "fix or restore it (keep a copy first: cp " + shellquote.Quote(p) + " " + shellquote.Quote(p+".broken") + "), then re-run"}
	}
	switch rec.State {
	case MoveCuttingOver, MoveCutOver, MoveMovedBack, MoveFinalized:
	default:
		return nil, corrupt(fmt.Sprintf(": unknown move state %q", rec.State))
	}
	if rec.Release == "" {
		return nil, corrupt(": no release")
	}
	return &rec, nil
}

// MoveRunOptions select a run that acts on a past move: move back (a
// rollback before finalize) or finalize.
type MoveRunOptions struct {
	Env      string
	Playbook string
	RunID    string
	// Kind is KindMoveBack or KindFinalize.
	Kind   string
	Record *MoveRecord
}

// Kinds of run on a move.
const (
	KindMoveBack = "move-back"
	KindFinalize = "finalize"
)

// BuildMovePlan plans a move-back or a finalize. The new hosts are locked
// and read (nothing else runs on them); the work is the steps after the
// batches: for a move back, the cutover's steps undone in reverse (the
// reverse walk of the automatic rollback), from what the record saved; for
// a finalize, the old hosts retired.
func BuildMovePlan(proj *playbooks.Project, opts MoveRunOptions) (*Plan, error) {
	env, pb, hosts, err := resolveTargets(proj, opts.Env, opts.Playbook, nil)
	if err != nil {
		return nil, err
	}
	if pb.Move == nil {
		return nil, badInput("playbook %s has no [move]", pb.Name)
	}
	rec := opts.Record
	p := &Plan{RunID: opts.RunID, Kind: KindRollback, Project: proj.Config.Project, Env: env.Name, Version: rec.Release, From: rec.Release,
		Playbook: pb.Name, proj: proj, pb: pb, env: env}
	switch opts.Kind {
	case KindMoveBack:
		if rec.State != MoveCutOver && rec.State != MoveCuttingOver {
			return nil, fmt.Errorf("%w: the move by run %s is %s: nothing to move back", ErrMoveState, rec.RunID, rec.State)
		}
		p.UndoAfter = true
	case KindFinalize:
		if rec.State != MoveCutOver {
			return nil, fmt.Errorf("%w: the move by run %s is %s, not %s: only a move that is cut over can be finalized", ErrMoveState, rec.RunID, rec.State, MoveCutOver)
		}
		p.Kind = KindFinalize
	default:
		return nil, badInput("unknown move run kind %q", opts.Kind)
	}
	var hostPlans []*HostPlan
	for _, h := range hosts {
		hp, err := newHostPlan(p, h)
		if err != nil {
			return nil, err
		}
		hostPlans = append(hostPlans, hp)
	}
	mv, err := renderMove(p, hostPlans, rec)
	if err != nil {
		return nil, err
	}
	p.Move = &mv.summary
	if opts.Kind == KindFinalize {
		p.After = mv.finalizeSteps()
	} else {
		p.After = mv.cutoverSteps()
	}
	p.Batches = []*Batch{{Index: 1, Hosts: hostPlans}}
	return p, nil
}

// ReadMoveRecords reads the move record of every new host of a move
// playbook (ssh.max_parallel at once) and returns the newest one (by time).
// A host whose record cannot be trusted (unreadable, corrupt, an answer
// that is not the read script's) fails the read: its record may be the
// newest, so no other host's record decides.
func ReadMoveRecords(ctx context.Context, conn Connector, proj *playbooks.Project, env, playbook string) (*MoveRecord, error) {
	e, pb, _, err := resolveTargets(proj, env, playbook, nil)
	if err != nil {
		return nil, err
	}
	if pb.Move == nil {
		return nil, nil
	}
	hosts := fleet.Hosts(proj, pb, e)
	recs, errs := fleet.Read(ctx, conn, hosts, proj.Config.SSH.MaxParallel, func(ctx context.Context, h fleet.Host, c transport.Conn) (*MoveRecord, error) {
		rec, err := ReadMoveRecord(ctx, c, h.Layout)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		return rec, nil
	})
	var newest *MoveRecord
	var bad []error
	for i, rec := range recs {
		if err := errs[i]; errors.Is(err, state.ErrHostState) || errors.Is(err, state.ErrHostOutput) {
			bad = append(bad, err)
		}
		if rec != nil && (newest == nil || rec.Time.After(newest.Time) || (rec.Time.Equal(newest.Time) && len(rec.History) > len(newest.History))) {
			newest = rec
		}
	}
	if err := fleet.Join(bad); err != nil {
		return nil, err
	}
	if newest == nil {
		return nil, fleet.Join(errs)
	}
	return newest, nil
}
