package playbooks

import (
	"errors"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// TestTemplateFilePosition writes the same refused template in every TOML
// string form and checks that the action's offset maps to the "{{" of the
// action in the file.
func TestTemplateFilePosition(t *testing.T) {
	docs := []string{
		"run = \"sleep $(( {{.Vars.w}} ))\"\n",
		"run = 'sleep $(( {{.Vars.w}} ))'\n",
		"  run   =   \"echo \\\"a\\\" \\u00e9\\t\\\\ $(( {{.Vars.w}} ))\"\n",
		"run = \"echo ok\\nsleep $(( {{.Vars.w}} ))\"\n",
		"run = \"\"\"\necho ok\nsleep $(( {{.Vars.w}} ))\n\"\"\"\n",
		"run = \"\"\"echo ok\n  sleep \\\n      $(( {{.Vars.w}} ))\"\"\"\n",
		"run = '''\nprintf '%s\\n' x\n  ünï $(( {{.Vars.w}} ))\n'''\n",
		"run = \"\"\"\r\necho ok\r\nsleep $(( {{.Vars.w}} ))\"\"\"\n",
		"[[steps]]\nname = \"x\"\nrun = \"\\U0001F600 $(( {{.Vars.w}} ))\"\n",
	}
	for _, doc := range docs {
		var v map[string]any
		if err := toml.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		run, _ := v["run"].(string)
		if steps, ok := v["steps"].([]any); ok {
			run = steps[0].(map[string]any)["run"].(string)
		}
		var sce *ShellContextError
		if err := quotedActionError(run); !errors.As(err, &sce) {
			t.Fatalf("%q: not refused: %v", run, err)
		}
		raw, line, col := runToken(t, doc)
		fl, fc, ok := templateFilePosition(raw, line, col, sce.Offset)
		if !ok {
			t.Fatalf("%q: no position for offset %d", doc, sce.Offset)
		}
		lines := strings.Split(doc, "\n")
		if fl < 1 || fl > len(lines) || fc < 1 || fc > len(lines[fl-1]) || !strings.HasPrefix(lines[fl-1][fc-1:], "{{.Vars.w}}") {
			t.Errorf("%q: offset %d maps to %d:%d, which is not the action", doc, sce.Offset, fl, fc)
		}
	}
	if _, _, ok := templateFilePosition("x", 1, 1, 0); ok {
		t.Errorf("a token that is not a string has no positions")
	}
	if _, _, ok := templateFilePosition(`"ab"`, 1, 1, 3); ok {
		t.Errorf("an offset past the value has no position")
	}
}

// runToken finds the token of the run key's value with go-toml's parser.
func runToken(t *testing.T, doc string) (raw string, line, col int) {
	t.Helper()
	p := &unstable.Parser{}
	p.Reset([]byte(doc))
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.KeyValue {
			continue
		}
		it := e.Key()
		for it.Next() {
			if string(it.Node().Data) == "run" {
				v := e.Value()
				s := p.Shape(v.Raw)
				return string(p.Raw(v.Raw)), s.Start.Line, s.Start.Column
			}
		}
	}
	t.Fatalf("%q: no run key", doc)
	return "", 0, 0
}
