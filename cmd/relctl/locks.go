package main

import (
	"context"
	"sort"
	"time"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// envLockTargets connects to every host of env that a playbook targets.
// Hosts that cannot be reached are returned separately.
func envLockTargets(ctx context.Context, pool *transport.Pool, proj *playbooks.Project, envName string) ([]state.LockTarget, map[string]error, error) {
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

// readLocks reports the lock on every reachable host of env.
func readLocks(ctx context.Context, g *globalOptions, proj *playbooks.Project, env string) ([]state.HostLockState, error) {
	sess, err := openSession(g, proj.Config, "locks-"+state.NewRunID(time.Now()), false)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	targets, _, err := envLockTargets(ctx, sess.pool, proj, env)
	if err != nil {
		return nil, err
	}
	return state.InspectLocks(ctx, targets, state.LockOptions{TTL: proj.Config.LockTTL.Duration})
}

func sortStrings(s []string) { sort.Strings(s) }
