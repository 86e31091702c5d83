package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// explainSSHRun prints how one host is reached: `relctl validate
// --explain-ssh HOST`.
func explainSSHRun(opts *ValidateOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	var found []*playbooks.Host
	var envs []string
	for _, name := range slices.Sorted(maps.Keys(proj.Config.Environments)) {
		if opts.Env != "" && name != opts.Env {
			continue
		}
		for _, h := range proj.Config.Environments[name].Hosts {
			if h.Name == opts.ExplainSSH {
				found = append(found, h)
				envs = append(envs, name)
			}
		}
	}
	switch {
	case opts.Env != "" && proj.Config.Environments[opts.Env] == nil:
		_, err := proj.Environment(opts.Env)
		return &usageError{err}
	case len(found) == 0:
		return &usageError{fmt.Errorf("no host %q in %s", opts.ExplainSSH, envWords(opts.Env))}
	case len(found) > 1:
		return &usageError{fmt.Errorf("host %q is in environments %s: pick one with --env", opts.ExplainSSH, strings.Join(envs, ", "))}
	}
	h := found[0]
	w := opts.IO.Out
	fmt.Fprintf(w, "host %s (environment %s): %s\n", h.Name, envs[0], reachWords(h.SSH))
	explainEndpoint(w, h.SSH, false)
	for i, j := range h.SSH.Jumps {
		fmt.Fprintf(w, "\nbastion %d of %d: %s\n", i+1, len(h.SSH.Jumps), j.Alias)
		explainEndpoint(w, j, true)
	}
	// What can be checked without a connection: every key readable (or in
	// the agent), every known_hosts file parseable.
	if err := checkTarget(proj.Config, h); err != nil {
		return &usageError{fmt.Errorf("host %s cannot be reached as configured: %w", h.Name, err)}
	}
	return nil
}

// checkTarget loads what reaching h would use, contacting no host.
func checkTarget(cfg *playbooks.Config, h *playbooks.Host) error {
	pool, err := transport.NewPool(transportOptions(cfg, nil))
	if err != nil {
		return err
	}
	defer pool.Close()
	return pool.CheckTargets([]transport.Target{fleet.Target(cfg, h)})
}

func envWords(env string) string {
	if env == "" {
		return "any environment"
	}
	return "environment " + env
}

// reachWords is "deploy@10.0.0.5:22 through ops@bastion:22" or "... directly".
func reachWords(s *playbooks.HostSSH) string {
	out := s.User.Value + "@" + s.Address()
	if len(s.Jumps) == 0 {
		return out + ", directly"
	}
	via := make([]string, len(s.Jumps))
	for i, j := range s.Jumps {
		via[i] = j.User.Value + "@" + j.Address()
	}
	return out + " through " + strings.Join(via, ", then ")
}

// explainEndpoint prints one host's or bastion's settings, one per row.
func explainEndpoint(w io.Writer, s *playbooks.HostSSH, bastion bool) {
	t := newTable(w, "SETTING", "VALUE", "FROM")
	row := func(name string, v playbooks.SSHValue) {
		if v.Value == "" {
			t.row(name, "-", orDash(v.From))
			return
		}
		t.row(name, homeTilde(v.Value), v.From)
	}
	row("hostname", s.HostName)
	row("port", s.Port)
	row("user", s.User)
	if len(s.IdentityFiles) == 0 {
		t.row("identity_file", "- (none: only an ssh-agent's keys, if there is one)", "")
	}
	for _, f := range s.IdentityFiles {
		row("identity_file", f)
	}
	for _, f := range s.Skipped {
		t.row("identity_file", homeTilde(f.Value)+" (not found: skipped)", f.From)
	}
	row("identities_only", s.IdentitiesOnly)
	for i, f := range s.KnownHosts {
		if i == 0 {
			f.Value = homeTilde(f.Value) + " (accept-new writes here)"
		}
		row("known_hosts", f)
	}
	for _, f := range s.GlobalKnownHosts {
		f.Value = homeTilde(f.Value) + " (read only)"
		row("known_hosts", f)
	}
	if len(s.KnownHosts)+len(s.GlobalKnownHosts) == 0 {
		t.row("known_hosts", "- (none: every host key is unknown)", "")
	}
	if s.HashKnownHosts.Value != "" {
		row("hash_known_hosts", s.HashKnownHosts)
	}
	row("host_key_alias", s.HostKeyAlias)
	row("host_key_policy", s.HostKeyPolicy)
	row("connect_timeout", s.ConnectTimeout)
	if !bastion {
		pj := s.ProxyJump
		if pj.Value == "" {
			pj = playbooks.SSHValue{Value: "none", From: "default"}
		}
		row("proxy_jump", pj)
		row("forward_agent", s.ForwardAgent)
	} else if s.ProxyJump.Value != "" {
		row("proxy_jump", s.ProxyJump)
	}
	t.flush()
	for _, n := range s.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// homeTilde shows paths under the home directory as ~/...
func homeTilde(v string) string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" || home == "/" {
		return v
	}
	return strings.ReplaceAll(v, home+"/", "~/")
}
