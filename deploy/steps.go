package deploy

import (
	"context"
	"fmt"

	"github.com/relctl/relctl/playbooks"
)

// Action is what a step does on one host. Do returns a short detail for the
// report ("1.0.0 -> 1.1.0", "already present, sha256 ok").
type Action interface {
	Do(ctx context.Context, h *hostRun) (detail string, err error)
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

// buildSteps renders the playbook's steps for one host in phase order and
// appends the implicit prune step.
func buildSteps(pb *playbooks.Playbook, p *Plan, hp *HostPlan) ([]*Step, error) {
	var steps []*Step
	for _, phase := range playbooks.Phases {
		for _, s := range pb.StepsIn(phase) {
			build, ok := stepKinds[s.Kind]
			if !ok {
				return nil, badInput("%s: step %q: unknown kind %q", pb.Path, s.Name, s.Kind)
			}
			action, describe, err := build(s, p, hp)
			if err != nil {
				return nil, badInput("host %s: step %s/%s: %v", hp.Name, s.Phase, s.Name, err)
			}
			steps = append(steps, &Step{Phase: s.Phase, Name: s.Name, Kind: s.Kind, Action: action, Describe: describe})
		}
	}
	steps = append(steps, &Step{
		Phase: playbooks.PhasePost, Name: "prune", Kind: "prune",
		Action:   &pruneAction{Keep: p.KeepReleases},
		Describe: fmt.Sprintf("keep at most %d releases (never the current, the previous or a rollback target)", p.KeepReleases),
	})
	return steps, nil
}
