package playbooks

import (
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relctl/relctl/healthcheck/checkspec"
)

const nameAlphabet = "letters, digits, '.', '_' and '-'"

// minLockTTL keeps a live lock from looking stale: the holder refreshes its
// heartbeat every TTL/4 over SSH, and with less than this one slow refresh
// would let a second run take over a lock whose holder is still deploying.
const minLockTTL = 10 * time.Second

func validName(n string) error { return checkName("name", n, hostNameRE, 63, nameAlphabet) }

// validate checks relctl.toml on its own; playbook-dependent checks come later.
func (c *Config) validate() Problems {
	ix := c.pos
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }

	if c.Project == "" {
		add("project", "missing required key project (the name of what is released)")
	} else if err := checkName("project", c.Project, hostNameRE, 63, nameAlphabet); err != nil {
		add("project", "%v", err)
	}
	if c.LockTTL.Duration < minLockTTL && !ix.badDuration("lock_ttl") {
		add("lock_ttl", "lock_ttl must be at least %v (got %v): the lock's heartbeat is refreshed every lock_ttl/4 over SSH, so a shorter one lets a slow refresh make a live run's lock look stale to the next run", minLockTTL, c.LockTTL.Duration)
	}
	ps = append(ps, sshProblems(ix, c.SSH)...)
	ps = append(ps, c.secretsProblems()...)
	ps = append(ps, c.notifyProblems()...)
	if len(c.Environments) == 0 {
		ps = append(ps, Problem{File: c.Path, Message: "no environments: add at least one [environments.<name>] with hosts"})
	}
	for _, name := range slices.Sorted(mapKeys(c.Environments)) {
		ps = append(ps, c.environmentProblems(name, c.Environments[name])...)
	}
	return ps
}

// sshProblems checks the [ssh] table.
func sshProblems(ix *positions, s SSHConfig) Problems {
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }
	if s.HostKeyPolicy != HostKeyStrict && s.HostKeyPolicy != HostKeyAcceptNew {
		add("ssh.host_key_policy", "ssh.host_key_policy %q is not valid (use %q or %q)", s.HostKeyPolicy, HostKeyStrict, HostKeyAcceptNew)
	}
	if s.ConnectTimeout.Duration <= 0 {
		add("ssh.connect_timeout", "ssh.connect_timeout must be more than 0s")
	}
	if s.CommandTimeout.Duration <= 0 {
		add("ssh.command_timeout", "ssh.command_timeout must be more than 0s")
	}
	if s.ControlTimeout.Duration <= 0 && !ix.badDuration("ssh.control_timeout") {
		add("ssh.control_timeout", "ssh.control_timeout must be more than 0s")
	}
	ps = append(ps, proxyJumpProblem(ix, "ssh.proxy_jump", s.ProxyJump)...)
	if s.MaxParallel < 0 {
		add("ssh.max_parallel", "ssh.max_parallel must not be negative (got %d)", s.MaxParallel)
	}
	if s.ReconnectAttempts < 0 || s.ReconnectAttempts > 20 {
		add("ssh.reconnect_attempts", "ssh.reconnect_attempts must be between 0 and 20 (got %d)", s.ReconnectAttempts)
	}
	if s.ReconnectBackoff.Duration <= 0 && !ix.badDuration("ssh.reconnect_backoff") {
		add("ssh.reconnect_backoff", "ssh.reconnect_backoff must be more than 0s")
	}
	return ps
}

// environmentProblems checks one [environments.<name>] table and its hosts.
func (c *Config) environmentProblems(name string, env *Environment) Problems {
	ix := c.pos
	var ps Problems
	ekey := "environments." + name
	if err := checkName("environment name", name, hostNameRE, 63, nameAlphabet); err != nil {
		ps = append(ps, ix.problem(ekey, "%v", err))
	}
	ps = append(ps, varProblems(ix, ekey+".vars", env.Vars)...)
	if env.SSH != nil {
		ps = append(ps, proxyJumpProblem(ix, ekey+".ssh.proxy_jump", env.SSH.ProxyJump)...)
	}
	ps = append(ps, c.rehearsalProblems(env)...)
	if len(env.Hosts) == 0 {
		ps = append(ps, ix.problem(ekey, "environment %q has no hosts (add [[%s.hosts]] entries)", name, ekey))
	}
	seen := map[string]string{} // host name -> where it is first defined
	for i, h := range env.Hosts {
		ps = append(ps, hostProblems(ix, name, fmt.Sprintf("%s.hosts.%d", ekey, i), h, seen)...)
	}
	return ps
}

// hostProblems checks host h of environment env, at hkey; seen holds the
// host names defined before it in the environment.
func hostProblems(ix *positions, env, hkey string, h *Host, seen map[string]string) Problems {
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }
	label := "host"
	if h.Name != "" {
		label = fmt.Sprintf("host %q", h.Name)
	}
	switch err := ValidateHostName(h.Name); {
	case h.Name == "":
		add(hkey, "host in environment %q has no name", env)
	case err != nil:
		add(hkey+".name", "%v", err)
	case seen[h.Name] != "":
		add(hkey+".name", "duplicate host name %q in environment %q (also at %s)", h.Name, env, seen[h.Name])
	default:
		seen[h.Name] = ix.where(hkey + ".name")
	}
	if ix.has(hkey + ".address") {
		addr := h.Address
		if host, port := splitAddress(addr); port == "" {
			addr = net.JoinHostPort(host, "22")
		}
		err := checkAddress(addr)
		if h.Address == "" {
			err = errors.New("is empty: leave address out to use the host's name (or its HostName in ~/.ssh/config)")
		}
		if err != nil {
			add(hkey+".address", "%s: address %v", label, err)
		}
	}
	ps = append(ps, proxyJumpProblem(ix, hkey+".proxy_jump", h.ProxyJump)...)
	if len(h.Roles) == 0 {
		add(hkey, "%s has no roles", label)
	}
	for j, r := range h.Roles {
		if err := checkName("role", r, hostNameRE, 63, nameAlphabet); err != nil {
			add(fmt.Sprintf("%s.roles.%d", hkey, j), "%s: %v", label, err)
		}
	}
	return append(ps, varProblems(ix, hkey+".vars", h.Vars)...)
}

// rehearsalPlaybookProblems: a gated environment's releases are rehearsed
// with the same playbook (it is part of the release digest), so every
// playbook it applies must apply to the rehearsal environment too.
func (p *Project) rehearsalPlaybookProblems(env *Environment, pbs []*Playbook) Problems {
	if env.RequireRehearsal == "" || p.Config.Environments[env.RequireRehearsal] == nil {
		return nil
	}
	there, err := p.PlaybooksFor(env.RequireRehearsal)
	if err != nil {
		return nil
	}
	var ps Problems
	for _, pb := range pbs {
		if !slices.ContainsFunc(there, func(o *Playbook) bool { return o.Name == pb.Name }) {
			ps = append(ps, p.Config.pos.problem("environments."+env.Name+".require_rehearsal",
				"environment %s requires a rehearsal in %s, but playbook %s does not apply to %s: no rehearsal there could match a deploy here (the playbook is part of the release digest)",
				env.Name, env.RequireRehearsal, pb.Name, env.RequireRehearsal))
		}
	}
	return ps
}

// rehearsalProblems checks an environment's rehearsal gate settings.
func (c *Config) rehearsalProblems(env *Environment) Problems {
	ix := c.pos
	ekey := "environments." + env.Name
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }
	if env.RehearsalMaxAge.Duration <= 0 && !ix.badDuration(ekey+".rehearsal_max_age") {
		add(ekey+".rehearsal_max_age", "rehearsal_max_age must be more than 0s")
	}
	if env.RequireRehearsal == "" {
		if env.AllowedSigners != "" {
			add(ekey+".allowed_signers", "allowed_signers is only used with require_rehearsal: set require_rehearsal = \"<environment>\" or remove it")
		}
		return ps
	}
	switch _, ok := c.Environments[env.RequireRehearsal]; {
	case env.RequireRehearsal == env.Name:
		add(ekey+".require_rehearsal", "environment %q cannot require a rehearsal in itself", env.Name)
	case !ok:
		add(ekey+".require_rehearsal", "require_rehearsal names environment %q, which relctl.toml does not define (it has: %s)", env.RequireRehearsal, strings.Join(slices.Sorted(mapKeys(c.Environments)), ", "))
	}
	// The file itself is read only by the gate: a missing one must not
	// stop a rollback from an on-call laptop.
	if env.AllowedSigners == "" {
		add(ekey+".require_rehearsal", "require_rehearsal needs allowed_signers: the OpenSSH allowed_signers file of the keys trusted to sign rehearsal records")
	}
	return ps
}

// checkAddress accepts host or host:port (defaults already added ":22").
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v)", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if strings.HasPrefix(host, "-") || strings.ContainsAny(host, " \t\n'\"`$;&|<>\\/") {
		return fmt.Errorf("%q has an invalid host name", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has an invalid port %q (use 1-65535)", addr, port)
	}
	return nil
}

// varProblems reports vars that are not scalars: templates see strings.
func varProblems(ix *positions, key string, vars map[string]any) Problems {
	var ps Problems
	for _, k := range slices.Sorted(mapKeys(vars)) {
		if _, ok := varString(vars[k]); !ok {
			ps = append(ps, ix.problem(key+"."+k, "var %q must be a string, number or boolean (got %s)", k, tomlValueWords(vars[k])))
		}
	}
	return ps
}

func tomlValueWords(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}

var batchPercentRE = regexp.MustCompile(`^([0-9]+)%$`)

// validate checks one playbook on its own; name is its file stem.
func (pb *Playbook) validate(name string) Problems {
	ix := pb.pos
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }

	switch {
	case pb.Name == "":
		add("name", "missing required key name (it must be %q, the file name)", name)
	case pb.Name != name:
		add("name", "name %q does not match the file name %s.toml", pb.Name, name)
	}
	if len(pb.Roles) == 0 {
		add("roles", "missing required key roles (the host roles this playbook targets)")
	}
	for i, r := range pb.Roles {
		if err := checkName("role", r, hostNameRE, 63, nameAlphabet); err != nil {
			add(fmt.Sprintf("roles.%d", i), "%v", err)
		}
	}
	if pb.KeepReleases < 0 {
		add("keep_releases", "keep_releases must be at least 1 (got %d)", pb.KeepReleases)
	}
	ps = append(ps, varProblems(ix, "vars", pb.Vars)...)
	ps = append(ps, pb.validateArtifact()...)

	st := pb.Strategy
	if st.Canary < 0 {
		add("strategy.canary", "strategy.canary must not be negative (got %d)", st.Canary)
	}
	if st.MaxParallel < 0 {
		add("strategy.max_parallel", "strategy.max_parallel must not be negative (got %d)", st.MaxParallel)
	}
	switch v := st.BatchSize.(type) {
	case int:
		if v < 1 {
			add("strategy.batch_size", "strategy.batch_size must be at least 1 (got %d)", v)
		}
	case string:
		m := batchPercentRE.FindStringSubmatch(v)
		if m == nil {
			add("strategy.batch_size", "strategy.batch_size %q is not a count or a percentage like \"25%%\"", v)
		} else if n, _ := strconv.Atoi(m[1]); n < 1 || n > 100 {
			add("strategy.batch_size", "strategy.batch_size %q must be between 1%% and 100%%", v)
		}
	default:
		add("strategy.batch_size", "strategy.batch_size must be a whole number or a percentage like \"25%%\"")
	}

	for _, cname := range slices.Sorted(mapKeys(pb.Checks)) {
		ps = append(ps, pb.validateCheck(pb.Checks[cname])...)
	}
	ps = append(ps, pb.validateSteps()...)
	ps = append(ps, pb.validateRollback()...)
	ps = append(ps, pb.validateWatchdog()...)
	ps = append(ps, pb.validateRequires()...)
	ps = append(ps, pb.validateTraffic()...)
	ps = append(ps, pb.validateMove()...)
	return ps
}

func (pb *Playbook) validateCheck(c *Check) Problems {
	ix := pb.pos
	key := "checks." + c.Name
	var ps Problems
	add := func(sub, format string, args ...any) {
		k := key
		if sub != "" {
			k += "." + sub
		}
		ps = append(ps, ix.problem(k, "check %q: "+format, append([]any{c.Name}, args...)...))
	}
	if err := validName(c.Name); err != nil {
		add("", "%v", err)
	}
	onlyFor := func(sub, value, typ string) {
		if value != "" {
			add(sub, "%s is only for %s checks", sub, typ)
		}
	}
	switch c.Type {
	case "":
		add("", "missing type (http, tcp or command)")
	case CheckHTTP:
		if c.URL == "" {
			add("", "http check needs url")
		}
		ps = append(ps, templateSyntax(ix, key+".url", c.URL, false)...)
		ps = append(ps, templateSyntax(ix, key+".body_contains", c.BodyContains, false)...)
		if c.BodyRegex != "" {
			if _, err := regexp.Compile(c.BodyRegex); err != nil {
				add("body_regex", "body_regex does not compile: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
		}
		if c.ExpectStatus < 100 || c.ExpectStatus > 599 {
			add("expect_status", "expect_status %d is not an HTTP status (100-599)", c.ExpectStatus)
		}
		onlyFor("address", c.Address, "tcp")
		onlyFor("command", c.Command, "command")
	case CheckTCP:
		if c.Address == "" {
			add("", "tcp check needs address (host:port)")
		}
		ps = append(ps, templateSyntax(ix, key+".address", c.Address, false)...)
		onlyFor("url", c.URL, "http")
		onlyFor("command", c.Command, "command")
	case CheckCommand:
		if c.Command == "" {
			add("", "command check needs command")
		}
		ps = append(ps, templateSyntax(ix, key+".command", c.Command, true)...)
		onlyFor("url", c.URL, "http")
		onlyFor("address", c.Address, "tcp")
		if c.Via != "" && c.Via != "host" {
			add("via", "via %q: command checks always run on the host", c.Via)
		}
	default:
		add("type", "unknown type %q (use http, tcp or command)", c.Type)
	}
	if c.Type != CheckHTTP {
		onlyFor("body_contains", c.BodyContains, "http")
		onlyFor("body_regex", c.BodyRegex, "http")
		if pb.pos.has(key + ".expect_status") {
			add("expect_status", "expect_status is only for http checks")
		}
	}
	if c.Type != CheckCommand && c.Via != "host" && c.Via != "controller" {
		add("via", "via %q is not valid (use \"host\" or \"controller\")", c.Via)
	}
	if c.Timeout.Duration <= 0 {
		add("timeout", "timeout must be more than 0s")
	}
	if c.Retries < 0 {
		add("retries", "retries must not be negative (got %d)", c.Retries)
	}
	if c.HealthyFor < 1 {
		add("healthy_for", "healthy_for must be at least 1 (got %d)", c.HealthyFor)
	}
	return ps
}

// phaseIndex orders steps the way they run.
func phaseIndex(p string) int { return slices.Index(Phases, p) }

func (pb *Playbook) validateSteps() Problems {
	var ps Problems
	if len(pb.Steps) == 0 {
		ps = append(ps, Problem{File: pb.Path, Message: "no steps: add at least one [[steps]]"})
	}
	names := map[string]string{} // step name -> where it is first defined
	var upload, activate []int
	for i, s := range pb.Steps {
		ps = append(ps, pb.stepProblems(i, names)...)
		switch s.Kind {
		case StepUpload:
			upload = append(upload, i)
		case StepActivate:
			activate = append(activate, i)
		}
	}
	return append(ps, pb.stagingProblems(upload, activate)...)
}

// stepProblems checks step i on its own; names holds the step names
// defined before it.
func (pb *Playbook) stepProblems(i int, names map[string]string) Problems {
	ix := pb.pos
	var ps Problems
	s := pb.Steps[i]
	key := fmt.Sprintf("steps.%d", i)
	label := "step"
	if s.Name != "" {
		label = fmt.Sprintf("step %q", s.Name)
	}
	add := func(sub, format string, args ...any) {
		k := key
		if sub != "" {
			k += "." + sub
		}
		ps = append(ps, ix.problem(k, label+": "+format, args...))
	}
	if s.Name != "" {
		if err := validName(s.Name); err != nil {
			add("name", "%v", err)
		} else if at, dup := names[s.Name]; dup {
			add("name", "duplicate step name (also at %s)", at)
		} else {
			names[s.Name] = ix.where(key + ".name")
		}
	}
	switch {
	case s.Phase == "" && s.Kind == StepRun:
		add("", "missing phase (one of %s)", strings.Join(Phases, ", "))
	case s.Phase != "" && phaseIndex(s.Phase) < 0:
		add("phase", "unknown phase %q (use one of %s)", s.Phase, strings.Join(Phases, ", "))
	}
	switch s.Kind {
	case "":
		add("", "has neither run nor kind (set run = \"...\", or kind = \"upload\", \"activate\" or \"check\")")
	case StepRun:
		if s.Run == "" {
			add("", "kind run needs run (the command)")
		}
	case StepUpload, StepActivate, StepCheck:
		if s.Run != "" {
			add("run", "kind %s does not take run (relctl does this step itself; use a separate run step)", s.Kind)
		}
		if s.Undo != "" {
			add("undo", "kind %s does not take undo (relctl undoes this step itself)", s.Kind)
		}
	default:
		add("kind", "unknown kind %q (use run, upload, activate or check)", s.Kind)
	}
	if s.Kind == StepCheck {
		if len(s.Checks) == 0 {
			add("", "kind check needs checks (names from [checks])")
		}
		for j, c := range s.Checks {
			if _, ok := pb.Checks[c]; !ok {
				add(fmt.Sprintf("checks.%d", j), "unknown check %q (defined: %s)", c, knownList(mapKeys(pb.Checks)))
			}
		}
	} else if len(s.Checks) > 0 {
		add("checks", "checks is only for kind check")
	}
	if s.Timeout.Duration <= 0 && ix.has(key+".timeout") {
		add("timeout", "timeout must be more than 0s")
	}
	ps = append(ps, templateSyntax(ix, key+".run", s.Run, true)...)
	return append(ps, templateSyntax(ix, key+".undo", s.Undo, true)...)
}

// stagingProblems checks the upload and activate steps (by index) together:
// at most one of each, and the release is uploaded before it is activated.
func (pb *Playbook) stagingProblems(upload, activate []int) Problems {
	ix := pb.pos
	var ps Problems
	for _, i := range upload[min(1, len(upload)):] {
		ps = append(ps, ix.problem(fmt.Sprintf("steps.%d.kind", i), "step %q: more than one upload step (the first is %q)", pb.Steps[i].Name, pb.Steps[upload[0]].Name))
	}
	for _, i := range activate[min(1, len(activate)):] {
		ps = append(ps, ix.problem(fmt.Sprintf("steps.%d.kind", i), "step %q: more than one activate step (the first is %q)", pb.Steps[i].Name, pb.Steps[activate[0]].Name))
	}
	if len(activate) > 0 {
		a := activate[0]
		switch {
		case len(upload) == 0:
			ps = append(ps, ix.problem(fmt.Sprintf("steps.%d.kind", a), "step %q: activate needs an upload step to stage the release first", pb.Steps[a].Name))
		case runsBefore(pb.Steps, a, upload[0]):
			ps = append(ps, ix.problem(fmt.Sprintf("steps.%d.kind", a), "step %q: activate runs before upload step %q (steps run by phase: %s)", pb.Steps[a].Name, pb.Steps[upload[0]].Name, strings.Join(Phases, ", ")))
		}
	}
	return ps
}

// runsBefore reports whether step a runs before step b: by phase, then by order written.
func runsBefore(steps []*Step, a, b int) bool {
	pa, pb := phaseIndex(steps[a].Phase), phaseIndex(steps[b].Phase)
	if pa < 0 || pb < 0 {
		return false // an unknown phase is reported on its own
	}
	return pa < pb || pa == pb && a < b
}

func knownList(keys func(func(string) bool)) string {
	s := slices.Sorted(keys)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// templateSyntax reports a template that does not parse, and, for shell
// commands, an action written inside quotes.
func templateSyntax(ix *positions, key, text string, shell bool) Problems {
	if text == "" {
		return nil
	}
	var err error
	if shell {
		if _, perr := parseCommand(key, text); perr != nil {
			err = templateError(perr)
		} else {
			err = quotedActionError(text)
		}
	} else if _, perr := parseTemplate(key, text); perr != nil {
		err = templateError(perr)
	}
	if err == nil {
		return nil
	}
	return Problems{ix.templateProblem(key, err, "%s: %v", displayKey(key), err)}
}

// validateTargets checks what needs both files: roles that match no host,
// and every template rendered for every targeted host (base_dir set and
// absolute, every .Vars name defined).
func (p *Project) validateTargets() Problems {
	cfg := p.Config
	var ps Problems
	for _, envName := range slices.Sorted(mapKeys(cfg.Environments)) {
		env := cfg.Environments[envName]
		pbs, err := p.PlaybooksFor(envName)
		if err != nil {
			continue // reported as a missing playbook
		}
		ps = append(ps, p.rehearsalPlaybookProblems(env, pbs)...)
		for _, pb := range pbs {
			for i, r := range pb.Roles {
				if !slices.ContainsFunc(env.Hosts, func(h *Host) bool { return slices.Contains(h.Roles, r) }) {
					ps = append(ps, pb.pos.problem(fmt.Sprintf("roles.%d", i), "role %q has no hosts in environment %q", r, envName))
				}
			}
			if m := pb.Move; m != nil && m.FromRole != "" && len(env.HostsWithRole(m.FromRole)) == 0 {
				ps = append(ps, pb.pos.problem("move.from_role", "move.from_role %q has no hosts in environment %q", m.FromRole, envName))
			}
			if m := pb.Move; m != nil {
				for i, d := range m.Dependents {
					if d.Role != "" && len(env.HostsWithRole(d.Role)) == 0 {
						ps = append(ps, pb.pos.problem(fmt.Sprintf("move.dependents.%d.role", i), "move.dependents role %q has no hosts in environment %q", d.Role, envName))
					}
				}
			}
			if t := pb.Traffic; t != nil && t.Provider == TrafficHAProxy && t.LBRole != "" && len(env.HostsWithRole(t.LBRole)) == 0 {
				ps = append(ps, pb.pos.problem("traffic.lb_role", "traffic.lb_role %q has no hosts in environment %q (the hosts that run HAProxy)", t.LBRole, envName))
			}
			ps = append(ps, p.validateDependents(pb, env)...)
			ps = append(ps, p.validateTrafficHosts(pb, env)...)
			ps = append(ps, p.validateOldHosts(pb, env)...)
			reported := map[string]bool{} // one problem per key, not one per host
			for _, h := range pb.TargetHosts(env) {
				for _, pr := range p.validateHost(pb, env, h) {
					at := pr.File + ":" + strconv.Itoa(pr.Line) + ":" + strconv.Itoa(pr.Column)
					if !reported[at] {
						reported[at] = true
						ps = append(ps, pr)
					}
				}
			}
		}
	}
	return ps
}

func (p *Project) validateHost(pb *Playbook, env *Environment, h *Host) Problems {
	cfg := p.Config
	hi := slices.Index(env.Hosts, h)
	hkey := fmt.Sprintf("environments.%s.hosts.%d", env.Name, hi)
	// base_dir: point at whichever vars table supplied it.
	var base string
	var baseAt func() Problem
	for _, src := range []struct {
		vars map[string]any
		ix   *positions
		key  string
	}{{pb.Vars, pb.pos, "vars.base_dir"}, {env.Vars, cfg.pos, "environments." + env.Name + ".vars.base_dir"}, {h.Vars, cfg.pos, hkey + ".vars.base_dir"}} {
		if v, ok := src.vars["base_dir"]; ok {
			base, _ = varString(v)
			src := src
			baseAt = func() Problem {
				return src.ix.problem(src.key, "base_dir %q is not an absolute path (host %q in environment %q)", base, h.Name, env.Name)
			}
		}
	}
	switch {
	case baseAt == nil || base == "":
		return Problems{cfg.pos.problem(hkey, "host %q in environment %q: vars.base_dir is not set (playbook %q needs it; set it in the playbook's, the environment's or the host's vars)", h.Name, env.Name, pb.Name)}
	case !path.IsAbs(base):
		return Problems{baseAt()}
	}
	// Render every template for this host, with a stand-in version, so an
	// unknown field or a var this host lacks is caught before a deploy.
	data, err := p.Data(pb, env, h, "0.0.0", "validate")
	if err != nil {
		return Problems{pb.pos.problem(pb.artifactKey(), "%v (host %q in environment %q)", err, h.Name, env.Name)}
	}
	var ps Problems
	try := func(key, text string, shell bool, check func(string) error) {
		if text == "" {
			return
		}
		render := RenderText
		if shell {
			render = RenderCommand
			if isStepCommandKey(key) {
				render = func(name, text string, data *TemplateData) (string, error) {
					out, _, err := RenderStepCommand(name, text, data)
					return out, err
				}
			}
		}
		out, err := render(key, text, data)
		if err == nil && check != nil {
			err = check(out) // what the deploy refuses in the rendered value
		}
		if err != nil {
			ps = append(ps, pb.pos.templateProblem(key, err, "%s: %v (rendering for host %q in environment %q)", displayKey(key), err, h.Name, env.Name))
		}
	}
	pb.tryArtifact(try)
	for i, s := range pb.Steps {
		try(fmt.Sprintf("steps.%d.run", i), s.Run, true, nil)
		try(fmt.Sprintf("steps.%d.undo", i), s.Undo, true, nil)
	}
	for i, s := range pb.Rollback.Steps {
		try(fmt.Sprintf("rollback.steps.%d.run", i), s.Run, true, nil)
	}
	if w := pb.Watchdog; w != nil {
		try("watchdog.install_path", w.InstallPath, false, nil)
		try("watchdog.control_file", w.ControlFile, false, nil)
	}
	for _, name := range slices.Sorted(mapKeys(pb.Checks)) {
		if pb.dependentCheckOnly(name) {
			continue // rendered for the dependents (validateDependents)
		}
		renderCheck(pb, name, try)
	}
	return ps
}

// renderCheck renders every template of a check through try, with the
// prober's own checks of the rendered url (http) and address (tcp).
func renderCheck(pb *Playbook, name string, try func(key, text string, shell bool, check func(string) error)) {
	c := pb.Checks[name]
	key := "checks." + name
	var urlForm, addressForm func(string) error
	switch c.Type {
	case CheckHTTP:
		urlForm = checkspec.URL
	case CheckTCP:
		addressForm = checkspec.Address
	}
	try(key+".url", c.URL, false, urlForm)
	try(key+".body_contains", c.BodyContains, false, nil)
	try(key+".address", c.Address, false, addressForm)
	try(key+".command", c.Command, true, nil)
}

// dependentCheckOnly: the check is run on a move's dependents, and no step
// runs it on the playbook's own hosts.
func (pb *Playbook) dependentCheckOnly(name string) bool {
	if pb.Move == nil {
		return false
	}
	used := false
	for _, d := range pb.Move.Dependents {
		used = used || slices.Contains(d.Checks, name)
	}
	for _, s := range pb.Steps {
		if slices.Contains(s.Checks, name) {
			return false
		}
	}
	return used
}

// validateDependents renders a move's dependent templates and checks for
// every dependent host, as validateHost does for the playbook's hosts.
func (p *Project) validateDependents(pb *Playbook, env *Environment) Problems {
	if pb.Move == nil {
		return nil
	}
	var ps Problems
	reported := map[string]bool{}
	// The component's new hosts, as each dependent's template names them.
	var hosts []MovedHost
	for _, h := range pb.TargetHosts(env) {
		data, err := p.Data(pb, env, h, "0.0.0", "validate")
		if err != nil {
			return ps // the host's vars: reported by validateHost
		}
		hosts = append(hosts, MovedHost{Name: h.Name, Address: h.Address, Vars: data.Vars})
	}
	for i, d := range pb.Move.Dependents {
		tmpl, _ := pb.DependentTemplate(d) // nil when it does not parse: reported by validateMove
		if d.Template == "" {
			tmpl = nil
		}
		for _, h := range env.HostsWithRole(d.Role) {
			data, err := p.HostData(pb, env, h)
			if err != nil {
				ps = append(ps, pb.pos.problem(fmt.Sprintf("move.dependents.%d", i), "%v", err))
				continue
			}
			try := func(key, text string, shell bool, check func(string) error) {
				if text == "" || reported[key] {
					return
				}
				render := RenderText
				if shell {
					render = RenderCommand
				}
				out, err := render(key, text, data)
				if err == nil && check != nil {
					err = check(out)
				}
				if err != nil {
					reported[key] = true
					ps = append(ps, pb.pos.templateProblem(key, err, "%s: %v (rendering for dependent %q in environment %q)", displayKey(key), err, h.Name, env.Name))
				}
			}
			try(fmt.Sprintf("move.dependents.%d.config", i), d.Config, false, nil)
			try(fmt.Sprintf("move.dependents.%d.restart", i), d.Restart, true, nil)
			if tkey := fmt.Sprintf("move.dependents.%d.template", i); tmpl != nil && !reported[tkey] {
				if _, err := RenderDependentConfig(tmpl, hosts, data, "0.0.0"); err != nil {
					reported[tkey] = true
					ps = append(ps, pb.pos.problem(tkey, "%s: %s: %v (rendering for dependent %q in environment %q)", displayKey(tkey), d.Template, err, h.Name, env.Name))
				}
			}
			for _, name := range d.Checks {
				if _, ok := pb.Checks[name]; ok {
					renderCheck(pb, name, try)
				}
			}
		}
	}
	return ps
}
