package watchdog

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Service kinds, as written after "check".
const (
	KindProcess    = "process"
	KindHost       = "host"
	KindFile       = "file"
	KindProgram    = "program"
	KindSystem     = "system"
	KindFilesystem = "filesystem"
	KindDirectory  = "directory"
	KindFifo       = "fifo"
	KindNetwork    = "network"
)

// MonitConfig is one parsed monit control file or snippet. Includes are
// recorded, not followed: the parser never touches a file system.
type MonitConfig struct {
	Services []*Service
	Includes []Include
	Sets     []Statement // global "set ..." statements
}

// Service is one "check KIND NAME ..." block.
type Service struct {
	Kind string
	Name string

	Pidfile  string        // process: with pidfile
	Matching string        // process: matching
	Path     string        // file, directory, fifo, filesystem; program: the command
	Address  string        // host, network (address or interface)
	Timeout  time.Duration // program: with timeout

	Start, Stop, Restart *Program
	Ports                []PortTest
	Rules                []Rule // every "if ... then ..." (port tests included)
	Groups               []string
	DependsOn            []string
	Every                string // "2 cycles", or a cron spec; "not <spec>" for "not every"
	Mode                 string // active | passive | manual
	OnReboot             string
	Alerts               []Statement // alert / noalert, recorded as written
	Other                []Statement // statements this parser does not model, skipped

	Pos Pos
}

// String names the service as a user wrote it, e.g. "check process search".
func (s *Service) String() string { return "check " + s.Kind + " " + s.Name }

// Program is a start, stop or restart program.
type Program struct {
	Command  string
	UID, GID string
	Timeout  time.Duration
	Pos      Pos
}

// PortTest is an "if failed [host H] port N ..." test.
type PortTest struct {
	Host     string
	Port     int
	Protocol string
	Request  string
	Timeout  time.Duration
	Pos      Pos
}

// Rule is an "if CONDITION then ACTION [else if ... then ACTION]" statement.
type Rule struct {
	Condition string // the words between "if" and "then", joined by spaces
	Action    string // e.g. "restart", `exec "/usr/bin/x"`
	Else      string // the "else if" part, as written, or ""
	Pos       Pos
}

// Include is an "include PATTERN" statement.
type Include struct {
	Pattern string
	Pos     Pos
}

// Statement is a statement recorded as words: "set daemon 30" is
// {Keyword: "daemon", Args: ["30"]}. Args keep quoted strings unquoted and
// braces blocks as written. Set statements can carry credentials (mailserver
// passwords, httpd allow user:password): never log Args.
type Statement struct {
	Keyword string
	Args    []string
	Pos     Pos
}

var serviceKinds = map[string]bool{
	KindProcess: true, KindHost: true, KindFile: true, KindProgram: true, KindSystem: true,
	KindFilesystem: true, KindDirectory: true, KindFifo: true, KindNetwork: true,
}

// topKeywords start a top-level statement; serviceKeywords start a statement
// inside a check block. Skipping an unknown statement stops at either.
var (
	topKeywords     = map[string]bool{"check": true, "set": true, "include": true}
	serviceKeywords = map[string]bool{
		"start": true, "stop": true, "restart": true, "if": true, "group": true, "depends": true, "depend": true,
		"every": true, "not": true, "mode": true, "alert": true, "noalert": true, "onreboot": true,
	}
	ruleActions = map[string]bool{
		"alert": true, "restart": true, "start": true, "stop": true, "exec": true,
		"unmonitor": true, "monitor": true, "timeout": true,
	}
)

// ParseMonit reads a monit control file or snippet. It models what relctl
// checks (services, programs, port tests, dependencies) and records or skips
// the rest: `monit -t` stays the authority on full syntax, so statements this
// parser does not know are skipped up to the next known keyword rather than
// refused. Garbled syntax in what it does model is a *SyntaxError.
func ParseMonit(file string, src []byte) (*MonitConfig, error) {
	toks, err := lexMonit(file, src)
	if err != nil {
		return nil, err
	}
	p := &monitParser{file: file, toks: toks}
	return p.parse()
}

type monitParser struct {
	file string
	toks []token
	i    int
	cfg  MonitConfig
}

func (p *monitParser) peek() (token, bool) {
	if p.i >= len(p.toks) {
		return token{}, false
	}
	return p.toks[p.i], true
}

func (p *monitParser) peekKw() string {
	t, _ := p.peek()
	return t.kw()
}

func (p *monitParser) next() token {
	t := p.toks[p.i]
	p.i++
	return t
}

// skip consumes the keyword if it is next (monit's optional noise words).
func (p *monitParser) skip(kws ...string) bool {
	k := p.peekKw()
	for _, w := range kws {
		if k == w {
			p.i++
			return true
		}
	}
	return false
}

// errAt reports the next token (or the end of input) as the offender.
func (p *monitParser) errAt(msg string, args ...any) error {
	if t, ok := p.peek(); ok {
		return &SyntaxError{Pos: t.pos, Token: t.raw, Msg: fmt.Sprintf(msg, args...)}
	}
	pos := Pos{File: p.file}
	if n := len(p.toks); n > 0 {
		pos = p.toks[n-1].pos
	}
	return &SyntaxError{Pos: pos, Msg: fmt.Sprintf(msg, args...)}
}

// value reads a word or a quoted string.
func (p *monitParser) value(what string) (string, error) {
	t, ok := p.peek()
	// An unquoted keyword here means the value is missing: "start program =" followed by "if ...".
	if !ok || (t.kind != tokWord && t.kind != tokString) || topKeywords[t.kw()] || serviceKeywords[t.kw()] {
		return "", p.errAt("expected %s", what)
	}
	p.i++
	return t.text, nil
}

func (p *monitParser) number(what string) (int, error) {
	t, ok := p.peek()
	if ok && t.kind == tokWord {
		if n, err := strconv.Atoi(t.text); err == nil && n >= 0 {
			p.i++
			return n, nil
		}
	}
	return 0, p.errAt("expected %s (a number)", what)
}

// duration reads "N [second(s)|minute(s)|hour(s)]"; seconds when no unit.
func (p *monitParser) duration(what string) (time.Duration, error) {
	n, err := p.number(what)
	if err != nil {
		return 0, err
	}
	unit := time.Second
	switch p.peekKw() {
	case "second", "seconds", "sec", "secs", "s":
		p.i++
	case "minute", "minutes", "min", "mins", "m":
		p.i++
		unit = time.Minute
	case "hour", "hours", "h":
		p.i++
		unit = time.Hour
	}
	return time.Duration(n) * unit, nil
}

// rest collects words until the next keyword in stop (or the end).
func (p *monitParser) rest(stop ...map[string]bool) []string {
	var args []string
	for t, ok := p.peek(); ok; t, ok = p.peek() {
		for _, s := range stop {
			if s[t.kw()] {
				return args
			}
		}
		args = append(args, t.text)
		p.i++
	}
	return args
}

func (p *monitParser) parse() (*MonitConfig, error) {
	for t, ok := p.peek(); ok; t, ok = p.peek() {
		var err error
		switch t.kw() {
		case "set":
			p.i++
			st := Statement{Pos: t.pos}
			// Not value(): "set alert" names a setting that is also a service keyword.
			kt, ok := p.peek()
			if !ok || kt.kind != tokWord || topKeywords[kt.kw()] {
				return nil, p.errAt("expected a setting after 'set'")
			}
			p.i++
			st.Keyword = kt.kw()
			st.Args = p.rest(topKeywords)
			p.cfg.Sets = append(p.cfg.Sets, st)
		case "include":
			err = p.include()
		case "check":
			err = p.service()
		default:
			return nil, p.errAt("expected 'check', 'set' or 'include'")
		}
		if err != nil {
			return nil, err
		}
	}
	return &p.cfg, nil
}

func (p *monitParser) include() error {
	t := p.next()
	pat, err := p.value("a file pattern after 'include'")
	if err == nil {
		p.cfg.Includes = append(p.cfg.Includes, Include{Pattern: pat, Pos: t.pos})
	}
	return err
}

func (p *monitParser) service() error {
	s := &Service{Pos: p.next().pos}
	kt, ok := p.peek()
	if !ok || !serviceKinds[kt.kw()] {
		return p.errAt("unknown service type after 'check' (want process, host, file, program, system, filesystem, directory, fifo or network)")
	}
	p.i++
	s.Kind = kt.kw()
	var err error
	if s.Name, err = p.value("a service name after 'check " + s.Kind + "'"); err != nil {
		return err
	}
	if err := p.serviceHeader(s); err != nil {
		return err
	}
	// monit includes are textual, so a check block goes on after one.
	for t, ok := p.peek(); ok && t.kw() != "check" && t.kw() != "set"; t, ok = p.peek() {
		if t.kw() == "include" {
			if err := p.include(); err != nil {
				return err
			}
			continue
		}
		if err := p.serviceStatement(s, t); err != nil {
			return err
		}
	}
	p.cfg.Services = append(p.cfg.Services, s)
	return nil
}

// serviceHeader reads what names the checked object: pidfile or matching,
// path, address. monit refuses a check without it.
func (p *monitParser) serviceHeader(s *Service) error {
	var err error
	switch s.Kind {
	case KindProcess:
		p.skip("with")
		switch p.peekKw() {
		case "pidfile":
			p.i++
			s.Pidfile, err = p.value("a pidfile path")
		case "matching":
			p.i++
			s.Matching, err = p.value("a pattern after 'matching'")
		default:
			return p.errAt("check process %s needs 'with pidfile PATH' or 'matching REGEX'", s.Name)
		}
	case KindFile, KindDirectory, KindFifo, KindFilesystem, KindProgram:
		p.skip("with")
		if !p.skip("path") {
			return p.errAt("check %s %s needs 'with path PATH'", s.Kind, s.Name)
		}
		if s.Path, err = p.value("a path"); err != nil {
			return err
		}
		if s.Kind == KindProgram && p.peekKw() == "with" && p.i+1 < len(p.toks) && p.toks[p.i+1].kw() == "timeout" {
			p.i += 2
			s.Timeout, err = p.duration("a timeout")
		}
	case KindHost, KindNetwork:
		p.skip("with")
		if !p.skip("address", "interface") {
			return p.errAt("check %s %s needs 'with address ADDRESS'", s.Kind, s.Name)
		}
		s.Address, err = p.value("an address")
	}
	return err
}

// serviceStatement reads one statement of a check block into s; t is its
// first token.
func (p *monitParser) serviceStatement(s *Service, t token) error {
	var err error
	switch k := t.kw(); k {
	case "start", "stop", "restart":
		p.i++
		err = p.programStatement(s, t)
	case "if":
		err = p.rule(s)
	case "group":
		p.i++
		var g string
		if g, err = p.value("a group name"); err == nil {
			s.Groups = append(s.Groups, g)
		}
	case "depends", "depend":
		p.i++
		p.skip("on")
		err = p.dependsOn(s)
	case "every", "not":
		p.i++
		err = p.every(s, t)
	case "mode":
		p.i++
		switch m := p.peekKw(); m {
		case "active", "passive", "manual":
			p.i++
			s.Mode = m
		default:
			err = p.errAt("mode must be active, passive or manual")
		}
	case "onreboot":
		p.i++
		s.OnReboot, err = p.value("start, nostart or laststate after 'onreboot'")
	case "alert", "noalert":
		p.i++
		s.Alerts = append(s.Alerts, Statement{Keyword: k, Args: p.rest(topKeywords, serviceKeywords), Pos: t.pos})
	default:
		// Not modelled (or a typo monit -t will name): skip to the next keyword.
		p.i++
		s.Other = append(s.Other, Statement{Keyword: t.text, Args: p.rest(topKeywords, serviceKeywords), Pos: t.pos})
	}
	return err
}

// programStatement reads the program of `start|stop|restart program = ...`
// (t is the keyword) into s.
func (p *monitParser) programStatement(s *Service, t token) error {
	prog, err := p.program(t)
	if err != nil {
		return err
	}
	switch t.kw() {
	case "start":
		s.Start = prog
	case "stop":
		s.Stop = prog
	default:
		s.Restart = prog
	}
	return nil
}

// dependsOn reads the comma-separated service names after `depends on`.
func (p *monitParser) dependsOn(s *Service) error {
	for {
		d, err := p.value("a service name after 'depends on'")
		if err != nil {
			return err
		}
		s.DependsOn = append(s.DependsOn, d)
		if nt, ok := p.peek(); !ok || nt.kind != tokOp || nt.text != "," {
			return nil
		}
		p.i++
	}
}

// every reads the rest of `every N cycles`, `every "SPEC"` or
// `not every "SPEC"` (t is every or not).
func (p *monitParser) every(s *Service, t token) error {
	if t.kw() == "not" {
		if !p.skip("every") {
			return &SyntaxError{Pos: t.pos, Token: t.raw, Msg: "expected 'not every \"SPEC\"'"}
		}
		spec, err := p.value("a cron spec after 'not every'")
		if err == nil {
			s.Every = "not " + spec
		}
		return err
	}
	if nt, ok := p.peek(); ok && nt.kind == tokString {
		p.i++
		s.Every = nt.text
		return nil
	}
	n, err := p.number("cycles after 'every'")
	if err == nil {
		p.skip("cycle", "cycles")
		s.Every = fmt.Sprintf("%d cycles", n)
	}
	return err
}

// program reads the rest of `start program = "CMD" [as uid U and gid G] [with timeout N seconds]`.
func (p *monitParser) program(kw token) (*Program, error) {
	prog := &Program{Pos: kw.pos}
	p.skip("program", "programs")
	if t, ok := p.peek(); ok && t.kind == tokOp && t.text == "=" {
		p.i++
	}
	var err error
	if prog.Command, err = p.value("a command after '" + kw.kw() + " program ='"); err != nil {
		return nil, err
	}
	for {
		switch p.peekKw() {
		case "as", "and", "with":
			p.i++
		case "uid":
			p.i++
			if prog.UID, err = p.value("a user after 'uid'"); err != nil {
				return nil, err
			}
		case "gid":
			p.i++
			if prog.GID, err = p.value("a group after 'gid'"); err != nil {
				return nil, err
			}
		case "timeout":
			p.i++
			if prog.Timeout, err = p.duration("a timeout"); err != nil {
				return nil, err
			}
		default:
			return prog, nil
		}
	}
}

// rule reads "if COND then ACTION [else if COND then ACTION]" and, when COND
// is a failed port test, the port test.
func (p *monitParser) rule(s *Service) error {
	ifTok := p.next()
	r := Rule{Pos: ifTok.pos}
	cond, err := p.condition(ifTok)
	if err != nil {
		return err
	}
	r.Condition = joinRaw(cond)
	if r.Action, err = p.action(); err != nil {
		return err
	}
	if p.peekKw() == "else" {
		elseStart := p.i
		p.i++
		if !p.skip("if") {
			return p.errAt("expected 'if' after 'else'")
		}
		if _, err := p.condition(p.toks[p.i-1]); err != nil {
			return err
		}
		if _, err := p.action(); err != nil {
			return err
		}
		r.Else = joinRaw(p.toks[elseStart:p.i])
	}
	s.Rules = append(s.Rules, r)
	pt, ok, err := portTest(cond)
	if err != nil {
		return err
	}
	if ok {
		pt.Pos = ifTok.pos
		s.Ports = append(s.Ports, pt)
	}
	return nil
}

// condition returns the tokens between "if" and "then" and consumes "then".
func (p *monitParser) condition(ifTok token) ([]token, error) {
	start := p.i
	for t, ok := p.peek(); ok; t, ok = p.peek() {
		switch {
		case t.kw() == "then":
			p.i++
			if p.i-1 == start {
				return nil, &SyntaxError{Pos: t.pos, Token: t.raw, Msg: "'if' without a condition"}
			}
			return p.toks[start : p.i-1], nil
		case topKeywords[t.kw()] || t.kw() == "if":
			return nil, &SyntaxError{Pos: t.pos, Token: t.raw, Msg: fmt.Sprintf("'if' at %d:%d has no 'then'", ifTok.pos.Line, ifTok.pos.Column)}
		}
		p.i++
	}
	return nil, &SyntaxError{Pos: ifTok.pos, Token: ifTok.raw, Msg: "'if' has no 'then'"}
}

func (p *monitParser) action() (string, error) {
	start := p.i
	k := p.peekKw()
	if !ruleActions[k] {
		return "", p.errAt("unknown action after 'then' (want alert, restart, start, stop, exec, unmonitor or monitor)")
	}
	p.i++
	if k == "exec" {
		if _, err := p.value("a command after 'exec'"); err != nil {
			return "", err
		}
		for {
			switch p.peekKw() {
			case "as", "and", "with":
				p.i++
			case "uid", "gid":
				p.i++
				if _, err := p.value("a user or group"); err != nil {
					return "", err
				}
			case "repeat":
				// "repeat every N cycles": the keyword 'every' here is not a statement.
				p.i++
				p.skip("every")
				if _, err := p.number("cycles after 'repeat every'"); err != nil {
					return "", err
				}
				p.skip("cycle", "cycles")
			default:
				return joinRaw(p.toks[start:p.i]), nil
			}
		}
	}
	return joinRaw(p.toks[start:p.i]), nil
}

// portTest finds "failed ... [host H] port N [type T] [protocol P] [request R]
// [with timeout N seconds]" in a condition.
func portTest(cond []token) (PortTest, bool, error) {
	var pt PortTest
	failed, hasPort := false, false
	for i := 0; i < len(cond); i++ {
		t := cond[i]
		arg := func() (token, bool) {
			if i+1 < len(cond) && cond[i+1].kind != tokOp {
				i++
				return cond[i], true
			}
			return token{}, false
		}
		switch t.kw() {
		case "failed":
			failed = true
		case "host":
			if a, ok := arg(); ok {
				pt.Host = a.text
			}
		case "port":
			a, ok := arg()
			n, err := strconv.Atoi(a.text)
			if !ok || err != nil || n <= 0 || n > 65535 {
				bad := t
				if ok {
					bad = a
				}
				return pt, false, &SyntaxError{Pos: bad.pos, Token: bad.raw, Msg: "expected a port number (1-65535) after 'port'"}
			}
			pt.Port, hasPort = n, true
		case "protocol", "proto":
			if a, ok := arg(); ok {
				pt.Protocol = strings.ToLower(a.text)
			}
		case "request":
			if a, ok := arg(); ok {
				pt.Request = a.text
			}
		case "timeout":
			if a, ok := arg(); ok {
				if n, err := strconv.Atoi(a.text); err == nil {
					pt.Timeout = time.Duration(n) * time.Second
				}
			}
		}
	}
	return pt, failed && hasPort, nil
}

func joinRaw(toks []token) string {
	parts := make([]string, len(toks))
	for i, t := range toks {
		parts[i] = t.raw
	}
	return strings.Join(parts, " ")
}
