package main

import (
	"context"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// envTargetConns connects to every host of env that a playbook targets (for
// reading them: history, rehearsal records; a run's lock scope is envLockScope).
// Hosts that cannot be reached are returned separately.
func envTargetConns(ctx context.Context, pool *transport.Pool, proj *playbooks.Project, envName string) ([]state.LockTarget, map[string]error, error) {
	env, err := proj.Environment(envName)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	pbs, err := proj.PlaybooksFor(envName)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	var targets []state.LockTarget
	failed := map[string]error{}
	seen := map[string]bool{}
	for _, pb := range pbs {
		for _, h := range pb.TargetHosts(env) {
			if seen[h.Name] {
				continue
			}
			seen[h.Name] = true
			data, err := proj.Data(pb, env, h, "0", "")
			if err != nil {
				failed[h.Name] = err
				continue
			}
			conn, err := pool.Get(ctx, transport.Target{Name: h.Name, Address: h.Address, User: h.User})
			if err != nil {
				failed[h.Name] = err
				continue
			}
			targets = append(targets, state.LockTarget{Host: h.Name, Conn: conn, Layout: state.Layout{BaseDir: data.BaseDir}})
		}
	}
	return targets, failed, nil
}

// envLockScope connects to every host that a run in env may lock: the lock
// scope (deploy.LockScope) of each of env's playbooks - targets, load
// balancers, a move's old hosts and dependents - each lock location once.
// Hosts that cannot be reached (or whose lock location is unknown) are
// returned separately. With only set, just those hosts (unknown names are
// a usage error).
func envLockScope(ctx context.Context, pool *transport.Pool, proj *playbooks.Project, envName string, only []string) ([]state.LockTarget, map[string]error, error) {
	env, err := proj.Environment(envName)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	pbs, err := proj.PlaybooksFor(envName)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	var scope []deploy.LockHost
	seen := map[string]bool{}
	names := map[string]bool{}
	for _, pb := range pbs {
		for _, lh := range deploy.LockScope(proj, env, pb) {
			names[lh.Name] = true
			if key := lh.Name + "\x00" + lh.Layout.BaseDir; !seen[key] && (lh.Err == nil || !seen[lh.Name]) {
				seen[key], seen[lh.Name] = true, true
				scope = append(scope, lh)
			}
		}
	}
	if len(only) > 0 {
		var unknown []string
		for _, n := range only {
			if !names[n] {
				unknown = append(unknown, n)
			}
		}
		if len(unknown) > 0 {
			all := slices.Sorted(maps.Keys(names))
			return nil, nil, usageErrorf("%s: not a host that a run in %s locks (those are: %s)", strings.Join(unknown, ", "), envName, strings.Join(all, ", "))
		}
		scope = slices.DeleteFunc(scope, func(lh deploy.LockHost) bool { return !slices.Contains(only, lh.Name) })
	}
	conns := make([]transport.Conn, len(scope))
	errs := fanout.ForEach(ctx, len(scope), proj.Config.SSH.MaxParallel, func(i int) string { return scope[i].Name }, func(ctx context.Context, i int) error {
		if scope[i].Err != nil {
			return scope[i].Err
		}
		conn, err := pool.Get(ctx, scope[i].Target)
		conns[i] = conn
		return err
	})
	var targets []state.LockTarget
	failed := map[string]error{}
	for i, lh := range scope {
		if errs[i] != nil {
			failed[lh.Name] = errs[i]
			continue
		}
		targets = append(targets, state.LockTarget{Host: lh.Name, Conn: conns[i], Layout: lh.Layout})
	}
	return targets, failed, nil
}

// readLocks reports the lock on every reachable host of env.
func readLocks(ctx context.Context, g *globalOptions, proj *playbooks.Project, env string) ([]state.HostLockState, error) {
	sess, err := openSession(g, proj.Config, "locks-"+state.NewRunID(time.Now()), false)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	targets, _, err := envLockScope(ctx, sess.pool, proj, env, nil)
	if err != nil {
		return nil, err
	}
	return state.InspectLocks(ctx, targets, state.LockOptions{TTL: proj.Config.LockTTL.Duration})
}

func sortStrings(s []string) { sort.Strings(s) }
