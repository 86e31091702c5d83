package playbooks

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/sshconfig"
)

// SSHValue is one effective connection setting and where it came from:
// "relctl.toml:12:3 (ssh.user)", "~/.ssh/config:4" or "default".
type SSHValue struct {
	Value string
	From  string
}

// HostSSH is how relctl reaches one host or bastion. Each setting comes
// from relctl.toml if it sets it (the host's, then its environment's
// [ssh], then [ssh]), else from the OpenSSH client configuration
// (ssh.config), else from OpenSSH's default.
type HostSSH struct {
	// Alias is the name looked up in the OpenSSH configuration: the host's
	// name, or a bastion's host as proxy_jump writes it.
	Alias    string
	HostName SSHValue
	Port     SSHValue
	User     SSHValue
	// IdentityFiles are the private keys offered, in order (absolute
	// paths). Files named by the OpenSSH configuration or its defaults that
	// do not exist are left out, as ssh does, and listed in Skipped.
	IdentityFiles  []SSHValue
	Skipped        []SSHValue
	IdentitiesOnly SSHValue // "yes" or "no"
	// SkipUnusable: the keys come from the OpenSSH configuration or its
	// defaults, so one that cannot be used is left out as ssh does; a key
	// relctl.toml names must work.
	SkipUnusable bool
	// KnownHosts are the user's known_hosts files, all read; the first is
	// the one accept-new appends to. GlobalKnownHosts are read, never
	// written.
	KnownHosts       []SSHValue
	GlobalKnownHosts []SSHValue
	HashKnownHosts   SSHValue // "yes": accept-new writes hashed names
	HostKeyAlias     SSHValue
	HostKeyPolicy    SSHValue // HostKeyStrict or HostKeyAcceptNew
	ConnectTimeout   SSHValue // a Go duration
	ProxyJump        SSHValue // as written; "" or "none": directly
	ForwardAgent     SSHValue // "yes" or "no"; always "no" for a bastion
	// Jumps are the bastions the host is reached through, first first,
	// each resolved like a host.
	Jumps []*HostSSH
	// Notes are settings of the OpenSSH configuration relctl does not use.
	Notes []string
}

// Address is host:port.
func (s *HostSSH) Address() string { return net.JoinHostPort(s.HostName.Value, s.Port.Value) }

// KnownHostsFiles are KnownHosts' paths, never nil.
func (s *HostSSH) KnownHostsFiles() []string { return values(s.KnownHosts) }

// GlobalKnownHostsFiles are GlobalKnownHosts' paths, never nil.
func (s *HostSSH) GlobalKnownHostsFiles() []string { return values(s.GlobalKnownHosts) }

func values(vs []SSHValue) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Value
	}
	return out
}

// ConnectTimeoutDuration is ConnectTimeout parsed (validated by Load).
func (s *HostSSH) ConnectTimeoutDuration() time.Duration {
	d, _ := time.ParseDuration(s.ConnectTimeout.Value)
	return d
}

// Where the default settings come from, in HostSSH.
const (
	fromDefault   = "default"
	fromName      = "the host's name"
	fromLocalUser = "the local user"
	fromJump      = "proxy_jump"
)

// defaultIdentities are the keys ssh tries when nothing names one (ssh(1)).
var defaultIdentities = []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk"}

// maxJumpDepth bounds bastions reached through bastions (ProxyJump in the
// OpenSSH configuration of the first bastion), so a loop ends.
const maxJumpDepth = 8

// sshResolver resolves the hosts of one configuration: what it needs from
// the machine relctl runs on, read once.
type sshResolver struct {
	c     *Config
	files *sshconfig.Config // nil: no OpenSSH configuration is read
	local sshconfig.Local
}

// loadSSHConfig reads the OpenSSH client configuration ssh.config names.
// A file that cannot be parsed is a problem at its own line.
func (c *Config) loadSSHConfig() (*sshResolver, Problems) {
	r := &sshResolver{c: c, local: localMachine()}
	var files []sshconfig.File
	switch {
	case c.pos.has("ssh.config") && c.SSH.Config == "":
		return r, nil
	case c.pos.has("ssh.config"):
		p := c.ResolvePath(c.SSH.Config)
		if _, err := os.Stat(p); err != nil {
			return r, Problems{c.pos.problem("ssh.config", "ssh.config: %v (set config = \"\" to read no OpenSSH configuration)", err)}
		}
		files = []sshconfig.File{{Path: p}}
	default:
		if r.local.Home != "" {
			files = append(files, sshconfig.File{Path: filepath.Join(r.local.Home, ".ssh", "config")})
		}
		files = append(files, sshconfig.File{Path: "/etc/ssh/ssh_config", System: true})
	}
	cfg, err := sshconfig.Load(r.local.Home, files...)
	if err != nil {
		return r, Problems{sshConfigProblem(c, err)}
	}
	r.files = cfg
	return r, nil
}

// sshConfigProblem places an error of the OpenSSH configuration at its own
// file and line, and says how to stop relctl reading it.
func sshConfigProblem(c *Config, err error) Problem {
	const hint = " (relctl reads the OpenSSH client configuration for every host; set [ssh] config = \"\" in relctl.toml to read none, or point it at another file)"
	var se *sshconfig.Error
	if errors.As(err, &se) {
		return Problem{File: se.File, Line: se.Line, Column: se.Col, Message: se.Msg + hint}
	}
	return c.pos.problem("ssh.config", "OpenSSH client configuration: %v%s", err, hint)
}

func localMachine() sshconfig.Local {
	l := sshconfig.Local{UID: os.Getuid()}
	l.Home, _ = os.UserHomeDir()
	if u, err := user.Current(); err == nil {
		l.User = u.Username
	}
	l.Hostname, _ = os.Hostname()
	return l
}

// tomlSetting is one place relctl.toml may set a connection setting.
type tomlSetting struct {
	key   string // its key path, for where it is
	value string
}

// first returns the first setting relctl.toml holds, with where it is.
func (r *sshResolver) first(settings ...tomlSetting) (SSHValue, bool) {
	for _, s := range settings {
		if s.value != "" && r.c.pos.has(s.key) {
			return SSHValue{Value: s.value, From: r.c.pos.where(s.key) + " (" + displayKey(s.key) + ")"}, true
		}
	}
	return SSHValue{}, false
}

func fromFile(v sshconfig.Value) SSHValue { return SSHValue{Value: v.Value, From: v.Where()} }

// hostTomlKeys are the relctl.toml keys of one host's settings: its own, its
// environment's [ssh], then [ssh].
type hostTomlKeys struct {
	h          *Host
	es         *EnvSSH
	hkey, ekey string
}

// host resolves host h of env, at hkey. Problems are placed at the host's
// key in relctl.toml and name the OpenSSH configuration's line.
func (r *sshResolver) host(env *Environment, hkey string, h *Host) (*HostSSH, Problems) {
	k := hostTomlKeys{h: h, es: env.SSH, hkey: hkey, ekey: "environments." + env.Name + ".ssh"}
	if k.es == nil {
		k.es = &EnvSSH{}
	}
	users := []tomlSetting{{hkey + ".user", h.User}, {k.ekey + ".user", k.es.User}, {"ssh.user", r.c.SSH.User}}
	// The address: relctl.toml's, then HostName and Port, then the name.
	host, port := "", ""
	if h.Address != "" {
		host, port = splitAddress(h.Address)
	}
	// relctl.toml's values are read before the OpenSSH configuration, as
	// ssh's -l, -p and -o HostName are: Match and %-tokens see them.
	preset := sshconfig.Preset{HostName: host, Port: port}
	if v, ok := r.first(users...); ok {
		preset.User = v.Value
	}
	found, err := r.files.LookupPreset(h.Name, r.local, preset)
	if err != nil {
		return nil, Problems{sshConfigProblem(r.c, err)}
	}
	s := &HostSSH{Alias: h.Name}
	var ps Problems
	add := func(format string, args ...any) { ps = append(ps, r.c.pos.problem(hkey, format, args...)) }
	r.address(s, k, found, host, port, add)
	if v, ok := r.first(users...); ok {
		s.User = v
	} else {
		s.User = r.fileOrLocalUser(found.User)
	}
	r.identities(s, found, tomlSetting{hkey + ".identity_file", h.IdentityFile}, tomlSetting{k.ekey + ".identity_file", k.es.IdentityFile}, tomlSetting{"ssh.identity_file", r.c.SSH.IdentityFile})
	r.hostKeys(s, found)
	for _, p := range r.refused(found) {
		add("host %q: %s", h.Name, p)
	}
	r.forwardAgent(s, k, found)
	r.jumps(s, k, env, found, add)
	return s, ps
}

// address sets s's HostName and Port: relctl.toml's address, then the
// OpenSSH configuration's, then the host's name and 22.
func (r *sshResolver) address(s *HostSSH, k hostTomlKeys, found sshconfig.Settings, host, port string, add func(string, ...any)) {
	where := r.c.pos.where(k.hkey+".address") + " (" + displayKey(k.hkey+".address") + ")"
	switch {
	case host != "":
		s.HostName = SSHValue{Value: host, From: where}
	case found.HostName.Set():
		s.HostName = fromFile(found.HostName)
	default:
		s.HostName = SSHValue{Value: k.h.Name, From: fromName}
	}
	switch {
	case port != "":
		s.Port = SSHValue{Value: port, From: where}
	case found.Port.Set():
		s.Port = fromFile(found.Port)
	default:
		s.Port = SSHValue{Value: "22", From: fromDefault}
	}
	if err := checkAddress(s.Address()); err != nil && host == "" {
		add("host %q: the address from %s %v", k.h.Name, s.HostName.From, err)
	}
}

// forwardAgent sets s's ForwardAgent from relctl.toml alone: the OpenSSH
// configuration's ForwardAgent is noted, not used.
func (r *sshResolver) forwardAgent(s *HostSSH, k hostTomlKeys, found sshconfig.Settings) {
	s.ForwardAgent = SSHValue{Value: "no", From: fromDefault}
	from := func(key string) string { return r.c.pos.where(key) + " (" + displayKey(key) + ")" }
	switch {
	case k.h.ForwardAgent != nil && r.c.pos.has(k.hkey+".forward_agent"):
		s.ForwardAgent = SSHValue{Value: yesNo(*k.h.ForwardAgent), From: from(k.hkey + ".forward_agent")}
	case k.es.ForwardAgent != nil && r.c.pos.has(k.ekey+".forward_agent"):
		s.ForwardAgent = SSHValue{Value: yesNo(*k.es.ForwardAgent), From: from(k.ekey + ".forward_agent")}
	case r.c.pos.has("ssh.forward_agent"):
		s.ForwardAgent = SSHValue{Value: yesNo(r.c.SSH.ForwardAgent), From: from("ssh.forward_agent")}
	}
	if found.ForwardAgent.Set() && found.ForwardAgent.Value == "yes" {
		s.Notes = append(s.Notes, fmt.Sprintf("ForwardAgent yes at %s is not used: relctl forwards the agent only with forward_agent = true in relctl.toml", found.ForwardAgent.Where()))
	}
}

// jumps sets s's bastions: relctl.toml's proxy_jump, else the OpenSSH
// configuration's ProxyJump; a ProxyCommand is refused.
func (r *sshResolver) jumps(s *HostSSH, k hostTomlKeys, env *Environment, found sshconfig.Settings, add func(string, ...any)) {
	name := k.h.Name
	jumpInToml := false
	if v, ok := r.first(tomlSetting{k.hkey + ".proxy_jump", k.h.ProxyJump}, tomlSetting{k.ekey + ".proxy_jump", k.es.ProxyJump}, tomlSetting{"ssh.proxy_jump", r.c.SSH.ProxyJump}); ok {
		s.ProxyJump, jumpInToml = v, true
	} else {
		if found.ProxyJump.Set() {
			s.ProxyJump = fromFile(found.ProxyJump)
		}
		// Even after "ProxyJump none": ssh would run the command.
		if found.ProxyCommand.Set() && found.ProxyCommand.Value != "none" {
			add("host %q: %s sets ProxyCommand, which relctl does not run: reach it with ProxyJump there, or proxy_jump in relctl.toml", name, found.ProxyCommand.Where())
		}
	}
	jumps, err := sshconfig.ParseProxyJump(s.ProxyJump.Value)
	if err != nil {
		if !jumpInToml { // validate reported relctl.toml's where it is written
			add("host %q: proxy_jump from %s: %v", name, s.ProxyJump.From, err)
		}
		return
	}
	if s.Jumps, err = r.bastions(jumps, env, 0, map[string]bool{name: true}); err != nil {
		add("host %q: %v", name, err)
	}
}

// bastions resolves a ProxyJump chain. The first bastion's own ProxyJump
// in the OpenSSH configuration comes before it (ssh reaches it through
// those); the others are reached through the chain, as ssh does.
func (r *sshResolver) bastions(jumps []sshconfig.Jump, env *Environment, depth int, seen map[string]bool) ([]*HostSSH, error) {
	if len(jumps) > 0 && depth >= maxJumpDepth {
		return nil, fmt.Errorf("bastions are reached through more than %d bastions (a ProxyJump loop?)", maxJumpDepth)
	}
	var out []*HostSSH
	for i, j := range jumps {
		b, found, err := r.bastion(j, env)
		if err != nil {
			return nil, err
		}
		if i == 0 && found.ProxyJump.Set() {
			if seen[j.Host] {
				return nil, fmt.Errorf("bastion %s is reached through itself (ProxyJump at %s)", j.Host, found.ProxyJump.Where())
			}
			before, err := sshconfig.ParseProxyJump(found.ProxyJump.Value)
			if err != nil {
				return nil, fmt.Errorf("bastion %s: ProxyJump at %s: %v", j.Host, found.ProxyJump.Where(), err)
			}
			seen[j.Host] = true
			chain, err := r.bastions(before, env, depth+1, seen)
			delete(seen, j.Host)
			if err != nil {
				return nil, err
			}
			out = append(out, chain...)
			b.ProxyJump = fromFile(found.ProxyJump)
		} else if i == 0 && found.ProxyCommand.Set() && found.ProxyCommand.Value != "none" {
			return nil, fmt.Errorf("bastion %s: %s sets ProxyCommand, which relctl does not run: use ProxyJump", j.Host, found.ProxyCommand.Where())
		}
		out = append(out, b)
	}
	return out, nil
}

// bastion resolves one bastion: proxy_jump's user and port, then the
// OpenSSH configuration for its host, then [ssh] and the environment's.
func (r *sshResolver) bastion(j sshconfig.Jump, env *Environment) (*HostSSH, sshconfig.Settings, error) {
	preset := sshconfig.Preset{User: j.User}
	if j.Port != 0 {
		preset.Port = strconv.Itoa(j.Port)
	}
	found, err := r.files.LookupPreset(j.Host, r.local, preset)
	if err != nil {
		return nil, found, err
	}
	if p := r.refused(found); len(p) > 0 {
		return nil, found, fmt.Errorf("bastion %s: %s", j.Host, strings.Join(p, "; "))
	}
	ekey := "environments." + env.Name + ".ssh"
	es := env.SSH
	if es == nil {
		es = &EnvSSH{}
	}
	b := &HostSSH{Alias: j.String(), ForwardAgent: SSHValue{Value: "no", From: "never forwarded to a bastion"}}
	if found.HostName.Set() {
		b.HostName = fromFile(found.HostName)
	} else {
		b.HostName = SSHValue{Value: j.Host, From: fromJump}
	}
	switch {
	case j.Port != 0:
		b.Port = SSHValue{Value: strconv.Itoa(j.Port), From: fromJump}
	case found.Port.Set():
		b.Port = fromFile(found.Port)
	default:
		b.Port = SSHValue{Value: "22", From: fromDefault}
	}
	// A bastion's login is rarely the hosts': proxy_jump and the OpenSSH
	// configuration name it before [ssh] user does.
	switch {
	case j.User != "":
		b.User = SSHValue{Value: j.User, From: fromJump}
	case found.User.Set():
		b.User = fromFile(found.User)
	default:
		if v, ok := r.first(tomlSetting{ekey + ".user", es.User}, tomlSetting{"ssh.user", r.c.SSH.User}); ok {
			b.User = v
		} else {
			b.User = r.fileOrLocalUser(found.User)
		}
	}
	// A bastion's keys are ssh's for it when its configuration names some
	// (ssh -i does not reach a jump host either), else relctl.toml's.
	if len(found.IdentityFiles) > 0 {
		r.identities(b, found)
	} else {
		r.identities(b, found, tomlSetting{ekey + ".identity_file", es.IdentityFile}, tomlSetting{"ssh.identity_file", r.c.SSH.IdentityFile})
	}
	r.hostKeys(b, found)
	if err := checkAddress(b.Address()); err != nil {
		return nil, found, fmt.Errorf("bastion %s: address %v", j.Host, err)
	}
	return b, found, nil
}

// refused lists the settings of the OpenSSH configuration that would make
// ssh reach or trust a host in a way relctl does not: relctl stops rather
// than reach it another way.
func (r *sshResolver) refused(found sshconfig.Settings) []string {
	var out []string
	if v := found.CanonicalizeHostname; v.Set() && v.Value != "no" && v.Value != "false" {
		out = append(out, fmt.Sprintf("%s sets CanonicalizeHostname %s, which relctl does not do (ssh would read its configuration again for the canonical name): write the full names in HostName instead", v.Where(), v.Value))
	}
	if v := found.RevokedHostKeys; v.Set() && v.Value != "none" {
		out = append(out, fmt.Sprintf("%s sets RevokedHostKeys, which relctl does not read: list the revoked keys as @revoked lines in known_hosts instead", v.Where()))
	}
	return out
}

func (r *sshResolver) fileOrLocalUser(v sshconfig.Value) SSHValue {
	if v.Set() {
		return fromFile(v)
	}
	return SSHValue{Value: r.local.User, From: fromLocalUser}
}

// identities sets s's keys: relctl.toml's identity_file, else the OpenSSH
// configuration's IdentityFile lines, else ssh's default keys; of the last
// two, only the files that exist.
func (r *sshResolver) identities(s *HostSSH, found sshconfig.Settings, settings ...tomlSetting) {
	s.IdentitiesOnly = SSHValue{Value: "no", From: fromDefault}
	if found.IdentitiesOnly.Set() {
		s.IdentitiesOnly = fromFile(found.IdentitiesOnly)
	}
	if v, ok := r.first(settings...); ok {
		v.Value = r.c.ResolvePath(v.Value)
		s.IdentityFiles = []SSHValue{v}
		return
	}
	s.SkipUnusable = true
	var candidates []SSHValue
	for _, f := range found.IdentityFiles {
		candidates = append(candidates, fromFile(f))
	}
	if len(candidates) == 0 && r.local.Home != "" {
		for _, name := range defaultIdentities {
			candidates = append(candidates, SSHValue{Value: filepath.Join(r.local.Home, ".ssh", name), From: fromDefault})
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(c.Value); err == nil {
			s.IdentityFiles = append(s.IdentityFiles, c)
		} else {
			s.Skipped = append(s.Skipped, c)
		}
	}
}

// hostKeys sets how s's host key is checked: relctl.toml's known_hosts,
// host_key_policy and connect_timeout win; else the OpenSSH
// configuration's; else ssh's defaults (the user's and the system's
// known_hosts files).
func (r *sshResolver) hostKeys(s *HostSSH, found sshconfig.Settings) {
	if v, ok := r.first(tomlSetting{"ssh.known_hosts", r.c.SSH.KnownHosts}); ok {
		v.Value = r.c.ResolvePath(v.Value)
		s.KnownHosts = []SSHValue{v}
	} else {
		files := func(v sshconfig.Value, defaults []SSHValue) []SSHValue {
			if !v.Set() {
				return defaults
			}
			var out []SSHValue
			for _, f := range strings.Fields(v.Value) {
				if f != "none" {
					out = append(out, SSHValue{Value: f, From: v.Where()})
				}
			}
			return out
		}
		var user []SSHValue
		if r.local.Home != "" {
			user = []SSHValue{{Value: filepath.Join(r.local.Home, ".ssh", "known_hosts"), From: fromDefault}, {Value: filepath.Join(r.local.Home, ".ssh", "known_hosts2"), From: fromDefault}}
		}
		s.KnownHosts = files(found.UserKnownHostsFile, user)
		s.GlobalKnownHosts = files(found.GlobalKnownHostsFile, []SSHValue{{Value: "/etc/ssh/ssh_known_hosts", From: fromDefault}, {Value: "/etc/ssh/ssh_known_hosts2", From: fromDefault}})
		s.HashKnownHosts = SSHValue{Value: "no", From: fromDefault}
		if found.HashKnownHosts.Set() {
			s.HashKnownHosts = fromFile(found.HashKnownHosts)
		}
	}
	if found.HostKeyAlias.Set() {
		s.HostKeyAlias = fromFile(found.HostKeyAlias)
	}
	if v := found.KnownHostsCommand; v.Set() && v.Value != "none" {
		s.Notes = append(s.Notes, fmt.Sprintf("KnownHostsCommand at %s is not run: relctl finds host keys in the known_hosts files only", v.Where()))
	}
	switch v, ok := r.first(tomlSetting{"ssh.host_key_policy", r.c.SSH.HostKeyPolicy}); {
	case ok:
		s.HostKeyPolicy = v
	case found.StrictHostKeyChecking.Set():
		s.HostKeyPolicy = fromFile(found.StrictHostKeyChecking)
		switch found.StrictHostKeyChecking.Value {
		case "yes", "ask":
			// Never asked: relctl runs unattended, so "ask" refuses.
			s.HostKeyPolicy.Value = HostKeyStrict
		case "accept-new":
			s.HostKeyPolicy.Value = HostKeyAcceptNew
		default:
			// "no"/"off" would let a changed key through; relctl never does.
			s.HostKeyPolicy.Value = HostKeyAcceptNew
			s.Notes = append(s.Notes, fmt.Sprintf("StrictHostKeyChecking %s at %s is taken as accept-new: relctl refuses a changed host key whatever the setting", found.StrictHostKeyChecking.Value, found.StrictHostKeyChecking.Where()))
		}
	default:
		s.HostKeyPolicy = SSHValue{Value: HostKeyStrict, From: fromDefault}
	}
	switch v, ok := r.first(tomlSetting{"ssh.connect_timeout", r.c.SSH.ConnectTimeout.String()}); {
	case ok:
		s.ConnectTimeout = v
	case found.ConnectTimeout.Set() && found.ConnectTimeout.Value != "0":
		s.ConnectTimeout = fromFile(found.ConnectTimeout)
		s.ConnectTimeout.Value += "s"
	default:
		s.ConnectTimeout = SSHValue{Value: r.c.SSH.ConnectTimeout.String(), From: fromDefault}
	}
}

// splitAddress splits relctl.toml's address into host and port ("" when
// it has none).
func splitAddress(addr string) (host, port string) {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// resolveHosts works out how every host is reached (HostSSH) and sets its
// Address and User to the effective ones, which templates, plans and
// status show.
func (c *Config) resolveHosts(r *sshResolver) Problems {
	var ps Problems
	for _, name := range slices.Sorted(mapKeys(c.Environments)) {
		env := c.Environments[name]
		for i, h := range env.Hosts {
			s, hps := r.host(env, fmt.Sprintf("environments.%s.hosts.%d", name, i), h)
			ps = append(ps, hps...)
			if s == nil {
				continue
			}
			h.SSH = s
			h.Address, h.User = s.Address(), s.User.Value
		}
	}
	return ps
}

// proxyJumpProblem checks a proxy_jump value of relctl.toml at key.
func proxyJumpProblem(ix *positions, key, v string) Problems {
	if _, err := sshconfig.ParseProxyJump(v); err != nil || (ix.has(key) && strings.TrimSpace(v) == "") {
		if err == nil {
			err = errors.New(`empty: write "none" to reach the hosts directly`)
		}
		return Problems{ix.problem(key, "%s: %v", displayKey(key), err)}
	}
	return nil
}
