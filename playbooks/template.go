package playbooks

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"text/template"
	"text/template/parse"
)

// quoteFunc is appended to every action of a shell template. The leading
// underscore keeps it out of the way of names users would write.
const quoteFunc = "_relctl_shell_quote"

var templateFuncs = template.FuncMap{quoteFunc: shellQuoteValue}

// ShellQuote quotes s for a POSIX shell: s goes inside single quotes, and
// each single quote in s closes the quoting, is written escaped, and reopens
// it. The result is always one literal word, whatever s holds.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellQuoteValue quotes what an action produced; a list becomes one quoted
// word per element so `for r in {{.Host.Roles}}` does what it reads as.
func shellQuoteValue(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.String {
		words := make([]string, rv.Len())
		for i := range words {
			words[i] = ShellQuote(rv.Index(i).String())
		}
		return strings.Join(words, " ")
	}
	return ShellQuote(fmt.Sprint(v))
}

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
}

// parseCommand parses a shell template and makes every action quote its output.
func parseCommand(name, text string) (*template.Template, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return nil, err
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Root != nil {
			quoteActions(tt.Root)
		}
	}
	return t, nil
}

// quoteActions appends the quoting function to every output action, the way
// html/template inserts its escapers, including inside if/range/with bodies.
func quoteActions(n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			quoteActions(c)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 { // {{$x := ...}} assigns; it prints nothing
			return
		}
		n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
			NodeType: parse.NodeCommand,
			Pos:      n.Pos,
			Args:     []parse.Node{parse.NewIdentifier(quoteFunc).SetPos(n.Pos)},
		})
	case *parse.IfNode:
		quoteActions(n.List)
		quoteActions(n.ElseList)
	case *parse.RangeNode:
		quoteActions(n.List)
		quoteActions(n.ElseList)
	case *parse.WithNode:
		quoteActions(n.List)
		quoteActions(n.ElseList)
	}
}

// RenderCommand renders a shell command template; the output of every action
// is shell-quoted, so `tar -xzf {{.Artifact}} -C {{.ReleaseDir}}` is safe
// whatever the values hold. Load rejects an action where quoting cannot
// work (in quotes, a comment or a heredoc body); so does RenderCommand, for
// templates that did not come through Load.
func RenderCommand(name, text string, data *TemplateData) (string, error) {
	t, err := parseCommand(name, text)
	if err != nil {
		return "", templateError(err)
	}
	if err := quotedActionError(text); err != nil {
		return "", err
	}
	return execute(t, data)
}

// RenderText renders a template whose output is not a shell command (URLs,
// addresses, paths): values are inserted as they are.
func RenderText(name, text string, data *TemplateData) (string, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return "", templateError(err)
	}
	return execute(t, data)
}

func execute(t *template.Template, data *TemplateData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", templateError(err)
	}
	return b.String(), nil
}

var templatePrefixRE = regexp.MustCompile(`^template: [^:]*:(\d+)(?::\d+)?: (?:executing "[^"]*" at )?`)

// templateError drops text/template's "template: name:1:7: executing ..."
// preamble; callers say which key it was.
func templateError(err error) error {
	msg := err.Error()
	m := templatePrefixRE.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("template: %s", strings.TrimPrefix(msg, "template: "))
	}
	rest := msg[len(m[0]):]
	if m[1] != "1" {
		return fmt.Errorf("template line %s: %s", m[1], rest)
	}
	return fmt.Errorf("template: %s", rest)
}

// quotedActionError finds an action the shell would not treat as the one
// word relctl's quoting makes it: inside quotes or after a backslash (quotes
// inside quotes), inside a comment (a newline in the value ends the comment),
// or inside a heredoc body, where single quotes are not quoting: an unquoted
// body expands $(...) in the value, a quoted one keeps relctl's quotes as
// text. Template blocks must not decide where a heredoc ends, or the shell
// and this scanner would disagree about which lines are its body.
func quotedActionError(text string) error {
	t, orig := applyTrimMarkers(text)
	s := &shellScan{text: text, t: t, orig: orig}
	return s.run()
}

// heredoc is a << operator whose body starts after the current line.
type heredoc struct {
	op        string // as written, for messages: <<EOF, <<-'EOF'
	delim     string // after quote removal
	stripTabs bool   // <<- : leading tabs of the end line are ignored
	quoted    bool   // any quoting in the delimiter makes the body literal
}

type shellScan struct {
	text string // as written, for line numbers
	t    string // after {{- and -}} trimming: the newlines the shell sees
	orig []int  // offset in t -> offset in text

	pending []heredoc   // operators seen on the current line
	open    []openBlock // template blocks opened since the first pending operator
	cur     *heredoc    // the operator open blocks are reported against
}

type openBlock struct {
	at     int
	action string
}

func (s *shellScan) errorf(at int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if line := 1 + strings.Count(s.text[:s.orig[at]], "\n"); line > 1 {
		return fmt.Errorf("template line %d: %w", line, err)
	}
	return err
}

func (s *shellScan) run() error {
	const (
		bare = iota
		single
		double
	)
	t := s.t
	state := bare
	wordStart := true
	escapedAt := -1 // offset of a "{{" right after an unquoted backslash
	arith := 0      // open parentheses of a $(( )): << there is a shift
	for i := 0; i < len(t); i++ {
		c := t[i]
		if strings.HasPrefix(t[i:], "{{") {
			end, action := scanAction(t, i)
			if printsOutput(action) {
				switch {
				case state == single:
					return s.errorf(i, "%s is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it", action)
				case state == double:
					return s.errorf(i, "%s is inside double quotes; relctl shell-quotes every value itself, so remove the quotes around it", action)
				case escapedAt == i:
					return s.errorf(i, "%s follows a backslash, which would break relctl's quoting of the value", action)
				}
			}
			if err := s.block(i, action); err != nil {
				return err
			}
			i = end - 1
			wordStart = false
			continue
		}
		switch state {
		case single:
			if c == '\'' {
				state = bare
			}
		case double:
			switch c {
			case '\\':
				i, escapedAt = skipEscaped(t, i, escapedAt)
			case '"':
				state = bare
			}
		default:
			switch {
			case c == '\\':
				i, escapedAt = skipEscaped(t, i, escapedAt)
			case c == '\'':
				state = single
			case c == '"':
				state = double
			case c == '#' && wordStart:
				if err := s.comment(i); err != nil {
					return err
				}
				for i+1 < len(t) && t[i+1] != '\n' {
					i++
				}
			case strings.HasPrefix(t[i:], "$(("):
				arith = 2
				i += 2
			case arith > 0 && c == '(':
				arith++
			case arith > 0 && c == ')':
				arith--
			case arith == 0 && strings.HasPrefix(t[i:], "<<<"):
				i += 2 // a here-string: its word follows the usual rules
			case arith == 0 && strings.HasPrefix(t[i:], "<<"):
				end, err := s.operator(i)
				if err != nil {
					return err
				}
				i = end - 1
			case c == '\n' && len(s.pending) > 0:
				end, err := s.bodies(i + 1)
				if err != nil {
					return err
				}
				i = end - 1
			}
		}
		wordStart = strings.IndexByte(" \t\n;&|()", c) >= 0
	}
	return nil
}

// comment reports a printing action in the shell comment starting at i.
func (s *shellScan) comment(i int) error {
	for j := i; j < len(s.t) && s.t[j] != '\n'; j++ {
		if strings.HasPrefix(s.t[j:], "{{") {
			end, action := scanAction(s.t, j)
			if printsOutput(action) {
				return s.errorf(j, "%s is in a shell comment; a value holding a newline would end the comment and run as a command, so move it out of the comment", action)
			}
			j = end - 1
		}
	}
	return nil
}

// operator reads the heredoc operator at i (<<WORD or <<-WORD) and returns
// the offset after its delimiter word.
func (s *shellScan) operator(i int) (int, error) {
	t := s.t
	h := heredoc{}
	j := i + 2
	if j < len(t) && t[j] == '-' {
		h.stripTabs = true
		j++
	}
	for j < len(t) && (t[j] == ' ' || t[j] == '\t') {
		j++
	}
	var delim strings.Builder
	for j < len(t) && strings.IndexByte(" \t\n;&|<>()", t[j]) < 0 {
		if strings.HasPrefix(t[j:], "{{") {
			_, action := scanAction(t, j)
			return 0, s.errorf(j, "%s is part of a heredoc delimiter (%s); write the delimiter literally", action, t[i:j])
		}
		switch q := t[j]; q {
		case '\'', '"':
			h.quoted = true
			for j++; j < len(t) && t[j] != q; j++ {
				if strings.HasPrefix(t[j:], "{{") {
					_, action := scanAction(t, j)
					return 0, s.errorf(j, "%s is part of a heredoc delimiter (%s); write the delimiter literally", action, t[i:j])
				}
				if q == '"' && t[j] == '\\' && j+1 < len(t) {
					j++
				}
				delim.WriteByte(t[j])
			}
		case '\\':
			h.quoted = true
			if j+1 < len(t) {
				j++
				delim.WriteByte(t[j])
			}
		default:
			delim.WriteByte(q)
		}
		if j < len(t) {
			j++
		}
	}
	if delim.Len() == 0 {
		return j, nil // not a heredoc the shell would accept either
	}
	h.op, h.delim = t[i:j], delim.String()
	s.pending = append(s.pending, h)
	if s.cur == nil {
		s.cur = &s.pending[0]
	}
	return j, nil
}

// bodies reads the bodies of the pending heredocs, starting at offset i
// (the line after their operators), and returns the offset after the last
// end line, or the end of the text when one is missing.
func (s *shellScan) bodies(i int) (int, error) {
	t := s.t
	for _, h := range s.pending {
		s.cur = &h
		for i < len(t) {
			nl := strings.IndexByte(t[i:], '\n')
			if nl < 0 {
				nl = len(t) - i
			}
			line := t[i : i+nl]
			if h.stripTabs {
				line = strings.TrimLeft(line, "\t")
			}
			if withoutComments(line) == h.delim {
				if len(s.open) > 0 {
					return 0, s.errorf(s.open[0].at, "%s after a heredoc operator (%s) opens a block that does not close before the heredoc ends, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc", s.open[0].action, h.op)
				}
				i += nl + 1
				break
			}
			// The line holds no end: every action on it is in the body.
			j := i
			for ; j < len(t) && t[j] != '\n'; j++ {
				if strings.HasPrefix(t[j:], "{{") {
					end, action := scanAction(t, j)
					if err := s.bodyAction(j, action, h); err != nil {
						return 0, err
					}
					j = end - 1 // an action may span lines
				}
			}
			i = j + 1
		}
	}
	s.pending, s.open, s.cur = nil, nil, nil
	return min(i, len(t)), nil
}

func (s *shellScan) bodyAction(at int, action string, h heredoc) error {
	word := actionWord(action)
	switch {
	case printsOutput(action) || word == "template" || word == "block":
		if h.quoted {
			return s.errorf(at, "%s is inside a heredoc (%s) whose body is literal text, so relctl's quotes around the value would end up in it; write the value outside the heredoc, e.g. printf '%%s\\n' %s >> file", action, h.op, action)
		}
		return s.errorf(at, "%s is inside an unquoted heredoc (%s), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%%s\\n' %s >> file", action, h.op, action)
	}
	return s.block(at, action)
}

// block follows template blocks between a heredoc operator and the end of
// its body: there, a block must open and close on the same side of the end
// line, and nothing may jump past it.
func (s *shellScan) block(at int, action string) error {
	if s.cur == nil {
		return nil
	}
	switch word := actionWord(action); word {
	case "if", "range", "with", "define", "block":
		s.open = append(s.open, openBlock{at, action})
	case "else", "end":
		if len(s.open) == 0 {
			return s.errorf(at, "%s after a heredoc operator (%s) belongs to a block opened before it, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc", action, s.cur.op)
		}
		if word == "end" {
			s.open = s.open[:len(s.open)-1]
		}
	case "break", "continue":
		return s.errorf(at, "%s after a heredoc operator (%s) could skip the heredoc's end; move it outside the heredoc", action, s.cur.op)
	}
	return nil
}

// skipEscaped steps over the character a backslash escapes, unless it starts
// an action, which must then be reported.
func skipEscaped(text string, i, escapedAt int) (int, int) {
	if strings.HasPrefix(text[i+1:], "{{") {
		return i, i + 1
	}
	return i + 1, escapedAt
}

// scanAction returns the end offset of the action starting at i and its text.
func scanAction(text string, i int) (int, string) {
	j := i + 2
	if len(text) > j+1 && text[j] == '-' && isTemplateSpace(text[j+1]) {
		j += 2
	}
	if strings.HasPrefix(text[j:], "/*") { // a comment may hold any quote
		if e := strings.Index(text[j+2:], "*/"); e >= 0 {
			if c := strings.Index(text[j+2+e:], "}}"); c >= 0 {
				end := j + 2 + e + c + 2
				return end, text[i:end]
			}
		}
		return len(text), text[i:]
	}
	for j < len(text) {
		switch text[j] {
		case '"', '`', '\'':
			q := text[j]
			j++
			for j < len(text) && text[j] != q {
				if text[j] == '\\' && q != '`' {
					j++
				}
				j++
			}
		case '}':
			if strings.HasPrefix(text[j:], "}}") {
				return j + 2, text[i : j+2]
			}
		}
		j++
	}
	return len(text), text[i:]
}

// withoutComments drops template comments, which render as nothing.
func withoutComments(line string) string {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		if strings.HasPrefix(line[i:], "{{") {
			end, action := scanAction(line, i)
			if strings.HasPrefix(strings.TrimLeft(action[2:], "- \t"), "/*") {
				i = end - 1
				continue
			}
		}
		b.WriteByte(line[i])
	}
	return b.String()
}

func isTemplateSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// applyTrimMarkers removes the white space text/template trims around
// "{{- " and " -}}", since a trimmed newline is one the shell never sees. It
// returns the trimmed text and, for each of its bytes, the offset in text.
func applyTrimMarkers(text string) (string, []int) {
	var b strings.Builder
	orig := make([]int, 0, len(text)+1)
	for i := 0; i < len(text); {
		if !strings.HasPrefix(text[i:], "{{") {
			b.WriteByte(text[i])
			orig = append(orig, i)
			i++
			continue
		}
		end, action := scanAction(text, i)
		if len(action) > 3 && action[2] == '-' && isTemplateSpace(action[3]) {
			kept := strings.TrimRightFunc(b.String(), func(r rune) bool { return r < 128 && isTemplateSpace(byte(r)) })
			orig = orig[:len(kept)]
			b.Reset()
			b.WriteString(kept)
		}
		b.WriteString(action)
		for k := i; k < end; k++ {
			orig = append(orig, k)
		}
		i = end
		if n := len(action); n >= 6 && action[n-3] == '-' && isTemplateSpace(action[n-4]) {
			for i < len(text) && isTemplateSpace(text[i]) {
				i++
			}
		}
	}
	return b.String(), append(orig, len(text))
}

var controlActionRE = regexp.MustCompile(`^\{\{-?\s*(?:(?:if|else|end|range|with|define|block|template|break|continue)\b|/\*|\$\w*\s*:?=)`)

func printsOutput(action string) bool { return !controlActionRE.MatchString(action) }

var actionWordRE = regexp.MustCompile(`^\{\{-?\s*(if|else|end|range|with|define|block|template|break|continue)\b`)

// actionWord returns the keyword a control action starts with, or "".
func actionWord(action string) string {
	if m := actionWordRE.FindStringSubmatch(action); m != nil {
		return m[1]
	}
	return ""
}
