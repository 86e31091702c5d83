package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/shellquote"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/relctl/relctl/healthcheck"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/traffic"
)

// Step kinds of a host move, each a step after the batches.
const (
	kindMoveSave     = "move-lb-save"
	kindMoveRecord   = "move-record"
	kindMoveCutover  = "move-lb-cutover"
	kindMoveConfig   = "move-config"
	kindMoveRestart  = "move-restart"
	kindMoveCheck    = "move-check"
	kindMoveLBRetire = "move-lb-retire"
	kindMoveRetire   = "move-retire"
)

// moveState is what the steps of one move share: the record they build as
// they change things (and undo from), and the servers they work on. It is
// the move's undo state, written to every new host as .relctl/move.json.
type moveState struct {
	mu       sync.Mutex
	record   MoveRecord
	servers  map[string]string // host name -> its server in the backend
	backend  string
	drain    time.Duration
	newHosts []*HostPlan
	// changed: a step past the record may have changed a load balancer or
	// a dependent (or an unfinished cutover before this run did).
	changed bool
	// inherited: the record comes from an earlier run (an unfinished
	// cutover this run finishes, or the move a move back undoes): what it
	// saved may have been changed by that run.
	inherited bool
}

// markChanged notes that the move is about to change something.
func (m *moveState) markChanged() {
	m.mu.Lock()
	m.changed = true
	m.mu.Unlock()
}

func (m *moveState) hasChanged() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// savedOn says whether the record holds a server's state on lb.
func (m *moveState) savedOn(lb string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.record.Servers {
		if s.LB == lb {
			return true
		}
	}
	return false
}

// savedServer is the state the move recorded for a server on an LB.
func (m *moveState) savedServer(lb, server string) *traffic.Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.record.Servers {
		if s := &m.record.Servers[i]; s.LB == lb && s.Saved.Name == server {
			return &s.Saved
		}
	}
	return nil
}

// savedDependent is what the move recorded of a dependent's config (a host
// may be the dependent of several [[move.dependents]], each its own config).
func (m *moveState) savedDependent(host, config string) *MovedDependent {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.record.Dependents {
		if d := &m.record.Dependents[i]; d.Host == host && d.Config == config {
			c := *d
			return &c
		}
	}
	return nil
}

// write keeps the record on every new host the run reached (on a new
// connection when the run's own was lost).
func (m *moveState) write(ctx context.Context, r *run) error {
	m.mu.Lock()
	body, err := json.MarshalIndent(m.record, "", "  ")
	m.mu.Unlock()
	if err != nil {
		return err
	}
	body = append(body, '\n')
	var errs *multierror.Error
	for _, hp := range m.newHosts {
		r.mu.Lock()
		h := r.runs[hp.Name]
		r.mu.Unlock()
		if h == nil {
			continue
		}
		conn, err := r.engine.Connector.Get(ctx, hp.Target)
		if err == nil {
			err = fleet.WriteFile(ctx, conn, body, MoveRecordPath(hp.Layout), 0o644)
		}
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s: writing the move record: %w", hp.Name, err))
		}
	}
	return errs.ErrorOrNil()
}

// setState moves the record to state (noting the run in its history when
// record is set) and writes it.
func (m *moveState) setState(ctx context.Context, h *hostRun, st string, record bool) error {
	m.mu.Lock()
	m.record.State = st
	if record {
		if m.record.History == nil {
			m.record.History = map[string]string{}
		}
		m.record.History[st] = h.plan.RunID
	}
	m.mu.Unlock()
	return m.write(ctx, h.run)
}

func (m *moveState) isNew(server string) bool {
	return containsName(m.record.NewHosts, server, m.servers)
}
func (m *moveState) isOld(server string) bool {
	return containsName(m.record.OldHosts, server, m.servers)
}

// lbStep is a move's step on one load balancer.
type lbStep struct {
	m  *moveState
	lb trafficLB
}

// runtime is HAProxy's runtime API on the load balancer, over h's connection.
func (a lbStep) runtime(h *hostRun) *traffic.Runtime {
	return &traffic.Runtime{Conn: h.conn, Host: a.lb.name, Socket: a.lb.socket}
}

// lbSaveAction records, before anything changes, every old and new server
// on one load balancer as it is (a resumed move keeps what it saved).
type lbSaveAction struct{ lbStep }

func (a *lbSaveAction) Do(ctx context.Context, h *hostRun) (string, error) {
	m := a.m
	rt := a.runtime(h)
	var parts []string
	for _, name := range append(append([]string{}, m.record.OldHosts...), m.record.NewHosts...) {
		if m.savedServer(a.lb.name, m.servers[name]) != nil {
			parts = append(parts, m.servers[name]+" kept from the unfinished move")
			continue
		}
		srv, err := rt.Server(ctx, m.backend, m.servers[name])
		if err != nil {
			return "", err
		}
		m.mu.Lock()
		m.record.Servers = append(m.record.Servers, MovedServer{LB: a.lb.name, Saved: *srv})
		m.mu.Unlock()
		parts = append(parts, fmt.Sprintf("%s %s/%d", srv.Name, srv.Admin, srv.Weight))
	}
	return "recorded " + strings.Join(parts, ", "), nil
}

// moveRecordAction writes the move record on every new host with the
// record's state set to state. Opening the move (cutting-over) is undone by
// writing moved-back, once everything after it is back.
type moveRecordAction struct {
	m       *moveState
	state   string
	history bool // note the run in the record's history (finalized)
}

func (a *moveRecordAction) Do(ctx context.Context, h *hostRun) (string, error) {
	if err := a.m.setState(ctx, h, a.state, a.history); err != nil {
		return "", err
	}
	return "move.json says " + a.state, nil
}

// openMoveAction is the record written before the cutover changes anything.
type openMoveAction struct{ moveRecordAction }

func (a *openMoveAction) keepsRecord() {}

func (a *openMoveAction) Do(ctx context.Context, h *hostRun) (string, error) {
	a.m.mu.Lock()
	a.m.record.Time = h.now().UTC()
	a.m.mu.Unlock()
	return a.moveRecordAction.Do(ctx, h)
}

// Undo writes moved-back once everything after it is back. When nothing
// past the record changed, nothing needs moving back: moved-back is still
// written, but a record that cannot be written then (the reason the step
// failed, often) is no failure of the undo: the record it left says
// cutting-over with the states as they are, which the next deploy finishes.
func (a *openMoveAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	if !a.m.hasChanged() {
		if err := a.m.setState(ctx, h, MoveMovedBack, true); err != nil {
			return "", &skippedError{"nothing was moved; move.json could not be updated: " + err.Error()}
		}
		return "nothing was moved; move.json says " + MoveMovedBack, nil
	}
	if h.earlierUndoFailed() {
		return "", fmt.Errorf("the move is not all undone: move.json keeps saying %s", a.m.record.State)
	}
	if err := a.m.setState(ctx, h, MoveMovedBack, true); err != nil {
		return "", err
	}
	return "move.json says " + MoveMovedBack, nil
}

// lbCutoverAction sends one load balancer's traffic to the new hosts and
// drains the old ones; its undo puts every server back as recorded.
type lbCutoverAction struct {
	lbStep
	started bool // Do ran (it may have changed the LB)
}

func (a *lbCutoverAction) UndoName() string { return "lb-back" }

func (a *lbCutoverAction) undoNeeded() (bool, string) {
	switch {
	case !a.m.savedOn(a.lb.name):
		return false, "no server of " + a.lb.name + " in the move record: nothing to put back"
	case !a.started && !a.m.inherited:
		return false, "never cut over (" + a.lb.name + " was not reached): nothing to put back"
	}
	return true, ""
}

func (a *lbCutoverAction) Do(ctx context.Context, h *hostRun) (string, error) {
	m := a.m
	a.started = true
	m.markChanged()
	rt := a.runtime(h)
	weight := 0
	var saved []traffic.Server
	m.mu.Lock()
	for _, s := range m.record.Servers {
		if s.LB == a.lb.name {
			saved = append(saved, s.Saved)
			if m.isOld(s.Saved.Name) && s.Saved.Weight > weight {
				weight = s.Saved.Weight
			}
		}
	}
	m.mu.Unlock()
	var ready []string
	for _, s := range saved {
		if !m.isNew(s.Name) {
			continue
		}
		w := s.Weight
		if w <= 0 {
			w = max(weight, 1)
		}
		if err := rt.Ready(ctx, m.backend, s.Name, w); err != nil {
			return "", err
		}
		ready = append(ready, s.Name)
	}
	// The old servers stop getting traffic only once HAProxy's own checks
	// see every new one up.
	for _, name := range ready {
		if err := waitServing(ctx, rt, m.backend, name, serveTimeout(m.drain)); err != nil {
			return "", err
		}
	}
	return a.drainOld(ctx, rt)
}

func (a *lbCutoverAction) drainOld(ctx context.Context, rt *traffic.Runtime) (string, error) {
	m := a.m
	var timedOut []string
	for _, name := range m.record.OldHosts {
		err := rt.Drain(ctx, m.backend, m.servers[name], m.drain, drainPoll)
		var timeout *traffic.DrainTimeoutError
		if errors.As(err, &timeout) {
			timedOut = append(timedOut, fmt.Sprintf("%s (%d sessions left after %s)", m.servers[name], timeout.Sessions, m.drain))
		} else if err != nil {
			return "", err
		}
	}
	detail := fmt.Sprintf("new servers up, old ones (%s) drained and in maint", strings.Join(m.record.OldHosts, ", "))
	if len(timedOut) > 0 {
		detail += "; drain timed out on " + strings.Join(timedOut, ", ")
	}
	return detail, nil
}

// Undo: old servers take traffic again before the new ones stop. The new
// hosts' own traffic steps (a deploy that finishes an unfinished cutover
// has them) then put their servers back as the move saved them, not as the
// unfinished run left them: the hosts' rollback must not send traffic to
// them again.
func (a *lbCutoverAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	detail, err := a.restore(ctx, h)
	if err == nil {
		a.m.handBackTraffic(a.lb.name)
	}
	return detail, err
}

// handBackTraffic sets, for each new host's traffic steps, the state its
// server on lb goes back to: the one the move saved.
func (m *moveState) handBackTraffic(lb string) {
	for _, hp := range m.newHosts {
		saved := m.savedServer(lb, m.servers[hp.Name])
		if saved == nil {
			continue
		}
		for _, s := range hp.Steps {
			if th, ok := s.Action.(trafficHolder); ok && th.traffic() != nil {
				th.traffic().saved[lb] = *saved
			}
		}
	}
}

func (a *lbCutoverAction) restore(ctx context.Context, h *hostRun) (string, error) {
	m := a.m
	rt := a.runtime(h)
	m.mu.Lock()
	servers := append([]MovedServer{}, m.record.Servers...)
	m.mu.Unlock()
	for _, old := range []bool{true, false} {
		for _, s := range servers {
			if s.LB != a.lb.name || m.isOld(s.Saved.Name) != old {
				continue
			}
			if err := rt.Restore(ctx, s.Saved); err != nil {
				return "", err
			}
		}
	}
	return "every server as before the move", nil
}

// dependentHost is one dependent of a move, rendered for its host.
type dependentHost struct {
	name    string
	target  transport.Target
	config  string
	content []byte
	restart string
	checks  []healthcheck.Spec
}

// restartAndCheck restarts the dependent and waits for its health checks.
func (d *dependentHost) restartAndCheck(ctx context.Context, conn transport.Conn) (string, error) {
	if _, err := conn.Run(ctx, d.restart, transport.RunOptions{Label: "move/restart", Limit: transport.CommandLimit}); err != nil {
		return "", err
	}
	if len(d.checks) == 0 {
		return "restarted", nil
	}
	outcomes, err := healthcheck.WaitAll(ctx, d.checks, conn)
	var parts []string
	for _, o := range outcomes {
		parts = append(parts, o.Summary())
	}
	return "restarted; " + strings.Join(parts, "; "), err
}

// depConfigAction gives a dependent its config naming the new hosts,
// keeping a copy of the old one on the host (recorded before it is
// replaced). Its undo puts the old config back and restarts the dependent,
// health-checked.
type depConfigAction struct {
	m *moveState
	d *dependentHost
}

func (a *depConfigAction) UndoName() string { return "config-back" }

func (a *depConfigAction) undoNeeded() (bool, string) {
	if a.m.savedDependent(a.d.name, a.d.config) == nil {
		return false, "not in the move record: never changed"
	}
	return true, ""
}

func (a *depConfigAction) Do(ctx context.Context, h *hostRun) (string, error) {
	d := a.d
	old, err := fleet.ReadFile(ctx, h.conn, d.config, "")
	if err != nil {
		return "", err
	}
	mode := uint32(0o644)
	if old.Present {
		mode = old.Mode // never looser: it may hold secrets
	}
	saved := a.m.savedDependent(d.name, d.config)
	if saved == nil {
		if saved, err = a.keep(ctx, h, old); err != nil {
			return "", err
		}
	} else if saved.Existed {
		mode = saved.Mode
	}
	if err := fleet.WriteFile(ctx, h.conn, d.content, d.config, mode); err != nil {
		return "", err
	}
	sum := sha256.Sum256(d.content)
	return fmt.Sprintf("%s names the new hosts (%d bytes, sha256 %s); before: %s", d.config, len(d.content), hex.EncodeToString(sum[:6]), saved.Copy), nil
}

// keep copies the config as it was and records where, before it changes.
func (a *depConfigAction) keep(ctx context.Context, h *hostRun, old *fleet.File) (*MovedDependent, error) {
	d := a.d
	a.m.markChanged()
	saved := &MovedDependent{Host: d.name, Config: d.config, Existed: old.Present, Mode: old.Mode, Copy: d.config + ".relctl-before-" + h.plan.RunID}
	if old.Present {
		if err := fleet.WriteFile(ctx, h.conn, old.Body, saved.Copy, old.Mode); err != nil {
			return nil, fmt.Errorf("keeping the config before the move: %w", err)
		}
	}
	a.m.mu.Lock()
	a.m.record.Dependents = append(a.m.record.Dependents, *saved)
	a.m.mu.Unlock()
	return saved, a.m.write(ctx, h.run)
}

func (a *depConfigAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	saved := a.m.savedDependent(a.d.name, a.d.config)
	if saved == nil {
		return "", errNotChanged
	}
	var detail string
	if !saved.Existed {
		if _, err := h.conn.Run(ctx, "rm -f -- "+shellquote.Quote(saved.Config), transport.RunOptions{Label: "move/config-back"}); err != nil {
			return "", err
		}
		detail = "removed " + saved.Config + " (there was none before)"
	} else {
		q := shellquote.Quote
		if _, err := h.conn.Run(ctx, fmt.Sprintf("cp -p -- %s %s.relctl-tmp && mv -f -- %s.relctl-tmp %s", q(saved.Copy), q(saved.Config), q(saved.Config), q(saved.Config)),
			transport.RunOptions{Label: "move/config-back"}); err != nil {
			return "", err
		}
		detail = saved.Config + " as before the move (from " + saved.Copy + ")"
	}
	restarted, err := a.d.restartAndCheck(ctx, h.conn)
	return detail + "; " + restarted, err
}

// depRestartAction restarts a dependent on its new config and waits for its
// health checks; the config step's undo restarts it on the old one.
type depRestartAction struct{ d *dependentHost }

func (a *depRestartAction) Do(ctx context.Context, h *hostRun) (string, error) {
	return a.d.restartAndCheck(ctx, h.conn)
}

// movedReleaseCheck, before a finalize changes anything, requires every new
// host to run one release (the moved one or a later one).
type movedReleaseCheck struct{ m *moveState }

func (a *movedReleaseCheck) Do(_ context.Context, h *hostRun) (string, error) {
	release := ""
	for _, hp := range a.m.newHosts {
		h.run.mu.Lock()
		hr := h.run.runs[hp.Name]
		h.run.mu.Unlock()
		got := ""
		if hr != nil {
			got = hr.report.Before
		}
		if got == "" || (release != "" && got != release) {
			return "", fmt.Errorf("%w: %s runs %s while the other new hosts run %s: finalize would retire the old hosts under a broken move (relctl rollback --to prev moves back)",
				ErrMoveState, hp.Name, orNone(got), orNone(release))
		}
		release = got
	}
	return "every new host runs " + release, nil
}

// lbServingCheck, before a finalize changes anything, requires every new
// server to be ready and up on the load balancer.
type lbServingCheck struct{ lbStep }

func (a *lbServingCheck) Do(ctx context.Context, h *hostRun) (string, error) {
	m := a.m
	rt := a.runtime(h)
	for _, name := range m.record.NewHosts {
		s, err := rt.Server(ctx, m.backend, m.servers[name])
		if err != nil {
			return "", err
		}
		if s.Admin != traffic.AdminReady || !(strings.HasPrefix(s.Check, "UP") || s.Check == "no check") {
			return "", fmt.Errorf("%w: %s is %s (%s) on %s: the new hosts do not carry the traffic, so the old ones stay", ErrMoveState, s.Name, s.Admin, s.Check, a.lb.name)
		}
	}
	return "every new server ready and up", nil
}

// lbRetireAction puts the old servers in maint on a load balancer for good.
type lbRetireAction struct{ lbStep }

func (a *lbRetireAction) Do(ctx context.Context, h *hostRun) (string, error) {
	rt := a.runtime(h)
	for _, name := range a.m.record.OldHosts {
		if err := rt.SetAdmin(ctx, a.m.backend, a.m.servers[name], traffic.AdminMaint); err != nil {
			return "", err
		}
	}
	return "old servers (" + strings.Join(a.m.record.OldHosts, ", ") + ") in maint for good", nil
}

// retireAction runs move.retire on an old host and, where its release
// layout is known, removes current and says so in its history: nothing
// (compatibility checks, status) counts a retired host as running one.
type retireAction struct {
	m       *moveState
	command string // "" when the playbook has no move.retire
	layout  *state.Layout
}

func (a *retireAction) Do(ctx context.Context, h *hostRun) (string, error) {
	detail := "retired"
	if a.command != "" {
		if _, err := h.conn.Run(ctx, a.command, transport.RunOptions{Label: "move/retire", Limit: transport.CommandLimit}); err != nil {
			return "", err
		}
	}
	if a.layout == nil {
		return detail, nil
	}
	if _, err := h.conn.Run(ctx, "rm -f -- "+shellquote.Quote(a.layout.Current()), transport.RunOptions{Label: "move/retire"}); err != nil {
		return "", err
	}
	rec := a.m.record
	ev := state.HistoryEvent{Time: h.now().UTC(), Kind: "retired", Operator: h.engine.Operator, Controller: h.engine.Controller,
		RunID: h.plan.RunID, Reason: fmt.Sprintf("%s moved to %s by run %s; finalized", rec.Playbook, strings.Join(rec.NewHosts, ", "), rec.RunID)}
	h.forgetState()
	if err := state.AppendHistoryEvent(ctx, h.conn, *a.layout, ev); err != nil {
		return "", err
	}
	return detail + "; current removed, history says retired", nil
}

// containsName says whether server is the server of one of hosts.
func containsName(hosts []string, server string, servers map[string]string) bool {
	for _, h := range hosts {
		if servers[h] == server {
			return true
		}
	}
	return false
}
