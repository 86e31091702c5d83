package playbooks

import (
	"bytes"
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
			if _, err := pb.DependentTemplate(d); err != nil {
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

// DependentTemplate reads and parses a dependent's config template (a file
// relative to the playbook's directory). A key missing from its data is an
// error when it is rendered, not an empty string.
func (pb *Playbook) DependentTemplate(d *Dependent) (*template.Template, error) {
	text, err := os.ReadFile(filepath.Join(filepath.Dir(pb.Path), d.Template))
	if err != nil {
		return nil, err
	}
	return template.New(d.Template).Option("missingkey=error").Parse(string(text))
}

// MovedHost is one of the component's new hosts as a dependent's config
// template sees it in .Hosts.
type MovedHost struct {
	Name, Address string
	Vars          map[string]string
}

// RenderDependentConfig renders a dependent's config template for one
// dependent host (data is its HostData): .Hosts are the component's new
// hosts, .Host and .Vars the dependent's own, .Env and .Version the run's.
func RenderDependentConfig(t *template.Template, hosts []MovedHost, data *TemplateData, version string) ([]byte, error) {
	var out bytes.Buffer
	if err := t.Execute(&out, map[string]any{"Hosts": hosts, "Host": data.Host, "Vars": data.Vars, "Env": data.Env, "Version": version}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// validateOldHosts renders, for every host a [move] moves away from, what
// `relctl finalize` runs there (move.retire), as validateHost does for the
// playbook's own hosts.
func (p *Project) validateOldHosts(pb *Playbook, env *Environment) Problems {
	m := pb.Move
	if m == nil || m.Retire == "" || len(templateSyntax(pb.pos, "move.retire", m.Retire, true)) > 0 {
		return nil
	}
	for _, h := range env.HostsWithRole(m.FromRole) {
		data, err := p.HostData(pb, env, h)
		if err != nil {
			return Problems{pb.pos.problem("move.from_role", "%v", err)}
		}
		if _, err := RenderCommand("move.retire", m.Retire, data); err != nil {
			return Problems{pb.pos.problem("move.retire", "move.retire: %v (rendering for old host %q in environment %q)", err, h.Name, env.Name)}
		}
	}
	return nil
}
