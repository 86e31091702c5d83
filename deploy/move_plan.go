package deploy

import (
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"io/fs"
	"strings"
	"text/template"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Roles of the hosts a move's steps run on.
const (
	RoleLB        = "load balancer"
	RoleNewHosts  = "new hosts"
	RoleDependent = "dependent"
	RoleOldHost   = "old host"
)

// moveRender is [move] rendered for the environment: the state its steps
// share, and what each step needs.
type moveRender struct {
	summary MoveSummary
	state   *moveState
	lbs     []trafficLB
	groups  [][]*dependentHost // dependents, in restart batches
	old     []oldHost
}

// oldHost is an old host of the move, as finalize retires it.
type oldHost struct {
	name   string
	target transport.Target
	retire string        // rendered move.retire ("" without one)
	layout *state.Layout // nil when its release layout is unknown
	server string
}

// renderMove renders [move] for the plan's new hosts. rec is the record the
// move starts from: a cutover's unfinished one (its saved states are kept),
// or the one a move back or finalize acts on; nil for a new move.
func renderMove(p *Plan, newHosts []*HostPlan, rec *MoveRecord) (*moveRender, error) {
	mv := p.pb.Move
	oldHosts := p.env.HostsWithRole(mv.FromRole)
	if len(oldHosts) == 0 {
		return nil, badInput("move.from_role %q has no hosts in environment %s", mv.FromRole, p.env.Name)
	}
	m := &moveRender{summary: MoveSummary{FromRole: mv.FromRole}}
	st := &moveState{servers: map[string]string{}, newHosts: newHosts}
	m.state = st
	st.record = MoveRecord{RunID: p.RunID, Playbook: p.Playbook, Release: p.Version, FromRole: mv.FromRole,
		NewHosts: hostNames(newHosts), State: MoveCuttingOver}
	for _, h := range oldHosts {
		o, err := renderOldHost(p, h)
		if err != nil {
			return nil, err
		}
		st.servers[h.Name] = o.server
		m.old = append(m.old, o)
		m.summary.OldHosts = append(m.summary.OldHosts, h.Name)
	}
	st.record.OldHosts = m.summary.OldHosts
	for _, hp := range newHosts {
		var err error
		if st.servers[hp.Name], err = trafficServer(p, hp.host); err != nil {
			return nil, badInput("host %s: %v", hp.Name, err)
		}
	}
	if p.pb.Traffic != nil {
		spec, err := newTrafficSpec(p, newHosts[0])
		if err != nil {
			return nil, badInput("traffic: %v", err)
		}
		m.lbs, st.backend, st.drain = spec.lbs, spec.backend, spec.drainTimeout
	}
	if err := m.renderDependents(p, newHosts); err != nil {
		return nil, err
	}
	switch {
	case rec != nil && p.Kind == KindDeploy:
		// An unfinished cutover: what it saved is still what was there
		// before, and what it may have changed is this run's to undo too.
		st.record.Servers, st.record.Dependents = rec.Servers, rec.Dependents
		p.afterResumed, st.inherited = true, true
		st.changed = len(rec.Servers) > 0 || len(rec.Dependents) > 0
	case rec != nil:
		st.record = *rec
		st.changed, st.inherited = true, true
	}
	return m, nil
}

// trafficServer is the host's server in the [traffic] backend ("" without [traffic]).
func trafficServer(p *Plan, h *playbooks.Host) (string, error) {
	if p.pb.Traffic == nil {
		return "", nil
	}
	data, err := p.proj.HostData(p.pb, p.env, h)
	if err != nil {
		return "", err
	}
	return p.pb.TrafficServer(data)
}

func renderOldHost(p *Plan, h *playbooks.Host) (oldHost, error) {
	o := oldHost{name: h.Name, target: fleet.Target(p.proj.Config, h)}
	if l, err := fleet.Layout(p.proj, p.pb, p.env, h); err == nil {
		o.layout = &l
	}
	var err error
	if o.server, err = trafficServer(p, h); err != nil {
		return o, badInput("host %s: %v", h.Name, err)
	}
	if retire := p.pb.Move.Retire; retire != "" {
		data, err := p.proj.HostData(p.pb, p.env, h)
		if err != nil {
			return o, badInput("%v", err)
		}
		if o.retire, err = playbooks.RenderCommand("move.retire", retire, data); err != nil {
			return o, badInput("host %s: %v", h.Name, err)
		}
	}
	return o, nil
}

// renderDependents renders each dependent's new config, restart command and
// checks, in restart batches.
func (m *moveRender) renderDependents(p *Plan, newHosts []*HostPlan) error {
	hosts := make([]playbooks.MovedHost, 0, len(newHosts))
	for _, hp := range newHosts {
		hosts = append(hosts, playbooks.MovedHost{Name: hp.Name, Address: hp.Address, Vars: hp.Data.Vars})
	}
	for i, d := range p.pb.Move.Dependents {
		tmpl, err := p.pb.DependentTemplate(d)
		var unread *fs.PathError
		switch {
		case errors.As(err, &unread):
			return badInput("%s: move.dependents.%d.template: %v", p.pb.Where(fmt.Sprintf("move.dependents.%d.template", i)), i, err)
		case err != nil:
			return badInput("move.dependents.%d.template %s: %v", i, d.Template, err)
		}
		deps := p.env.HostsWithRole(d.Role)
		if len(deps) == 0 {
			return badInput("move.dependents.%d.role %q has no hosts in environment %s", i, d.Role, p.env.Name)
		}
		size := max(d.BatchSize, 1)
		var batch []*dependentHost
		for _, h := range deps {
			dh, err := renderDependent(p, d, h, tmpl, hosts)
			if err != nil {
				return badInput("host %s: move.dependents.%d: %v", h.Name, i, err)
			}
			m.summary.Dependents = append(m.summary.Dependents, h.Name)
			if batch = append(batch, dh); len(batch) == size {
				m.groups, batch = append(m.groups, batch), nil
			}
		}
		if len(batch) > 0 {
			m.groups = append(m.groups, batch)
		}
	}
	return nil
}

func renderDependent(p *Plan, d *playbooks.Dependent, h *playbooks.Host, tmpl *template.Template, hosts []playbooks.MovedHost) (*dependentHost, error) {
	data, err := p.proj.HostData(p.pb, p.env, h)
	if err != nil {
		return nil, err
	}
	dh := &dependentHost{name: h.Name, target: fleet.Target(p.proj.Config, h)}
	if dh.config, err = playbooks.RenderText("move.dependents.config", d.Config, data); err != nil {
		return nil, err
	}
	if dh.restart, err = playbooks.RenderCommand("move.dependents.restart", d.Restart, data); err != nil {
		return nil, err
	}
	if dh.content, err = playbooks.RenderDependentConfig(tmpl, hosts, data, p.Version); err != nil {
		return nil, fmt.Errorf("template %s: %w", d.Template, err)
	}
	for _, name := range d.Checks {
		spec, err := RenderCheck(p.pb.Checks[name], data)
		if err != nil {
			return nil, err
		}
		dh.checks = append(dh.checks, spec)
	}
	return dh, nil
}

// moveStep is a move's step on host; describe says what it does, and,
// after a "\nundo: ", what its undo does.
func moveStep(host, role string, target transport.Target, name, kind string, action Action, describe string) *HostStep {
	do, undo, _ := strings.Cut(describe, "\nundo: ")
	return &HostStep{Host: host, Role: role, Target: target,
		Step: &Step{Phase: "move", Name: name, Kind: kind, Action: action, Describe: do, Undo: undo}}
}

// cutoverSteps are a move's steps after the last batch: every load
// balancer's servers saved, the record opened, each load balancer cut over
// to the new hosts, then each dependent reconfigured and restarted, batch
// by batch; the record then says cut-over. The old hosts are not touched.
func (m *moveRender) cutoverSteps() []*HostStep {
	st := m.state
	newHosts := strings.Join(st.record.NewHosts, ", ")
	all := strings.Join(append(append([]string{}, st.record.OldHosts...), st.record.NewHosts...), ", ")
	var steps []*HostStep
	for _, lb := range m.lbs {
		steps = append(steps, moveStep(lb.name, RoleLB, lb.target, "lb-save", kindMoveSave, &lbSaveAction{lbStep{m: st, lb: lb}},
			fmt.Sprintf("record the servers of %s (%s) in backend %s as they are: state and weight", all, lb.name, st.backend)))
	}
	steps = append(steps, moveStep(RoleNewHosts, RoleNewHosts, transport.Target{}, "record", kindMoveRecord,
		&openMoveAction{moveRecordAction{m: st, state: MoveCuttingOver}},
		fmt.Sprintf("write .relctl/move.json on %s: %s, with the saved states\nundo: %s, once everything after it is back", newHosts, MoveCuttingOver, MoveMovedBack)))
	for _, lb := range m.lbs {
		steps = append(steps, moveStep(lb.name, RoleLB, lb.target, "lb-cutover", kindMoveCutover, &lbCutoverAction{lbStep: lbStep{m: st, lb: lb}},
			fmt.Sprintf("new servers ready, wait until HAProxy sees them up; then drain the old ones (up to %s) and maint\nundo: lb-back: every server as recorded, the old ones first", st.drain)))
	}
	for _, batch := range m.groups {
		for _, d := range batch {
			steps = append(steps, moveStep(d.name, RoleDependent, d.target, "config", kindMoveConfig, &depConfigAction{m: st, d: d},
				fmt.Sprintf("write %s naming the new hosts (%d bytes), keeping the old one beside it\nundo: config-back: the old config back, restart, health checks", d.config, len(d.content))))
		}
		for _, d := range batch {
			steps = append(steps, moveStep(d.name, RoleDependent, d.target, "restart", kindMoveRestart, &depRestartAction{d: d}, d.describeRestart()))
		}
	}
	return append(steps, moveStep(RoleNewHosts, RoleNewHosts, transport.Target{}, "record-cut-over", kindMoveRecord,
		&moveRecordAction{m: st, state: MoveCutOver}, fmt.Sprintf("write .relctl/move.json on %s: %s", newHosts, MoveCutOver)))
}

func (d *dependentHost) describeRestart() string {
	out := "run: " + d.restart
	if len(d.checks) > 0 {
		names := make([]string, len(d.checks))
		for i, c := range d.checks {
			names[i] = c.Name
		}
		out += "; then health checks " + strings.Join(names, ", ")
	}
	return out
}

// finalizeSteps retire the old hosts once the move is checked to carry the
// traffic: out of every load balancer for good (maint), then each one's
// retire command and current removed; the record says finalized.
func (m *moveRender) finalizeSteps() []*HostStep {
	st := m.state
	newHosts := strings.Join(st.record.NewHosts, ", ")
	steps := []*HostStep{moveStep(RoleNewHosts, RoleNewHosts, transport.Target{}, "check-release", kindMoveCheck, &movedReleaseCheck{m: st},
		fmt.Sprintf("before anything changes: %s all run one release", newHosts))}
	for _, lb := range m.lbs {
		steps = append(steps, moveStep(lb.name, RoleLB, lb.target, "lb-check", kindMoveCheck, &lbServingCheck{lbStep{m: st, lb: lb}},
			"before anything changes: every new server ready and up"))
	}
	for _, lb := range m.lbs {
		steps = append(steps, moveStep(lb.name, RoleLB, lb.target, "lb-retire", kindMoveLBRetire, &lbRetireAction{lbStep{m: st, lb: lb}},
			fmt.Sprintf("old servers (%s) in maint for good", strings.Join(st.record.OldHosts, ", "))))
	}
	for _, o := range m.old {
		if o.retire == "" && o.layout == nil {
			continue
		}
		describe := "remove current; history says retired"
		if o.retire != "" {
			describe = "run: " + o.retire
			if o.layout != nil {
				describe += "; then remove current; history says retired"
			}
		}
		steps = append(steps, moveStep(o.name, RoleOldHost, o.target, "retire", kindMoveRetire, &retireAction{m: st, command: o.retire, layout: o.layout}, describe))
	}
	return append(steps, moveStep(RoleNewHosts, RoleNewHosts, transport.Target{}, "record", kindMoveRecord,
		&moveRecordAction{m: st, state: MoveFinalized, history: true}, fmt.Sprintf("write .relctl/move.json on %s: %s", newHosts, MoveFinalized)))
}
