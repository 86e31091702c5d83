package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/relctl/relctl/healthcheck"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/traffic"
)

// Move states, as the move record on the new hosts says. A record says
// cutting-over from before the first change until the last dependent
// passed its checks.
const (
	MoveCuttingOver = "cutting-over"
	MoveCutOver     = "cut-over"
	MoveMovedBack   = "moved-back"
	MoveFinalized   = "finalized"
)

// ErrMoveState: finalize or move back found the move in another state.
var ErrMoveState = errors.New("move is not in the expected state")

// MoveSummary is what `relctl plan` shows of a move.
type MoveSummary struct {
	FromRole   string   `json:"from_role"`
	OldHosts   []string `json:"old_hosts"`
	Dependents []string `json:"dependents"`
}

// MoveRecord is kept on every new host (<base_dir>/.relctl/move.json): what
// the move changed, so it can be undone (or finalized) from any machine.
type MoveRecord struct {
	RunID      string            `json:"run_id"`
	Playbook   string            `json:"playbook"`
	Release    string            `json:"release"`
	FromRole   string            `json:"from_role"`
	OldHosts   []string          `json:"old_hosts"`
	NewHosts   []string          `json:"new_hosts"`
	State      string            `json:"state"`
	Time       time.Time         `json:"time"`
	Servers    []MovedServer     `json:"servers,omitempty"`
	Dependents []MovedDependent  `json:"dependents,omitempty"`
	History    map[string]string `json:"history,omitempty"` // state -> run id that set it
}

// MovedServer is a load balancer server as it was before the move.
type MovedServer struct {
	LB    string         `json:"lb"`
	Saved traffic.Server `json:"saved"`
}

// MovedDependent is a dependent's config as it was before the move; Copy is
// where the host keeps those bytes.
type MovedDependent struct {
	Host    string `json:"host"`
	Config  string `json:"config"`
	Existed bool   `json:"existed"`
	Mode    uint32 `json:"mode"`
	Copy    string `json:"copy"`
}

// movePlan is a move's run-level work, computed with the plan.
type movePlan struct {
	summary   MoveSummary
	oldHosts  []*playbooks.Host
	servers   map[string]string // host name -> its server in the backend
	lbs       []trafficLB
	backend   string
	drain     time.Duration
	groups    [][]*dependentHost // dependents, in restart batches
	retire    map[string]string  // old host -> rendered retire command
	oldTarget map[string]transport.Target
	oldLayout map[string]state.Layout // old hosts whose release layout is known
	// back: move the traffic and dependents back (a rollback run);
	// finalize: retire the old hosts; resume: a cutover that did not finish,
	// whose saved states are still the ones to go back to.
	back, finalize, resume *MoveRecord
}

type dependentHost struct {
	name    string
	target  transport.Target
	config  string
	content []byte
	restart string
	checks  []healthcheck.Spec
}

// newMovePlan renders [move] for the environment: old hosts, the servers of
// old and new hosts in the backend, and each dependent's new config.
func newMovePlan(p *Plan, newHosts []*HostPlan) (*movePlan, error) {
	pb, env, proj := p.pb, p.env, p.proj
	mv := pb.Move
	m := &movePlan{servers: map[string]string{}, retire: map[string]string{}, oldTarget: map[string]transport.Target{}, oldLayout: map[string]state.Layout{}}
	m.summary.FromRole = mv.FromRole
	m.oldHosts = env.HostsWithRole(mv.FromRole)
	if len(m.oldHosts) == 0 {
		return nil, badInput("move.from_role %q has no hosts in environment %s", mv.FromRole, env.Name)
	}
	hosts := make([]playbooks.MovedHost, 0, len(newHosts))
	for _, hp := range newHosts {
		hosts = append(hosts, playbooks.MovedHost{Name: hp.Name, Address: hp.Address, Vars: hp.Data.Vars})
	}
	server := func(h *playbooks.Host) (string, error) {
		if pb.Traffic == nil {
			return "", nil
		}
		data, err := proj.HostData(pb, env, h)
		if err != nil {
			return "", err
		}
		return pb.TrafficServer(data)
	}
	for _, h := range m.oldHosts {
		m.summary.OldHosts = append(m.summary.OldHosts, h.Name)
		m.oldTarget[h.Name] = transport.Target{Name: h.Name, Address: h.Address, User: firstNonEmpty(h.User, proj.Config.SSH.User)}
		if data, err := proj.Data(pb, env, h, "0", ""); err == nil {
			m.oldLayout[h.Name] = state.Layout{BaseDir: data.BaseDir}
		}
		var err error
		if m.servers[h.Name], err = server(h); err != nil {
			return nil, badInput("host %s: %v", h.Name, err)
		}
		if mv.Retire != "" {
			data, err := proj.HostData(pb, env, h)
			if err != nil {
				return nil, badInput("%v", err)
			}
			if m.retire[h.Name], err = playbooks.RenderCommand("move.retire", mv.Retire, data); err != nil {
				return nil, badInput("host %s: %v", h.Name, err)
			}
		}
	}
	for _, hp := range newHosts {
		var err error
		if m.servers[hp.Name], err = server(hp.host); err != nil {
			return nil, badInput("host %s: %v", hp.Name, err)
		}
	}
	if pb.Traffic != nil {
		spec, err := newTrafficSpec(p, newHosts[0])
		if err != nil {
			return nil, badInput("traffic: %v", err)
		}
		m.lbs, m.backend, m.drain = spec.lbs, spec.backend, spec.drainTimeout
	}
	for i, d := range mv.Dependents {
		tmpl, err := pb.DependentTemplate(d)
		var unread *fs.PathError
		switch {
		case errors.As(err, &unread):
			return nil, badInput("%s: move.dependents.%d.template: %v", pb.Where(fmt.Sprintf("move.dependents.%d.template", i)), i, err)
		case err != nil:
			return nil, badInput("move.dependents.%d.template %s: %v", i, d.Template, err)
		}
		deps := env.HostsWithRole(d.Role)
		if len(deps) == 0 {
			return nil, badInput("move.dependents.%d.role %q has no hosts in environment %s", i, d.Role, env.Name)
		}
		size := max(d.BatchSize, 1)
		var batch []*dependentHost
		for _, h := range deps {
			data, err := proj.HostData(pb, env, h)
			if err != nil {
				return nil, badInput("%v", err)
			}
			dh := &dependentHost{name: h.Name, target: transport.Target{Name: h.Name, Address: h.Address, User: firstNonEmpty(h.User, proj.Config.SSH.User)}}
			if dh.config, err = playbooks.RenderText("move.dependents.config", d.Config, data); err != nil {
				return nil, badInput("host %s: %v", h.Name, err)
			}
			if dh.restart, err = playbooks.RenderCommand("move.dependents.restart", d.Restart, data); err != nil {
				return nil, badInput("host %s: %v", h.Name, err)
			}
			if dh.content, err = playbooks.RenderDependentConfig(tmpl, hosts, data, p.Version); err != nil {
				return nil, badInput("host %s: move.dependents.%d.template %s: %v", h.Name, i, d.Template, err)
			}
			for _, name := range d.Checks {
				spec, err := RenderCheck(pb.Checks[name], data)
				if err != nil {
					return nil, badInput("host %s: %v", h.Name, err)
				}
				dh.checks = append(dh.checks, spec)
			}
			m.summary.Dependents = append(m.summary.Dependents, h.Name)
			batch = append(batch, dh)
			if len(batch) == size {
				m.groups = append(m.groups, batch)
				batch = nil
			}
		}
		if len(batch) > 0 {
			m.groups = append(m.groups, batch)
		}
	}
	return m, nil
}

// moveRun is what this run's move changed, for its undo.
type moveRun struct {
	record  MoveRecord
	touched bool // the cutover started changing something
}

// sideRun is a host that is not a target of the plan (a load balancer, a
// dependent, an old host) but on which the run does work, reported as steps.
func (r *run) sideRun(ctx context.Context, name string, target transport.Target) (*hostRun, error) {
	conn, err := r.engine.Connector.Get(ctx, target)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &hostRun{engine: r.engine, run: r, plan: r.plan, conn: conn, report: &HostReport{Name: name},
		host: &HostPlan{Name: name, Target: target}}, nil
}

// sideStep runs one reported step on a side host; its result goes into the
// report's move steps.
func (r *run) sideStep(ctx context.Context, name string, target transport.Target, stepName string, do func(context.Context, *hostRun) (string, error)) error {
	return r.sideStepRetry(ctx, false, name, target, stepName, do)
}

// sideStepRetry is sideStep that, when retry is set (undoing a move),
// retries a host it cannot reach with the rollback's backoff.
func (r *run) sideStepRetry(ctx context.Context, retry bool, name string, target transport.Target, stepName string, do func(context.Context, *hostRun) (string, error)) error {
	backoff := r.engine.backoff()
	for attempt := 0; ; attempt++ {
		err := r.sideStepOnce(ctx, name, target, stepName, do)
		if err == nil || !retry || !unreachable(err) || attempt >= len(backoff) || ctx.Err() != nil {
			return err
		}
		r.engine.logEvent(name, "move/%s: host unreachable (%v); retrying in %s", stepName, err, backoff[attempt])
		select {
		case <-ctx.Done():
		case <-time.After(backoff[attempt]):
		}
	}
}

func (r *run) sideStepOnce(ctx context.Context, name string, target transport.Target, stepName string, do func(context.Context, *hostRun) (string, error)) error {
	step := &Step{Phase: "move", Name: stepName, Kind: "move"}
	h, err := r.sideRun(ctx, name, target)
	if err != nil {
		// Reported like a step, so the move table says where it stopped.
		res := &StepResult{Host: name, Phase: step.Phase, Name: step.Name, Kind: step.Kind, Status: StatusFailed, Error: err.Error()}
		r.mu.Lock()
		r.report.MoveSteps = append(r.report.MoveSteps, res)
		r.mu.Unlock()
		r.engine.emit(Event{Kind: StepDone, Plan: r.plan, Host: name, Result: res})
		return err
	}
	res, err := h.execute(ctx, step, do)
	r.mu.Lock()
	r.report.MoveSteps = append(r.report.MoveSteps, res)
	r.mu.Unlock()
	r.engine.emit(Event{Kind: StepDone, Plan: r.plan, Host: name, Result: res})
	if err != nil {
		return &stepError{host: name, step: "move/" + stepName, err: err}
	}
	return nil
}

// moveCutover runs once every new host is installed and verified: load
// balancers send traffic to the new hosts and drain the old ones, then every
// dependent gets its config naming the new hosts and is restarted, batch
// by batch, health-checked. The old hosts are not touched.
func (r *run) moveCutover(ctx context.Context) error {
	p, m := r.plan, r.plan.move
	rec := MoveRecord{RunID: p.RunID, Playbook: p.Playbook, Release: p.Version, FromRole: m.summary.FromRole,
		OldHosts: m.summary.OldHosts, NewHosts: hostNames(p.Hosts()), State: MoveCuttingOver, Time: r.engine.now().UTC()}
	if prev := m.resume; prev != nil {
		// An unfinished cutover: what it saved is still what was there before.
		rec.Servers, rec.Dependents = prev.Servers, prev.Dependents
	}
	r.move = &moveRun{record: rec}
	r.engine.logEvent("", "move: traffic and dependents from %s to %s", strings.Join(m.summary.OldHosts, ", "), strings.Join(r.move.record.NewHosts, ", "))
	stopped := func() error {
		if r.stopped() {
			err, _ := r.stopError("stopped during the move")
			return err
		}
		return nil
	}
	// Saved first, everywhere, before anything changes: the record must
	// hold what the rollback restores.
	for _, lb := range m.lbs {
		err := r.sideStep(ctx, lb.name, lb.target, "lb-save", func(ctx context.Context, h *hostRun) (string, error) {
			rt := &traffic.Runtime{Conn: h.conn, Host: lb.name, Socket: lb.socket}
			var parts []string
			for _, name := range append(append([]string{}, m.summary.OldHosts...), r.move.record.NewHosts...) {
				if r.move.savedServer(lb.name, m.servers[name]) != nil {
					parts = append(parts, m.servers[name]+" kept from the unfinished move")
					continue
				}
				srv, err := rt.Server(ctx, m.backend, m.servers[name])
				if err != nil {
					return "", err
				}
				r.move.record.Servers = append(r.move.record.Servers, MovedServer{LB: lb.name, Saved: *srv})
				parts = append(parts, fmt.Sprintf("%s %s/%d", srv.Name, srv.Admin, srv.Weight))
			}
			return "recorded " + strings.Join(parts, ", "), nil
		})
		if err != nil {
			return err
		}
	}
	if err := r.writeMoveRecord(ctx); err != nil {
		return err
	}
	r.move.touched = true
	for _, lb := range m.lbs {
		if err := stopped(); err != nil {
			return err
		}
		err := r.sideStep(ctx, lb.name, lb.target, "lb-cutover", func(ctx context.Context, h *hostRun) (string, error) {
			rt := &traffic.Runtime{Conn: h.conn, Host: lb.name, Socket: lb.socket}
			weight := 0
			for _, s := range r.move.record.Servers {
				if s.LB == lb.name && containsName(m.summary.OldHosts, s.Saved.Name, m.servers) && s.Saved.Weight > weight {
					weight = s.Saved.Weight
				}
			}
			var ready []string
			for _, s := range r.move.record.Servers {
				if s.LB == lb.name && containsName(r.move.record.NewHosts, s.Saved.Name, m.servers) {
					w := s.Saved.Weight
					if w <= 0 {
						w = max(weight, 1)
					}
					if err := rt.Ready(ctx, m.backend, s.Saved.Name, w); err != nil {
						return "", err
					}
					ready = append(ready, s.Saved.Name)
				}
			}
			// The old servers stop getting traffic only once HAProxy's own
			// checks see every new one up.
			for _, name := range ready {
				if err := waitServing(ctx, rt, m.backend, name, serveTimeout(m.drain)); err != nil {
					return "", err
				}
			}
			var timedOut []string
			for _, name := range m.summary.OldHosts {
				err := rt.Drain(ctx, m.backend, m.servers[name], m.drain, drainPoll)
				var timeout *traffic.DrainTimeoutError
				if errors.As(err, &timeout) {
					timedOut = append(timedOut, fmt.Sprintf("%s (%d sessions left after %s)", m.servers[name], timeout.Sessions, m.drain))
				} else if err != nil {
					return "", err
				}
			}
			detail := fmt.Sprintf("new servers up, old ones (%s) drained and in maint", strings.Join(m.summary.OldHosts, ", "))
			if len(timedOut) > 0 {
				detail += "; drain timed out on " + strings.Join(timedOut, ", ")
			}
			return detail, nil
		})
		if err != nil {
			return err
		}
	}
	for _, batch := range m.groups {
		if err := stopped(); err != nil {
			return err
		}
		for _, d := range batch {
			err := r.sideStep(ctx, d.name, d.target, "config", func(ctx context.Context, h *hostRun) (string, error) {
				old, err := readRemoteFile(ctx, h.conn, d.config, "")
				if err != nil {
					return "", err
				}
				mode := uint32(0o644)
				if old.present {
					mode = old.mode // never looser: it may hold secrets
				}
				saved := r.move.savedDependent(d.name)
				if saved == nil {
					saved = &MovedDependent{Host: d.name, Config: d.config, Existed: old.present, Mode: old.mode, Copy: d.config + ".relctl-before-" + p.RunID}
					if old.present {
						if err := upload(ctx, h.conn, old.body, saved.Copy, old.mode); err != nil {
							return "", fmt.Errorf("keeping the config before the move: %w", err)
						}
					}
					r.mu.Lock()
					r.move.record.Dependents = append(r.move.record.Dependents, *saved)
					r.mu.Unlock()
					if err := r.writeMoveRecord(ctx); err != nil {
						return "", err
					}
				} else if saved.Existed {
					mode = saved.Mode
				}
				if err := upload(ctx, h.conn, d.content, d.config, mode); err != nil {
					return "", err
				}
				sum := sha256.Sum256(d.content)
				return fmt.Sprintf("%s names the new hosts (%d bytes, sha256 %s); before: %s", d.config, len(d.content), hex.EncodeToString(sum[:6]), saved.Copy), nil
			})
			if err != nil {
				return err
			}
		}
		if err := r.restartDependents(ctx, batch, false); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.move.record.State = MoveCutOver
	r.mu.Unlock()
	return r.writeMoveRecord(ctx)
}

// savedServer is the state a move recorded for a server on an LB.
func (m *moveRun) savedServer(lb, server string) *traffic.Server {
	for i := range m.record.Servers {
		if s := &m.record.Servers[i]; s.LB == lb && s.Saved.Name == server {
			return &s.Saved
		}
	}
	return nil
}

// savedDependent is what a move recorded of a dependent's config.
func (m *moveRun) savedDependent(host string) *MovedDependent {
	for i := range m.record.Dependents {
		if d := &m.record.Dependents[i]; d.Host == host {
			return d
		}
	}
	return nil
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

func containsName(hosts []string, server string, servers map[string]string) bool {
	for _, h := range hosts {
		if servers[h] == server {
			return true
		}
	}
	return false
}

// restartDependents restarts one batch of dependents and waits for their
// health checks.
func (r *run) restartDependents(ctx context.Context, batch []*dependentHost, retry bool) error {
	var errs *multierror.Error
	for _, d := range batch {
		err := r.sideStepRetry(ctx, retry, d.name, d.target, "restart", func(ctx context.Context, h *hostRun) (string, error) {
			if _, err := h.conn.Run(ctx, d.restart, transport.RunOptions{Label: "move/restart", Limit: transport.CommandLimit}); err != nil {
				return "", err
			}
			if len(d.checks) == 0 {
				return "restarted", nil
			}
			outcomes, err := healthcheck.WaitAll(ctx, d.checks, h.conn)
			var parts []string
			for _, o := range outcomes {
				parts = append(parts, o.Summary())
			}
			return "restarted; " + strings.Join(parts, "; "), err
		})
		if err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
}

// undoMove puts traffic and dependents back on the old hosts: each
// dependent's config as it was (restarted in batches, health-checked), then
// the old servers as they were, then the new ones.
func (r *run) undoMove(ctx context.Context, rec *MoveRecord) error {
	p, m := r.plan, r.plan.move
	var errs *multierror.Error
	byHost := map[string]MovedDependent{}
	for _, d := range rec.Dependents {
		byHost[d.Host] = d
	}
	for _, batch := range m.groups {
		var restart []*dependentHost
		for _, d := range batch {
			saved, ok := byHost[d.name]
			if !ok {
				continue // never changed
			}
			err := r.sideStepRetry(ctx, true, d.name, d.target, "config-back", func(ctx context.Context, h *hostRun) (string, error) {
				if !saved.Existed {
					_, err := h.conn.Run(ctx, "rm -f -- "+transport.ShellQuote(saved.Config), transport.RunOptions{Label: "move/config-back"})
					return "removed " + saved.Config + " (there was none before)", err
				}
				_, err := h.conn.Run(ctx, fmt.Sprintf("cp -p -- %s %s.relctl-tmp && mv -f -- %s.relctl-tmp %s",
					transport.ShellQuote(saved.Copy), transport.ShellQuote(saved.Config), transport.ShellQuote(saved.Config), transport.ShellQuote(saved.Config)),
					transport.RunOptions{Label: "move/config-back"})
				return saved.Config + " as before the move (from " + saved.Copy + ")", err
			})
			if err != nil {
				errs = multierror.Append(errs, err)
				continue
			}
			restart = append(restart, d)
		}
		if err := r.restartDependents(ctx, restart, true); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	for _, lb := range m.lbs {
		err := r.sideStepRetry(ctx, true, lb.name, lb.target, "lb-back", func(ctx context.Context, h *hostRun) (string, error) {
			rt := &traffic.Runtime{Conn: h.conn, Host: lb.name, Socket: lb.socket}
			// Old servers take traffic again before the new ones stop.
			for _, old := range []bool{true, false} {
				for _, s := range rec.Servers {
					if s.LB != lb.name || containsName(rec.OldHosts, s.Saved.Name, m.servers) != old {
						continue
					}
					if err := rt.Restore(ctx, s.Saved); err != nil {
						return "", err
					}
				}
			}
			return "every server as before the move", nil
		})
		if err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if errs.ErrorOrNil() != nil {
		return errs.ErrorOrNil()
	}
	rec.State = MoveMovedBack
	if rec.History == nil {
		rec.History = map[string]string{}
	}
	rec.History[MoveMovedBack] = p.RunID
	r.move = &moveRun{record: *rec}
	return r.writeMoveRecord(ctx)
}

// MoveRecordPath is the move record on a host.
func MoveRecordPath(l state.Layout) string { return path.Join(l.StateDir(), "move.json") }

// writeMoveRecord keeps the move record on every new host reached.
func (r *run) writeMoveRecord(ctx context.Context) error {
	r.mu.Lock()
	body, err := json.MarshalIndent(r.move.record, "", "  ")
	r.mu.Unlock()
	if err != nil {
		return err
	}
	body = append(body, '\n')
	var errs *multierror.Error
	for _, hp := range r.plan.Hosts() {
		h := r.runs[hp.Name]
		if h == nil {
			continue
		}
		if err := upload(ctx, h.conn, body, MoveRecordPath(hp.Layout), 0o644); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s: writing the move record: %w", hp.Name, err))
		}
	}
	return errs.ErrorOrNil()
}

// ReadMoveRecord reads a host's move record (nil when there is none). A
// record that cannot be read or is corrupt is an error naming the file.
func ReadMoveRecord(ctx context.Context, conn transport.Conn, l state.Layout) (*MoveRecord, error) {
	f, err := readRemoteFile(ctx, conn, MoveRecordPath(l), "")
	if err != nil || !f.present {
		return nil, err
	}
	return parseMoveRecord(MoveRecordPath(l), f.body)
}

// parseMoveRecord reads move.json's bytes (p names it in errors): a JSON
// object with a release and a state relctl writes.
func parseMoveRecord(p string, body []byte) (*MoveRecord, error) {
	var rec MoveRecord
	if err := state.DecodeJSONFile(p, body, &rec); err != nil {
		return nil, err
	}
	corrupt := func(problem string) error {
		return &state.StateError{Path: p, Problem: problem,
			Fix: "fix or restore it (keep a copy first: cp " + state.Quote(p) + " " + state.Quote(p+".broken") + "), then re-run"}
	}
	switch rec.State {
	case MoveCuttingOver, MoveCutOver, MoveMovedBack, MoveFinalized:
	default:
		return nil, corrupt(fmt.Sprintf(": unknown move state %q", rec.State))
	}
	if rec.Release == "" {
		return nil, corrupt(": no release")
	}
	return &rec, nil
}

// MoveRunOptions select a run that acts on a past move: move back (a
// rollback before finalize) or finalize.
type MoveRunOptions struct {
	Env      string
	Playbook string
	RunID    string
	// Kind is KindMoveBack or KindFinalize.
	Kind   string
	Record *MoveRecord
}

// Kinds of run on a move.
const (
	KindMoveBack = "move-back"
	KindFinalize = "finalize"
)

// BuildMovePlan plans a move-back or a finalize: the new hosts are locked
// (nothing else runs on them), then the run-level work runs.
func BuildMovePlan(proj *playbooks.Project, opts MoveRunOptions) (*Plan, error) {
	env, pb, hosts, err := resolveTargets(proj, opts.Env, opts.Playbook, nil)
	if err != nil {
		return nil, err
	}
	if pb.Move == nil {
		return nil, badInput("playbook %s has no [move]", pb.Name)
	}
	rec := opts.Record
	kind := KindRollback
	if opts.Kind == KindFinalize {
		kind = KindFinalize
	}
	p := &Plan{RunID: opts.RunID, Kind: kind, Project: proj.Config.Project, Env: env.Name, Version: rec.Release, From: rec.Release,
		Playbook: pb.Name, proj: proj, pb: pb, env: env}
	var hostPlans []*HostPlan
	for _, h := range hosts {
		hp, err := newHostPlan(p, h)
		if err != nil {
			return nil, err
		}
		hostPlans = append(hostPlans, hp)
	}
	if p.move, err = newMovePlan(p, hostPlans); err != nil {
		return nil, err
	}
	p.Move = &p.move.summary
	switch opts.Kind {
	case KindMoveBack:
		if rec.State != MoveCutOver && rec.State != MoveCuttingOver {
			return nil, fmt.Errorf("%w: the move by run %s is %s: nothing to move back", ErrMoveState, rec.RunID, rec.State)
		}
		p.move.back = rec
	case KindFinalize:
		if rec.State != MoveCutOver {
			return nil, fmt.Errorf("%w: the move by run %s is %s, not %s: only a move that is cut over can be finalized", ErrMoveState, rec.RunID, rec.State, MoveCutOver)
		}
		p.move.finalize = rec
	default:
		return nil, badInput("unknown move run kind %q", opts.Kind)
	}
	p.Batches = []*Batch{{Index: 1, Hosts: hostPlans}}
	return p, nil
}

// finalizeMove retires the old hosts: out of every load balancer for good
// (maint), then each one's retire command; the record says finalized.
func (r *run) finalizeMove(ctx context.Context, rec *MoveRecord) error {
	m := r.plan.move
	// Only a move that really carries the traffic is made final: every new
	// host on one release (the moved one or a later one), every new server
	// ready and up on every LB - all checked before anything changes.
	release := ""
	for _, hp := range r.plan.Hosts() {
		got := r.runs[hp.Name].report.Before
		if got == "" || (release != "" && got != release) {
			return fmt.Errorf("%w: %s runs %s while the other new hosts run %s: finalize would retire the old hosts under a broken move (relctl rollback --to prev moves back)",
				ErrMoveState, hp.Name, orNone(got), orNone(release))
		}
		release = got
	}
	for _, lb := range m.lbs {
		err := r.sideStep(ctx, lb.name, lb.target, "lb-check", func(ctx context.Context, h *hostRun) (string, error) {
			rt := &traffic.Runtime{Conn: h.conn, Host: lb.name, Socket: lb.socket}
			for _, name := range rec.NewHosts {
				s, err := rt.Server(ctx, m.backend, m.servers[name])
				if err != nil {
					return "", err
				}
				if s.Admin != traffic.AdminReady || !(strings.HasPrefix(s.Check, "UP") || s.Check == "no check") {
					return "", fmt.Errorf("%w: %s is %s (%s) on %s: the new hosts do not carry the traffic, so the old ones stay", ErrMoveState, s.Name, s.Admin, s.Check, lb.name)
				}
			}
			return "every new server ready and up", nil
		})
		if err != nil {
			return err
		}
	}
	for _, lb := range m.lbs {
		err := r.sideStep(ctx, lb.name, lb.target, "lb-retire", func(ctx context.Context, h *hostRun) (string, error) {
			rt := &traffic.Runtime{Conn: h.conn, Host: lb.name, Socket: lb.socket}
			for _, name := range rec.OldHosts {
				if err := rt.SetAdmin(ctx, m.backend, m.servers[name], traffic.AdminMaint); err != nil {
					return "", err
				}
			}
			return "old servers (" + strings.Join(rec.OldHosts, ", ") + ") in maint for good", nil
		})
		if err != nil {
			return err
		}
	}
	for _, name := range rec.OldHosts {
		cmd, hasCmd := m.retire[name]
		layout, hasLayout := m.oldLayout[name]
		if !hasCmd && !hasLayout {
			continue
		}
		err := r.sideStep(ctx, name, m.oldTarget[name], "retire", func(ctx context.Context, h *hostRun) (string, error) {
			detail := "retired"
			if hasCmd {
				if _, err := h.conn.Run(ctx, cmd, transport.RunOptions{Label: "move/retire", Limit: transport.CommandLimit}); err != nil {
					return "", err
				}
			}
			if hasLayout {
				// No current release any more: nothing (compatibility checks,
				// status) counts the retired host as running one. History
				// keeps every release it ran, and says why.
				if _, err := h.conn.Run(ctx, "rm -f -- "+transport.ShellQuote(layout.Current()), transport.RunOptions{Label: "move/retire"}); err != nil {
					return "", err
				}
				ev := state.HistoryEvent{Time: r.engine.now().UTC(), Kind: "retired", Operator: r.engine.Operator, Controller: r.engine.Controller,
					RunID: r.plan.RunID, Reason: fmt.Sprintf("%s moved to %s by run %s; finalized", rec.Playbook, strings.Join(rec.NewHosts, ", "), rec.RunID)}
				if err := state.AppendHistoryEvent(ctx, h.conn, layout, ev); err != nil {
					return "", err
				}
				detail += "; current removed, history says retired"
			}
			return detail, nil
		})
		if err != nil {
			return err
		}
	}
	rec.State = MoveFinalized
	if rec.History == nil {
		rec.History = map[string]string{}
	}
	rec.History[MoveFinalized] = r.plan.RunID
	r.move = &moveRun{record: *rec}
	return r.writeMoveRecord(ctx)
}

// ReadMoveRecords reads the move record of every new host of a move
// playbook; the newest one (by time) is returned with the hosts read.
func ReadMoveRecords(ctx context.Context, conn Connector, proj *playbooks.Project, env, playbook string) (*MoveRecord, error) {
	e, pb, hosts, err := resolveTargets(proj, env, playbook, nil)
	if err != nil {
		return nil, err
	}
	if pb.Move == nil {
		return nil, nil
	}
	var newest *MoveRecord
	var errs, bad *multierror.Error
	for _, h := range hosts {
		data, err := proj.Data(pb, e, h, "0", "")
		if err != nil {
			return nil, err
		}
		c, err := conn.Get(ctx, transport.Target{Name: h.Name, Address: h.Address, User: firstNonEmpty(h.User, proj.Config.SSH.User)})
		if err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		rec, err := ReadMoveRecord(ctx, c, state.Layout{BaseDir: data.BaseDir})
		if err != nil {
			err = fmt.Errorf("%s: %w", h.Name, err)
			if errors.Is(err, state.ErrHostState) || errors.Is(err, state.ErrHostOutput) {
				// Reachable, but its record cannot be trusted: it may be
				// the newest, so no other host's record decides.
				bad = multierror.Append(bad, err)
			}
			errs = multierror.Append(errs, err)
			continue
		}
		if rec != nil && (newest == nil || rec.Time.After(newest.Time) || (rec.Time.Equal(newest.Time) && len(rec.History) > len(newest.History))) {
			newest = rec
		}
	}
	if bad.ErrorOrNil() != nil {
		return nil, bad.ErrorOrNil()
	}
	if newest == nil && errs.ErrorOrNil() != nil {
		return nil, errs.ErrorOrNil()
	}
	return newest, nil
}
