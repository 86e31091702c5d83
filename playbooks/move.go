package playbooks

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"text/template"
)

// validateMove checks [move]: the role moved from, the dependents (their
// template file, commands and checks) and the retire command.
func (pb *Playbook) validateMove() Problems {
	m := pb.Move
	if m == nil {
		return nil
	}
	ix := pb.pos
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }
	switch {
	case m.FromRole == "":
		add("move", "move.from_role is missing (the role of the hosts the component moves away from)")
	case slices.Contains(pb.Roles, m.FromRole):
		add("move.from_role", "move.from_role %q is also one of the playbook's roles: a move goes from the hosts of from_role to those of roles", m.FromRole)
	default:
		if err := checkName("role", m.FromRole, hostNameRE, 63, nameAlphabet); err != nil {
			add("move.from_role", "move.from_role: %v", err)
		}
	}
	if pb.Traffic != nil && pb.Traffic.Provider == TrafficCommand {
		add("traffic.provider", "a [move] switches traffic through the load balancer's API: use provider = %q (the command provider would have to run on the old hosts, which a move never touches)", TrafficHAProxy)
	}
	ps = append(ps, templateSyntax(ix, "move.retire", m.Retire, true)...)
	for i, d := range m.Dependents {
		key := fmt.Sprintf("move.dependents.%d", i)
		if d.Role == "" {
			add(key, "%s.role is missing (the hosts whose config names the component's hosts)", key)
		}
		for _, kv := range [][2]string{{"config", d.Config}, {"template", d.Template}, {"restart", d.Restart}} {
			if kv[1] == "" {
				add(key, "%s.%s is missing", key, kv[0])
			}
		}
		ps = append(ps, templateSyntax(ix, key+".config", d.Config, false)...)
		ps = append(ps, templateSyntax(ix, key+".restart", d.Restart, true)...)
		if d.Template != "" {
			file := filepath.Join(filepath.Dir(pb.Path), d.Template)
			if text, err := os.ReadFile(file); err != nil {
				add(key+".template", "%s.template: %v", key, err)
			} else if _, err := template.New(d.Template).Parse(string(text)); err != nil {
				add(key+".template", "%s.template: %v", key, err)
			}
		}
		for j, c := range d.Checks {
			if _, ok := pb.Checks[c]; !ok {
				add(fmt.Sprintf("%s.checks.%d", key, j), "%s.checks: unknown check %q (define [checks.%s])", key, c, c)
			}
		}
		if d.BatchSize < 0 {
			add(key+".batch_size", "%s.batch_size must not be negative", key)
		}
	}
	return ps
}
