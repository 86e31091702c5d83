package deploy

import (
	"context"
	"fmt"
	"strings"

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

// buildSteps renders the playbook's steps for one host in phase order, with
// the rollback-readiness check closing preflight and prune closing post.
func buildSteps(pb *playbooks.Playbook, p *Plan, hp *HostPlan) ([]*Step, error) {
	var steps []*Step
	var trafficOff, trafficOn *Step
	if pb.Traffic != nil && p.trafficPerHost {
		var err error
		if trafficOff, trafficOn, err = trafficSteps(p, hp); err != nil {
			return nil, err
		}
	}
	for _, phase := range playbooks.Phases {
		// Out of the load balancer before anything is switched; back in
		// first thing at cutover, once watchdog and health checks passed.
		switch {
		case phase == playbooks.PhaseActivate && trafficOff != nil:
			steps = append(steps, trafficOff)
		case phase == playbooks.PhaseCutover && trafficOn != nil:
			steps = append(steps, trafficOn)
		}
		if phase == playbooks.PhaseActivate {
			// Out of monit's hands before relctl restarts the service itself.
			unmonitor, err := watchdogUnmonitorStep(p, hp, phase)
			if err != nil {
				return nil, badInput("host %s: watchdog: %v", hp.Name, err)
			}
			if unmonitor != nil {
				steps = append(steps, unmonitor)
			}
		}
		for _, s := range pb.StepsIn(phase) {
			step, err := buildStep(s, p, hp)
			if err != nil {
				return nil, err
			}
			steps = append(steps, step)
		}
		switch phase {
		case playbooks.PhaseStage, playbooks.PhaseActivate:
			if pb.Watchdog == nil {
				break
			}
			check, install, err := watchdogSteps(p, hp)
			if err != nil {
				return nil, badInput("host %s: watchdog: %v", hp.Name, err)
			}
			if phase == playbooks.PhaseStage {
				steps = append(steps, check)
			} else {
				steps = append(steps, install)
			}
		case playbooks.PhasePreflight:
			steps = append(steps, readinessStep(pb, ""))
			if t := pb.Traffic; t != nil && t.Provider == playbooks.TrafficHAProxy {
				spec, err := trafficSpecFor(p, hp)
				if err != nil {
					return nil, err
				}
				steps = append(steps, trafficPrecheck(spec))
			}
			if pb.Watchdog != nil && p.Artifact.SHA256 != strings.Repeat("0", 64) {
				// Every host, before any host changes: the candidate's snippet,
				// read from the local artifact, against each host's monit.
				steps = append(steps, &Step{Phase: playbooks.PhasePreflight, Name: "watchdog-precheck", Kind: kindWatchdogCheck,
					Action:   &candidateWatchdogCheck{plan: p},
					Describe: fmt.Sprintf("before any host changes: %s from the artifact, checked against this host's %s", pb.Watchdog.Snippet, pb.Watchdog.Kind)})
			}
		case playbooks.PhasePost:
			steps = append(steps, &Step{
				Phase: playbooks.PhasePost, Name: kindPrune, Kind: kindPrune,
				Action:   &pruneAction{Keep: p.KeepReleases},
				Describe: fmt.Sprintf("keep at most %d releases (never the current, the previous or a rollback target)", p.KeepReleases),
			})
		}
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

func readinessStep(pb *playbooks.Playbook, target string) *Step {
	what := "the current release"
	if target != "" {
		what = "release " + target
	}
	checks := "its directory and artifact sha256 match history"
	if len(pb.Rollback.Requires) > 0 {
		checks += "; " + strings.Join(pb.Rollback.Requires, ", ") + " present"
	}
	return &Step{
		Phase: playbooks.PhasePreflight, Name: kindReadiness, Kind: kindReadiness,
		Action:   &readinessAction{Target: target, Requires: pb.Rollback.Requires},
		Describe: fmt.Sprintf("check %s can be rolled back to: %s", what, checks),
	}
}

// restoreSteps are what brings a host back into service on version after
// `current` points at it again: the playbook's [rollback] steps, then every
// health check the playbook runs, rendered for version.
func (p *Plan) restoreSteps(hp *HostPlan, version string) ([]*Step, error) {
	data, err := p.proj.Data(p.pb, p.env, hp.host, version, p.RunID)
	if err != nil {
		return nil, err
	}
	restored := *hp
	restored.Data = data
	var steps []*Step
	// The [rollback] steps restart the service: monit must not race them.
	unmonitor, err := watchdogUnmonitorStep(p, &restored, "rollback")
	if err != nil {
		return nil, err
	}
	if unmonitor != nil {
		steps = append(steps, unmonitor)
	}
	for _, s := range p.pb.Rollback.Steps {
		rs := *s
		rs.Phase = "rollback"
		step, err := buildStep(&rs, p, &restored)
		if err != nil {
			return nil, err
		}
		steps = append(steps, step)
	}
	if p.pb.Watchdog != nil {
		// The old snippet is back (its undo ran first): monit gets the
		// service back, and relctl waits until it supervises the restored
		// release before its health is checked.
		supervised, err := watchdogSupervisedStep(p, &restored, "rollback")
		if err != nil {
			return nil, err
		}
		steps = append(steps, supervised)
	}
	checks, err := p.checkSteps(&restored, "rollback")
	if err != nil {
		return nil, err
	}
	return append(steps, checks...), nil
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
