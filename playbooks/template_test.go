package playbooks

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/relctl/relctl/internal/shellquote"
)

// hostile values that would run something or split words if not quoted.
var hostile = []string{
	`plain`,
	``,
	`it's`,
	`a b  c`,
	`x; touch MARKER`,
	`$(touch MARKER)`,
	"`touch MARKER`",
	`"; touch MARKER; echo "`,
	`'; touch MARKER; echo '`,
	"line1\nline2; touch MARKER",
	`\'\"\\`,
	`*`,
	`~`,
	`A=b`,
	`-n`,
	`$HOME ${PATH} $((1+1))`,
	"tab\there",
	`|| touch MARKER &`,
	"ünïcödé ☃",
}

// sh runs a rendered command in dir and returns its stdout.
func sh(t *testing.T, dir, cmd string) string {
	t.Helper()
	c := exec.Command("/bin/sh", "-c", cmd)
	c.Dir = dir
	out, err := c.Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", cmd, err)
	}
	return string(out)
}

func TestRenderCommandQuotesHostileValues(t *testing.T) {
	for _, v := range hostile {
		t.Run(v, func(t *testing.T) {
			dir := t.TempDir()
			data := &TemplateData{
				Version: v, ReleaseDir: v,
				Vars: map[string]string{"x": v},
				Host: HostData{Roles: []string{v, "web"}},
			}
			tests := []struct {
				tmpl string
				want string
			}{
				{`printf '%s|' {{.Version}}`, v + "|"},
				{`printf '%s|' {{.Vars.x}} {{.ReleaseDir}}`, v + "|" + v + "|"},
				// Pipelines, if and range bodies are quoted too.
				{`printf '%s|' {{.Vars.x | printf "%s"}}`, v + "|"},
				{`printf '%s|' {{if .Version}}{{.Version}}{{else}}none{{end}}`, ifEmpty(v, "none|", v+"|")},
				{`printf '%s|' {{range .Host.Roles}}{{.}} {{end}}`, v + "|web|"},
				{`printf '%s|' {{with .Vars.x}}{{.}}{{end}}`, ifEmpty(v, "|", v+"|")},
				{`{{$y := .Vars.x}}printf '%s|' {{$y}}`, v + "|"},
				// A list is one word per element.
				{`printf '%s|' {{.Host.Roles}}`, v + "|web|"},
				// Concatenated with literal text, it is still one word.
				{`printf '%s|' {{.ReleaseDir}}/bin`, v + "/bin|"},
			}
			for _, tt := range tests {
				cmd, err := RenderCommand("test", tt.tmpl, data)
				if err != nil {
					t.Fatalf("RenderCommand(%q): %v", tt.tmpl, err)
				}
				if got := sh(t, dir, cmd); got != tt.want {
					t.Errorf("%q rendered as %q printed %q, want %q", tt.tmpl, cmd, got, tt.want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
				t.Fatalf("an injected command ran")
			}
		})
	}
}

func ifEmpty(v, empty, full string) string {
	if v == "" {
		return empty
	}
	return full
}

func TestRenderTextIsVerbatim(t *testing.T) {
	data := &TemplateData{Vars: map[string]string{"host": "a'b"}}
	got, err := RenderText("url", "http://{{.Vars.host}}:80/", data)
	if err != nil || got != "http://a'b:80/" {
		t.Errorf("RenderText = %q, %v", got, err)
	}
}

func TestRenderErrors(t *testing.T) {
	data := &TemplateData{Vars: map[string]string{}}
	tests := []struct {
		tmpl string
		want string
	}{
		{"echo {{.Vars.nope}}", `template: <.Vars.nope>: map has no entry for key "nope"`},
		{"echo {{.Nope}}", `template: <.Nope>: can't evaluate field Nope in type *playbooks.TemplateData`},
		{"echo {{.Version", `template: unclosed action`},
		{"echo\n{{.Version}\n", `template line 2: bad character U+007D '}'`},
	}
	for _, tt := range tests {
		_, err := RenderCommand("t", tt.tmpl, data)
		if err == nil || err.Error() != tt.want {
			t.Errorf("RenderCommand(%q) error %v, want %q", tt.tmpl, err, tt.want)
		}
	}
}

func TestQuotedActionDetected(t *testing.T) {
	tests := []struct {
		tmpl string
		want string // "" means accepted
	}{
		{`tar -xzf {{.Artifact}} -C {{.ReleaseDir}}`, ""},
		{`echo "{{.ReleaseDir}}/x"`, `{{.ReleaseDir}} is inside double quotes; relctl shell-quotes every value itself, so remove the quotes around it`},
		{`echo '{{.Version}}'`, `{{.Version}} is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it`},
		{`echo "a" {{.Version}} 'b'`, ""},
		{`echo "it's" {{.Version}}`, ""},
		{`echo \"{{.Version}}`, ""}, // the backslash escapes the quote, not the value
		{`echo \{{.Version}}`, `{{.Version}} follows a backslash, which would break relctl's quoting of the value`},
		{`echo "{{if .Version}}" x {{end}}`, ""}, // control actions print nothing
		{"# don't worry\necho {{.Version}}", ""},
		{`awk '{print $1}' {{.Artifact}}`, ""},
		{`echo {{printf "%s'" .Version}}`, ""}, // quotes inside the action are Go's
		{`echo "x{{- .Version -}}y"`, `{{- .Version -}} is inside double quotes; relctl shell-quotes every value itself, so remove the quotes around it`},
		{`echo {{/* don't */}} {{.Version}}`, ""}, // a template comment may hold a quote

		// Shell comments: a newline in the value would end the comment.
		{"echo ok # was {{.Version}}", `{{.Version}} is in a shell comment; a value holding a newline would end the comment and run as a command, so move it out of the comment`},
		{"# v{{.Version}}\necho", `{{.Version}} is in a shell comment; a value holding a newline would end the comment and run as a command, so move it out of the comment`},
		{"# {{/* note */}} it's\necho {{.Version}}", ""},
		{"echo a#{{.Version}}", ""}, // # inside a word starts no comment
		{"# one\n# two\necho {{.Version}}", ""},
		{"# one\n#{{.Version}}", `template line 2: {{.Version}} is in a shell comment; a value holding a newline would end the comment and run as a command, so move it out of the comment`},

		// Heredocs: single quotes mean nothing in the body.
		{"cat > f <<EOF\nport={{.Vars.x}}\nEOF", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat > f << EOF\nport={{.Vars.x}}\nEOF", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<< EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat > f <<-END\n\tport={{.Vars.x}}\n\tEND", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<-END), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat > f <<'EOF'\nport={{.Vars.x}}\nEOF", "template line 2: {{.Vars.x}} is inside a heredoc (<<'EOF') whose body is literal text, so relctl's quotes around the value would end up in it; write the value outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat > f <<\"EOF\"\nport={{.Vars.x}}\nEOF", `template line 2: {{.Vars.x}} is inside a heredoc (<<"EOF") whose body is literal text, so relctl's quotes around the value would end up in it; write the value outside the heredoc, e.g. printf '%s\n' {{.Vars.x}} >> file`},
		{"cat > f <<\\EOF\nport={{.Vars.x}}\nEOF", `template line 2: {{.Vars.x}} is inside a heredoc (<<\EOF) whose body is literal text, so relctl's quotes around the value would end up in it; write the value outside the heredoc, e.g. printf '%s\n' {{.Vars.x}} >> file`},
		{"cat > f <<E\"O\"F\nport={{.Vars.x}}\nEOF", `template line 2: {{.Vars.x}} is inside a heredoc (<<E"O"F) whose body is literal text, so relctl's quotes around the value would end up in it; write the value outside the heredoc, e.g. printf '%s\n' {{.Vars.x}} >> file`},
		// The body ends at the line equal to the delimiter; then the usual rules apply.
		{"cat > f <<EOF\nport=80\nEOF\nchmod 600 f {{.Vars.x}}", ""},
		{"cat > f <<EOF\nEOF is not alone here\n EOF\nEOF\n{{.Vars.x}}", ""},
		{"cat > f <<EOF\nEOF x\n{{.Vars.x}}\nEOF", "template line 3: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat <<-EOF\n\tok\n\t\tEOF\necho {{.Vars.x}}", ""},
		{"cat <<EOF\n\tEOF\necho {{.Vars.x}}\nEOF", "template line 3: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"}, // only <<- strips tabs
		{"cat <<EOF\nno end, {{.Vars.x}}", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		// Actions on the operator's own line are ordinary words.
		{"cat <<EOF > {{.ReleaseDir}}/f\nport=80\nEOF", ""},
		{"cat <<EOF > '{{.ReleaseDir}}'\nport=80\nEOF", `{{.ReleaseDir}} is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it`},
		// Two heredocs on one line: the bodies follow one another.
		{"cat <<A <<'B'\na\nA\nb {{.Vars.x}}\nB", "template line 4: {{.Vars.x}} is inside a heredoc (<<'B') whose body is literal text, so relctl's quotes around the value would end up in it; write the value outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat <<A <<B\n{{.Vars.x}}\nA\nB", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<A), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat <<A <<B\na\nA\nb\nB\necho {{.Vars.x}}", ""},
		// Not heredocs: a here-string, quoted or escaped <<, a shift.
		{"cat <<< {{.Vars.x}}\n{{.Vars.x}}", ""},
		{"cat <<<'{{.Vars.x}}'", `{{.Vars.x}} is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it`},
		{"echo '<<EOF' \"<<X\" \\<<Y\necho {{.Vars.x}}", ""},
		{"echo $((1<<2))\necho {{.Vars.x}}", ""},
		{"echo $(( (1+1) << 2 )) x <<EOF\n{{.Vars.x}}\nEOF", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"# cat <<EOF\necho {{.Vars.x}}", ""}, // in a comment
		{"cat <<EOF # it's\n{{.Vars.x}}\nEOF", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat <<EOF \\\n  > f\n{{.Vars.x}}\nEOF", "template line 3: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"}, // the body starts after the continued line
		{"cat <<EOF; echo 'a\nb'\n{{.Vars.x}}\nEOF", "template line 3: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"x=$(cat <<EOF\n{{.Vars.x}}\nEOF\n)", "template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat <<{{.Vars.x}}\nbody", `{{.Vars.x}} is part of a heredoc delimiter (<<); write the delimiter literally`},
		{"cat <<'E{{.Vars.x}}'\nbody", `{{.Vars.x}} is part of a heredoc delimiter (<<'E); write the delimiter literally`},
		// Template blocks inside a body are fine; ones that straddle its end are not.
		{"cat > f <<'EOF'\n{{if .Vars.x}}\ndebug=1\n{{else}}\ndebug=0\n{{end}}\n{{/* c */}}{{$v := 1}}\nEOF\necho {{.Vars.x}}", ""},
		{"{{range .Host.Roles}}cat <<EOF\nrole\nEOF\n{{end}}", ""},
		{"cat <<EOF\n{{if .Vars.x}}\nEOF\n{{end}}\nEOF", "template line 2: {{if .Vars.x}} after a heredoc operator (<<EOF) opens a block that does not close before the heredoc ends, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc"},
		{"cat <<EOF {{with .Vars.x}}\nbody\nEOF\n{{end}}", "{{with .Vars.x}} after a heredoc operator (<<EOF) opens a block that does not close before the heredoc ends, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc"},
		{"{{if .Vars.x}}cat <<EOF\nbody\n{{end}}\nEOF", "template line 3: {{end}} after a heredoc operator (<<EOF) belongs to a block opened before it, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc"},
		{"{{if .Vars.x}}cat <<EOF\n{{else}}\nEOF\n{{end}}", "template line 2: {{else}} after a heredoc operator (<<EOF) belongs to a block opened before it, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc"},
		{"{{range .Host.Roles}}cat <<EOF {{continue}}\nEOF\n{{end}}", "{{continue}} after a heredoc operator (<<EOF) could skip the heredoc's end; move it outside the heredoc"},
		{`cat <<EOF` + "\n{{template \"x\"}}\nEOF", "template line 2: {{template \"x\"}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{template \"x\"}} >> file"},
		// Trim markers remove newlines the shell then never sees.
		{"cat <<EOF\nbody {{if true -}}\nEOF\n{{- end}}\necho {{.Vars.x}}\nEOF", "template line 5: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"}, // renders "body EOF": no end line
		{"cat <<EOF\nbody\nEOF\n{{- /* joined */}} echo {{.Vars.x}}\nEOF", "template line 4: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"},
		{"cat <<EOF\nbody\nEOF\n{{- /* joined */}}\necho {{.Vars.x}}", ""},
	}
	for _, tt := range tests {
		err := quotedActionError(tt.tmpl)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func FuzzShellQuote(f *testing.F) {
	for _, v := range hostile {
		f.Add(v)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			t.Skip("a shell argument cannot hold NUL")
		}
		got := sh(t, dir, "printf '%s' "+shellquote.Quote(s))
		if got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
		if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
			t.Fatalf("an injected command ran for %q", s)
		}
	})
}

// TestHeredocTemplatesRunAsWritten runs accepted templates around heredocs
// with hostile values: the shell must see the bodies the scanner saw, so the
// values stay single words and nothing injected runs.
func TestHeredocTemplatesRunAsWritten(t *testing.T) {
	tests := []struct {
		tmpl string
		want func(v string) string
	}{
		{"cat <<EOF\nport=$((40<<1))\nEOF\nprintf '%s|' {{.Vars.x}}", func(v string) string { return "port=80\n" + v + "|" }},
		{"cat <<-'END'\n\t$(touch MARKER)\n\tEND\nprintf '%s|' {{.Vars.x}}", func(v string) string { return "$(touch MARKER)\n" + v + "|" }},
		{"cat <<A - <<B\na\nA\nb\nB\nprintf '%s|' {{.Vars.x}}", func(v string) string { return "b\n" + v + "|" }},
		{"echo $((1<<2)) # shift, not heredoc\nprintf '%s|' {{.Vars.x}}", func(v string) string { return "4\n" + v + "|" }},
		{"{{range .Host.Roles}}cat <<EOF\nrole\nEOF\nprintf '%s|' {{.}}\n{{end}}", func(v string) string { return "role\n" + v + "|role\nweb|" }},
	}
	for _, v := range hostile {
		t.Run(v, func(t *testing.T) {
			dir := t.TempDir()
			data := &TemplateData{Vars: map[string]string{"x": v}, Host: HostData{Roles: []string{v, "web"}}}
			for _, tt := range tests {
				cmd, err := RenderCommand("test", tt.tmpl, data)
				if err != nil {
					t.Fatalf("RenderCommand(%q): %v", tt.tmpl, err)
				}
				if got, want := sh(t, dir, cmd), tt.want(v); got != want {
					t.Errorf("%q rendered as %q printed %q, want %q", tt.tmpl, cmd, got, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
				t.Fatalf("an injected command ran")
			}
		})
	}
}

// TestLoadRejectsHeredocInjection is the reviewer's case: a var in an
// unquoted heredoc body ran $(...) on the host. Load now reports it at the
// run key, RenderCommand refuses it, and the alternative it suggests writes
// the value as it is.
func TestLoadRejectsHeredocInjection(t *testing.T) {
	const value = "$(touch MARKER)"
	config := strings.Replace(goodConfig, "base_dir = ", "x = \"$(touch MARKER)\"\nbase_dir = ", 1)
	injected := goodPlaybook + "\n[[steps]]\nname = \"config\"\nphase = \"stage\"\nrun = \"cat > f <<EOF\\nport={{.Vars.x}}\\nEOF\"\n"
	writeProject(t, map[string]string{"relctl.toml": config, "playbooks/web.toml": injected})
	_, err := Load("relctl.toml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load: want Problems, got %T %v", err, err)
	}
	want := "playbooks/web.toml:21:28: steps.run: template line 2: {{.Vars.x}} is inside an unquoted heredoc (<<EOF), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%s\\n' {{.Vars.x}} >> file"
	if got := err.Error(); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
	data := &TemplateData{Vars: map[string]string{"x": value}}
	if cmd, err := RenderCommand("config", "cat > f <<EOF\nport={{.Vars.x}}\nEOF", data); err == nil {
		t.Errorf("RenderCommand rendered the injection as %q", cmd)
	}

	safe := goodPlaybook + "\n[[steps]]\nname = \"config\"\nphase = \"stage\"\nrun = \"printf 'port=%s\\\\n' {{.Vars.x}} > f\"\n"
	writeProject(t, map[string]string{"relctl.toml": config, "playbooks/web.toml": safe})
	p, err := Load("relctl.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	pb := p.Playbooks["web"]
	env, err := p.Environment("staging")
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Data(pb, env, env.Hosts[0], "1.0.0", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	step := pb.Steps[len(pb.Steps)-1]
	cmd, err := RenderCommand(step.Name, step.Run, d)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sh(t, dir, cmd)
	got, err := os.ReadFile(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "port="+value+"\n" {
		t.Errorf("%q wrote %q, want the literal value", cmd, got)
	}
	if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
		t.Fatalf("the value ran as a command")
	}
}

// TestLoadRejectsArithmeticInjection is the case: a var inside
// $(( )) ran $(...) on the host, quotes or not. Load reports it at the run
// key, RenderCommand refuses it, and the way the message suggests writing
// it runs the number and refuses anything else, in dash and in bash.
func TestLoadRejectsArithmeticInjection(t *testing.T) {
	config := strings.Replace(goodConfig, "base_dir = ", "w = \"$(touch MARKER)\"\nbase_dir = ", 1)
	injected := goodPlaybook + "\n[[steps]]\nname = \"pause\"\nphase = \"post\"\nrun = \"sleep $(( {{.Vars.w}} ))\"\n"
	writeProject(t, map[string]string{"relctl.toml": config, "playbooks/web.toml": injected})
	_, err := Load("relctl.toml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load: want Problems, got %T %v", err, err)
	}
	want := `playbooks/web.toml:21:18: steps.run: {{.Vars.w}} is inside shell arithmetic $(( )), where the shell evaluates the text as an expression and quotes do not protect it (a value like a[$(cmd)] runs cmd); assign it to a variable and check it is a number first: n={{.Vars.w}}; case $n in ''|*[!0-9]*) echo "not a number: $n" >&2; exit 1;; esac; then use $((n))`
	if got := err.Error(); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
	var sce *ShellContextError
	_, err = RenderCommand("pause", "sleep $(( {{.Vars.w}} ))", &TemplateData{Vars: map[string]string{"w": "$(touch MARKER)"}})
	if !errors.As(err, &sce) || sce.Line != 1 || sce.Column != 11 || sce.Action != "{{.Vars.w}}" {
		t.Fatalf("RenderCommand: %#v, %v", sce, err)
	}

	const safe = `n={{.Vars.w}}; case $n in ''|*[!0-9]*) echo "not a number: $n" >&2; exit 1;; esac; printf '%s|' $((n + 1))`
	for _, shell := range oracleShells(t) {
		for _, tt := range []struct {
			w, out string
			ok     bool
		}{{"41", "42|", true}, {"$(touch MARKER)", "", false}, {"a[$(touch MARKER)]", "", false}, {"", "", false}} {
			cmd, err := RenderCommand("pause", safe, &TemplateData{Vars: map[string]string{"w": tt.w}})
			if err != nil {
				t.Fatalf("the suggested form is refused: %v", err)
			}
			dir := t.TempDir()
			out, _, err := runShell(shell, dir, cmd)
			if string(out) != tt.out || (err == nil) != tt.ok {
				t.Errorf("%s -c %q: printed %q, error %v; want %q, ok %v", shell, cmd, out, err, tt.out, tt.ok)
			}
			if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
				t.Errorf("%s -c %q: the value ran", shell, cmd)
			}
		}
	}
}

// TestShellContextErrorForm: the error keeps relctl's form for template
// errors (the line after the first named), and carries line and column.
func TestShellContextErrorForm(t *testing.T) {
	err := quotedActionError("set -e\n  x=1; echo ${x:-{{.Vars.w}}}")
	var sce *ShellContextError
	if !errors.As(err, &sce) {
		t.Fatalf("got %T %v", err, err)
	}
	if sce.Line != 2 || sce.Column != 18 || sce.Action != "{{.Vars.w}}" || !strings.HasPrefix(err.Error(), "template line 2: {{.Vars.w}} is inside a parameter expansion") {
		t.Errorf("got %#v: %v", sce, err)
	}
	err = quotedActionError("ünï $(( {{.Vars.w}} ))")
	if !errors.As(err, &sce) || sce.Line != 1 || sce.Column != 9 || strings.HasPrefix(err.Error(), "template line") {
		t.Errorf("columns count characters, and line 1 is not named: %#v, %v", sce, err)
	}
}

// TestOptionPositionsDependOnTheValue: where a program reads options (sh,
// ssh, sed, awk, perl, python, ...), a value is refused only if it would be
// read as one, which only the rendered value tells: the template passes
// Load, and RenderCommand refuses the value that starts with - or +.
func TestOptionPositionsDependOnTheValue(t *testing.T) {
	dashes := []string{"-c", "-v", "-R", "--expression=e touch x", "-oProxyCommand=touch x"}
	tests := []struct {
		tmpl    string
		refused []string // values refused here; a path is always accepted
	}{
		{"ssh {{.Vars.x}} uptime", dashes},
		{"awk -f prog.awk {{.Vars.x}}", dashes},
		{"sh {{.Vars.x}} {{.Version}}", dashes},
		{"[ {{.Vars.x}} {{.Version}} ]", []string{"-v", "-R"}},
		// Options of perl and python take their argument attached:
		// -cimport os;...#/migrate.py is code.
		{"python3 {{.Vars.x}}/migrate.py", dashes},
		// A shell's options take no attached argument: -c/install.sh is an error.
		{"sh {{.Vars.x}}/install.sh {{.Version}}", nil},
		{"sed -i 's/a/b/' ./{{.Vars.x}}", nil},
		{"[ {{.Vars.x}} = {{.Version}} ]", nil},
	}
	for _, tt := range tests {
		if err := quotedActionError(tt.tmpl); err != nil {
			t.Errorf("%q: Load refuses it: %v", tt.tmpl, err)
			continue
		}
		for _, v := range append([]string{"/srv/app"}, dashes...) {
			_, err := RenderCommand("t", tt.tmpl, &TemplateData{Version: "1.0", Vars: map[string]string{"x": v}})
			var sce *ShellContextError
			switch refused := slices.Contains(tt.refused, v); {
			case refused && (!errors.As(err, &sce) || !strings.Contains(sce.Reason, strconv.Quote(v))):
				t.Errorf("%q with %q: want a refusal naming the value, got %v", tt.tmpl, v, err)
			case !refused && err != nil:
				t.Errorf("%q with %q: %v", tt.tmpl, v, err)
			}
		}
	}
	// sed reads options anywhere (GNU getopt): a file operand that is a
	// value is refused when the value starts with -.
	if _, err := RenderCommand("t", "sed -i 's/a/b/' {{.Vars.x}}", &TemplateData{Vars: map[string]string{"x": "--expression=e touch x"}}); err == nil {
		t.Errorf("sed took an option from a value")
	}
	if _, err := RenderCommand("t", "sed -i 's/a/b/' -- {{.Vars.x}}", &TemplateData{Vars: map[string]string{"x": "--expression=e touch x"}}); err != nil {
		t.Errorf("after --, a value is a file name: %v", err)
	}
}
