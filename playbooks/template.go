package playbooks

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/relctl/relctl/internal/shellquote"
)

// quoteFunc is appended to every action of a shell template, with the
// action's number as its first argument. The leading underscore keeps it out
// of the way of names users would write.
const quoteFunc = "_relctl_shell_quote"

var templateFuncs = template.FuncMap{quoteFunc: func(_ string, v any) string { return shellQuoteValue(v) }}

// shellQuoteValue quotes what an action produced; a list becomes one quoted
// word per element so `for r in {{.Host.Roles}}` does what it reads as.
func shellQuoteValue(v any) string {
	words, _ := valueWords(v)
	for i, w := range words {
		words[i] = shellquote.Quote(w)
	}
	return strings.Join(words, " ")
}

// valueWords returns what an action produced as the words it becomes: one,
// or one per element of a list of strings.
func valueWords(v any) (words []string, list bool) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.String {
		words = make([]string, rv.Len())
		for i := range words {
			words[i] = rv.Index(i).String()
		}
		return words, true
	}
	return []string{fmt.Sprint(v)}, false
}

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
}

// parseCommand parses a shell template and makes every action quote its output.
func parseCommand(name, text string) (*template.Template, error) {
	t, _, err := parseCommandActions(name, text)
	return t, err
}

// parseCommandActions is parseCommand that also returns, by action number,
// where each printing action is in text.
func parseCommandActions(name, text string) (*template.Template, []int, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return nil, nil, err
	}
	var actions []int
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Root != nil {
			quoteActions(tt.Root, &actions)
		}
	}
	return t, actions, nil
}

// quoteActions appends the quoting function to every output action, the way
// html/template inserts its escapers, including inside if/range/with bodies.
func quoteActions(n parse.Node, actions *[]int) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			quoteActions(c, actions)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 { // {{$x := ...}} assigns; it prints nothing
			return
		}
		id := strconv.Itoa(len(*actions))
		*actions = append(*actions, int(n.Pos))
		n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
			NodeType: parse.NodeCommand,
			Pos:      n.Pos,
			Args: []parse.Node{
				parse.NewIdentifier(quoteFunc).SetPos(n.Pos),
				&parse.StringNode{NodeType: parse.NodeString, Pos: n.Pos, Quoted: strconv.Quote(id), Text: id},
			},
		})
	case *parse.IfNode:
		quoteActions(n.List, actions)
		quoteActions(n.ElseList, actions)
	case *parse.RangeNode:
		quoteActions(n.List, actions)
		quoteActions(n.ElseList, actions)
	case *parse.WithNode:
		quoteActions(n.List, actions)
		quoteActions(n.ElseList, actions)
	}
}

// RenderCommand renders a shell command template; the output of every action
// is shell-quoted, so `tar -xzf {{.Artifact}} -C {{.ReleaseDir}}` is safe
// whatever the values hold. An action must stand where a quoted word is
// inert (template_scan.go): Load rejects one that does not, and so does
// RenderCommand, twice: in the template text, and in the text this data
// renders (with a marker for each value), which is what the shell reads
// whatever {{if}} and {{range}} chose.
func RenderCommand(name, text string, data *TemplateData) (string, error) {
	out, _, err := renderCommand(name, text, withoutSecrets(data), false)
	return out, err
}

// RenderStepCommand is RenderCommand for a run step's run and undo and a
// [[rollback.steps]] run, the commands that may use {{.Secrets.NAME}}: such
// an action renders as "$relctl_secret_NAME", a shell variable SecretPrelude
// fills from the session's stdin, never the value. It returns the secrets
// the command uses, in order of first use.
func RenderStepCommand(name, text string, data *TemplateData) (string, []string, error) {
	return renderCommand(name, text, data, true)
}

// withoutSecrets is data without .Secrets: a template outside a run step
// that names a secret fails to render.
func withoutSecrets(data *TemplateData) *TemplateData {
	if data == nil || data.Secrets == nil {
		return data
	}
	d := *data
	d.Secrets = nil
	return &d
}

// secretsHint explains a render error about .Secrets outside a run step.
func secretsHint(text string, err error) error {
	if err == nil || !strings.Contains(text, ".Secrets") {
		return err
	}
	return fmt.Errorf("%w (secrets are available only in the run and undo of [[steps]] and in [[rollback.steps]])", err)
}

// secretMarkerValue is what the scanner takes a secret's value to be: its
// value is not known when the command is rendered (nor may it be printed),
// so it is taken to start with "-", and an option position refuses it.
const secretMarkerValue = "-(a secret: its value may start with -)"

func renderCommand(name, text string, data *TemplateData, allowSecrets bool) (string, []string, error) {
	out, used, err := renderCommandText(name, text, data)
	if err != nil && !allowSecrets {
		err = secretsHint(text, err)
	}
	return out, used, err
}

func renderCommandText(name, text string, data *TemplateData) (string, []string, error) {
	t, actions, err := parseCommandActions(name, text)
	if err != nil {
		return "", nil, templateError(err)
	}
	if err := quotedActionError(text); err != nil {
		return "", nil, err
	}
	var (
		slots  []slot
		values []string
		raw    = map[int]bool{} // values written as they are: secret references
		used   []string
		nul    *slot
	)
	t.Funcs(template.FuncMap{quoteFunc: func(id string, v any) string {
		sl := actionSlot(text, actions, id)
		if sec, ok := v.(Secret); ok {
			sl.value, sl.known = secretMarkerValue, true
			if !slices.Contains(used, sec.name) {
				used = append(used, sec.name)
			}
			raw[len(slots)] = true
			m := "\x00" + strconv.Itoa(len(slots)) + "\x00"
			slots = append(slots, sl)
			values = append(values, `"$`+secretVar(sec.name)+`"`)
			return m
		}
		words, list := valueWords(v)
		markers := make([]string, len(words))
		for i, w := range words {
			if list {
				sl.list = i
			}
			sl.value, sl.known = w, true
			if strings.IndexByte(w, 0) >= 0 && nul == nil {
				nul = &sl
			}
			markers[i] = "\x00" + strconv.Itoa(len(slots)) + "\x00"
			slots = append(slots, sl)
			values = append(values, w)
		}
		return strings.Join(markers, " ")
	}})
	rendered, err := execute(t, data)
	if err != nil {
		return "", nil, err
	}
	if nul != nil {
		line, col := templatePosition(text, nul.at)
		return "", nil, &ShellContextError{Line: line, Column: col, Offset: nul.at, Action: nul.action, Reason: fmt.Sprintf("the value of %s holds a NUL byte, which no shell command can carry", nul.action)}
	}
	if err := renderedActionError(text, rendered, slots); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	for i := 0; i < len(rendered); {
		if rendered[i] != 0 {
			b.WriteByte(rendered[i])
			i++
			continue
		}
		j := i + 1 + strings.IndexByte(rendered[i+1:], 0)
		k, _ := strconv.Atoi(rendered[i+1 : j])
		if raw[k] {
			b.WriteString(values[k])
		} else {
			b.WriteString(shellquote.Quote(values[k]))
		}
		i = j + 1
	}
	return b.String(), used, nil
}

// actionSlot describes action number id for messages: its text and offset.
func actionSlot(text string, actions []int, id string) slot {
	k, err := strconv.Atoi(id)
	if err != nil || k < 0 || k >= len(actions) {
		return slot{action: "{{?}}", list: -1}
	}
	pos := min(actions[k], len(text))
	start := strings.LastIndex(text[:pos], "{{")
	if start < 0 {
		return slot{action: "{{?}}", at: pos, list: -1}
	}
	_, action := scanAction(text, start)
	return slot{action: action, at: start, list: -1}
}

// RenderText renders a template whose output is not a shell command (URLs,
// addresses, paths): values are inserted as they are.
func RenderText(name, text string, data *TemplateData) (string, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return "", templateError(err)
	}
	out, err := execute(t, withoutSecrets(data))
	return out, secretsHint(text, err)
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
	b := make([]byte, 0, len(text))
	orig := make([]int, 0, len(text)+1)
	for i := 0; i < len(text); {
		if !strings.HasPrefix(text[i:], "{{") {
			b = append(b, text[i])
			orig = append(orig, i)
			i++
			continue
		}
		end, action := scanAction(text, i)
		if len(action) > 3 && action[2] == '-' && isTemplateSpace(action[3]) {
			// Truncate in place (bytes of multi-byte characters are >= 128,
			// never template space), so many trims stay linear.
			n := len(b)
			for n > 0 && b[n-1] < 128 && isTemplateSpace(b[n-1]) {
				n--
			}
			b, orig = b[:n], orig[:n]
		}
		b = append(b, action...)
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
	return string(b), append(orig, len(text))
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
