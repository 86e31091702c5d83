package playbooks

import (
	"slices"

	"github.com/Masterminds/semver/v3"
)

// ComponentName is what the playbook releases: component, or its name.
func (pb *Playbook) ComponentName() string {
	if pb.Component != "" {
		return pb.Component
	}
	return pb.Name
}

// validateRequires checks [requires]: component names and semver constraints.
func (pb *Playbook) validateRequires() Problems {
	ix := pb.pos
	var ps Problems
	if pb.Component != "" {
		if err := validName(pb.Component); err != nil {
			ps = append(ps, ix.problem("component", "component: %v", err))
		}
	}
	names := make([]string, 0, len(pb.Requires))
	for name := range pb.Requires {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		key := "requires." + name
		if err := validName(name); err != nil {
			ps = append(ps, ix.problem(key, "requires: component %v", err))
			continue
		}
		if name == pb.ComponentName() {
			ps = append(ps, ix.problem(key, "requires.%s: a release cannot constrain its own component", name))
			continue
		}
		if _, err := semver.NewConstraint(pb.Requires[name]); err != nil {
			ps = append(ps, ix.problem(key, "requires.%s = %q is not a version constraint (e.g. \">=2.0, <3\"): %v", name, pb.Requires[name], err))
		}
	}
	return ps
}
