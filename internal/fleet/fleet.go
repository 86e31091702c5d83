// Package fleet owns reading the fleet: which hosts a playbook targets in an
// environment (Hosts), how each becomes a transport target (Target) and
// where its releases and state live (Layout); working on many hosts at once,
// at most N at a time and cancellable, each host's outcome kept apart (Map,
// Read, Connect) or the failures collected one host per line (Each); and
// reading and writing one file of a host, telling a file that is absent
// from one that is unreadable and from an answer that is not the read
// script's (ReadFile, WriteFile).
//
// It sits above internal/state and internal/transport and below deploy and
// rollback; the goroutines themselves are internal/fanout's.
package fleet

import (
	"context"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Connector hands out the connection to a target (a *transport.Pool, or a
// wrapper around one); deploy.Connector is this.
type Connector interface {
	Get(ctx context.Context, t transport.Target) (transport.Conn, error)
}

// Target is host h as the transport reaches it: its name and everything
// Load resolved about reaching it (playbooks.HostSSH: address, login, keys,
// known_hosts, bastions, each from relctl.toml or the OpenSSH client
// configuration). This is the one place a host becomes a target.
func Target(cfg *playbooks.Config, h *playbooks.Host) transport.Target {
	if h.SSH == nil {
		// A host that did not come through playbooks.Load (tests).
		user := h.User
		if user == "" && cfg != nil {
			user = cfg.SSH.User
		}
		return transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address, User: user}}
	}
	t := transport.Target{Name: h.Name, Endpoint: endpoint(h.SSH), ForwardAgent: h.SSH.ForwardAgent.Value == "yes"}
	for _, j := range h.SSH.Jumps {
		t.Jumps = append(t.Jumps, endpoint(j))
	}
	return t
}

// endpoint is one resolved host or bastion as the transport logs in to it.
// Its lists are never nil: they replace the pool's defaults.
func endpoint(s *playbooks.HostSSH) transport.Endpoint {
	keys := make([]string, len(s.IdentityFiles))
	for i, f := range s.IdentityFiles {
		keys[i] = f.Value
	}
	known := s.KnownHostsFiles()
	return transport.Endpoint{
		Address:                s.Address(),
		User:                   s.User.Value,
		IdentityFiles:          keys,
		IdentitiesOnly:         s.IdentitiesOnly.Value == "yes",
		KnownHostsFiles:        known,
		GlobalKnownHostsFiles:  s.GlobalKnownHostsFiles(),
		HashKnownHosts:         s.HashKnownHosts.Value == "yes",
		SkipUnusableIdentities: s.SkipUnusable,
		HostKeyAlias:           s.HostKeyAlias.Value,
		HostKeyPolicy:          s.HostKeyPolicy.Value,
		ConnectTimeout:         s.ConnectTimeoutDuration(),
	}
}

// placeholderVersion stands in for the release when only the host's layout
// is wanted. The layout is base_dir alone, and base_dir cannot depend on the
// version: it is a var, and vars are never rendered as templates
// (playbooks.Project.HostData merges them as plain strings), so .Version
// cannot reach it; validation checks that it is set and absolute for every
// targeted host. Only ReleaseDir and the artifact's path use the version.
// "0" is a valid version, so Data accepts it.
const placeholderVersion = "0"

// Layout is where pb keeps releases and relctl's state on host h of env
// (its base_dir). It fails as the templates for a real release would, for a
// host without an absolute base_dir or whose artifact.path does not render;
// the placeholder release it renders them with cannot change base_dir (see
// placeholderVersion).
func Layout(proj *playbooks.Project, pb *playbooks.Playbook, env *playbooks.Environment, h *playbooks.Host) (state.Layout, error) {
	data, err := proj.Data(pb, env, h, placeholderVersion, "")
	if err != nil {
		return state.Layout{}, err
	}
	return state.Layout{BaseDir: data.BaseDir}, nil
}

// Host is one host of the fleet as a playbook sees it: how to reach it and
// where its releases and state are.
type Host struct {
	Name   string
	Target transport.Target
	Layout state.Layout // zero when Err is set
	Spec   *playbooks.Host
	// Err says why the layout could not be found (Layout's error): the
	// host cannot be read, but it is still one of the fleet's hosts.
	Err error
}

// HostName is h's name: the name function Each wants for a []Host.
func HostName(h Host) string { return h.Name }

// NewHost is h as pb sees it in env.
func NewHost(proj *playbooks.Project, pb *playbooks.Playbook, env *playbooks.Environment, h *playbooks.Host) Host {
	l, err := Layout(proj, pb, env, h)
	return Host{Name: h.Name, Target: Target(proj.Config, h), Layout: l, Spec: h, Err: err}
}

// Hosts lists the hosts pb targets in env, in config order, each with its
// target and layout (or, for a host whose layout cannot be found, Err).
func Hosts(proj *playbooks.Project, pb *playbooks.Playbook, env *playbooks.Environment) []Host {
	targets := pb.TargetHosts(env)
	out := make([]Host, len(targets))
	for i, h := range targets {
		out[i] = NewHost(proj, pb, env, h)
	}
	return out
}

// EnvHosts lists every host of env that one of pbs (env's playbooks)
// targets, each once, with the layout of the first playbook that targets
// it: the hosts to read for what env ran (history, rehearsal records).
func EnvHosts(proj *playbooks.Project, pbs []*playbooks.Playbook, env *playbooks.Environment) []Host {
	var out []Host
	seen := map[string]bool{}
	for _, pb := range pbs {
		for _, h := range pb.TargetHosts(env) {
			if !seen[h.Name] {
				seen[h.Name] = true
				out = append(out, NewHost(proj, pb, env, h))
			}
		}
	}
	return out
}
