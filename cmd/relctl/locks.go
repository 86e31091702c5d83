package main

import (
	"context"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// envTargetConns connects to every host of env that a playbook targets (for
// reading them: history, rehearsal records; a run's lock scope is envLockScope).
// Hosts that cannot be reached are returned separately.
func envTargetConns(ctx context.Context, pool *transport.Pool, proj *playbooks.Project, envName string) ([]state.LockTarget, map[string]error, error) {
	env, pbs, err := envPlaybooks(proj, envName)
	if err != nil {
		return nil, nil, err
	}
	reached, failed := fleet.Connect(ctx, pool, fleet.EnvHosts(proj, pbs, env), proj.Config.SSH.MaxParallel)
	targets := make([]state.LockTarget, len(reached))
	for i, r := range reached {
		targets[i] = state.LockTarget{Host: r.Name, Conn: r.Conn, Layout: r.Layout}
	}
	return targets, failed, nil
}

// envLockScope connects to every host that a run in env may lock
// (deploy.EnvLockScope). Hosts that cannot be reached (or whose lock
// location is unknown) are returned separately. With only set, just those
// hosts (unknown names are a usage error).
func envLockScope(ctx context.Context, pool *transport.Pool, proj *playbooks.Project, envName string, only []string) ([]state.LockTarget, map[string]error, error) {
	env, pbs, err := envPlaybooks(proj, envName)
	if err != nil {
		return nil, nil, err
	}
	scope, err := deploy.EnvLockScope(proj, env, pbs, only)
	if err != nil {
		return nil, nil, err
	}
	targets, failed := deploy.ConnectLockScope(ctx, pool, scope, proj.Config.SSH.MaxParallel)
	return targets, failed, nil
}

// envPlaybooks is env and the playbooks that apply to it; a name that is
// not one is a usage error.
func envPlaybooks(proj *playbooks.Project, envName string) (*playbooks.Environment, []*playbooks.Playbook, error) {
	env, err := proj.Environment(envName)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	pbs, err := proj.PlaybooksFor(envName)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	return env, pbs, nil
}

// readLocks reports the lock on every reachable host of env.
func readLocks(ctx context.Context, open openSessionFunc, proj *playbooks.Project, env string) ([]state.HostLockState, error) {
	sess, err := open(proj.Config, "locks-"+state.NewRunID(time.Now()), false)
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
