package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/relctl/relctl/playbooks"
)

// ErrForcedFailure is the failure a rehearsal injects: what follows it is
// the ordinary automatic rollback, the one production runs.
var ErrForcedFailure = errors.New("forced failure (rehearsal)")

// kindForcedFailure is the kind of the step a rehearsal adds.
const kindForcedFailure = "forced-failure"

// FailPoint is where a rehearsal makes a deploy fail: right after one step,
// or at the end of a phase (after its last step, before the next phase).
type FailPoint struct {
	Phase string `json:"phase"`
	Step  string `json:"step,omitempty"` // "phase/name"; empty: the end of Phase
}

func (f FailPoint) String() string {
	if f.Step != "" {
		return "after " + f.Step
	}
	return "end of " + f.Phase
}

// Clause words the point for "fail <clause>": "at the end of cutover",
// "after activate/restart".
func (f FailPoint) Clause() string { return FailClause(f.String()) }

// FailClause is Clause for a point already written as a String.
func FailClause(point string) string {
	if strings.HasPrefix(point, "after ") {
		return point
	}
	return "at the " + point
}

// RehearsalPhases are the phase boundaries `--fail-at all` fails at, in order:
// after the release is staged, switched, verified, and cut over.
var RehearsalPhases = []string{playbooks.PhaseStage, playbooks.PhaseActivate, playbooks.PhaseVerify, playbooks.PhaseCutover}

// DefaultFailPoint is the costliest place to fail: the release is active,
// verified and cut over on every host, just before the run completes.
var DefaultFailPoint = FailPoint{Phase: playbooks.PhaseCutover}

// ParseFailPoints turns --fail-at (a phase, a step "phase/name" of the
// plan, or "all") into fail points.
func ParseFailPoints(p *Plan, spec string) ([]FailPoint, error) {
	switch {
	case spec == "" || spec == playbooks.PhaseCutover:
		return []FailPoint{DefaultFailPoint}, nil
	case spec == "all":
		out := make([]FailPoint, len(RehearsalPhases))
		for i, ph := range RehearsalPhases {
			out[i] = FailPoint{Phase: ph}
		}
		return out, nil
	case slices.Contains(RehearsalPhases, spec) || spec == playbooks.PhasePost:
		return []FailPoint{{Phase: spec}}, nil
	case spec == playbooks.PhasePreflight:
		return nil, badInput("--fail-at preflight: a failure in preflight changes no host, so there is no rollback to rehearse (use stage, activate, verify, cutover, post, a step, or all)")
	}
	var ids []string
	for _, s := range lastBatchSteps(p) {
		if s.Phase == playbooks.PhasePreflight || s.Kind == kindForcedFailure {
			continue
		}
		if s.ID() == spec {
			return []FailPoint{{Phase: s.Phase, Step: spec}}, nil
		}
		ids = append(ids, s.ID())
	}
	return nil, badInput("--fail-at %q is neither a phase (%s, post), a step of playbook %s (%s), nor all",
		spec, strings.Join(RehearsalPhases, ", "), p.Playbook, strings.Join(ids, ", "))
}

func lastBatchSteps(p *Plan) []*Step {
	if len(p.Batches) == 0 || len(p.Batches[len(p.Batches)-1].Hosts) == 0 {
		return nil
	}
	return p.Batches[len(p.Batches)-1].Hosts[0].Steps
}

// InjectFailure adds a step that fails at the point to every host of the
// plan's last batch: by then every earlier batch has finished, so the
// rollback has to undo the whole fleet. Nothing else about the run changes.
func (p *Plan) InjectFailure(at FailPoint) error {
	if len(p.Batches) == 0 {
		return badInput("the plan has no hosts")
	}
	order := slices.Index(playbooks.Phases, at.Phase)
	if order <= 0 {
		return badInput("cannot fail at phase %q", at.Phase)
	}
	for _, hp := range p.Batches[len(p.Batches)-1].Hosts {
		pos := -1
		for i, s := range hp.Steps {
			if at.Step != "" && s.ID() == at.Step {
				pos = i + 1
			}
			if at.Step == "" && slices.Index(playbooks.Phases, s.Phase) <= order {
				pos = i + 1
			}
		}
		if pos < 0 {
			return badInput("host %s has no step %s", hp.Name, at.Step)
		}
		step := &Step{Phase: at.Phase, Name: kindForcedFailure, Kind: kindForcedFailure,
			Action:   forcedFailure{at: at},
			Describe: "rehearsal: fail here (" + at.String() + ") so the automatic rollback runs"}
		hp.Steps = slices.Insert(hp.Steps, pos, step)
	}
	return nil
}

type forcedFailure struct{ at FailPoint }

func (f forcedFailure) Do(context.Context, *hostRun) (string, error) {
	return "", fmt.Errorf("%w %s", ErrForcedFailure, f.at)
}

// ForcedFailureOnly says whether every step that failed in the run was the
// injected one: the release itself did not fail before the fail point.
func (r *Report) ForcedFailureOnly() bool {
	forced := false
	for _, h := range r.Hosts {
		for _, s := range h.Steps {
			if s.Status != StatusFailed {
				continue
			}
			if s.Kind != kindForcedFailure {
				return false
			}
			forced = true
		}
	}
	return forced
}

// FailpointEnv names the test hook that makes relctl itself fail inside one
// host's step, to prove such a bug is contained: "panic:HOST:STEP" panics in
// step STEP ("phase/name", rollback steps too) on HOST just before it runs;
// several points are separated by commas. Unset in normal use.
const FailpointEnv = "RELCTL_FAILPOINT"

// injectedPanic panics when FailpointEnv names this host and step.
func injectedPanic(host, step string) {
	for _, fp := range strings.Split(os.Getenv(FailpointEnv), ",") {
		if fp == "panic:"+host+":"+step {
			panic(fmt.Sprintf("%s=%s", FailpointEnv, fp))
		}
	}
}
