package playbooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for the config and playbook loaders and for template
// quoting. Their seed corpora (testdata/fuzz/<Name>/, every crasher found
// included) run as ordinary tests; `go test -fuzz '^FuzzX$' ./playbooks/`
// looks for more.

// shellTemplateSeeds are templates the fuzzers start from: every accepted
// and refused position of the property test, and the shapes of the example
// playbooks.
func shellTemplateSeeds() []string {
	seeds := []string{
		"tar -xzf {{.Artifact}} -C {{.ReleaseDir}} && test -x {{.ReleaseDir}}/bin/start",
		"{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}",
		"test $(df -Pk {{.BaseDir}} | awk 'NR==2 {print $4}') -gt 102400",
		"echo out $(readlink {{.CurrentDir}} || echo none) >> {{.BaseDir}}/traffic.log",
		"cat > f <<EOF\nport={{.Vars.x}}\nEOF\necho {{.Vars.x}}",
		"{{range .Host.Roles}}cat <<EOF\nrole\nEOF\n{{end}}",
		"{{if .Vars.x}}sh -c{{else}}printf %s{{end}} {{.Vars.x}}",
		"x=$(case a in a) echo {{.Vars.x}};; esac); echo {{.Version}}",
		"a=( [0]=x {{.Vars.x}} ); declare -A b=([k]={{.Vars.x}})",
		"{{- .Vars.x -}}\n{{/* c */}}$(( 1 )) {{$y := 1}}{{$y}}",
	}
	for _, p := range acceptedPositions {
		seeds = append(seeds, p.tmpl)
	}
	for _, p := range refusedPositions {
		seeds = append(seeds, p.tmpl)
	}
	return seeds
}

// checkShellContextError checks what a refusal says about where it is.
func checkShellContextError(t *testing.T, text string, err error) {
	t.Helper()
	var sce *ShellContextError
	if !errors.As(err, &sce) {
		return
	}
	lines := strings.Split(text, "\n")
	if sce.Line < 1 || sce.Line > len(lines) {
		t.Fatalf("%q: line %d of %d: %v", text, sce.Line, len(lines), err)
	}
	if n := utf8.RuneCountInString(lines[sce.Line-1]); sce.Column < 1 || sce.Column > n+1 {
		t.Fatalf("%q: column %d of a line of %d characters: %v", text, sce.Column, n, err)
	}
	if sce.Reason == "" {
		t.Fatalf("%q: a refusal without a reason", text)
	}
	if sce.Action != "" && sce.Action != "{{?}}" && !strings.Contains(text, sce.Action) {
		t.Fatalf("%q: the action %q is not in the template", text, sce.Action)
	}
}

func FuzzQuotedActionError(f *testing.F) {
	for _, s := range shellTemplateSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		err := quotedActionError(text)
		if err == nil {
			return
		}
		var sce *ShellContextError
		if !errors.As(err, &sce) {
			t.Fatalf("%q: an error that is not a *ShellContextError: %T %v", text, err, err)
		}
		checkShellContextError(t, text, err)
	})
}

// hasControl reports whether text has a template action that decides what
// renders ({{if}}, {{range}}, a comment, ...), or a list value.
func hasControl(text string) bool {
	for i := strings.Index(text, "{{"); i >= 0; {
		_, action := scanAction(text, i)
		if !printsOutput(action) {
			return true
		}
		next := strings.Index(text[i+len(action):], "{{")
		if next < 0 {
			break
		}
		i += len(action) + next
	}
	return strings.Contains(text, "Roles")
}

func FuzzRenderCommand(f *testing.F) {
	for _, s := range shellTemplateSeeds() {
		f.Add(s, "it's $(touch MARKER) `x` ${y} \n;|&")
	}
	f.Add("printf %s {{.Vars.x}}", "a\x00b")
	f.Add("echo {{.Host.Roles}}", "")
	f.Fuzz(func(t *testing.T, text, value string) {
		data := &TemplateData{
			Project: value, Env: value, Playbook: value, Version: value, RunID: value,
			Host:       HostData{Name: value, Address: value, Roles: []string{value, "web"}},
			Vars:       map[string]string{"x": value, "y": value, "w": value, "port": value},
			BaseDir:    value,
			ReleaseDir: value, ReleasesDir: value, CurrentDir: value, Artifact: value,
		}
		out, err := RenderCommand("fuzz", text, data)
		checkShellContextError(t, text, err)
		if err != nil {
			return
		}
		if strings.IndexByte(out, 0) >= 0 {
			t.Fatalf("%q with %q rendered a NUL: %q", text, value, out)
		}
		// What the shell gets is the template with every value quoted,
		// nothing else: the markers are all replaced.
		tmpl, perr := parseCommand("fuzz", text)
		if perr != nil {
			t.Fatalf("%q rendered but does not parse: %v", text, perr)
		}
		plain, eerr := execute(tmpl, data)
		if eerr != nil || plain != out {
			t.Fatalf("%q with %q: rendered %q, quoting alone gives %q (%v)", text, value, out, plain, eerr)
		}
		// Without blocks that choose the text or lists that split into
		// words, the template and the rendered text are the same shell
		// program: both passes must accept it.
		// (A value that starts with - or + may be refused where options
		// are read: only the rendered text knows the value.)
		if !hasControl(text) && strings.IndexByte(value, 0) < 0 && !strings.HasPrefix(value, "-") && !strings.HasPrefix(value, "+") {
			if serr := quotedActionError(text); serr != nil {
				t.Fatalf("%q: RenderCommand accepted what Load refuses: %v", text, serr)
			}
		}
	})
}

// loadFuzzProject writes a project into a temp dir and loads it; the
// loader must not panic, and every problem must name its file.
func loadFuzzProject(t *testing.T, config, playbook []byte) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "relctl.toml")
	pbPath := filepath.Join(dir, "playbooks", "web.toml")
	if err := os.MkdirAll(filepath.Dir(pbPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, config, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pbPath, playbook, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Load(cfgPath)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Load has not returned after 10s (config %q, playbook %q)", config, playbook)
	}
	if err == nil {
		return
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load: want Problems, got %T %v", err, err)
	}
	files := map[string][]byte{cfgPath: config, pbPath: playbook}
	for _, p := range ps {
		doc, ok := files[p.File]
		if !ok && !strings.HasPrefix(p.File, filepath.Join(dir, "playbooks")) {
			t.Fatalf("problem in an unknown file %q: %v", p.File, p)
		}
		if p.Message == "" {
			t.Fatalf("problem without a message: %#v", p)
		}
		if p.Line < 0 || p.Column < 0 || p.Line > 0 && p.Column == 0 {
			t.Fatalf("problem with a bad position: %#v", p)
		}
		if ok && p.Line > 1+strings.Count(string(doc), "\n") {
			t.Fatalf("problem past the end of %s: %#v", p.File, p)
		}
	}
}

func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(goodConfig + "\n[environments.staging]\nhots = []\n"))
	f.Add([]byte(goodConfig + "\n[ssh]\nconnect_timeout = 5\n"))
	f.Add([]byte("project = \"x\"\n[[environments.a.hosts]]\nname = \"h\"\naddress = \"127.0.0.1:1\"\nroles = [\"web\"]\nvars = { base_dir = \"/srv\", w = \"$(touch x)\" }\n"))
	if b, err := os.ReadFile("examples/relctl.toml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, config []byte) {
		loadFuzzProject(t, config, []byte(goodPlaybook))
	})
}

func FuzzLoadPlaybook(f *testing.F) {
	f.Add([]byte(goodPlaybook))
	f.Add([]byte(goodPlaybook + "\n[vars]\nw = \"$(touch pwned)\"\n\n[[steps]]\nphase = \"post\"\nname = \"p\"\nrun = \"sleep $(( {{.Vars.w}} ))\"\n"))
	f.Add([]byte(goodPlaybook + "\n[[steps]]\nname = \"config\"\nphase = \"stage\"\nrun = \"\"\"\ncat > f <<EOF\nport={{.Vars.x}}\nEOF\n\"\"\"\n"))
	f.Add([]byte(goodPlaybook + "\n[traffic]\nprovider = \"command\"\ndisable = \"lbctl out '{{.Host.Name}}'\"\n"))
	if b, err := os.ReadFile("examples/solr-upgrade-and-move.toml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, playbook []byte) {
		loadFuzzProject(t, []byte(goodConfig), playbook)
	})
}
