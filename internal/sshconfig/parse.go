package sshconfig

// How a file is read. github.com/kevinburke/ssh_config lexes it: which line
// holds which keyword, `=`, comments, blank lines, which block a line
// belongs to, positions. Four things it does are not ssh's, so they are done
// here:
//
//   - Include: it reads included files itself, eagerly, against os/user's
//     home rather than the home given to Load, and a value then no longer
//     says which file it came from. Include lines are handed to it as
//     comments (same line numbers) and expanded here.
//   - Match: it only parses `Match all` and `Match host a b`, and the
//     latter's argument is not ssh's comma-separated pattern list.
//   - Host patterns: its `?` matches zero or one character (ssh's exactly
//     one), and it splits patterns on spaces but not tabs.
//   - Arguments: it strips quotes only around a whole value and cuts a
//     value at any '#', where ssh splits arguments on blanks, honours quotes
//     and backslashes anywhere and takes '#' as a comment only where an
//     argument would start.
//
// So Host and Match lines are handed to it as `Host <marker>` lines (it
// still finds the blocks) and every line's arguments are split here from the
// text after its keyword, the way ssh's argv_split does. scanLine mirrors
// the library's lexer closely enough to find the same keyword on the same
// line; parse checks that they agree.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kevinburke/ssh_config"
)

// file is one configuration file, parsed.
type file struct {
	path    string
	display string
	system  bool
	blocks  []block
}

// block is the lines before the first Host or Match (line 0), or a Host or
// Match line and the lines after it.
type block struct {
	line    int
	host    []string    // a Host block's patterns
	isMatch bool        // a Match block
	match   []criterion // a Match block's criteria, ANDed
	entries []entry     // the settings relctl uses and Includes, in order
}

// criterion is one Match criterion: `host a,b` or `!user x`.
type criterion struct {
	name   string // lower case, without '!'
	negate bool
	arg    string
}

// entry is one line of a block that relctl uses.
type entry struct {
	key     string   // lower-case keyword
	value   string   // the argument, normalised where validated
	args    []string // UserKnownHostsFile, GlobalKnownHostsFile: the files
	line    int
	include []*file // Include: the files it read, in order
}

// names are the keywords relctl uses, as ssh_config(5) writes them.
var names = map[string]string{
	"hostname":              "HostName",
	"port":                  "Port",
	"user":                  "User",
	"proxyjump":             "ProxyJump",
	"proxycommand":          "ProxyCommand",
	"connecttimeout":        "ConnectTimeout",
	"stricthostkeychecking": "StrictHostKeyChecking",
	"identitiesonly":        "IdentitiesOnly",
	"forwardagent":          "ForwardAgent",
	"hostkeyalias":          "HostKeyAlias",
	"userknownhostsfile":    "UserKnownHostsFile",
	"globalknownhostsfile":  "GlobalKnownHostsFile",
	"identityfile":          "IdentityFile",
	"hashknownhosts":        "HashKnownHosts",
	"canonicalizehostname":  "CanonicalizeHostname",
	"revokedhostkeys":       "RevokedHostKeys",
	"knownhostscommand":     "KnownHostsCommand",
}

// marker starts the lines handed to the library in place of Host, Match
// and Include lines. Files holding a NUL byte are refused, so no line of a
// file can look like one.
const marker = "\x00relctl:"

const includeMarker = marker + "include"

// maxLineLen bounds a line with a keyword: the library lexes a line in time
// quadratic in its length (16 KiB take a tenth of a second, 100 KiB a second).
const maxLineLen = 16 << 10

// hint ends errors about what relctl cannot evaluate.
const hint = `; set [ssh] config = "" in relctl.toml to stop relctl reading ssh's configuration`

// srcLine is what scanLine finds on one line.
type srcLine struct {
	hasKey bool   // false: blank or comment
	key    string // the keyword as written
	col    int    // the keyword's column, in characters, from 1
	rest   string // the text after the keyword and its separator, trailing blanks removed
}

// scanLine finds a line's keyword the way the library's lexer does (its
// lexVoid and lexKey): blanks and carriage returns before it are skipped,
// '#' starts a comment, and the keyword ends at a blank, '=' or carriage
// return. What follows is, like ssh's strdelim, blanks, at most one '=',
// blanks.
func scanLine(s string) srcLine {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	if i == len(s) || s[i] == '#' {
		return srcLine{}
	}
	start := i
	for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '=' && s[i] != '\r' {
		i++
	}
	ln := srcLine{hasKey: true, key: s[start:i], col: utf8.RuneCountInString(s[:start]) + 1}
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	if i < len(s) && s[i] == '=' {
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	ln.rest = strings.TrimRight(s[i:], " \t\r\f")
	return ln
}

// splitArgs splits the text after a keyword into arguments as ssh's
// argv_split does: blanks separate them, "..." and '...' quote, a backslash
// escapes a quote, a backslash or (outside quotes) a space, and '#' where an
// argument would start ends the line.
func splitArgs(s string) ([]string, error) {
	var args []string
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			continue
		}
		if s[i] == '#' {
			break
		}
		var b strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				if n := s[i+1]; n == '\'' || n == '"' || n == '\\' || (quote == 0 && n == ' ') {
					i++
					b.WriteByte(n)
					continue
				}
			}
			if quote == 0 && (c == ' ' || c == '\t') {
				break
			}
			switch {
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote != 0 && c == quote:
				quote = 0
			default:
				b.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, errors.New("a quote is not closed")
		}
		args = append(args, b.String())
	}
	return args, nil
}

// parse reads one file's bytes; stack holds the files including it,
// outermost first.
func (l *loader) parse(path string, b []byte, system bool, stack []string) (*file, error) {
	f := &file{path: path, display: l.display(path), system: system}
	if !l.seen[path] {
		l.seen[path] = true
		l.cfg.read = append(l.cfg.read, f.display)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return nil, f.errorf(bytes.Count(b[:i], []byte("\n"))+1, "holds a NUL byte; is it an ssh configuration file?")
	}
	raw, lines, err := f.scan(b)
	if err != nil {
		return nil, err
	}
	kb, err := ssh_config.DecodeBytes([]byte(strings.Join(raw, "\n")))
	if err != nil {
		return nil, libraryError(f.display, err)
	}
	stack = append(stack, path)
	for i, h := range kb.Hosts {
		var blk block
		if i > 0 { // Hosts[0] is the library's implicit block before the first Host
			n, ok := headerLine(h, lines)
			if !ok {
				return nil, f.disagree(0)
			}
			if blk, err = f.header(n, lines[n-1]); err != nil {
				return nil, err
			}
		}
		if blk.entries, err = l.entries(f, h.Nodes, lines, stack); err != nil {
			return nil, err
		}
		f.blocks = append(f.blocks, blk)
	}
	return f, nil
}

// scan reads the file's lines the way the library will and returns the
// text to hand it: blank and comment lines emptied (its lexer is
// quadratic in a line's length), Host and Match lines replaced by markers
// relctl reads itself, Include lines commented out.
func (f *file) scan(b []byte) (raw []string, lines []srcLine, err error) {
	// The library lexes runes, turning each invalid byte into U+FFFD; do
	// the same first so that both read the same text.
	text := string(bytes.Runes(b))
	raw = strings.Split(text, "\n")
	lines = make([]srcLine, len(raw))
	for i, s := range raw {
		lines[i] = scanLine(s)
		if !lines[i].hasKey {
			raw[i] = ""
			continue
		}
		if len(s) > maxLineLen {
			return nil, nil, f.errorf(i+1, "longer than %d KiB; relctl does not read lines that long", maxLineLen>>10)
		}
		// ssh unquotes a keyword ("Host" is Host); the library would not,
		// and a block's Host line read as something else would apply the
		// block to every host.
		if strings.ContainsAny(lines[i].key, "\"'\\") {
			return nil, nil, f.errorf(i+1, "keyword %s is quoted or escaped; ssh reads it unquoted, relctl refuses it: write it plainly", lines[i].key)
		}
		switch strings.ToLower(lines[i].key) {
		case "host", "match":
			raw[i] = "Host " + marker + strconv.Itoa(i+1)
		case "include":
			raw[i] = "#" + includeMarker
		}
	}
	return raw, lines, nil
}

// entries reads one block's nodes as the library parsed them, checking each
// against relctl's own reading of its line; Includes are read here.
func (l *loader) entries(f *file, nodes []ssh_config.Node, lines []srcLine, stack []string) ([]entry, error) {
	var out []entry
	for _, node := range nodes {
		switch node := node.(type) {
		case *ssh_config.Empty:
			if node.Comment != includeMarker {
				continue
			}
			n := node.Pos().Line
			if n < 1 || n > len(lines) || !strings.EqualFold(lines[n-1].key, "include") {
				return nil, f.disagree(n)
			}
			e, err := l.include(f, n, lines[n-1], stack)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		case *ssh_config.KV:
			pos := node.Pos()
			if pos.Line < 1 || pos.Line > len(lines) {
				return nil, f.disagree(0)
			}
			ln := lines[pos.Line-1]
			if !ln.hasKey || ln.key != node.Key || ln.col != pos.Col {
				return nil, f.disagree(pos.Line)
			}
			e, ok, err := f.entry(pos.Line, ln)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, e)
			}
		default:
			return nil, f.disagree(node.Pos().Line)
		}
	}
	return out, nil
}

func (f *file) errorf(line int, format string, a ...any) *Error {
	return &Error{File: f.display, Line: line, Msg: fmt.Sprintf(format, a...)}
}

// disagree is the error for a line the library lexed otherwise than
// scanLine: a bug here, not in the file.
func (f *file) disagree(line int) *Error {
	return f.errorf(line, "relctl cannot read this line as ssh would (a bug in relctl, please report it)"+hint)
}

// libraryPanic is how the library reports a problem: "(line, col): msg".
var libraryPanic = regexp.MustCompile(`(?s)^\((\d+), (\d+)\): (.*)$`)

func libraryError(display string, err error) *Error {
	msg := strings.TrimSpace(err.Error())
	if m := libraryPanic.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		return &Error{File: display, Line: line, Col: col, Msg: strings.TrimSpace(m[3])}
	}
	return &Error{File: display, Msg: msg}
}

// headerLine is the line number of the Host or Match line that the
// library's block h stands for.
func headerLine(h *ssh_config.Host, lines []srcLine) (int, bool) {
	if len(h.Patterns) != 1 {
		return 0, false
	}
	s, ok := strings.CutPrefix(h.Patterns[0].String(), marker)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > len(lines) {
		return 0, false
	}
	return n, true
}

// header reads a Host or Match line.
func (f *file) header(n int, ln srcLine) (block, error) {
	blk := block{line: n}
	args, err := splitArgs(ln.rest)
	if err != nil {
		return blk, f.errorf(n, "%s: %v", ln.key, err)
	}
	if strings.EqualFold(ln.key, "host") {
		if len(args) == 0 {
			return blk, f.errorf(n, "Host needs at least one pattern")
		}
		for _, a := range args {
			if a == "" || a == "!" {
				return blk, f.errorf(n, "Host has an empty pattern")
			}
		}
		blk.host = args
		return blk, nil
	}
	blk.isMatch = true
	if blk.match, err = parseMatch(args); err != nil {
		return blk, f.errorf(n, "%v", err)
	}
	return blk, nil
}

// Match criteria: those relctl evaluates, and those ssh knows that relctl
// does not (with whether they take an argument).
var (
	matchSupported   = map[string]bool{"all": false, "host": true, "originalhost": true, "user": true, "localuser": true}
	matchUnsupported = map[string]bool{"canonical": false, "final": false, "exec": true, "localnetwork": true, "version": true, "tagged": true, "command": true, "sessiontype": true}
)

// parseMatch reads a Match line's criteria as ssh's match_cfg_line does:
// each one `[!]name arg` or `[!]name=arg`; `all` stands alone.
func parseMatch(args []string) ([]criterion, error) {
	if len(args) == 0 {
		return nil, errors.New("Match needs at least one criterion")
	}
	var out []criterion
	for i := 0; i < len(args); i++ {
		c := criterion{}
		a := args[i]
		if strings.HasPrefix(a, "!") {
			c.negate, a = true, a[1:]
		}
		name, arg, hasArg := strings.Cut(a, "=")
		c.name = strings.ToLower(name)
		takesArg, known := matchSupported[c.name]
		if !known {
			takesArg, known = matchUnsupported[c.name]
		}
		if !known {
			return nil, fmt.Errorf("Match criterion %q is not one ssh knows"+hint, name)
		}
		if !takesArg {
			if hasArg {
				return nil, fmt.Errorf("Match %s takes no argument", name)
			}
			if c.name == "all" && (len(out) > 1 || i+1 < len(args)) {
				return nil, errors.New("Match all cannot be combined with other criteria")
			}
			out = append(out, c)
			continue
		}
		if !hasArg {
			if i+1 == len(args) {
				return nil, fmt.Errorf("Match %s needs an argument", name)
			}
			i++
			arg = args[i]
		}
		if arg == "" && c.name != "tagged" && c.name != "command" {
			return nil, fmt.Errorf("Match %s needs an argument", name)
		}
		c.arg = arg
		out = append(out, c)
	}
	return out, nil
}

// entry reads a line with a keyword relctl uses, checking its value the way
// ssh would; ok is false for the keywords relctl ignores.
func (f *file) entry(n int, ln srcLine) (e entry, ok bool, err error) {
	key := strings.ToLower(ln.key)
	name, ok := names[key]
	if !ok {
		return entry{}, false, nil
	}
	e = entry{key: key, line: n}
	if key == "proxycommand" || key == "proxyjump" || key == "knownhostscommand" || key == "revokedhostkeys" {
		// ssh takes the rest of the line as it is, quotes and all; for
		// ProxyJump up to a '#'.
		v := ln.rest
		if key == "proxyjump" {
			v, _, _ = strings.Cut(v, "#")
			v = strings.TrimRight(v, " \t")
		}
		if v == "" {
			return e, false, f.errorf(n, "%s has no value", name)
		}
		if strings.EqualFold(v, "none") { // ssh takes any case
			v = "none"
		}
		e.value = v
		return e, true, nil
	}
	args, err := splitArgs(ln.rest)
	if err != nil {
		return e, false, f.errorf(n, "%s: %v", name, err)
	}
	if len(args) == 0 || args[0] == "" {
		return e, false, f.errorf(n, "%s has no value", name)
	}
	if key == "userknownhostsfile" || key == "globalknownhostsfile" {
		for _, a := range args {
			if a == "" {
				return e, false, f.errorf(n, "%s has an empty file name", name)
			}
			if strings.EqualFold(a, "none") && len(args) > 1 {
				return e, false, f.errorf(n, "%s none cannot be given with other files", name)
			}
		}
		e.args = args
		return e, true, nil
	}
	if len(args) > 1 {
		return e, false, f.errorf(n, "%s takes one value, not %d (quote a value that holds spaces)", name, len(args))
	}
	v, err := f.checkValue(n, name, key, args[0])
	if err != nil {
		return e, false, err
	}
	e.value = v
	return e, true, nil
}

// checkValue checks a one-value keyword's value as ssh would and returns it
// normalised (a port in decimal, timeouts in seconds, yes/no in lower case).
func (f *file) checkValue(n int, name, key, v string) (string, error) {
	switch key {
	case "port":
		p, ok := parsePort(v)
		if !ok {
			return "", f.errorf(n, "Port %q is not a number from 1 to 65535", v)
		}
		v = strconv.Itoa(p)
	case "connecttimeout":
		s, ok := parseSeconds(v)
		if !ok {
			return "", f.errorf(n, "ConnectTimeout %q is not a number of seconds (nor none, nor an ssh time such as 1m30s)", v)
		}
		v = strconv.Itoa(s)
	case "stricthostkeychecking":
		switch lv := strings.ToLower(v); lv {
		case "yes", "no", "ask", "accept-new", "off":
			v = lv
		case "true":
			v = "yes"
		case "false":
			v = "no"
		default:
			return "", f.errorf(n, "StrictHostKeyChecking %q is not one of yes, no, ask, accept-new, off", v)
		}
	case "canonicalizehostname":
		switch lv := strings.ToLower(v); lv {
		case "yes", "no", "always", "none":
			v = lv
		case "true":
			v = "yes"
		case "false":
			v = "no"
		default:
			return "", f.errorf(n, "CanonicalizeHostname %q is not one of yes, no, always, none", v)
		}
	case "identitiesonly", "forwardagent", "hashknownhosts":
		switch strings.ToLower(v) {
		case "yes", "true":
			v = "yes"
		case "no", "false":
			v = "no"
		default:
			return "", f.errorf(n, "%s %q is not yes or no", name, v)
		}
	}
	return v, nil
}

// parsePort accepts a decimal port from 1 to 65535.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	p, _ := strconv.Atoi(s)
	return p, p >= 1 && p <= 65535
}

// parseSeconds reads ConnectTimeout as ssh's convtime does: a number of
// seconds, or numbers each with a unit (s, m, h, d, w) added up, like
// "1m30s"; "none" (no timeout) is 0, as is 0.
func parseSeconds(s string) (int, bool) {
	if s == "none" {
		return 0, true
	}
	if s == "" {
		return 0, false
	}
	const max = 1<<31 - 1
	total := 0
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 10 {
			return 0, false
		}
		n, _ := strconv.Atoi(s[:i])
		mult := 1
		if i < len(s) {
			switch s[i] {
			case 's', 'S':
			case 'm', 'M':
				mult = 60
			case 'h', 'H':
				mult = 60 * 60
			case 'd', 'D':
				mult = 24 * 60 * 60
			case 'w', 'W':
				mult = 7 * 24 * 60 * 60
			default:
				return 0, false
			}
			i++
		}
		if n > (max-total)/mult {
			return 0, false
		}
		total += n * mult
		s = s[i:]
	}
	return total, true
}

// include reads the files an Include line names, as ssh does: ${VAR}
// expanded, a relative path under ~/.ssh (user files) or /etc/ssh (system
// files), ~ for the home directory, glob patterns matched in sorted order,
// a pattern matching nothing (or a directory) is nothing.
func (l *loader) include(f *file, n int, ln srcLine, stack []string) (entry, error) {
	e := entry{key: "include", line: n}
	args, err := splitArgs(ln.rest)
	if err != nil {
		return e, f.errorf(n, "Include: %v", err)
	}
	if len(args) == 0 {
		return e, f.errorf(n, "Include has no file")
	}
	for _, a := range args {
		pattern, err := l.includePath(f, a)
		if err != nil {
			return e, f.errorf(n, "Include %q: %v", a, err)
		}
		matches, err := l.glob(pattern)
		if err != nil {
			return e, f.errorf(n, "Include %q: %v", a, err)
		}
		sort.Strings(matches)
		for _, m := range matches {
			m = filepath.Clean(m)
			for i, s := range stack {
				if s == m {
					chain := make([]string, 0, len(stack)-i+1)
					for _, s := range stack[i:] {
						chain = append(chain, l.display(s))
					}
					return e, f.errorf(n, "Include %s: the file includes itself (%s)", l.display(m), strings.Join(append(chain, l.display(m)), " → "))
				}
			}
			if len(stack) >= maxIncludeDepth+1 {
				return e, f.errorf(n, "Include %s: more than %d levels of Include", l.display(m), maxIncludeDepth)
			}
			b, err := l.readFile(m)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errIsDir) {
				continue
			}
			if err != nil {
				return e, f.errorf(n, "Include %s: %s", l.display(m), readMessage(err))
			}
			inc, err := l.parse(m, b, f.system, stack)
			if err != nil {
				return e, err
			}
			e.include = append(e.include, inc)
		}
	}
	return e, nil
}

// includePath turns an Include argument into the glob pattern ssh uses.
func (l *loader) includePath(f *file, arg string) (string, error) {
	if arg == "" {
		return "", errors.New("empty file name")
	}
	// ssh expands %-tokens here too, but they can name the host, and Load
	// knows none; only those that do not are taken.
	p, err := expand(arg, tokenSet{name: "Include", repl: map[byte]string{'d': l.home}, unsupported: "CLhijklnpru", env: true}, l.getenv)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(p, "~") {
		if f.system {
			return "", errors.New("a system file cannot Include a path under ~ (ssh refuses it)")
		}
		return l.tilde(p)
	}
	if filepath.IsAbs(p) {
		return p, nil
	}
	if f.system {
		return filepath.Join(l.systemDir, p), nil
	}
	if l.home == "" {
		return "", errors.New("relative to ~/.ssh, but the home directory is not known")
	}
	return filepath.Join(l.home, ".ssh", p), nil
}

func (l *loader) tilde(p string) (string, error) { return tildeExpand(p, l.home, nil) }

// tildeExpand replaces a leading "~" or "~/" by home, as ssh's
// tilde_expand, and passes the rest through then (when not nil): ssh
// expands %-tokens after ~, but a home directory holding a '%' is not
// a token. "~user" is refused.
func tildeExpand(p, home string, then func(string) (string, error)) (string, error) {
	if then == nil {
		then = func(s string) (string, error) { return s, nil }
	}
	if !strings.HasPrefix(p, "~") {
		return then(p)
	}
	rest := p[1:]
	if rest != "" && rest[0] != '/' {
		return "", fmt.Errorf("%s: ~user is not supported, only ~ (the local user's home)", p)
	}
	if home == "" {
		return "", fmt.Errorf("%s: the home directory is not known", p)
	}
	rest, err := then(strings.TrimLeft(rest, "/"))
	if err != nil {
		return "", err
	}
	if rest == "" {
		return home, nil
	}
	return strings.TrimSuffix(home, "/") + "/" + rest, nil
}
