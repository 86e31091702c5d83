package playbooks

import (
	"fmt"
	"slices"
	"time"
)

// DefaultDrainTimeout bounds the wait for a draining server's sessions.
const DefaultDrainTimeout = 30 * time.Second

// DefaultTrafficServer names a host's server in the backend: its name.
const DefaultTrafficServer = "{{.Host.Name}}"

// validateTraffic checks [traffic]: a known provider and what it needs.
func (pb *Playbook) validateTraffic() Problems {
	t := pb.Traffic
	if t == nil {
		return nil
	}
	ix := pb.pos
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }
	haproxyKeys := [][2]string{{"traffic.lb_role", t.LBRole}, {"traffic.socket", t.Socket}, {"traffic.backend", t.Backend}, {"traffic.server", t.Server}}
	commandKeys := [][2]string{{"traffic.disable", t.Disable}, {"traffic.enable", t.Enable}}
	unused := func(keys [][2]string, provider string) {
		for _, kv := range keys {
			if kv[1] != "" {
				add(kv[0], "%s is not used by the %s provider", kv[0], provider)
			}
		}
	}
	switch t.Provider {
	case TrafficHAProxy:
		for _, kv := range haproxyKeys[:3] {
			if kv[1] == "" {
				add("traffic", "%s is missing (the haproxy provider needs lb_role, socket and backend)", kv[0])
			}
		}
		if t.LBRole != "" {
			if err := checkName("role", t.LBRole, hostNameRE, 63, nameAlphabet); err != nil {
				add("traffic.lb_role", "traffic.lb_role: %v", err)
			}
		}
		for _, kv := range haproxyKeys[1:] {
			ps = append(ps, templateSyntax(ix, kv[0], kv[1], false)...)
		}
		unused(commandKeys, t.Provider)
	case TrafficCommand:
		for _, kv := range commandKeys {
			if kv[1] == "" {
				add("traffic", "%s is missing (the command provider runs disable before a host's release is switched and enable after its checks)", kv[0])
			}
			ps = append(ps, templateSyntax(ix, kv[0], kv[1], true)...)
		}
		unused(haproxyKeys, t.Provider)
		if t.DrainTimeout.Duration != 0 {
			add("traffic.drain_timeout", "traffic.drain_timeout is not used by the command provider (disable should return once the host is out)")
		}
	case "":
		add("traffic", "traffic.provider is missing (use %q or %q)", TrafficHAProxy, TrafficCommand)
	default:
		add("traffic.provider", "traffic.provider %q is not valid (use %q or %q)", t.Provider, TrafficHAProxy, TrafficCommand)
	}
	if t.DrainTimeout.Duration < 0 {
		add("traffic.drain_timeout", "traffic.drain_timeout must not be negative")
	}
	return ps
}

// HostData is what templates about a host that is not a target (a load
// balancer) see: project, environment, the host, and the playbook's,
// environment's and host's vars. No release layout: it needs no base_dir.
func (p *Project) HostData(pb *Playbook, env *Environment, h *Host) (*TemplateData, error) {
	vars := map[string]string{}
	for _, src := range []map[string]any{pb.Vars, env.Vars, h.Vars} {
		for k, v := range src {
			s, ok := varString(v)
			if !ok {
				return nil, fmt.Errorf("host %q: var %q: %T is not a string, number or boolean", h.Name, k, v)
			}
			vars[k] = s
		}
	}
	return &TemplateData{
		Project: p.Config.Project, Env: env.Name, Playbook: pb.Name,
		Host: HostData{Name: h.Name, Address: h.Address, Roles: slices.Clone(h.Roles)},
		Vars: vars,
	}, nil
}

// HostsWithRole lists the environment's hosts with role, in config order.
func (env *Environment) HostsWithRole(role string) []*Host {
	var out []*Host
	for _, h := range env.Hosts {
		if slices.Contains(h.Roles, role) {
			out = append(out, h)
		}
	}
	return out
}
