package sshconfig

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Local is what %-tokens and ~ need about the machine relctl runs on.
type Local struct {
	Home     string // ~ and %d; empty: the home given to Load
	User     string // %u, Match localuser, and %r and Match user when no User is set
	Hostname string // %l; %L is it up to the first dot
	UID      int    // %i
}

// Settings are the effective values for one alias: the first value obtained
// wins (as in ssh), except IdentityFile which accumulates in order.
//
// Values come back as ssh would use them: %-tokens, ${VAR} and ~ expanded
// where ssh expands them (ssh_config(5) TOKENS); Port a decimal number;
// ConnectTimeout a number of seconds (0: none); StrictHostKeyChecking one of
// yes, no, ask, accept-new, off; IdentitiesOnly and ForwardAgent yes or no;
// HostKeyAlias in lower case. ProxyJump and ProxyCommand may be "none" (in
// lower case whatever the file's case), which the caller interprets; of the two, the one obtained first wins (a
// ProxyJump that is not none keeps any later ProxyCommand out, and the
// other way round). UserKnownHostsFile and GlobalKnownHostsFile are lists
// of files separated by spaces.
type Settings struct {
	Alias string

	HostName, Port, User, ProxyJump, ProxyCommand, ConnectTimeout, StrictHostKeyChecking,
	IdentitiesOnly, ForwardAgent, HostKeyAlias, UserKnownHostsFile, GlobalKnownHostsFile Value

	// HashKnownHosts (yes or no), and settings relctl does not apply but
	// must not ignore silently: CanonicalizeHostname (yes, no, always),
	// RevokedHostKeys, ProxyUseFdpass, KnownHostsCommand.
	HashKnownHosts, CanonicalizeHostname, RevokedHostKeys, KnownHostsCommand Value

	IdentityFiles []Value
}

// maxIdentityFiles is ssh's SSH_MAX_IDENTITY_FILES.
const maxIdentityFiles = 100

// Lookup returns the settings for alias (the name given to ssh): the files
// walked in order, blocks applying when their Host patterns or Match
// criteria match, Includes in a block only when it applies. An error is an
// *Error naming the file and line: a value that cannot be expanded or is
// not valid, or a Match criterion relctl cannot evaluate (exec, canonical,
// final, localnetwork, tagged, command, version, sessiontype) on a block
// whose other criteria do not already rule it out.
//
// A nil Config (relctl does not read ssh's configuration) returns only the
// alias.
func (c *Config) Lookup(alias string, local Local) (Settings, error) {
	return c.LookupPreset(alias, local, Preset{})
}

// Preset holds values given before any file is read, as ssh's -l, -p and
// -o HostName= are: they are the first obtained, so `Match user`, `Match
// host` and the %r, %h and %p tokens see them, and they come back in
// Settings with no file.
type Preset struct{ User, HostName, Port string }

// LookupPreset is Lookup with values preset (relctl.toml's, which win).
func (c *Config) LookupPreset(alias string, local Local, preset Preset) (Settings, error) {
	if c == nil {
		return Settings{Alias: alias}, nil
	}
	if local.Home == "" {
		local.Home = c.home
	}
	w := &walker{alias: alias, local: local, s: Settings{Alias: alias}, ids: map[string]bool{}}
	w.s.User = Value{Value: preset.User}
	w.s.HostName = Value{Value: strings.ReplaceAll(preset.HostName, "%", "%%")}
	w.s.Port = Value{Value: preset.Port}
	for _, f := range c.files {
		if err := w.file(f); err != nil {
			return Settings{Alias: alias}, err
		}
	}
	s, err := w.finish(c.getenv)
	if err != nil {
		return Settings{Alias: alias}, err
	}
	return s, nil
}

// walker is one Lookup under way: the values obtained so far, unexpanded.
type walker struct {
	alias string
	local Local
	s     Settings

	userKnownHosts, globalKnownHosts []string // the files, before expansion
	jumpSet                          bool     // a ProxyJump other than none: ProxyCommand is out
	ids                              map[string]bool
}

func (w *walker) file(f *file) error {
	for _, b := range f.blocks {
		ok, err := w.applies(f, b)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		for _, e := range b.entries {
			if e.key == "include" {
				for _, inc := range e.include {
					if err := w.file(inc); err != nil {
						return err
					}
				}
				continue
			}
			if err := w.set(f, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// applies reports whether block b applies to the alias.
func (w *walker) applies(f *file, b block) (bool, error) {
	switch {
	case b.host != nil:
		return hostLineMatches(w.alias, b.host), nil
	case b.isMatch:
		return w.matchLineMatches(f, b)
	}
	return true, nil // before the first Host or Match
}

// hostLineMatches is ssh's Host line: some pattern matches the alias
// (case-sensitively, as typed) and no negated one does.
func hostLineMatches(alias string, patterns []string) bool {
	matched := false
	for _, p := range patterns {
		if neg, ok := strings.CutPrefix(p, "!"); ok {
			if matchPattern(alias, neg) {
				return false
			}
			continue
		}
		if matchPattern(alias, p) {
			matched = true
		}
	}
	return matched
}

// matchLineMatches evaluates a Match line as ssh's match_cfg_line: every
// criterion must hold. A criterion relctl does not evaluate is an error,
// unless another one already fails.
func (w *walker) matchLineMatches(f *file, b block) (bool, error) {
	unsupported := ""
	for _, c := range b.match {
		var ok bool
		switch c.name {
		case "all":
			ok = true
		case "host":
			h, err := w.hostSoFar()
			if err != nil {
				return false, err
			}
			ok = matchHostname(h, c.arg)
		case "originalhost":
			ok = matchHostname(w.alias, c.arg)
		case "user":
			u := w.local.User
			if w.s.User.Set() {
				u = w.s.User.Value
			}
			ok = matchPatternList(u, c.arg, false) == 1
		case "localuser":
			ok = matchPatternList(w.local.User, c.arg, false) == 1
		default:
			if unsupported == "" {
				unsupported = c.name
			}
			continue
		}
		if ok == c.negate {
			return false, nil
		}
	}
	if unsupported != "" {
		return false, f.errorf(b.line, "Match %s is not supported by relctl, so it cannot tell whether this block applies to %q"+hint, unsupported, w.alias)
	}
	return true, nil
}

// hostSoFar is what `Match host` matches against: the HostName obtained so
// far with %h expanded, or the alias.
func (w *walker) hostSoFar() (string, error) {
	if !w.s.HostName.Set() {
		return w.alias, nil
	}
	return w.expandHostName()
}

func (w *walker) expandHostName() (string, error) {
	v := w.s.HostName
	h, err := expand(v.Value, tokenSet{name: "HostName", repl: map[byte]string{'h': w.alias}}, nil)
	if err != nil {
		return "", valueError(v, "HostName %q: %v", v.Value, err)
	}
	return h, nil
}

func valueError(v Value, format string, a ...any) *Error {
	return &Error{File: v.File, Line: v.Line, Msg: fmt.Sprintf(format, a...)}
}

// set takes a value if it is the first obtained for its keyword.
func (w *walker) set(f *file, e entry) error {
	v := Value{Value: e.value, File: f.display, Line: e.line}
	first := func(dst *Value) {
		if !dst.Set() {
			*dst = v
		}
	}
	s := &w.s
	switch e.key {
	case "hostname":
		first(&s.HostName)
	case "port":
		first(&s.Port)
	case "user":
		first(&s.User)
	case "connecttimeout":
		first(&s.ConnectTimeout)
	case "stricthostkeychecking":
		first(&s.StrictHostKeyChecking)
	case "identitiesonly":
		first(&s.IdentitiesOnly)
	case "forwardagent":
		first(&s.ForwardAgent)
	case "hostkeyalias":
		first(&s.HostKeyAlias)
	case "hashknownhosts":
		first(&s.HashKnownHosts)
	case "canonicalizehostname":
		first(&s.CanonicalizeHostname)
	case "revokedhostkeys":
		first(&s.RevokedHostKeys)
	case "knownhostscommand":
		first(&s.KnownHostsCommand)
	case "userknownhostsfile":
		if !s.UserKnownHostsFile.Set() {
			s.UserKnownHostsFile = v
			w.userKnownHosts = e.args
		}
	case "globalknownhostsfile":
		if !s.GlobalKnownHostsFile.Set() {
			s.GlobalKnownHostsFile = v
			w.globalKnownHosts = e.args
		}
	case "proxyjump":
		// ssh's parse_jump: none only if no ProxyJump yet; a jump only if
		// neither a ProxyJump nor a ProxyCommand yet, and then no
		// ProxyCommand after it.
		if s.ProxyJump.Set() {
			break
		}
		if e.value == "none" {
			s.ProxyJump = v
		} else if !s.ProxyCommand.Set() {
			s.ProxyJump = v
			w.jumpSet = true
		}
	case "proxycommand":
		if !w.jumpSet {
			first(&s.ProxyCommand)
		}
	case "identityfile":
		if w.ids[e.value] { // ssh skips a file given twice
			break
		}
		if len(s.IdentityFiles) == maxIdentityFiles {
			return valueError(v, "more than %d IdentityFiles", maxIdentityFiles)
		}
		w.ids[e.value] = true
		s.IdentityFiles = append(s.IdentityFiles, v)
	}
	return nil
}

// finish expands the values obtained, with the final HostName, Port and
// User, as ssh does once the configuration is read.
func (w *walker) finish(getenv func(string) (string, bool)) (Settings, error) {
	s := w.s
	tokens, host, port, err := w.tokens(&s, getenv)
	if err != nil {
		return s, err
	}
	if err := w.expandFiles(&s, tokens, getenv); err != nil {
		return s, err
	}
	proxy := tokenSet{repl: map[byte]string{'h': host, 'n': w.alias, 'p': port, 'r': tokens['r']}}
	if v := s.ProxyJump; v.Set() && v.Value != "none" {
		proxy.name = "ProxyJump"
		j, err := expand(v.Value, proxy, nil)
		if err != nil {
			return s, valueError(v, "ProxyJump %q: %v", v.Value, err)
		}
		if _, err := ParseProxyJump(j); err != nil {
			return s, valueError(v, "%v", err)
		}
		s.ProxyJump.Value = j
	}
	if v := s.ProxyCommand; v.Set() && v.Value != "none" {
		proxy.name = "ProxyCommand"
		cmd, err := expand(v.Value, proxy, nil)
		if err != nil {
			return s, valueError(v, "ProxyCommand %q: %v", v.Value, err)
		}
		s.ProxyCommand.Value = cmd
	}
	return s, nil
}

// tokens expands HostName, HostKeyAlias and User in s and returns the
// %-tokens the files and proxies take, with the host and port they name.
func (w *walker) tokens(s *Settings, getenv func(string) (string, bool)) (tokens map[byte]string, host, port string, err error) {
	alias, local := w.alias, w.local
	host = alias
	if s.HostName.Set() {
		h, err := w.expandHostName()
		if err != nil {
			return nil, "", "", err
		}
		s.HostName.Value, host = h, h
	}
	if net.ParseIP(host) == nil { // ssh lower-cases the host name, not an address
		host = strings.ToLower(host)
	}
	port = "22"
	if s.Port.Set() {
		port = s.Port.Value
	}
	keyAlias := alias
	if s.HostKeyAlias.Set() {
		s.HostKeyAlias.Value = strings.ToLower(s.HostKeyAlias.Value)
		keyAlias = s.HostKeyAlias.Value
	}
	short, _, _ := strings.Cut(local.Hostname, ".")
	tokens = map[byte]string{
		'd': local.Home,
		'h': host,
		'i': strconv.Itoa(local.UID),
		'k': keyAlias,
		'L': short,
		'l': local.Hostname,
		'n': alias,
		'p': port,
		'u': local.User,
	}
	// User takes the tokens but %r (itself) and %C (which hashes it).
	ruser := local.User
	if s.User.Set() {
		u, err := expand(s.User.Value, tokenSet{name: "User", repl: tokens, unsupported: "Cj", env: true}, getenv)
		if err != nil {
			return nil, "", "", valueError(s.User, "User %q: %v", s.User.Value, err)
		}
		s.User.Value, ruser = u, u
	}
	tokens['r'] = ruser
	return tokens, host, port, nil
}

// expandFiles expands the identity and known_hosts files in s.
func (w *walker) expandFiles(s *Settings, tokens map[byte]string, getenv func(string) (string, bool)) error {
	home := w.local.Home
	files := tokenSet{repl: tokens, unsupported: "Cj", env: true}
	expandFile := func(name string, v Value, p string) (string, error) {
		files.name = name
		t, err := tildeExpand(p, home, func(s string) (string, error) { return expand(s, files, getenv) })
		if err != nil {
			return "", valueError(v, "%s %q: %v", name, p, err)
		}
		return t, nil
	}
	var ids []Value
	for _, v := range s.IdentityFiles {
		p, err := expandFile("IdentityFile", v, v.Value)
		if err != nil {
			return err
		}
		v.Value = p
		ids = append(ids, v)
	}
	s.IdentityFiles = ids
	// GlobalKnownHostsFile: ssh expands only ~ there.
	globalFile := func(name string, v Value, p string) (string, error) {
		t, err := tildeExpand(p, home, nil)
		if err != nil {
			return "", valueError(v, "%s %q: %v", name, p, err)
		}
		return t, nil
	}
	var err error
	if s.UserKnownHostsFile.Set() {
		if s.UserKnownHostsFile.Value, err = knownHostsList("UserKnownHostsFile", s.UserKnownHostsFile, w.userKnownHosts, expandFile); err != nil {
			return err
		}
	}
	if s.GlobalKnownHostsFile.Set() {
		if s.GlobalKnownHostsFile.Value, err = knownHostsList("GlobalKnownHostsFile", s.GlobalKnownHostsFile, w.globalKnownHosts, globalFile); err != nil {
			return err
		}
	}
	return nil
}

// knownHostsList expands a known_hosts keyword's files into a list
// separated by spaces ("none" kept).
func knownHostsList(name string, v Value, args []string, expandFile func(string, Value, string) (string, error)) (string, error) {
	var out []string
	for _, a := range args {
		if strings.EqualFold(a, "none") {
			out = append(out, "none")
			continue
		}
		p, err := expandFile(name, v, a)
		if err != nil {
			return "", err
		}
		if err := noBlanks(name, v, a, p); err != nil {
			return "", err
		}
		out = append(out, p)
	}
	return strings.Join(out, " "), nil
}

// noBlanks refuses a known_hosts file whose name, expanded, holds a blank:
// it could not be told apart in the space-separated list.
func noBlanks(name string, v Value, arg, expanded string) error {
	if strings.ContainsAny(expanded, " \t") {
		return valueError(v, "%s %q: relctl does not support file names with blanks here", name, arg)
	}
	return nil
}

// matchHostname is ssh's match_hostname: a comma-separated pattern list,
// both sides in lower case.
func matchHostname(host, list string) bool {
	return matchPatternList(strings.ToLower(host), list, true) == 1
}

// matchPatternList is ssh's match_pattern_list: 1 if some pattern of the
// comma-separated list matches and no negated one (!pattern) does, -1 if a
// negated one does, 0 otherwise.
func matchPatternList(s, list string, lower bool) int {
	got := 0
	for i := 0; i < len(list); {
		neg := list[i] == '!'
		if neg {
			i++
		}
		p := list[i:]
		if j := strings.IndexByte(p, ','); j >= 0 {
			p, i = p[:j], i+j+1
		} else {
			i = len(list)
		}
		if lower {
			p = strings.ToLower(p)
		}
		if matchPattern(s, p) {
			if neg {
				return -1
			}
			got = 1
		}
	}
	return got
}

// matchPattern is ssh's match_pattern: '*' matches any run of bytes, '?'
// exactly one byte, anything else itself.
func matchPattern(s, p string) bool {
	// Backtrack to the last '*' only: linear enough, and no recursion.
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			si++
			pi++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			mark++
			si, pi = mark, star+1
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
