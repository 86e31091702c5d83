package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/shellquote"
	"path"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/traffic"
)

// Step kinds of the [traffic] cutover.
const (
	kindTrafficOff     = "traffic-off"
	kindTrafficOn      = "traffic-on"
	kindTrafficRestore = "traffic-restore"
)

// errRestoredLater: an undo that happens after the rollback's health
// checks, not in the reverse walk (traffic back to a restored release).
var errRestoredLater = errors.New("restored once the host is healthy again")

// drainPoll is how often a draining server's sessions are read.
const drainPoll = 200 * time.Millisecond

// trafficSpec says where one host's traffic is switched: its server on
// every load balancer (haproxy), or its disable/enable commands.
type trafficSpec struct {
	provider        string
	lbs             []trafficLB
	backend, server string
	drainTimeout    time.Duration
	disable, enable string
}

type trafficLB struct {
	name   string
	target transport.Target
	socket string
}

// newTrafficSpec renders [traffic] for one target host.
func newTrafficSpec(p *Plan, hp *HostPlan) (*trafficSpec, error) {
	t := p.pb.Traffic
	spec := &trafficSpec{provider: t.Provider, drainTimeout: t.DrainTimeout.Duration}
	if spec.drainTimeout == 0 {
		spec.drainTimeout = playbooks.DefaultDrainTimeout
	}
	var err error
	if t.Provider == playbooks.TrafficCommand {
		if spec.disable, err = playbooks.RenderCommand("traffic.disable", t.Disable, hp.Data); err != nil {
			return nil, err
		}
		spec.enable, err = playbooks.RenderCommand("traffic.enable", t.Enable, hp.Data)
		return spec, err
	}
	// The playbook renders and refuses these, as `relctl validate` does.
	if spec.server, err = p.pb.TrafficServer(hp.Data); err != nil {
		return nil, err
	}
	if spec.backend, err = p.pb.TrafficBackend(hp.Data); err != nil {
		return nil, err
	}
	lbs := p.env.HostsWithRole(t.LBRole)
	if len(lbs) == 0 {
		return nil, fmt.Errorf("traffic.lb_role %q has no hosts in environment %s", t.LBRole, p.env.Name)
	}
	for _, lb := range lbs {
		data, err := p.proj.HostData(p.pb, p.env, lb)
		if err != nil {
			return nil, err
		}
		socket, err := p.pb.TrafficSocket(data)
		if err != nil {
			return nil, fmt.Errorf("load balancer %s: %w", lb.Name, err)
		}
		spec.lbs = append(spec.lbs, trafficLB{name: lb.Name, socket: socket,
			target: fleet.Target(p.proj.Config, lb)})
	}
	return spec, nil
}

func (s *trafficSpec) describe() string {
	if s.provider == playbooks.TrafficCommand {
		return "the host's disable / enable commands"
	}
	names := make([]string, len(s.lbs))
	for i, lb := range s.lbs {
		names[i] = lb.name
	}
	return fmt.Sprintf("server %s/%s on %s", s.backend, s.server, strings.Join(names, ", "))
}

func trafficSpecFor(p *Plan, hp *HostPlan) (*trafficSpec, error) {
	spec, err := newTrafficSpec(p, hp)
	if err != nil {
		return nil, badInput("host %s: traffic: %v", hp.Name, err)
	}
	return spec, nil
}

// trafficSteps are the implicit steps of a playbook with [traffic]: off
// first thing in activate, on first thing in cutover.
func trafficSteps(p *Plan, hp *HostPlan) (off, on *Step, err error) {
	spec, err := trafficSpecFor(p, hp)
	if err != nil {
		return nil, nil, err
	}
	ts := &trafficState{spec: spec, saved: map[string]traffic.Server{}}
	off = &Step{Phase: playbooks.PhaseActivate, Name: kindTrafficOff, Kind: kindTrafficOff, Action: &trafficOffAction{ts: ts},
		Describe: fmt.Sprintf("take the host out of the load balancer before switching: %s; record its state and weight, drain (up to %s), maint", spec.describe(), spec.drainTimeout)}
	if spec.provider == playbooks.TrafficCommand {
		off.Describe = "take the host out of the load balancer before switching: " + spec.disable
	}
	on = &Step{Phase: playbooks.PhaseCutover, Name: kindTrafficOn, Kind: kindTrafficOn, Action: &trafficOnAction{ts: ts},
		Describe: "after the checks passed: put the host back as it was (" + spec.describe() + ": recorded state and weight)"}
	if spec.provider == playbooks.TrafficCommand {
		on.Describe = "after the checks passed: " + spec.enable
	}
	return off, on, nil
}

// trafficPrecheck is a preflight step: before any host changes, every load
// balancer is reachable and knows the host's server, so a typo in a server
// name or a dead LB is found before a release is installed anywhere.
func trafficPrecheck(spec *trafficSpec) *Step {
	return &Step{Phase: playbooks.PhasePreflight, Name: "traffic-precheck", Kind: "traffic-precheck",
		Action:   &trafficPrecheckAction{spec: spec},
		Describe: "before any host changes: " + spec.describe() + " exists and answers"}
}

type trafficPrecheckAction struct{ spec *trafficSpec }

func (a *trafficPrecheckAction) Do(ctx context.Context, h *hostRun) (string, error) {
	s := a.spec
	var parts []string
	for _, lb := range s.lbs {
		rt, err := h.runtime(ctx, lb)
		if err != nil {
			return "", err
		}
		srv, err := rt.Server(ctx, s.backend, s.server)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s: %s/%s %s weight %d, %s", lb.name, s.backend, srv.Name, srv.Admin, srv.Weight, srv.Check))
	}
	return strings.Join(parts, "; "), nil
}

// trafficState is what the run changed about a host's traffic: the undo
// state its traffic steps share.
type trafficState struct {
	spec *trafficSpec
	// started: a traffic step of this run worked on the host (it may have
	// changed its server).
	started bool
	// saved is each load balancer's server as it was before the run.
	saved map[string]traffic.Server
	// off: the host was taken out by this run and is not back in yet.
	off bool
}

// trafficHolder is a step that knows the host's trafficState: the rollback
// orders its waves by it.
type trafficHolder interface{ traffic() *trafficState }

// trafficOf is what the run changed about the host's traffic (nil when its
// plan has no traffic step or none started).
func trafficOf(hp *HostPlan) *trafficState {
	for _, s := range hp.Steps {
		if t, ok := s.Action.(trafficHolder); ok && t.traffic() != nil && t.traffic().started {
			return t.traffic()
		}
	}
	return nil
}

func (h *hostRun) runtime(ctx context.Context, lb trafficLB) (*traffic.Runtime, error) {
	conn, err := h.engine.Connector.Get(ctx, lb.target)
	if err != nil {
		return nil, fmt.Errorf("load balancer %s: %w", lb.name, err)
	}
	return &traffic.Runtime{Conn: conn, Host: lb.name, Socket: lb.socket}, nil
}

// trafficOffAction records the host's server on every load balancer, then
// drains it and sets maint; or runs the disable command.
type trafficOffAction struct{ ts *trafficState }

func (a *trafficOffAction) traffic() *trafficState { return a.ts }

func (a *trafficOffAction) Do(ctx context.Context, h *hostRun) (string, error) {
	t := a.ts
	s := t.spec
	t.started = true
	if s.provider == playbooks.TrafficCommand {
		t.off = true // even a failed disable may have taken it out halfway
		if _, err := h.conn.Run(ctx, s.disable, transport.RunOptions{Label: "traffic/disable", Limit: transport.CommandLimit}); err != nil {
			return "", err
		}
		return "disabled", nil
	}
	var pending *trafficRecord
	if len(t.saved) == 0 {
		// A run that died (or failed to restore) after taking the host out
		// left what it saved on the host: that is still the state to go
		// back to, not the maint it left behind - unless someone has
		// changed the server since (then what is there now counts).
		var err error
		if pending, err = readTrafficFile(ctx, h); err != nil {
			return "", err
		}
	}
	var parts []string
	for _, lb := range s.lbs {
		part, err := a.takeOut(ctx, h, lb, pending)
		if err != nil {
			return "", err
		}
		parts = append(parts, part...)
	}
	return strings.Join(parts, "; "), nil
}

// takeOut records the host's server on one load balancer (once), then
// drains it and sets maint.
func (a *trafficOffAction) takeOut(ctx context.Context, h *hostRun, lb trafficLB, pending *trafficRecord) ([]string, error) {
	t, s := a.ts, a.ts.spec
	rt, err := h.runtime(ctx, lb)
	if err != nil {
		return nil, err
	}
	var parts []string
	if _, done := t.saved[lb.name]; !done {
		srv, err := rt.Server(ctx, s.backend, s.server)
		if err != nil {
			return nil, err
		}
		if old, ok := pending.server(lb.name); ok && srv.Admin == traffic.AdminMaint {
			parts = append(parts, fmt.Sprintf("%s: kept the state saved by run %s, which did not put the host back", lb.name, pending.RunID))
			srv = &old
		}
		t.saved[lb.name] = *srv
	}
	// Written whenever the host goes out, so a run that dies from here on
	// leaves the state to go back to on the host.
	if err := writeTrafficFile(ctx, h, t); err != nil {
		return nil, err
	}
	t.off = true
	saved := t.saved[lb.name]
	err = rt.Drain(ctx, s.backend, s.server, s.drainTimeout, drainPoll)
	var timeout *traffic.DrainTimeoutError
	switch {
	case errors.As(err, &timeout):
		// Sessions that outlive drain_timeout keep running (HAProxy does
		// not cut them); no new one arrives. Proceed, and say so.
		h.engine.logEvent(h.host.Name, "%v", err)
		return append(parts, fmt.Sprintf("%s: was %s weight %d; drain timed out with %d sessions left, maint", lb.name, saved.Admin, saved.Weight, timeout.Sessions)), nil
	case err != nil:
		return nil, err
	}
	return append(parts, fmt.Sprintf("%s: was %s weight %d; drained, maint", lb.name, saved.Admin, saved.Weight)), nil
}

// Undo is deferred: traffic comes back once the restored release passed
// its health checks (UndoWhenHealthy).
func (a *trafficOffAction) Undo(context.Context, *hostRun) (string, error) {
	return "", errRestoredLater
}

func (a *trafficOffAction) lateUndo() (string, string) {
	if a.ts.started && a.ts.off {
		return kindTrafficRestore, "left out of the load balancer"
	}
	return kindTrafficRestore, ""
}

// UndoWhenHealthy puts the host back in the load balancers as it was, once
// its restored release is healthy.
func (a *trafficOffAction) UndoWhenHealthy(ctx context.Context, h *hostRun) (string, error) {
	return putTrafficBack(ctx, h, a.ts)
}

// trafficOnAction puts the host back as recorded; its undo takes it out
// again - and if that fails, the host stays as it is (still serving), not
// switched back under traffic.
type trafficOnAction struct{ ts *trafficState }

func (a *trafficOnAction) traffic() *trafficState { return a.ts }

func (a *trafficOnAction) Do(ctx context.Context, h *hostRun) (string, error) {
	return putTrafficBack(ctx, h, a.ts)
}

func (a *trafficOnAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	if !a.ts.started {
		return "", errNoUndo
	}
	detail, err := (&trafficOffAction{ts: a.ts}).Do(ctx, h)
	if err != nil {
		return "", &stillServingError{err}
	}
	return "out again before switching back: " + detail, nil
}

// stillServingError: an undo could not take the host out of the load
// balancer, so switching it back now would serve a half-switched host. The
// rollback leaves the host as it is, and reports it.
type stillServingError struct{ err error }

func (e *stillServingError) Error() string {
	return e.err.Error() + " (it could not be taken out of the load balancer, so it was not switched back: it may still be serving)"
}

func (e *stillServingError) Unwrap() error { return e.err }

// putTrafficBack restores every load balancer's server exactly as saved
// (state and weight), or runs the enable command.
func putTrafficBack(ctx context.Context, h *hostRun, t *trafficState) (string, error) {
	if !t.started {
		return "", errNoUndo
	}
	s := t.spec
	if s.provider == playbooks.TrafficCommand {
		if _, err := h.conn.Run(ctx, s.enable, transport.RunOptions{Label: "traffic/enable", Limit: transport.CommandLimit}); err != nil {
			return "", err
		}
		t.off = false
		return "enabled", nil
	}
	var parts []string
	var wait []*traffic.Runtime
	var errs []error
	for _, lb := range s.lbs {
		saved, ok := t.saved[lb.name]
		if !ok {
			continue // never read there: never changed there
		}
		rt, err := h.runtime(ctx, lb)
		if err == nil {
			err = rt.Restore(ctx, saved)
		}
		if err != nil {
			errs = append(errs, err) // the other LBs are still restored
			continue
		}
		if saved.Admin == traffic.AdminReady && strings.HasPrefix(saved.Check, "UP") {
			wait = append(wait, rt)
		}
		parts = append(parts, fmt.Sprintf("%s: %s weight %d", lb.name, saved.Admin, saved.Weight))
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	// Back in everywhere: the next batch may leave only once HAProxy's
	// checks see this one up again.
	for _, rt := range wait {
		if err := waitServing(ctx, rt, s.backend, s.server, serveTimeout(s.drainTimeout)); err != nil {
			return "", err
		}
	}
	if _, err := h.conn.Run(ctx, "rm -f -- "+shellquote.Quote(trafficFile(h)), transport.RunOptions{Label: "traffic/forget"}); err != nil {
		return "", err
	}
	t.off = false
	return "as before the run: " + strings.Join(parts, "; "), nil
}

// trafficRecord is <base_dir>/.relctl/traffic.json: the host's servers as
// they were before a run took it out of the load balancers, until that run
// (or the one after it) puts it back.
type trafficRecord struct {
	RunID   string                    `json:"run_id"`
	Servers map[string]traffic.Server `json:"servers"` // by LB host
}

func (r *trafficRecord) server(lb string) (traffic.Server, bool) {
	if r == nil {
		return traffic.Server{}, false
	}
	s, ok := r.Servers[lb]
	return s, ok
}

// pendingTrafficAction puts back a host that an earlier run took out of the
// load balancers and never put back (its .relctl/traffic.json), for hosts a
// rollback run does not switch; nothing when there is none.
type pendingTrafficAction struct{ ts *trafficState }

func (a *pendingTrafficAction) traffic() *trafficState { return a.ts }

func (a *pendingTrafficAction) Do(ctx context.Context, h *hostRun) (string, error) {
	pending, err := readTrafficFile(ctx, h)
	if err != nil || pending == nil {
		return "nothing pending", err
	}
	t := a.ts
	t.started, t.off = true, true
	for _, lb := range t.spec.lbs {
		old, ok := pending.server(lb.name)
		if !ok {
			continue
		}
		rt, err := h.runtime(ctx, lb)
		if err != nil {
			return "", err
		}
		cur, err := rt.Server(ctx, t.spec.backend, t.spec.server)
		if err != nil {
			return "", err
		}
		if cur.Admin != traffic.AdminMaint {
			continue // changed by someone since: left as it is
		}
		t.saved[lb.name] = old
	}
	detail, err := putTrafficBack(ctx, h, t)
	if err != nil {
		return "", err
	}
	return "left out by run " + pending.RunID + "; " + detail, nil
}

func trafficFile(h *hostRun) string { return path.Join(h.host.Layout.StateDir(), "traffic.json") }

func readTrafficFile(ctx context.Context, h *hostRun) (*trafficRecord, error) {
	f, err := fleet.ReadFile(ctx, h.conn, trafficFile(h), "")
	if err != nil || !f.Present {
		return nil, err
	}
	return parseTrafficRecord(trafficFile(h), f.Body)
}

// parseTrafficRecord reads traffic.json's bytes (p names it in errors).
func parseTrafficRecord(p string, body []byte) (*trafficRecord, error) {
	var rec trafficRecord
	if err := state.DecodeJSONFile(p, body, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

func writeTrafficFile(ctx context.Context, h *hostRun, t *trafficState) error {
	body, err := json.MarshalIndent(trafficRecord{RunID: h.plan.RunID, Servers: t.saved}, "", "  ")
	if err != nil {
		return err
	}
	return fleet.WriteFile(ctx, h.conn, append(body, '\n'), trafficFile(h), 0o644)
}

// serveTimeout bounds the wait for HAProxy's checks to see a server up.
func serveTimeout(drain time.Duration) time.Duration { return max(drain, 30*time.Second) }

// waitServing waits until HAProxy's own health checks see the server up
// (a server without checks counts as up once ready).
func waitServing(ctx context.Context, rt *traffic.Runtime, backend, server string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s, err := rt.Server(ctx, backend, server)
		if err != nil {
			return err
		}
		if strings.HasPrefix(s.Check, "UP") || s.Check == "no check" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: haproxy %s/%s is ready but its checks still say %q after %s: not sending traffic to it alone", rt.Host, backend, server, s.Check, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(drainPoll):
		}
	}
}

// trafficFeature takes each host out of the load balancer before it
// switches and puts it back once its checks passed ([traffic]); with
// HAProxy, preflight first checks every load balancer knows the host.
type trafficFeature struct{}

func (trafficFeature) deploySteps(p *Plan, hp *HostPlan, add *stepSlots) error {
	if p.pb.Traffic == nil {
		return nil
	}
	if p.pb.Traffic.Provider == playbooks.TrafficHAProxy {
		spec, err := trafficSpecFor(p, hp)
		if err != nil {
			return err
		}
		add.after(playbooks.PhasePreflight, trafficPrecheck(spec))
	}
	// A move switches traffic once, for all hosts (its own steps).
	if !p.trafficPerHost {
		return nil
	}
	off, on, err := trafficSteps(p, hp)
	if err != nil {
		return err
	}
	// Out of the load balancer before anything is switched; back in first
	// thing at cutover, once watchdog and health checks passed.
	add.before(playbooks.PhaseActivate, off)
	add.before(playbooks.PhaseCutover, on)
	return nil
}

func (trafficFeature) rollbackSteps(p *Plan, hp *HostPlan, switching bool, add *stepSlots) error {
	t := p.pb.Traffic
	switch {
	case t == nil:
	case switching:
		off, on, err := trafficSteps(p, hp)
		if err != nil {
			return err
		}
		add.before(playbooks.PhaseActivate, off)
		add.before(playbooks.PhaseCutover, on)
	case t.Provider == playbooks.TrafficHAProxy:
		// Already on the target: an earlier run may have left it out of
		// the load balancers; once healthy it goes back as it was.
		spec, err := trafficSpecFor(p, hp)
		if err != nil {
			return err
		}
		add.before(playbooks.PhaseCutover, &Step{Phase: playbooks.PhaseCutover, Name: "traffic-pending", Kind: kindTrafficOn,
			Action:   &pendingTrafficAction{ts: &trafficState{spec: spec, saved: map[string]traffic.Server{}}},
			Describe: "put the host back in the load balancers if an earlier run left it out (.relctl/traffic.json)"})
	}
	return nil
}

// restoreSteps: none; traffic comes back as the traffic-off step's late
// undo, once the restored release is healthy.
func (trafficFeature) restoreSteps(*Plan, *HostPlan, *stepSlots) error     { return nil }
func (trafficFeature) checkSteps(*Plan, *HostPlan, bool, *stepSlots) error { return nil }
