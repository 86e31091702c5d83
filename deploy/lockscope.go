package deploy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Why a host is in a run's lock scope.
const (
	ScopeTarget    = "a target"
	ScopeOutside   = "a target outside --hosts"
	ScopeLB        = "a load balancer"
	ScopeOldHost   = "an old host of the move"
	ScopeDependent = "a dependent of the move"
)

// LockHost is one lock a run of a playbook takes: a host, and where on it
// the lock is.
type LockHost struct {
	Name   string
	Why    string // ScopeTarget, ScopeLB, ScopeOldHost or ScopeDependent
	Target transport.Target
	Layout state.Layout
	// Err: where the lock goes cannot be known (a target without base_dir).
	Err error
}

// LockScope lists every lock a run of pb in env takes, whatever --hosts
// selects: every host pb targets there; the load balancers of its
// [traffic]; the old hosts and dependents of its [move]. A target is locked
// under its base_dir. Another host is locked where the playbooks that
// target it keep their locks (under each of their base_dirs), so that a
// move's old hosts conflict with deploys to them; a host no playbook
// targets (a load balancer, an app server) is locked under the base_dir of
// its own or its environment's vars - the same for every playbook's runs -
// or, without one, in the SSH user's home (.relctl/lock).
func LockScope(proj *playbooks.Project, env *playbooks.Environment, pb *playbooks.Playbook) []LockHost {
	var out []LockHost
	seen := map[string]bool{}
	add := func(h *playbooks.Host, why string, layout state.Layout, err error) {
		key := h.Name + "\x00" + layout.BaseDir
		if seen[key] {
			return
		}
		seen[key] = true
		out = append(out, LockHost{Name: h.Name, Why: why, Layout: layout, Err: err,
			Target: transport.Target{Name: h.Name, Address: h.Address, User: firstNonEmpty(h.User, proj.Config.SSH.User)}})
	}
	layoutFor := func(q *playbooks.Playbook, h *playbooks.Host) (state.Layout, error) {
		data, err := proj.Data(q, env, h, "0", "")
		if err != nil {
			return state.Layout{}, err
		}
		return state.Layout{BaseDir: data.BaseDir}, nil
	}
	for _, h := range pb.TargetHosts(env) {
		l, err := layoutFor(pb, h)
		add(h, ScopeTarget, l, err)
	}
	all, _ := proj.PlaybooksFor(env.Name)
	side := func(h *playbooks.Host, why string) {
		n := 0
		for _, q := range all {
			if !slices.ContainsFunc(q.TargetHosts(env), func(t *playbooks.Host) bool { return t.Name == h.Name }) {
				continue
			}
			if l, err := layoutFor(q, h); err == nil {
				add(h, why, l, nil)
				n++
			}
		}
		if n == 0 {
			// The same place whichever playbook's run locks it: the host's
			// (or environment's) own base_dir, never a playbook's.
			var l state.Layout
			if data, err := proj.HostData(&playbooks.Playbook{}, env, h); err == nil {
				if base := data.Vars["base_dir"]; path.IsAbs(base) {
					l.BaseDir = path.Clean(base)
				}
			}
			add(h, why, l, nil)
		}
	}
	if t := pb.Traffic; t != nil && t.Provider == playbooks.TrafficHAProxy {
		for _, h := range env.HostsWithRole(t.LBRole) {
			side(h, ScopeLB)
		}
	}
	if mv := pb.Move; mv != nil {
		for _, h := range env.HostsWithRole(mv.FromRole) {
			side(h, ScopeOldHost)
		}
		for _, d := range mv.Dependents {
			for _, h := range env.HostsWithRole(d.Role) {
				side(h, ScopeDependent)
			}
		}
	}
	return out
}

// mustLock says whether the run stops when it cannot reach, or lock, a host
// of its lock scope that it does not run steps on (a lock held by another
// run stops every run). A host it changes must be locked: load balancers
// (traffic steps, a cutover, a finalize), a cutover's dependents, a
// finalize's old hosts. Rollbacks and move-backs go on with what they reach
// and lock (their side steps retry an unreachable host), and so does every
// run when a target outside --hosts is down or its lock command fails:
// nobody can change a host nobody reaches.
func (p *Plan) mustLock(lh LockHost) bool {
	if p.Kind == KindRollback {
		return false
	}
	switch lh.Why {
	case ScopeLB:
		return true
	case ScopeDependent:
		return p.Move != nil && p.Kind != KindFinalize
	case ScopeOldHost:
		return p.Move != nil && p.Kind == KindFinalize
	}
	return false
}

// sideLockTargets connects to every host of the run's lock scope that the
// plan does not run steps on. A host the run must lock fails the run when
// it cannot be reached; any other is left out, and returned as a state
// with Err set, for the warning, and its target is Optional: left out too
// when its lock command fails. why says why each target is in the scope,
// by host and lock path.
func (r *run) sideLockTargets(ctx context.Context, hosts []*HostPlan) (targets []state.LockTarget, why map[string]string, notLocked []state.HostLockState, err error) {
	e, p := r.engine, r.plan
	if p.pb == nil || p.env == nil || p.proj == nil {
		return nil, nil, nil, nil
	}
	inPlan := map[string]bool{}
	for _, hp := range hosts {
		inPlan[hp.Name+"\x00"+hp.Layout.BaseDir] = true
	}
	var scope []LockHost
	for _, lh := range LockScope(p.proj, p.env, p.pb) {
		if inPlan[lh.Name+"\x00"+lh.Layout.BaseDir] {
			continue
		}
		if lh.Why == ScopeTarget {
			lh.Why = ScopeOutside
		}
		if lh.Err != nil {
			return nil, nil, nil, &Failure{Phase: playbooks.PhasePreflight, Report: r.report, Err: fmt.Errorf("%s (%s): where its lock goes: %w", lh.Name, lh.Why, lh.Err)}
		}
		scope = append(scope, lh)
	}
	connected := make([]*state.LockTarget, len(scope))
	skipped := make([]*state.HostLockState, len(scope))
	errs := fanout.ForEach(ctx, len(scope), e.MaxParallel, func(i int) string { return scope[i].Name }, func(ctx context.Context, i int) error {
		lh := scope[i]
		conn, err := e.Connector.Get(ctx, lh.Target)
		switch {
		case err == nil:
			target := lh.Target
			connected[i] = &state.LockTarget{Host: lh.Name, Conn: conn, Layout: lh.Layout, Optional: !p.mustLock(lh),
				Reconnect: func(ctx context.Context) (transport.Conn, error) { return e.Connector.Get(ctx, target) }}
			return nil
		case unreachable(err) && !p.mustLock(lh) && ctx.Err() == nil:
			msg := fmt.Sprintf("(%s): not reachable: %v", lh.Why, err)
			skipped[i] = &state.HostLockState{Host: lh.Name, Path: lh.Layout.LockDir(), Err: msg}
			e.logEvent(lh.Name, "not locked %s", msg)
			e.journal(state.JournalEvent{Kind: "lock-skipped", Host: lh.Name, Detail: msg})
			return nil
		}
		return fmt.Errorf("%s (%s): %w", lh.Name, lh.Why, err)
	})
	var failed []string
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return nil, nil, nil, &Failure{Phase: playbooks.PhasePreflight, Report: r.report,
			Err: fmt.Errorf("cannot lock what the run changes: %s", strings.Join(failed, "; "))}
	}
	why = map[string]string{}
	for i, lh := range scope {
		why[lh.Name+"\x00"+lh.Layout.LockDir()] = lh.Why
		if connected[i] != nil {
			targets = append(targets, *connected[i])
		}
		if skipped[i] != nil {
			notLocked = append(notLocked, *skipped[i])
		}
	}
	return targets, why, notLocked, nil
}
