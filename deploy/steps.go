package deploy

import (
	"context"

	"github.com/relctl/relctl/playbooks"
)

// Action is what a step does on one host. Do returns a short detail for the
// report ("1.0.0 -> 1.1.0", "already present, sha256 ok").
type Action interface {
	Do(ctx context.Context, h *hostRun) (detail string, err error)
}

// Undoer is an Action the automatic rollback can reverse. Undo must be safe
// on a step that failed midway.
type Undoer interface {
	Undo(ctx context.Context, h *hostRun) (detail string, err error)
}

// stepBuilder makes a step's Action (and its plan description) for one host.
type stepBuilder func(s *playbooks.Step, p *Plan, hp *HostPlan) (Action, string, error)

// stepKinds is the registry of step kinds: one file per kind, one line here.
var stepKinds = map[string]stepBuilder{
	playbooks.StepRun:      buildRunStep,
	playbooks.StepUpload:   buildUploadStep,
	playbooks.StepActivate: buildActivateStep,
	playbooks.StepCheck:    buildCheckStep,
}

// Implicit steps relctl adds to every deploy (and, with [traffic],
// traffic-off first in activate and traffic-on first in cutover).
const (
	kindReadiness = "rollback-ready"
	kindPrune     = "prune"
)

// buildSteps renders one host's deploy steps in phase order: in each
// phase, the playbook's steps with the features' around them (readiness,
// traffic, watchdog, prune: features.go).
func buildSteps(pb *playbooks.Playbook, p *Plan, hp *HostPlan) ([]*Step, error) {
	slots, err := collect(func(f feature, add *stepSlots) error { return f.deploySteps(p, hp, add) })
	if err != nil {
		return nil, err
	}
	var steps []*Step
	for _, phase := range playbooks.Phases {
		var core []*Step
		for _, s := range pb.StepsIn(phase) {
			step, err := buildStep(s, p, hp)
			if err != nil {
				return nil, err
			}
			core = append(core, step)
		}
		steps = append(steps, slots.around(phase, core)...)
	}
	return steps, nil
}

func buildStep(s *playbooks.Step, p *Plan, hp *HostPlan) (*Step, error) {
	build, ok := stepKinds[s.Kind]
	if !ok {
		return nil, badInput("%s: step %q: unknown kind %q", p.pb.Where("steps"), s.Name, s.Kind)
	}
	action, describe, err := build(s, p, hp)
	if err != nil {
		return nil, badInput("host %s: step %s/%s: %v", hp.Name, s.Phase, s.Name, err)
	}
	return &Step{Phase: s.Phase, Name: s.Name, Kind: s.Kind, Action: action, Describe: describe}, nil
}

// phaseRollback is the phase of the automatic rollback's steps.
const phaseRollback = "rollback"

// restoreSteps are what brings a host back into service on version after
// `current` points at it again: the playbook's [rollback] steps with the
// features' around them, then every health check the playbook runs,
// rendered for version.
func (p *Plan) restoreSteps(hp *HostPlan, version string) ([]*Step, error) {
	data, err := p.proj.Data(p.pb, p.env, hp.host, version, p.RunID)
	if err != nil {
		return nil, err
	}
	restored := *hp
	restored.Data = data
	slots, err := collect(func(f feature, add *stepSlots) error { return f.restoreSteps(p, &restored, add) })
	if err != nil {
		return nil, err
	}
	core, err := p.rollbackSteps(&restored, phaseRollback)
	if err != nil {
		return nil, err
	}
	checks, err := p.checkSteps(&restored, phaseRollback)
	if err != nil {
		return nil, err
	}
	return append(slots.around(phaseRollback, core), checks...), nil
}

// rollbackSteps renders the playbook's [rollback] steps for hp, under phase.
func (p *Plan) rollbackSteps(hp *HostPlan, phase string) ([]*Step, error) {
	var steps []*Step
	for _, s := range p.pb.Rollback.Steps {
		rs := *s
		rs.Phase = phase
		step, err := buildStep(&rs, p, hp)
		if err != nil {
			return nil, err
		}
		steps = append(steps, step)
	}
	return steps, nil
}

// checkSteps renders every check step of the playbook (any phase) for hp,
// under phase.
func (p *Plan) checkSteps(hp *HostPlan, phase string) ([]*Step, error) {
	var steps []*Step
	for _, ph := range playbooks.Phases {
		for _, s := range p.pb.StepsIn(ph) {
			if s.Kind != playbooks.StepCheck {
				continue
			}
			cs := *s
			cs.Phase = phase
			step, err := buildStep(&cs, p, hp)
			if err != nil {
				return nil, err
			}
			steps = append(steps, step)
		}
	}
	return steps, nil
}
