// Package rollback plans rollbacks from what the hosts say: it reads every
// host's release history (no local state needed, so it works from a machine
// that never ran the deploy), works out the fleet's previous release, and
// hands the engine a rollback plan, which runs on the same executor as a
// deploy.
package rollback

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/hostlist"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// ErrNothingToRollBackTo: the fleet has no release before its current one.
var ErrNothingToRollBackTo = errors.New("nothing to roll back to")

// HostState is one host as read for a rollback.
type HostState struct {
	Name  string
	State *state.HostState // nil when Err is set
	Err   error
}

// Fleet is every targeted host's release state.
type Fleet struct {
	Env   string
	Hosts []HostState
	// selected: the hosts the rollback will change (nil: all).
	selected map[string]bool
}

// ReadFleet reads the release state of every host the playbook targets in env.
func ReadFleet(ctx context.Context, conn deploy.Connector, proj *playbooks.Project, env, playbook string, only []string, maxParallel int) (*Fleet, error) {
	e, err := proj.Environment(env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrBadInput, err)
	}
	pbs, err := proj.PlaybooksFor(env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrBadInput, err)
	}
	var pb *playbooks.Playbook
	for _, p := range pbs {
		if p.Name == playbook || (playbook == "" && len(pbs) == 1) {
			pb = p
		}
	}
	if pb == nil {
		return nil, fmt.Errorf("%w: choose a playbook with --playbook (environment %s has %d)", deploy.ErrBadInput, env, len(pbs))
	}
	// Every targeted host is read, even with --hosts: the fleet's previous
	// release comes from all of their histories. Only the selected ones must
	// be reachable.
	hosts := fleet.Hosts(proj, pb, e)
	f := &Fleet{Env: env, Hosts: make([]HostState, len(hosts))}
	if len(only) > 0 {
		f.selected = map[string]bool{}
		for _, n := range only {
			f.selected[n] = true
		}
	}
	states, errs := fleet.Read(ctx, conn, hosts, max(maxParallel, 1), func(ctx context.Context, h fleet.Host, c transport.Conn) (*state.HostState, error) {
		return state.ReadHostState(ctx, c, h.Layout, "read-state")
	})
	for i, h := range hosts {
		f.Hosts[i] = HostState{Name: h.Name, State: states[i], Err: errs[i]}
		if errs[i] != nil { // unreadable, unreachable, not started, or a panic: no state then
			f.Hosts[i].State = nil
		}
	}
	return f, nil
}

// Unreachable lists the selected hosts whose state could not be read, with why.
func (f *Fleet) Unreachable() []string {
	var out []string
	for _, h := range f.Hosts {
		if h.Err != nil && (f.selected == nil || f.selected[h.Name]) {
			out = append(out, fmt.Sprintf("%s: %v", h.Name, h.Err))
		}
	}
	return out
}

// Unreadable lists every host (selected or not) whose state could not be read.
func (f *Fleet) Unreadable() []string {
	var out []string
	for _, h := range f.Hosts {
		if h.Err != nil {
			out = append(out, h.Name)
		}
	}
	return out
}

// Current maps each readable host to its current release.
func (f *Fleet) Current() map[string]string {
	out := map[string]string{}
	for _, h := range f.Hosts {
		if h.State != nil {
			out[h.Name] = h.State.Current
		}
	}
	return out
}

// Ran says whether any host of the fleet ever had version as current.
func (f *Fleet) Ran(version string) bool {
	for _, a := range f.activations() {
		if a.Version == version {
			return true
		}
	}
	return false
}

// ActivationOf is the newest activation of version on any host, or nil:
// what that release was deployed with, including its constraints.
func (f *Fleet) ActivationOf(version string) *state.Activation {
	acts := f.activations()
	for i := len(acts) - 1; i >= 0; i-- {
		if acts[i].Version == version {
			return &acts[i]
		}
	}
	return nil
}

// CheckGatedTarget refuses, in an environment with require_rehearsal, a
// "rollback" to a release the environment never ran: that is a deploy,
// and must pass the rehearsal gate as one.
func (f *Fleet) CheckGatedTarget(env *playbooks.Environment, target string) error {
	if env.RequireRehearsal == "" || f.Ran(target) {
		return nil
	}
	return &GateError{
		Reason: fmt.Sprintf("%s never ran %s: going there is a deploy, not a rollback, and %s requires a rehearsal in %s", f.Env, target, f.Env, env.RequireRehearsal),
		Fix:    fmt.Sprintf("relctl deploy --env %s --release %s (the rehearsal gate applies; --skip-rehearsal --reason overrides it)", f.Env, target),
	}
}

// NewestRunIs says whether the newest activation on any host was made by
// run (or the fleet has none).
func (f *Fleet) NewestRunIs(run string) bool {
	acts := f.activations()
	return len(acts) == 0 || acts[len(acts)-1].RunID == run
}

// activations is every host's history, oldest first.
func (f *Fleet) activations() []state.Activation {
	var all []state.Activation
	for _, h := range f.Hosts {
		if h.State != nil {
			all = append(all, h.State.History.Activations...)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	return all
}

// Resolve turns --to (prev or a version) into the release to go back to and
// the release the fleet is leaving. "prev" is the fleet's previous release:
// the one that was active on the environment before its current one (the
// release most recently made current on any host), read from the merged
// histories, so every host gets the same answer even after a partial deploy.
func (f *Fleet) Resolve(to string) (target, from string, err error) {
	acts := f.activations()
	if len(acts) == 0 {
		return "", "", fmt.Errorf("%w: no host of %s has a release history", ErrNothingToRollBackTo, f.Env)
	}
	// The release the fleet is leaving: the newest one deployed (rollbacks do
	// not count) that a host still runs. After a rollback that stopped
	// halfway, that is the release some hosts are still on.
	running := map[string]bool{}
	for _, h := range f.Hosts {
		if h.State != nil && h.State.Current != "" {
			running[h.State.Current] = true
		}
	}
	from = acts[len(acts)-1].Version
	for i := len(acts) - 1; i >= 0; i-- {
		if a := acts[i]; a.Kind != deploy.KindRollback && (len(running) == 0 || running[a.Version]) {
			from = a.Version
			break
		}
	}
	if to != "prev" {
		if err := playbooks.ValidateVersion(to); err != nil {
			return "", "", fmt.Errorf("%w: --to %q: %v", deploy.ErrBadInput, to, err)
		}
		return to, from, nil
	}
	// What was active before `from` was deployed: the newest deploy of it.
	for i := len(acts) - 1; i >= 0; i-- {
		a := acts[i]
		if a.Version == from && a.Kind != deploy.KindRollback && a.Previous != from {
			target = a.Previous
			break
		}
	}
	if target == "" || target == from {
		return "", from, fmt.Errorf("%w: %s has no release before %s (hosts: %s)", ErrNothingToRollBackTo, f.Env, from, f.summary())
	}
	return target, from, nil
}

// summary is which hosts run what, folded: "production-[1-2] on 1.0.0,
// production-3 on unknown" (every host named, internal/hostlist).
func (f *Fleet) summary() string {
	var versions []string
	by := map[string][]string{}
	for _, h := range f.Hosts {
		cur := "unknown"
		if h.State != nil {
			cur = h.State.Current
			if cur == "" {
				cur = "none"
			}
		}
		if by[cur] == nil {
			versions = append(versions, cur)
		}
		by[cur] = append(by[cur], h.Name)
	}
	parts := make([]string, len(versions))
	for i, v := range versions {
		parts[i] = hostlist.Compress(by[v]) + " on " + v
	}
	return strings.Join(parts, ", ")
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
