package deploy

import (
	"context"
	"sort"
	"strings"

	"github.com/relctl/relctl/healthcheck"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// HostStatus is one host's answer to `relctl status`.
type HostStatus struct {
	Name      string   `json:"name"`
	Address   string   `json:"address"`
	Reachable bool     `json:"reachable"`
	Current   string   `json:"current"`
	Previous  string   `json:"previous"`
	Healthy   bool     `json:"healthy"`
	Checks    []string `json:"checks,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// EnvStatus is `relctl status` for one environment.
type EnvStatus struct {
	Environment string        `json:"environment"`
	Hosts       []*HostStatus `json:"hosts"`
}

// Status reads every host of env: reachable, current and previous release,
// and whether the playbook's health checks pass now (one attempt each).
func Status(ctx context.Context, conn Connector, proj *playbooks.Project, envName string, maxParallel int) (*EnvStatus, error) {
	env, err := proj.Environment(envName)
	if err != nil {
		return nil, badInput("%v", err)
	}
	pbs, err := proj.PlaybooksFor(envName)
	if err != nil {
		return nil, badInput("%v", err)
	}
	out := &EnvStatus{Environment: env.Name, Hosts: make([]*HostStatus, len(env.Hosts))}
	for i, h := range env.Hosts {
		out.Hosts[i] = &HostStatus{Name: h.Name, Address: h.Address}
	}
	// Each host's answer is written into its HostStatus as it comes, so a
	// host that fails halfway still shows what was read.
	type read struct {
		host   *playbooks.Host
		status *HostStatus
	}
	reads := make([]read, len(env.Hosts))
	for i, h := range env.Hosts {
		reads[i] = read{h, out.Hosts[i]}
	}
	errs := fleet.EachErrors(ctx, reads, max(maxParallel, 1), func(r read) string { return r.host.Name }, func(ctx context.Context, r read) error {
		hostStatus(ctx, conn, proj, env, playbookFor(pbs, r.host), r.host, r.status)
		return nil
	})
	for i, err := range errs {
		if err != nil { // not started, or a panic: that host's answer
			out.Hosts[i].Healthy = false
			out.Hosts[i].Error = strings.TrimPrefix(err.Error(), out.Hosts[i].Name+": ")
		}
	}
	return out, nil
}

func playbookFor(pbs []*playbooks.Playbook, h *playbooks.Host) *playbooks.Playbook {
	for _, pb := range pbs {
		for _, r := range pb.Roles {
			for _, hr := range h.Roles {
				if r == hr {
					return pb
				}
			}
		}
	}
	return nil
}

func hostStatus(ctx context.Context, connector Connector, proj *playbooks.Project, env *playbooks.Environment, pb *playbooks.Playbook, h *playbooks.Host, hs *HostStatus) {
	if pb == nil {
		hs.Error = "no playbook targets this host's roles"
		return
	}
	fh := fleet.NewHost(proj, pb, env, h)
	if fh.Err != nil {
		hs.Error = fh.Err.Error()
		return
	}
	conn, err := connector.Get(ctx, fh.Target)
	if err != nil {
		hs.Error = err.Error()
		return
	}
	hs.Reachable = true
	st, err := state.ReadHostState(ctx, conn, fh.Layout, "status")
	if err != nil {
		hs.Error = err.Error()
		return
	}
	hs.Current, hs.Previous = st.Current, st.Previous()
	if st.Current == "" {
		hs.Error = "no release is active"
		return
	}
	data, err := proj.Data(pb, env, h, st.Current, "")
	if err != nil {
		hs.Error = err.Error()
		return
	}
	names := make([]string, 0, len(pb.Checks))
	for name := range pb.Checks {
		names = append(names, name)
	}
	sort.Strings(names)
	hs.Healthy = true
	var failed []string
	for _, name := range names {
		spec, err := RenderCheck(pb.Checks[name], data)
		if err != nil {
			hs.Healthy = false
			failed = append(failed, name+": "+err.Error())
			continue
		}
		observed, err := healthcheck.Probe(ctx, spec, conn)
		if err != nil {
			hs.Healthy = false
			failed = append(failed, name+": "+err.Error())
			continue
		}
		hs.Checks = append(hs.Checks, name+": "+observed)
	}
	if len(failed) > 0 {
		hs.Error = strings.Join(failed, "; ")
	}
}
