package rollback

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/hostlist"
	"github.com/relctl/relctl/playbooks"
)

// ErrIncompatible: a deploy or rollback was refused because the release
// would not work with what the environment runs (exit 6).
var ErrIncompatible = errors.New("incompatible with the environment")

// ErrCompatibilityUnknown: a deploy or rollback was refused because some
// host of another component could not be read, so whether the release works
// with it cannot be known (exit 6).
var ErrCompatibilityUnknown = errors.New("compatibility unknown")

// Components is what every component of an environment runs, read from
// its hosts: the releases current on them and the constraints they carry.
type Components struct {
	Env string
	// List holds one entry per component, in the order its first playbook
	// applies to the environment.
	List []*Component
}

// Component is one component of an environment, released by one or more playbooks.
type Component struct {
	Name      string
	Playbooks []string
	// Declares: some playbook releasing it has [requires] now.
	Declares bool
	// Running are the versions current on its hosts, lowest first; hosts
	// with no current release run nothing and constrain nothing.
	Running []*ComponentRelease
	// Released is every version its hosts' histories know, most recently
	// activated first: where a compatible older release is looked for.
	Released []*ComponentRelease
	// Unreadable lists the hosts whose state could not be read, with why.
	Unreadable []string
}

// ComponentRelease is one version of a component and the constraints it
// carries, from the newest activation of that version on any of its hosts.
type ComponentRelease struct {
	Version string
	// Hosts it is current on (Running only), in config order.
	Hosts []string
	// Known: the activation recorded the release's constraints (relctl
	// records them since it knows about components; older activations did
	// not, and an unknown release constrains nothing).
	Known    bool
	Requires map[string]string
}

// Component returns the named component, or nil.
func (c *Components) Component(name string) *Component {
	for _, comp := range c.List {
		if comp.Name == name {
			return comp
		}
	}
	return nil
}

// ComponentFleet is one playbook's hosts as read, and what it releases.
type ComponentFleet struct {
	Component string
	Playbook  string
	// Requires is the playbook's [requires] now (not necessarily what its
	// running release was deployed with).
	Requires map[string]string
	Fleet    *Fleet
}

// ReadComponents reads the release state of every host of every playbook
// applied to env and sorts it by component.
func ReadComponents(ctx context.Context, conn deploy.Connector, proj *playbooks.Project, env string, maxParallel int) (*Components, error) {
	pbs, err := proj.PlaybooksFor(env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrBadInput, err)
	}
	parts := make([]ComponentFleet, 0, len(pbs))
	for _, pb := range pbs {
		f, err := ReadFleet(ctx, conn, proj, env, pb.Name, nil, maxParallel)
		if err != nil {
			return nil, fmt.Errorf("reading the hosts of playbook %s: %w", pb.Name, err)
		}
		parts = append(parts, ComponentFleet{Component: pb.ComponentName(), Playbook: pb.Name, Requires: pb.Requires, Fleet: f})
	}
	// Hosts that failed because we were interrupted are not unreachable.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return BuildComponents(env, parts), nil
}

// BuildComponents groups fleets by component: per component, the versions
// its hosts run and the constraints each carries.
func BuildComponents(env string, fleets []ComponentFleet) *Components {
	c := &Components{Env: env}
	byName := map[string]*Component{}
	var order []string
	hostsOf := map[string][]HostState{}
	for _, cf := range fleets {
		comp := byName[cf.Component]
		if comp == nil {
			comp = &Component{Name: cf.Component}
			byName[cf.Component] = comp
			order = append(order, cf.Component)
		}
		comp.Playbooks = append(comp.Playbooks, cf.Playbook)
		comp.Declares = comp.Declares || len(cf.Requires) > 0
		if cf.Fleet != nil {
			hostsOf[cf.Component] = append(hostsOf[cf.Component], cf.Fleet.Hosts...)
		}
	}
	for _, name := range order {
		comp := byName[name]
		hosts := hostsOf[name]
		comp.Released = releasedVersions(hosts)
		known := map[string]*ComponentRelease{}
		for _, r := range comp.Released {
			known[r.Version] = r
		}
		running := map[string]*ComponentRelease{}
		seen := map[string]bool{}
		for _, h := range hosts {
			if seen[h.Name] {
				continue // a host two playbooks of the component target
			}
			seen[h.Name] = true
			switch {
			case h.Err != nil:
				why := h.Err.Error()
				if !strings.HasPrefix(why, h.Name) {
					why = h.Name + ": " + why // transport errors mostly name the host already
				}
				comp.Unreadable = append(comp.Unreadable, why)
				continue
			case h.State == nil || h.State.Current == "":
				continue
			}
			v := h.State.Current
			r := running[v]
			if r == nil {
				r = &ComponentRelease{Version: v}
				if k := known[v]; k != nil {
					r.Known, r.Requires = k.Known, k.Requires
				}
				running[v] = r
				comp.Running = append(comp.Running, r)
			}
			r.Hosts = append(r.Hosts, h.Name)
		}
		sortVersions(comp.Running)
		c.List = append(c.List, comp)
	}
	return c
}

// releasedVersions lists every version in the hosts' histories, most
// recently activated first, each with the constraints of its newest
// activation that recorded them (one written by an older relctl, e.g. a
// rollback, does not make them unknown again).
func releasedVersions(hosts []HostState) []*ComponentRelease {
	f := &Fleet{Hosts: hosts}
	acts := f.activations()
	var out []*ComponentRelease
	byVersion := map[string]*ComponentRelease{}
	for i := len(acts) - 1; i >= 0; i-- {
		a := acts[i]
		r := byVersion[a.Version]
		if r == nil {
			r = &ComponentRelease{Version: a.Version}
			byVersion[a.Version] = r
			out = append(out, r)
		}
		if !r.Known && a.Component != "" {
			r.Known, r.Requires = true, a.Requires
		}
	}
	return out
}

// sortVersions orders releases by semantic version, lowest first; versions
// that are not semantic go last, by name.
func sortVersions(rs []*ComponentRelease) {
	sort.SliceStable(rs, func(i, j int) bool {
		vi, ei := semver.NewVersion(rs[i].Version)
		vj, ej := semver.NewVersion(rs[j].Version)
		switch {
		case ei == nil && ej == nil:
			return vi.LessThan(vj)
		case ei == nil || ej == nil:
			return ei == nil
		}
		return rs[i].Version < rs[j].Version
	})
}

// Direction says which side of a deploy or rollback a constraint is on.
type Direction int

const (
	// TargetRequires: the release going out constrains another component
	// the environment runs.
	TargetRequires Direction = iota + 1
	// RequiredByRunning: a release the environment runs constrains the
	// component going out.
	RequiredByRunning
)

// Conflict is one constraint the release going out would break.
type Conflict struct {
	Env string
	// Component is the constrained component, Version its version: running
	// (TargetRequires) or going out (RequiredByRunning).
	Component string
	Version   string
	// Constraint is what Requirer at RequirerVersion requires of Component.
	Constraint      string
	Requirer        string
	RequirerVersion string
	// Hosts run the running side of the conflict (Version for
	// TargetRequires, RequirerVersion for RequiredByRunning).
	Hosts     []string
	Direction Direction
	// Problem is set when the constraint could not be evaluated at all: a
	// version that is not semantic, or a recorded constraint that does not parse.
	Problem string
}

func (c Conflict) String() string {
	var s string
	if c.Direction == RequiredByRunning {
		s = fmt.Sprintf("%s %s (running%s) requires %s %s, and %s would be %s",
			c.Requirer, c.RequirerVersion, onHosts(c.Hosts), c.Component, showConstraint(c.Constraint), c.Component, c.Version)
	} else {
		s = fmt.Sprintf("%s %s requires %s %s, but %s runs %s %s%s",
			c.Requirer, c.RequirerVersion, c.Component, showConstraint(c.Constraint), c.Env, c.Component, c.Version, inParens(c.Hosts))
	}
	if c.Problem != "" {
		s += "; " + c.Problem
	}
	return s
}

// CheckCompatibility checks component at targetVersion, carrying
// targetRequires, against what c says the environment runs, both ways:
// every other component's running versions must satisfy targetRequires,
// and every running release's constraint on component must accept
// targetVersion. Releases with unknown constraints constrain nothing.
func CheckCompatibility(c *Components, component, targetVersion string, targetRequires map[string]string) []Conflict {
	var out []Conflict
	for _, other := range c.List {
		if other.Name == component {
			continue
		}
		if constraint, ok := targetRequires[other.Name]; ok {
			for _, r := range other.Running {
				if ok, problem := satisfies(r.Version, constraint); !ok {
					out = append(out, Conflict{Env: c.Env, Component: other.Name, Version: r.Version, Constraint: constraint,
						Requirer: component, RequirerVersion: targetVersion, Hosts: r.Hosts, Direction: TargetRequires, Problem: problem})
				}
			}
		}
		for _, r := range other.Running {
			constraint, ok := r.Requires[component]
			if !ok {
				continue
			}
			if ok, problem := satisfies(targetVersion, constraint); !ok {
				out = append(out, Conflict{Env: c.Env, Component: component, Version: targetVersion, Constraint: constraint,
					Requirer: other.Name, RequirerVersion: r.Version, Hosts: r.Hosts, Direction: RequiredByRunning, Problem: problem})
			}
		}
	}
	return out
}

// satisfies says whether version meets constraint; problem says why it
// could not be evaluated at all.
func satisfies(version, constraint string) (ok bool, problem string) {
	cons, err := semver.NewConstraint(constraint)
	if err != nil {
		return false, fmt.Sprintf("%q is not a version constraint (%v)", constraint, err)
	}
	v, err := semver.NewVersion(version)
	if err != nil {
		return false, fmt.Sprintf("%q is not a semantic version, so no constraint can accept it", version)
	}
	if ok := cons.Check(v); ok || v.Prerelease() == "" {
		return ok, ""
	}
	// 2.1.0-rc.1 is refused by ">=2.0, <3": semver ranges leave out
	// prereleases unless they name one; say so, or it reads as a contradiction.
	return false, fmt.Sprintf("%s is a prerelease, and %q accepts prereleases only when it names one (e.g. \">=2.1.0-0, <3\")", version, constraint)
}

// CompatRequest is a release about to go out.
type CompatRequest struct {
	Env  string
	Kind string // deploy | rollback
	// Playbook deploys or rolls back Component (CheckRelease fills Component in from it).
	Playbook  string
	Component string
	Version   string
	// Requires is the release's constraints on other components;
	// RequiresKnown is false when they are unknown (a rollback to a
	// release activated before relctl recorded them).
	Requires      map[string]string
	RequiresKnown bool
	// Retry is the refused command, to run again after an option is taken.
	Retry string
}

// CompatReport is a release that passed: what was checked and what could not be.
type CompatReport struct {
	// InUse: some constraint exists (declared by a playbook, carried by
	// the release or by a running one). When false there is nothing to show.
	InUse   bool
	Checked []string
	Notes   []string
}

// IncompatibleError is a deploy or rollback refused because the release
// would break a constraint between components.
type IncompatibleError struct {
	Env       string
	Component string
	Target    string
	Kind      string // deploy | rollback
	Conflicts []Conflict
	Options   []string
}

func (e *IncompatibleError) Error() string {
	var b strings.Builder
	if e.Kind == deploy.KindRollback {
		fmt.Fprintf(&b, "refusing to roll %s back to %s in %s: it does not work with what %s runs", e.Component, e.Target, e.Env, e.Env)
	} else {
		fmt.Fprintf(&b, "refusing to deploy %s %s to %s: it does not work with what %s runs", e.Component, e.Target, e.Env, e.Env)
	}
	for _, c := range e.Conflicts {
		b.WriteString("\n  " + c.String())
	}
	if len(e.Options) > 0 {
		b.WriteString("\noptions:")
		for i, o := range e.Options {
			fmt.Fprintf(&b, "\n  %d. %s", i+1, o)
		}
	}
	b.WriteString("\nno host was changed")
	return b.String()
}

func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }

// IncompleteError is a check refused because hosts of other components
// could not be read: what they run might forbid the release.
type IncompleteError struct {
	Env       string
	Component string
	Target    string
	// Unreadable maps each component to its hosts that could not be read, with why.
	Unreadable map[string][]string
}

func (e *IncompleteError) Error() string {
	names := slices.Sorted(maps.Keys(e.Unreadable))
	var b strings.Builder
	fmt.Fprintf(&b, "cannot check that %s %s works with what %s runs: not every host could be read, and refusing is safer than guessing", e.Component, e.Target, e.Env)
	for _, n := range names {
		fmt.Fprintf(&b, "\n  %s: %s", n, strings.Join(e.Unreadable[n], ", "))
	}
	fmt.Fprintf(&b, "\nbring them back (relctl status --env %s), then run the command again; no host was changed", e.Env)
	return b.String()
}

func (e *IncompleteError) Unwrap() error { return ErrCompatibilityUnknown }

// CheckRelease reads what req.Env runs and checks the release against it.
// An environment whose playbooks release a single component has nothing to
// be compatible with: no host is read.
func CheckRelease(ctx context.Context, conn deploy.Connector, proj *playbooks.Project, maxParallel int, req CompatRequest) (*CompatReport, error) {
	pbs, err := proj.PlaybooksFor(req.Env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrBadInput, err)
	}
	names := map[string]bool{}
	for _, pb := range pbs {
		names[pb.ComponentName()] = true
		if pb.Name == req.Playbook || (req.Playbook == "" && len(pbs) == 1) {
			req.Component = pb.ComponentName()
		}
	}
	if req.Component == "" {
		return nil, fmt.Errorf("%w: environment %s does not apply playbook %q", deploy.ErrBadInput, req.Env, req.Playbook)
	}
	if len(names) < 2 {
		return &CompatReport{}, nil
	}
	c, err := ReadComponents(ctx, conn, proj, req.Env, maxParallel)
	if err != nil {
		return nil, err
	}
	return Evaluate(c, req)
}

// Evaluate checks req against c: an *IncompleteError when another
// component's hosts could not all be read, an *IncompatibleError (with the
// ways out) when a constraint would break, else what was checked.
func Evaluate(c *Components, req CompatRequest) (*CompatReport, error) {
	rep := &CompatReport{InUse: len(req.Requires) > 0}
	for _, comp := range c.List {
		rep.InUse = rep.InUse || comp.Declares
		for _, r := range comp.Running {
			rep.InUse = rep.InUse || len(r.Requires) > 0
		}
	}
	if !rep.InUse {
		return rep, nil
	}
	unreadable := map[string][]string{}
	for _, comp := range c.List {
		if comp.Name != req.Component && len(comp.Unreadable) > 0 {
			unreadable[comp.Name] = comp.Unreadable
		}
	}
	if len(unreadable) > 0 {
		return nil, &IncompleteError{Env: c.Env, Component: req.Component, Target: req.Version, Unreadable: unreadable}
	}
	if conflicts := CheckCompatibility(c, req.Component, req.Version, req.Requires); len(conflicts) > 0 {
		return nil, &IncompatibleError{Env: c.Env, Component: req.Component, Target: req.Version, Kind: req.Kind,
			Conflicts: conflicts, Options: Options(c, req, conflicts)}
	}
	rep.Checked, rep.Notes = describeChecks(c, req)
	return rep, nil
}

// describeChecks says, for a release that passed, each constraint checked
// and each one that could not be.
func describeChecks(c *Components, req CompatRequest) (checked, notes []string) {
	if !req.RequiresKnown {
		notes = append(notes, fmt.Sprintf("%s %s: its own constraints are unknown (activated before relctl recorded them): only the other components' constraints on %s were checked",
			req.Component, req.Version, req.Component))
	}
	for _, name := range slices.Sorted(maps.Keys(req.Requires)) {
		constraint := req.Requires[name]
		other := c.Component(name)
		switch {
		case other == nil:
			notes = append(notes, fmt.Sprintf("%s %s requires %s %s, but no playbook of %s releases %s: not checked",
				req.Component, req.Version, name, showConstraint(constraint), c.Env, name))
		case len(other.Running) == 0:
			checked = append(checked, fmt.Sprintf("%s %s requires %s %s: %s runs no %s yet",
				req.Component, req.Version, name, showConstraint(constraint), c.Env, name))
		default:
			var runs []string
			for _, r := range other.Running {
				runs = append(runs, r.Version+inParens(r.Hosts))
			}
			checked = append(checked, fmt.Sprintf("%s %s requires %s %s: %s runs %s %s",
				req.Component, req.Version, name, showConstraint(constraint), c.Env, name, strings.Join(runs, ", ")))
		}
	}
	for _, other := range c.List {
		if other.Name == req.Component {
			continue
		}
		for _, r := range other.Running {
			switch constraint, ok := r.Requires[req.Component]; {
			case !r.Known:
				notes = append(notes, fmt.Sprintf("%s %s%s: its constraints are unknown (activated before relctl recorded them): not checked",
					other.Name, r.Version, inParens(r.Hosts)))
			case ok:
				checked = append(checked, fmt.Sprintf("%s %s (running%s) requires %s %s: %s %s satisfies it",
					other.Name, r.Version, onHosts(r.Hosts), req.Component, showConstraint(constraint), req.Component, req.Version))
			}
		}
	}
	return checked, notes
}

// Options are the ways out of a refusal: change the release going out
// (roll forward instead of back), or first move each conflicting component
// to a release it ran that works with it, then run the refused command again.
func Options(c *Components, req CompatRequest, conflicts []Conflict) []string {
	var with []string
	var others []string
	for _, cf := range conflicts {
		other, version := cf.Component, cf.Version
		if cf.Direction == RequiredByRunning {
			other, version = cf.Requirer, cf.RequirerVersion
		}
		if s := other + " " + version; !slices.Contains(with, s) {
			with = append(with, s)
		}
		if !slices.Contains(others, other) {
			others = append(others, other)
		}
	}
	var opts []string
	if req.Kind == deploy.KindRollback {
		opts = append(opts, fmt.Sprintf("roll forward: deploy a release of %s that works with %s", req.Component, joinAnd(with)))
	} else {
		opts = append(opts, fmt.Sprintf("deploy a release of %s that works with %s instead", req.Component, joinAnd(with)))
	}
	then := ""
	if req.Retry != "" {
		then = ", then " + req.Retry
	}
	for _, name := range others {
		comp := c.Component(name)
		if comp == nil {
			continue
		}
		r := compatibleRelease(comp, req, conflicts)
		if r == nil {
			if req.Kind == deploy.KindRollback {
				opts = append(opts, fmt.Sprintf("roll %s back too: no release of %s that %s ran is known to work with %s %s",
					name, name, c.Env, req.Component, req.Version))
			} else {
				opts = append(opts, fmt.Sprintf("deploy a release of %s that works with %s %s first (none that %s ran is known to)%s",
					name, req.Component, req.Version, c.Env, then))
			}
			continue
		}
		var cmds []string
		if belowAll(r.Version, comp.Running) {
			for _, pb := range comp.Playbooks {
				cmds = append(cmds, fmt.Sprintf("relctl rollback --env %s --playbook %s --to %s", c.Env, pb, r.Version))
			}
			how := "first"
			if req.Kind == deploy.KindRollback {
				how = "too"
			}
			opts = append(opts, fmt.Sprintf("roll %s back %s: %s%s", name, how, strings.Join(cmds, " and "), then))
		} else {
			for _, pb := range comp.Playbooks {
				cmds = append(cmds, fmt.Sprintf("relctl deploy --env %s --playbook %s --release %s", c.Env, pb, r.Version))
			}
			opts = append(opts, fmt.Sprintf("move %s to %s first: %s%s", name, r.Version, strings.Join(cmds, " and "), then))
		}
	}
	return opts
}

// compatibleRelease is the highest version comp ran (and does not run now)
// that resolves every conflict involving comp: it satisfies the release's
// constraint on comp, and its own known constraints accept the release.
func compatibleRelease(comp *Component, req CompatRequest, conflicts []Conflict) *ComponentRelease {
	running := map[string]bool{}
	for _, r := range comp.Running {
		running[r.Version] = true
	}
	var best *ComponentRelease
	var bestV *semver.Version
	for _, r := range comp.Released {
		v, err := semver.NewVersion(r.Version)
		if err != nil || running[r.Version] || !resolves(comp.Name, r, req, conflicts) {
			continue
		}
		if best == nil || v.GreaterThan(bestV) {
			best, bestV = r, v
		}
	}
	return best
}

func resolves(name string, r *ComponentRelease, req CompatRequest, conflicts []Conflict) bool {
	if constraint, ok := req.Requires[name]; ok {
		if ok, _ := satisfies(r.Version, constraint); !ok {
			return false
		}
	}
	if constraint, ok := r.Requires[req.Component]; ok {
		if ok, _ := satisfies(req.Version, constraint); !ok {
			return false
		}
	}
	// Where a running release of comp refused the target, only a release
	// known to accept it helps: an unknown one may refuse it just the same.
	for _, cf := range conflicts {
		if cf.Direction == RequiredByRunning && cf.Requirer == name && !r.Known {
			return false
		}
	}
	return true
}

// belowAll: version is lower than every running version (going there is a rollback).
func belowAll(version string, running []*ComponentRelease) bool {
	v, err := semver.NewVersion(version)
	if err != nil {
		return false
	}
	for _, r := range running {
		rv, err := semver.NewVersion(r.Version)
		if err != nil || !v.LessThan(rv) {
			return false
		}
	}
	return true
}

// showConstraint quotes constraints with several parts, so the commas of
// ">=2.0, <3" do not read as the sentence's.
func showConstraint(c string) string {
	if strings.ContainsAny(c, " ,|") {
		return fmt.Sprintf("%q", c)
	}
	return c
}

func inParens(hosts []string) string {
	if len(hosts) == 0 {
		return ""
	}
	return " (" + hostlist.Compress(hosts) + ")"
}

func onHosts(hosts []string) string {
	if len(hosts) == 0 {
		return ""
	}
	return " on " + hostlist.Compress(hosts)
}

func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
