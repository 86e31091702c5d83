package playbooks

import (
	"fmt"
	"slices"
	"time"

	"github.com/relctl/relctl/traffic/haproxyspec"
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

// TrafficServer is a host's server in the haproxy [traffic] backend:
// traffic.server (by default the host's name) rendered with data, refused
// when HAProxy could not have it - by haproxyspec, the rule the runtime API
// client applies before it sends anything.
func (pb *Playbook) TrafficServer(data *TemplateData) (string, error) {
	text := pb.Traffic.Server
	if text == "" {
		text = DefaultTrafficServer
	}
	return renderChecked("traffic.server", text, data, func(s string) error { return haproxyspec.Name("server", s) })
}

// TrafficBackend is traffic.backend rendered with a target host's data,
// refused when HAProxy could not have it.
func (pb *Playbook) TrafficBackend(data *TemplateData) (string, error) {
	return renderChecked("traffic.backend", pb.Traffic.Backend, data, func(s string) error { return haproxyspec.Name("backend", s) })
}

// TrafficSocket is traffic.socket rendered with a load balancer's data,
// refused when socat could not connect to it as one address.
func (pb *Playbook) TrafficSocket(data *TemplateData) (string, error) {
	return renderChecked("traffic.socket", pb.Traffic.Socket, data, haproxyspec.Socket)
}

func renderChecked(name, text string, data *TemplateData, check func(string) error) (string, error) {
	out, err := RenderText(name, text, data)
	if err != nil {
		return "", err
	}
	return out, check(out)
}

// validateTrafficHosts renders the haproxy [traffic] names for every host a
// deploy renders them for, and refuses what the deploy would refuse without
// asking a host: each target host's backend and server, with a [move] each
// old host's server too, and each load balancer's admin socket. One problem
// per key, for the first host that shows it.
func (p *Project) validateTrafficHosts(pb *Playbook, env *Environment) Problems {
	t := pb.Traffic
	if t == nil || t.Provider != TrafficHAProxy {
		return nil
	}
	ix := pb.pos
	var ps Problems
	reported := map[string]bool{}
	check := func(key, text, who string, h *Host, data func() (*TemplateData, error), value func(*TemplateData) (string, error)) {
		if text == "" || reported[key] || len(templateSyntax(ix, key, text, false)) > 0 {
			return // missing or unparsable: reported on its own
		}
		d, err := data()
		if err != nil {
			return // the host's vars: reported on their own
		}
		if _, err := value(d); err != nil {
			reported[key] = true
			ps = append(ps, ix.problem(key, "%s: %v (rendering for %s %q in environment %q)", key, err, who, h.Name, env.Name))
		}
	}
	server := t.Server
	if server == "" {
		server = DefaultTrafficServer
	}
	for _, h := range pb.TargetHosts(env) {
		data := func() (*TemplateData, error) { return p.Data(pb, env, h, "0.0.0", "validate") }
		check("traffic.backend", t.Backend, "host", h, data, pb.TrafficBackend)
		check("traffic.server", server, "host", h, data, pb.TrafficServer)
	}
	if pb.Move != nil {
		for _, h := range env.HostsWithRole(pb.Move.FromRole) {
			check("traffic.server", server, "old host", h, func() (*TemplateData, error) { return p.HostData(pb, env, h) }, pb.TrafficServer)
		}
	}
	for _, lb := range env.HostsWithRole(t.LBRole) {
		check("traffic.socket", t.Socket, "load balancer", lb, func() (*TemplateData, error) { return p.HostData(pb, env, lb) }, pb.TrafficSocket)
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
		Vars: vars, Secrets: secretRefs(p.Config),
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
