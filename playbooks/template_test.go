package playbooks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
		got := sh(t, dir, "printf '%s' "+ShellQuote(s))
		if got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
		if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
			t.Fatalf("an injected command ran for %q", s)
		}
	})
}
