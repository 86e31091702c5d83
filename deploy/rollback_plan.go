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
		if hp.Steps, err = p.rollbackHostSteps(hp, opts.Current[h.Name]); err != nil {
			return nil, err
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

// rollbackHostSteps are one host's steps in a rollback plan: a host not on
// the target switches to it (activate, then the [rollback] steps); a host
// already on it only has its [rollback] steps run if it is unhealthy; then
// every health check. The features add theirs around these (readiness of
// the target, traffic, watchdog).
func (p *Plan) rollbackHostSteps(hp *HostPlan, current string) ([]*Step, error) {
	switching := current != p.Version
	slots, err := collect(func(f feature, add *stepSlots) error { return f.rollbackSteps(p, hp, switching, add) })
	if err != nil {
		return nil, err
	}
	restore, err := p.rollbackSteps(hp, playbooks.PhaseActivate)
	if err != nil {
		return nil, err
	}
	checks, err := p.checkSteps(hp, playbooks.PhaseVerify)
	if err != nil {
		return nil, err
	}
	var activate []*Step
	switch {
	case switching:
		activate = append([]*Step{{
			Phase: playbooks.PhaseActivate, Name: "activate", Kind: playbooks.StepActivate,
			Action:   &activateAction{Version: p.Version, Kind: KindRollback},
			Describe: fmt.Sprintf("switch %s -> releases/%s (from %s) atomically; append to .relctl/history.json", hp.Layout.Current(), p.Version, orNone(current)),
		}}, restore...)
	case len(restore) > 0:
		// Already on the target, but maybe not serving it (a rollback that
		// switched current and then failed): restore only if unhealthy.
		activate = []*Step{{
			Phase: playbooks.PhaseActivate, Name: "restore-if-unhealthy", Kind: kindRestoreIfUnhealthy,
			Action:   &restoreIfUnhealthyAction{checks: checks, restore: slots.around(phaseRestore, restore)},
			Describe: fmt.Sprintf("already on %s: probe its health once; if unhealthy, run the [rollback] steps", p.Version),
		}}
	}
	core := map[string][]*Step{playbooks.PhaseActivate: activate, playbooks.PhaseVerify: checks}
	var steps []*Step
	for _, phase := range playbooks.Phases {
		steps = append(steps, slots.around(phase, core[phase])...)
	}
	return steps, nil
}
