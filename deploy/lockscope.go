package deploy

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/relctl/relctl/internal/fleet"
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
		out = append(out, LockHost{Name: h.Name, Why: why, Layout: layout, Err: err, Target: fleet.Target(proj.Config, h)})
	}
	for _, h := range pb.TargetHosts(env) {
		l, err := fleet.Layout(proj, pb, env, h)
		add(h, ScopeTarget, l, err)
	}
	all, _ := proj.PlaybooksFor(env.Name)
	side := func(h *playbooks.Host, why string) {
		n := 0
		for _, q := range all {
			if !slices.ContainsFunc(q.TargetHosts(env), func(t *playbooks.Host) bool { return t.Name == h.Name }) {
				continue
			}
			if l, err := fleet.Layout(proj, q, env, h); err == nil {
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

// EnvLockScope is every lock a run in env may take: the lock scope
// (LockScope) of each of pbs (env's playbooks), each lock location once,
// and a host whose lock location is unknown once (unless it has a known
// one too). With only set, just those hosts; a name that is not in the
// scope is bad input.
func EnvLockScope(proj *playbooks.Project, env *playbooks.Environment, pbs []*playbooks.Playbook, only []string) ([]LockHost, error) {
	var scope []LockHost
	seen := map[string]bool{}
	names := map[string]bool{}
	for _, pb := range pbs {
		for _, lh := range LockScope(proj, env, pb) {
			names[lh.Name] = true
			if key := lh.Name + "\x00" + lh.Layout.BaseDir; !seen[key] && (lh.Err == nil || !seen[lh.Name]) {
				seen[key], seen[lh.Name] = true, true
				scope = append(scope, lh)
			}
		}
	}
	if len(only) == 0 {
		return scope, nil
	}
	var unknown []string
	for _, n := range only {
		if !names[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		all := slices.Sorted(maps.Keys(names))
		return nil, badInput("%s: not a host that a run in %s locks (those are: %s)", strings.Join(unknown, ", "), env.Name, strings.Join(all, ", "))
	}
	return slices.DeleteFunc(scope, func(lh LockHost) bool { return !slices.Contains(only, lh.Name) }), nil
}

// ConnectLockScope connects to every lock location of scope, at most limit
// at once (all at once when limit <= 0), for reading or removing the locks
// outside a run (status, unlock). It returns a lock target for each host it
// reached, in scope order, and why it could not reach each of the others,
// by name; a host whose lock location is unknown is not connected to, and
// fails with why.
func ConnectLockScope(ctx context.Context, c fleet.Connector, scope []LockHost, limit int) ([]state.LockTarget, map[string]error) {
	hosts := make([]fleet.Host, len(scope))
	for i, lh := range scope {
		hosts[i] = fleet.Host{Name: lh.Name, Target: lh.Target, Layout: lh.Layout, Err: lh.Err}
	}
	reached, failed := fleet.Connect(ctx, c, hosts, limit)
	targets := make([]state.LockTarget, len(reached))
	for i, r := range reached {
		targets[i] = state.LockTarget{Host: r.Name, Conn: r.Conn, Layout: r.Layout}
	}
	return targets, failed
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
	// A side lock is a target reached, or a host left out (skipped).
	type sideLock struct {
		target  *state.LockTarget
		skipped *state.HostLockState
	}
	locks, errs := fleet.Map(ctx, scope, e.MaxParallel, func(lh LockHost) string { return lh.Name }, func(ctx context.Context, lh LockHost) (sideLock, error) {
		conn, err := e.Connector.Get(ctx, lh.Target)
		switch {
		case err == nil:
			target := lh.Target
			return sideLock{target: &state.LockTarget{Host: lh.Name, Conn: conn, Layout: lh.Layout, Optional: !p.mustLock(lh),
				Reconnect: func(ctx context.Context) (transport.Conn, error) { return e.Connector.Get(ctx, target) }}}, nil
		case unreachable(err) && !p.mustLock(lh) && ctx.Err() == nil:
			msg := fmt.Sprintf("(%s): not reachable: %v", lh.Why, err)
			e.logEvent(lh.Name, "not locked %s", msg)
			e.journal(state.JournalEvent{Kind: "lock-skipped", Host: lh.Name, Detail: msg})
			return sideLock{skipped: &state.HostLockState{Host: lh.Name, Path: lh.Layout.LockDir(), Err: msg}}, nil
		}
		return sideLock{}, fmt.Errorf("%s (%s): %w", lh.Name, lh.Why, err)
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
		if locks[i].target != nil {
			targets = append(targets, *locks[i].target)
		}
		if locks[i].skipped != nil {
			notLocked = append(notLocked, *locks[i].skipped)
		}
	}
	return targets, why, notLocked, nil
}
