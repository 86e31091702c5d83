package deploy

import (
	"fmt"

	"github.com/relctl/relctl/playbooks"
)

// A feature adds relctl's own steps around the playbook's: each decides
// for itself whether the playbook uses it (as a goreleaser pipe decides to
// skip). A new supervisor or load-balancer provider is one feature here and
// one file.
type feature interface {
	// deploySteps adds the feature's steps to one host's deploy plan.
	deploySteps(p *Plan, hp *HostPlan, add *stepSlots) error
	// rollbackSteps adds them to one host of a rollback plan; switching
	// says the host moves to the target release (otherwise it is only
	// brought back into service on it).
	rollbackSteps(p *Plan, hp *HostPlan, switching bool, add *stepSlots) error
	// restoreSteps adds what brings a host back into service after the
	// automatic rollback switched current back, around the playbook's
	// [rollback] steps (phase "rollback").
	restoreSteps(p *Plan, hp *HostPlan, add *stepSlots) error
	// checkSteps adds the feature's read-only checks for `relctl check`;
	// candidate says a release to be deployed is checked too.
	checkSteps(p *Plan, hp *HostPlan, candidate bool, add *stepSlots) error
}

// features run in this order within each slot.
var features = []feature{readinessFeature{}, trafficFeature{}, watchdogFeature{}, pruneFeature{}}

// stepSlots collects the features' steps by phase: before and after the
// steps of the phase that are not the features' own.
type stepSlots struct{ first, last map[string][]*Step }

func newStepSlots() *stepSlots {
	return &stepSlots{first: map[string][]*Step{}, last: map[string][]*Step{}}
}

// before adds steps that open phase.
func (s *stepSlots) before(phase string, steps ...*Step) {
	s.first[phase] = append(s.first[phase], steps...)
}

// after adds steps that close phase.
func (s *stepSlots) after(phase string, steps ...*Step) {
	s.last[phase] = append(s.last[phase], steps...)
}

// around is phase's steps: the features' first, then core, then theirs last.
func (s *stepSlots) around(phase string, core []*Step) []*Step {
	out := append([]*Step{}, s.first[phase]...)
	out = append(out, core...)
	return append(out, s.last[phase]...)
}

// collect asks every feature for its steps.
func collect(each func(f feature, add *stepSlots) error) (*stepSlots, error) {
	slots := newStepSlots()
	for _, f := range features {
		if err := each(f, slots); err != nil {
			return nil, err
		}
	}
	return slots, nil
}

// pruneFeature closes every deploy with prune.
type pruneFeature struct{}

func (pruneFeature) deploySteps(p *Plan, _ *HostPlan, add *stepSlots) error {
	add.after(playbooks.PhasePost, &Step{
		Phase: playbooks.PhasePost, Name: kindPrune, Kind: kindPrune,
		Action:   &pruneAction{Keep: p.KeepReleases},
		Describe: fmt.Sprintf("keep at most %d releases (never the current, the previous or a rollback target)", p.KeepReleases),
	})
	return nil
}

func (pruneFeature) rollbackSteps(*Plan, *HostPlan, bool, *stepSlots) error { return nil }
func (pruneFeature) restoreSteps(*Plan, *HostPlan, *stepSlots) error        { return nil }
func (pruneFeature) checkSteps(*Plan, *HostPlan, bool, *stepSlots) error    { return nil }

// Pseudo-phases of feature slots: phaseRestore holds the steps around a
// rollback plan's conditional restore (restore-if-unhealthy); phaseCheck
// those of `relctl check`.
const (
	phaseRestore = "restore"
	phaseCheck   = "check"
)
