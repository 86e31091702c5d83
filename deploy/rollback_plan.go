package deploy

import (
	"fmt"

	"github.com/relctl/relctl/playbooks"
)

// RollbackPlanOptions describe a rollback run (`relctl rollback`).
type RollbackPlanOptions struct {
	Env      string
	Playbook string
	RunID    string
	// Target is the release every host goes back to; From the one the fleet leaves.
	Target string
	From   string
	// Hosts limits the rollback to these hosts (all targeted hosts when empty).
	Hosts []string
	// ParallelAll puts every host in one batch, all at once (emergencies).
	ParallelAll bool
	// Current is each host's current release, as read from the hosts.
	Current map[string]string
}

// BuildRollbackPlan plans a rollback with the same step machinery as a
// deploy: preflight proves the target release is intact on every host, then
// (batch by batch, all at once with ParallelAll) current is switched back,
// the playbook's [rollback] steps bring the release into service, and the
// health checks run. Hosts already on the target are only health-checked.
// The batches are a deploy's: canary first, or, with [traffic], in reverse
// (reverseBatches).
func BuildRollbackPlan(proj *playbooks.Project, opts RollbackPlanOptions) (*Plan, error) {
	if err := playbooks.ValidateVersion(opts.Target); err != nil {
		return nil, badInput("release %q: %v", opts.Target, err)
	}
	env, pb, hosts, err := resolveTargets(proj, opts.Env, opts.Playbook, opts.Hosts)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		RunID: opts.RunID, Kind: KindRollback, From: opts.From,
		Project: proj.Config.Project, Env: env.Name, Version: opts.Target, Playbook: pb.Name,
		KeepReleases: pb.KeepReleases, MaxParallel: pb.Strategy.MaxParallel, Pause: pb.Strategy.Pause.Duration,
		proj: proj, pb: pb, env: env,
	}
	var hostPlans []*HostPlan
	for _, h := range hosts {
		hp, err := newHostPlan(p, h)
		if err != nil {
			return nil, err
		}
		hp.Steps = append(hp.Steps, readinessStep(pb, opts.Target))
		var restore []*Step
		for _, s := range pb.Rollback.Steps {
			rs := *s
			rs.Phase = playbooks.PhaseActivate
			step, err := buildStep(&rs, p, hp)
			if err != nil {
				return nil, err
			}
			restore = append(restore, step)
		}
		checks, err := p.checkSteps(hp, playbooks.PhaseVerify)
		if err != nil {
			return nil, err
		}
		if opts.Current[h.Name] != opts.Target && pb.Watchdog != nil {
			// The target's watchdog config is checked before any host switches.
			check, _, err := watchdogSteps(p, hp)
			if err != nil {
				return nil, badInput("host %s: watchdog: %v", hp.Name, err)
			}
			check.Phase = playbooks.PhasePreflight
			hp.Steps = append(hp.Steps, check)
		}
		// The [rollback] steps restart the service: out of monit's hands
		// first, back in them once they are done (nil without monit).
		unmonitor, err := watchdogUnmonitorStep(p, hp, playbooks.PhaseActivate)
		if err != nil {
			return nil, badInput("host %s: watchdog: %v", hp.Name, err)
		}
		var trafficOn *Step
		if opts.Current[h.Name] != opts.Target && pb.Traffic != nil {
			var off *Step
			if off, trafficOn, err = trafficSteps(p, hp); err != nil {
				return nil, err
			}
			hp.Steps = append(hp.Steps, off)
		}
		if opts.Current[h.Name] != opts.Target {
			if unmonitor != nil {
				hp.Steps = append(hp.Steps, unmonitor) // watchdog-install hands it back
			}
			hp.Steps = append(hp.Steps, &Step{
				Phase: playbooks.PhaseActivate, Name: "activate", Kind: playbooks.StepActivate,
				Action:   &activateAction{Version: opts.Target, Kind: KindRollback},
				Describe: fmt.Sprintf("switch %s -> releases/%s (from %s) atomically; append to .relctl/history.json", hp.Layout.Current(), opts.Target, orNone(opts.Current[h.Name])),
			})
			hp.Steps = append(hp.Steps, restore...)
			if pb.Watchdog != nil {
				// Going back to a release means going back to its watchdog config.
				_, install, err := watchdogSteps(p, hp)
				if err != nil {
					return nil, badInput("host %s: watchdog: %v", hp.Name, err)
				}
				hp.Steps = append(hp.Steps, install)
			}
		} else {
			if len(restore) > 0 {
				// Already on the target, but maybe not serving it (a rollback that
				// switched current and then failed): restore only if unhealthy.
				if unmonitor != nil {
					restore = append([]*Step{unmonitor}, restore...)
				}
				hp.Steps = append(hp.Steps, &Step{
					Phase: playbooks.PhaseActivate, Name: "restore-if-unhealthy", Kind: kindRestoreIfUnhealthy,
					Action:   &restoreIfUnhealthyAction{checks: checks, restore: restore},
					Describe: fmt.Sprintf("already on %s: probe its health once; if unhealthy, run the [rollback] steps", opts.Target),
				})
			}
			if unmonitor != nil {
				// monit gets the service back: after the restore above, or
				// after a rollback that stopped between its unmonitor and
				// its watchdog-install.
				supervised, err := watchdogSupervisedStep(p, hp, playbooks.PhaseActivate)
				if err != nil {
					return nil, badInput("host %s: watchdog: %v", hp.Name, err)
				}
				hp.Steps = append(hp.Steps, supervised)
			}
		}
		hp.Steps = append(hp.Steps, checks...)
		if trafficOn != nil {
			hp.Steps = append(hp.Steps, trafficOn)
		} else if t := pb.Traffic; t != nil && t.Provider == playbooks.TrafficHAProxy {
			// Already on the target: an earlier run may have left it out of
			// the load balancers; once healthy it goes back as it was.
			spec, err := trafficSpecFor(p, hp)
			if err != nil {
				return nil, err
			}
			hp.Steps = append(hp.Steps, &Step{Phase: playbooks.PhaseCutover, Name: "traffic-pending", Kind: kindTrafficOn,
				Action: &pendingTrafficAction{spec: spec}, Describe: "put the host back in the load balancers if an earlier run left it out (.relctl/traffic.json)"})
		}
		hostPlans = append(hostPlans, hp)
	}
	strategy := pb.Strategy
	if opts.ParallelAll {
		strategy = playbooks.Strategy{Canary: 0, BatchSize: int64(len(hostPlans))}
		p.MaxParallel, p.Pause = len(hostPlans), 0
	}
	if p.Batches, err = batchHosts(hostPlans, strategy); err != nil {
		return nil, err
	}
	if pb.Traffic != nil && !opts.ParallelAll {
		p.Batches = reverseBatches(p.Batches)
	}
	return p, nil
}

// reverseBatches is the rollback order with [traffic]: a deploy's batches,
// the last first and the canary last. The hosts a failed or interrupted
// deploy left out of the load balancer (its latest batch) come back in
// before the ones still serving leave it, as in the automatic rollback.
func reverseBatches(batches []*Batch) []*Batch {
	out := make([]*Batch, len(batches))
	for i, b := range batches {
		out[len(batches)-1-i] = &Batch{Hosts: b.Hosts}
	}
	for i, b := range out {
		b.Index = i + 1
	}
	return out
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}
