package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
			target: transport.Target{Name: lb.Name, Address: lb.Address, User: firstNonEmpty(lb.User, p.proj.Config.SSH.User)}})
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
	off = &Step{Phase: playbooks.PhaseActivate, Name: kindTrafficOff, Kind: kindTrafficOff, Action: &trafficOffAction{spec: spec},
		Describe: fmt.Sprintf("take the host out of the load balancer before switching: %s; record its state and weight, drain (up to %s), maint", spec.describe(), spec.drainTimeout)}
	if spec.provider == playbooks.TrafficCommand {
		off.Describe = "take the host out of the load balancer before switching: " + spec.disable
	}
	on = &Step{Phase: playbooks.PhaseCutover, Name: kindTrafficOn, Kind: kindTrafficOn, Action: &trafficOnAction{spec: spec},
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

// trafficState is what the run changed about a host's traffic.
type trafficState struct {
	spec *trafficSpec
	// saved is each load balancer's server as it was before the run.
	saved map[string]traffic.Server
	// off: the host was taken out by this run and is not back in yet.
	off bool
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
type trafficOffAction struct{ spec *trafficSpec }

func (a *trafficOffAction) Do(ctx context.Context, h *hostRun) (string, error) {
	s := a.spec
	if h.traffic == nil {
		h.traffic = &trafficState{spec: s, saved: map[string]traffic.Server{}}
	}
	if s.provider == playbooks.TrafficCommand {
		h.traffic.off = true // even a failed disable may have taken it out halfway
		if _, err := h.conn.Run(ctx, s.disable, transport.RunOptions{Label: "traffic/disable", Limit: transport.CommandLimit}); err != nil {
			return "", err
		}
		return "disabled", nil
	}
	var parts []string
	var pending *trafficRecord
	if len(h.traffic.saved) == 0 {
		// A run that died (or failed to restore) after taking the host out
		// left what it saved on the host: that is still the state to go
		// back to, not the maint it left behind - unless someone has
		// changed the server since (then what is there now counts).
		var err error
		if pending, err = readTrafficFile(ctx, h); err != nil {
			return "", err
		}
	}
	for _, lb := range s.lbs {
		rt, err := h.runtime(ctx, lb)
		if err != nil {
			return "", err
		}
		if _, done := h.traffic.saved[lb.name]; !done {
			srv, err := rt.Server(ctx, s.backend, s.server)
			if err != nil {
				return "", err
			}
			if old, ok := pending.server(lb.name); ok && srv.Admin == traffic.AdminMaint {
				parts = append(parts, fmt.Sprintf("%s: kept the state saved by run %s, which did not put the host back", lb.name, pending.RunID))
				srv = &old
			}
			h.traffic.saved[lb.name] = *srv
		}
		// Written whenever the host goes out, so a run that dies from here
		// on leaves the state to go back to on the host.
		if err := writeTrafficFile(ctx, h); err != nil {
			return "", err
		}
		h.traffic.off = true
		saved := h.traffic.saved[lb.name]
		err = rt.Drain(ctx, s.backend, s.server, s.drainTimeout, drainPoll)
		var timeout *traffic.DrainTimeoutError
		switch {
		case errors.As(err, &timeout):
			// Sessions that outlive drain_timeout keep running (HAProxy does
			// not cut them); no new one arrives. Proceed, and say so.
			parts = append(parts, fmt.Sprintf("%s: was %s weight %d; drain timed out with %d sessions left, maint", lb.name, saved.Admin, saved.Weight, timeout.Sessions))
			h.engine.logEvent(h.host.Name, "%v", err)
		case err != nil:
			return "", err
		default:
			parts = append(parts, fmt.Sprintf("%s: was %s weight %d; drained, maint", lb.name, saved.Admin, saved.Weight))
		}
	}
	return strings.Join(parts, "; "), nil
}

// Undo is deferred: traffic comes back once the restored release passed
// its health checks (hostRun.restoreTraffic).
func (a *trafficOffAction) Undo(context.Context, *hostRun) (string, error) {
	return "", errRestoredLater
}

// trafficOnAction puts the host back as recorded; its undo takes it out again.
type trafficOnAction struct{ spec *trafficSpec }

func (a *trafficOnAction) Do(ctx context.Context, h *hostRun) (string, error) {
	detail, err := h.putTrafficBack(ctx)
	if err == nil && h.traffic != nil {
		h.traffic.off = false
	}
	return detail, err
}

func (a *trafficOnAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	if h.traffic == nil {
		return "", errNoUndo
	}
	off := &trafficOffAction{spec: a.spec}
	detail, err := off.Do(ctx, h)
	if err != nil {
		return "", err
	}
	return "out again before switching back: " + detail, nil
}

// putTrafficBack restores every load balancer's server exactly as saved
// (state and weight), or runs the enable command.
func (h *hostRun) putTrafficBack(ctx context.Context) (string, error) {
	t := h.traffic
	if t == nil {
		return "", errNoUndo
	}
	s := t.spec
	if s.provider == playbooks.TrafficCommand {
		if _, err := h.conn.Run(ctx, s.enable, transport.RunOptions{Label: "traffic/enable", Limit: transport.CommandLimit}); err != nil {
			return "", err
		}
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
	if _, err := h.conn.Run(ctx, "rm -f -- "+transport.ShellQuote(trafficFile(h)), transport.RunOptions{Label: "traffic/forget"}); err != nil {
		return "", err
	}
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
type pendingTrafficAction struct{ spec *trafficSpec }

func (a *pendingTrafficAction) Do(ctx context.Context, h *hostRun) (string, error) {
	pending, err := readTrafficFile(ctx, h)
	if err != nil || pending == nil {
		return "nothing pending", err
	}
	h.traffic = &trafficState{spec: a.spec, saved: map[string]traffic.Server{}, off: true}
	for _, lb := range a.spec.lbs {
		old, ok := pending.server(lb.name)
		if !ok {
			continue
		}
		rt, err := h.runtime(ctx, lb)
		if err != nil {
			return "", err
		}
		cur, err := rt.Server(ctx, a.spec.backend, a.spec.server)
		if err != nil {
			return "", err
		}
		if cur.Admin != traffic.AdminMaint {
			continue // changed by someone since: left as it is
		}
		h.traffic.saved[lb.name] = old
	}
	detail, err := h.putTrafficBack(ctx)
	if err != nil {
		return "", err
	}
	h.traffic.off = false
	return "left out by run " + pending.RunID + "; " + detail, nil
}

func trafficFile(h *hostRun) string { return path.Join(h.host.Layout.StateDir(), "traffic.json") }

func readTrafficFile(ctx context.Context, h *hostRun) (*trafficRecord, error) {
	f, err := readRemoteFile(ctx, h.conn, trafficFile(h), "")
	if err != nil || !f.present {
		return nil, err
	}
	return parseTrafficRecord(trafficFile(h), f.body)
}

// parseTrafficRecord reads traffic.json's bytes (p names it in errors).
func parseTrafficRecord(p string, body []byte) (*trafficRecord, error) {
	var rec trafficRecord
	if err := state.DecodeJSONFile(p, body, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

func writeTrafficFile(ctx context.Context, h *hostRun) error {
	body, err := json.MarshalIndent(trafficRecord{RunID: h.plan.RunID, Servers: h.traffic.saved}, "", "  ")
	if err != nil {
		return err
	}
	return upload(ctx, h.conn, append(body, '\n'), trafficFile(h), 0o644)
}

// restoreTraffic is the rollback's last step on a host this run took out of
// the load balancer, once its restored release is healthy.
func (h *hostRun) restoreTraffic(ctx context.Context) error {
	if h.traffic == nil || !h.traffic.off {
		return nil
	}
	step := &Step{Phase: "rollback", Name: kindTrafficRestore, Kind: kindTrafficRestore}
	err := h.rollbackStep(ctx, step, func(ctx context.Context, h *hostRun) (string, error) { return h.putTrafficBack(ctx) })
	if err == nil {
		h.traffic.off = false
	}
	return err
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
