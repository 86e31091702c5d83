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
// whatever the values hold.
func RenderCommand(name, text string, data *TemplateData) (string, error) {
	t, err := parseCommand(name, text)
	if err != nil {
		return "", templateError(err)
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

// quotedActionError finds an action written inside shell quotes (or right
// after a backslash) in a command template. relctl quotes every value
// itself, so "{{.ReleaseDir}}/x" would put quotes inside quotes.
func quotedActionError(text string) error {
	const (
		bare = iota
		single
		double
	)
	state := bare
	wordStart := true
	escapedAt := -1 // offset of a "{{" right after an unquoted backslash
	for i := 0; i < len(text); i++ {
		c := text[i]
		if strings.HasPrefix(text[i:], "{{") {
			end, action := scanAction(text, i)
			if printsOutput(action) {
				switch {
				case state == single:
					return fmt.Errorf("%s is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it", action)
				case state == double:
					return fmt.Errorf("%s is inside double quotes; relctl shell-quotes every value itself, so remove the quotes around it", action)
				case escapedAt == i:
					return fmt.Errorf("%s follows a backslash, which would break relctl's quoting of the value", action)
				}
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
				i, escapedAt = skipEscaped(text, i, escapedAt)
			case '"':
				state = bare
			}
		default:
			switch c {
			case '\\':
				i, escapedAt = skipEscaped(text, i, escapedAt)
			case '\'':
				state = single
			case '"':
				state = double
			case '#':
				if wordStart { // a comment: quotes in it mean nothing
					for i < len(text) && text[i] != '\n' {
						i++
					}
				}
			}
		}
		wordStart = strings.IndexByte(" \t\n;&|()", c) >= 0
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

var controlActionRE = regexp.MustCompile(`^\{\{-?\s*(?:(?:if|else|end|range|with|define|block|template|break|continue)\b|/\*|\$\w*\s*:?=)`)

func printsOutput(action string) bool { return !controlActionRE.MatchString(action) }
