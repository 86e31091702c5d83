package playbooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The shell-context property test: real dash and real bash are the oracle.
// Hostile values go into every position the scanner accepts; the rendered
// command runs under both shells, and the value must arrive byte for byte
// while nothing it carries ever runs. The refused positions are checked the
// other way round: the scanner refuses each, and for most of them the same
// value, quoted the plain way, does run something in a real shell, so no
// refusal is there for nothing.

// oracleShells returns the real shells on this machine; the tests need at
// least one and say which is missing.
func oracleShells(t *testing.T) []string {
	t.Helper()
	var found []string
	for _, sh := range []string{"/bin/dash", "/bin/bash"} {
		if _, err := os.Stat(sh); err == nil {
			found = append(found, sh)
		} else if os.Getenv("CI") == "true" {
			t.Errorf("%s not installed: the shell-context tests use it as their oracle", sh)
		} else {
			t.Logf("%s not installed: not checked against it", sh)
		}
	}
	if len(found) == 0 {
		t.Skip("neither /bin/dash nor /bin/bash is installed")
	}
	return found
}

// runShell runs script with shell -c in dir, with a small clean environment.
func runShell(shell, dir, script string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, shell, "-c", script)
	c.Dir = dir
	c.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "HOME=" + dir}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err = c.Run()
	return out.Bytes(), errb.Bytes(), err
}

// acceptedPosition is a template whose values must arrive as written.
type acceptedPosition struct {
	name     string
	tmpl     string
	bashOnly bool
	isolate  bool // changes the shell's state (readonly, traps): runs in a subshell
	// want is what the command prints for x (.Vars.x, .Version) and roles (.Host.Roles).
	want func(x string, roles []string) string
	// file, when set, names a file (relative to the directory) the command
	// writes, and what it must hold; skip says which values cannot be used.
	file func(x string) (name, content string)
	skip func(x string) bool
}

func bar(s string) string { return s + "|" }

func bars(ss []string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s + "|")
	}
	return b.String()
}

// trimNL is what $(...) does to its output: trailing newlines go.
func trimNL(s string) string { return strings.TrimRight(s, "\n") }

func same(s string) func(string, []string) string {
	return func(string, []string) string { return s }
}

func xBar(x string, _ []string) string { return bar(x) }

var acceptedPositions = []acceptedPosition{
	{name: "argument", tmpl: `printf '%s|' {{.Vars.x}}`, want: xBar},
	{name: "two values in one word", tmpl: `printf '%s|' {{.Vars.x}}{{.Version}}`, want: func(x string, _ []string) string { return bar(x + x) }},
	{name: "inside a word", tmpl: `printf '%s|' pre{{.Vars.x}}post`, want: func(x string, _ []string) string { return bar("pre" + x + "post") }},
	{name: "before a path", tmpl: `printf '%s|' {{.Vars.x}}/bin`, want: func(x string, _ []string) string { return bar(x + "/bin") }},
	{name: "several arguments", tmpl: `printf '%s|' {{.Vars.x}} - {{.Version}}`, want: func(x string, _ []string) string { return bar(x) + "-|" + bar(x) }},
	{name: "assignment", tmpl: `y={{.Vars.x}}; printf '%s|' "$y"`, want: xBar},
	{name: "assignments before a command", tmpl: `y={{.Vars.x}} z=a{{.Version}} printenv y z`, want: func(x string, _ []string) string { return x + "\na" + x + "\n" }},
	{name: "export", tmpl: `export Y={{.Vars.x}}; printf '%s|' "$Y"`, want: xBar},
	{name: "readonly", tmpl: `readonly y={{.Vars.x}}; printf '%s|' "$y"`, want: xBar, isolate: true},
	{name: "local in a function", tmpl: `f() { local y={{.Vars.x}}; printf '%s|' "$y"; }; f`, want: xBar},
	{name: "env before a command", tmpl: `env Y={{.Vars.x}} printenv Y`, want: func(x string, _ []string) string { return x + "\n" }},
	{name: "command wrapper", tmpl: `command printf '%s|' {{.Vars.x}}`, want: xBar},
	{name: "exec in a subshell", tmpl: `( exec printf '%s|' {{.Vars.x}} )`, want: xBar},
	{name: "for over a list", tmpl: `for r in {{.Host.Roles}}; do printf '%s|' "$r"; done`, want: func(_ string, roles []string) string { return bars(roles) }},
	{name: "for over values", tmpl: "for r in {{.Vars.x}} {{.Version}}\ndo printf '%s|' \"$r\"; done", want: func(x string, _ []string) string { return bar(x) + bar(x) }},
	{name: "range", tmpl: `{{range .Host.Roles}}printf '%s|' {{.}}; {{end}}`, want: func(_ string, roles []string) string { return bars(roles) }},
	{name: "list as arguments", tmpl: `printf '%s|' {{.Host.Roles}}`, want: func(_ string, roles []string) string { return bars(roles) }},
	{name: "case subject and pattern", tmpl: `case {{.Vars.x}} in {{.Vars.x}}) printf 'same|';; *) printf 'other|';; esac`, want: same("same|")},
	{name: "case alternatives", tmpl: `case {{.Vars.x}} in (nomatch|{{.Vars.x}}) printf 'alt|';; esac`, want: same("alt|")},
	{name: "case body", tmpl: "case a in\na) printf '%s|' {{.Vars.x}};;\n*) ;;\nesac", want: xBar},
	{name: "command substitution", tmpl: `y=$(printf '%s' {{.Vars.x}}); printf '%s|' "$y"`, want: func(x string, _ []string) string { return bar(trimNL(x)) }},
	{name: "command substitution in double quotes", tmpl: `printf '%s|' "$(printf '%s' {{.Vars.x}})"`, want: func(x string, _ []string) string { return bar(trimNL(x)) }},
	{name: "nested command substitution", tmpl: `y=$(z=$(printf '%s' {{.Vars.x}}); printf '%s' "$z"); printf '%s|' "$y"`, want: func(x string, _ []string) string { return bar(trimNL(x)) }},
	{name: "case inside a command substitution", tmpl: `y=$(case a in a) printf '%s' {{.Vars.x}};; esac); printf '%s|' "$y" {{.Version}}`, want: func(x string, _ []string) string { return bar(trimNL(x)) + bar(x) }},
	{name: "subshell", tmpl: `( printf '%s|' {{.Vars.x}} )`, want: xBar},
	{name: "group", tmpl: `{ printf '%s|' {{.Vars.x}}; }`, want: xBar},
	{name: "if", tmpl: `if true; then printf '%s|' {{.Vars.x}}; else :; fi`, want: xBar},
	{name: "while", tmpl: "while true\ndo\n  printf '%s|' {{.Vars.x}}\n  break\ndone", want: xBar},
	{name: "and or", tmpl: `false || printf '%s|' {{.Vars.x}} && printf 'and|'`, want: func(x string, _ []string) string { return bar(x) + "and|" }},
	{name: "negation", tmpl: `! false && printf '%s|' {{.Vars.x}}`, want: xBar},
	{name: "pipeline", tmpl: `printf '%s' {{.Vars.x}} | cat; printf '|'`, want: xBar},
	{name: "background and wait", tmpl: `printf '%s|' {{.Vars.x}} & wait`, want: xBar},
	{name: "function body", tmpl: `f() { printf '%s|' {{.Vars.x}}; }; f`, want: xBar},
	{name: "function argument", tmpl: `f() { printf '%s|' "$1"; }; f {{.Vars.x}}`, want: xBar},
	{name: "sh -c positional argument", tmpl: `sh -c 'printf "%s|" "$1"' sh {{.Vars.x}}`, want: xBar},
	{name: "bash -c positional argument", tmpl: `/bin/bash -c 'printf "%s|" "$1"' bash {{.Vars.x}}`, want: xBar},
	{name: "pipe into sh -c", tmpl: `printf '%s' {{.Vars.x}} | sh -c 'cat; printf "|"'`, want: xBar},
	{name: "pipe into sed as data", tmpl: `printf '%s\n' {{.Vars.x}} | sed -n p`, want: func(x string, _ []string) string { return x + "\n" }},
	{name: "test with an expansion and an operator", tmpl: `[ "$HOME" = {{.Vars.x}}/nonexistent ] || printf 'ne|'`, want: same("ne|")},
	{name: "sh -- with a script in a variable", tmpl: `s=-; sh -- "$s" {{.Vars.x}} </dev/null; printf '%s|' {{.Vars.x}}`, want: xBar},
	{name: "brace expansion in printf's arguments", tmpl: `printf '%s|' a{1,2} {{.Vars.x}}`, bashOnly: true, want: func(x string, _ []string) string { return "a1|a2|" + bar(x) }},
	{name: "quoted command name", tmpl: `"printf" '%s|' {{.Vars.x}}`, want: xBar},
	{name: "shell reading a literal heredoc", tmpl: "sh <<'EOF'\nprintf 'lit|'\nEOF\nprintf '%s|' {{.Vars.x}}", want: func(x string, _ []string) string { return "lit|" + bar(x) }},
	{name: "literal piped into sh after a value", tmpl: "printf '%s|' {{.Vars.x}}; echo \"printf 'sh|'\" | sh", want: func(x string, _ []string) string { return bar(x) + "sh|" }},
	{name: "sh -c name", tmpl: `sh -c 'printf "%s|" "$0"' {{.Vars.x}}`, want: xBar},
	{name: "set --", tmpl: `set -- {{.Vars.x}} {{.Version}}; printf '%s|' "$#" "$1" "$2"`, want: func(x string, _ []string) string { return "2|" + bar(x) + bar(x) }, isolate: true},
	{name: "test =", tmpl: `[ {{.Vars.x}} = {{.Vars.x}} ] && printf 'eq|'`, want: same("eq|")},
	{name: "test !=", tmpl: `test {{.Vars.x}} != {{.Vars.x}}x && printf 'ne|'`, want: same("ne|")},
	{name: "test -n", tmpl: `[ -n {{.Vars.x}}x ] && printf 'n|'`, want: same("n|")},
	{name: "test negated", tmpl: `[ ! {{.Vars.x}} = {{.Vars.x}} ] || printf 'not|'`, want: same("not|")},
	{name: "redirection target", tmpl: `printf ok > out{{.Vars.x}}`, want: same(""),
		file: func(x string) (string, string) { return "out" + x, "ok" },
		skip: func(x string) bool { return x == "" || strings.Contains(x, "/") || len(x) > 200 }},
	{name: "redirections around", tmpl: `printf '%s|' {{.Vars.x}} 2>/dev/null 1>&1 </dev/null`, want: xBar},
	{name: "heredoc before", tmpl: "read -r l <<EOF\nbody $((1+1))\nEOF\nprintf '%s|' \"$l\" {{.Vars.x}}", want: func(x string, _ []string) string { return "body 2|" + bar(x) }},
	{name: "quoted heredoc before", tmpl: "read -r l <<'EOF'\n$(touch MARKER)\nEOF\nprintf '%s|' \"$l\" {{.Vars.x}}", want: func(x string, _ []string) string { return "$(touch MARKER)|" + bar(x) }},
	{name: "comments around", tmpl: "# it's a comment\nprintf '%s|' {{.Vars.x}} # trailing", want: xBar},
	{name: "line continuation", tmpl: "printf '%s|' \\\n  {{.Vars.x}}", want: xBar},
	{name: "continued arguments", tmpl: "printf '%s|' {{.Vars.x}} \\\n  {{.Vars.x}}\\\n{{.Vars.x}}", want: func(x string, _ []string) string { return bar(x) + x + x + "|" }},
	{name: "continued heredoc body before", tmpl: "read -r l <<EOF\nbody \\\nEOF\nEOF\nprintf '%s|' \"$l\" {{.Vars.x}}", want: func(x string, _ []string) string { return "body EOF|" + bar(x) }},
	{name: "arithmetic elsewhere", tmpl: `n=$(( 1 + 2 )); printf '%s|' {{.Vars.x}} "$n"`, want: func(x string, _ []string) string { return bar(x) + "3|" }},
	{name: "parameter expansion elsewhere", tmpl: `printf '%s|' "${HOME:+set}" {{.Vars.x}}`, want: func(x string, _ []string) string { return "set|" + bar(x) }},
	{name: "backquotes elsewhere", tmpl: "y=`printf a`; printf '%s|' {{.Vars.x}} \"$y\"", want: func(x string, _ []string) string { return bar(x) + "a|" }},
	{name: "trap elsewhere", tmpl: `trap 'printf end' EXIT; printf '%s|' {{.Vars.x}}`, want: func(x string, _ []string) string { return bar(x) + "end" }, isolate: true},
	{name: "if in the template", tmpl: `{{if .Vars.x}}printf '%s|' {{.Vars.x}}{{else}}printf 'empty|'{{end}}`, want: func(x string, _ []string) string {
		if x == "" {
			return "empty|"
		}
		return bar(x)
	}},
	{name: "with in the template", tmpl: `{{with .Vars.x}}printf '%s|' {{.}}{{end}}`, want: func(x string, _ []string) string {
		if x == "" {
			return ""
		}
		return bar(x)
	}},
	{name: "pipeline in the action", tmpl: `printf '%s|' {{.Vars.x | printf "%s!"}}`, want: func(x string, _ []string) string { return bar(x + "!") }},
	{name: "variable in the template", tmpl: `{{$y := .Vars.x}}printf '%s|' {{$y}}`, want: xBar},
	// bash only: dash does not have these.
	{name: "here-string", tmpl: `IFS= read -r -d '' y <<< {{.Vars.x}}; printf '%s|' "$y"`, bashOnly: true, want: func(x string, _ []string) string { return bar(x + "\n") }},
	{name: "read from a here-string", tmpl: `IFS= read -r y <<< {{.Vars.x}}; printf '%s|' "$y"`, bashOnly: true, want: func(x string, _ []string) string { return bar(strings.SplitN(x, "\n", 2)[0]) }},
	{name: "process substitution", tmpl: `IFS= read -r -d '' y < <(printf '%s' {{.Vars.x}}); printf '%s|' "$y"`, bashOnly: true, want: xBar},
	{name: "array elements", tmpl: `a=({{.Vars.x}} {{.Host.Roles}}); printf '%s|' "${a[@]}"`, bashOnly: true, want: func(x string, roles []string) string { return bar(x) + bars(roles) }},
	{name: "array element with a literal subscript", tmpl: `a[1]={{.Vars.x}}; printf '%s|' "${a[1]}"`, bashOnly: true, want: xBar},
	{name: "declare", tmpl: `declare -r y={{.Vars.x}}; printf '%s|' "$y"`, bashOnly: true, want: xBar, isolate: true},
	{name: "printf -v with a literal name", tmpl: `printf -v y '%s' {{.Vars.x}}; printf '%s|' "$y"`, bashOnly: true, want: xBar},
	{name: "[[ ]] elsewhere", tmpl: `[[ a == a ]] && printf '%s|' {{.Vars.x}}`, bashOnly: true, want: xBar},
	{name: "(( )) elsewhere", tmpl: `(( 1 + 1 )) && printf '%s|' {{.Vars.x}}`, bashOnly: true, want: xBar},
	{name: "for (( )) elsewhere", tmpl: `for (( i=0; i<1; i++ )); do printf '%s|' {{.Vars.x}}; done`, bashOnly: true, want: xBar},
	{name: "function keyword", tmpl: `function f { printf '%s|' {{.Vars.x}}; }; f`, bashOnly: true, want: xBar},
	{name: "time", tmpl: `time printf '%s|' {{.Vars.x}}`, bashOnly: true, want: xBar},
}

// hostilePieces are what hostile values are made of: every way out of a
// quoted word (and into code) that the shells have.
var hostilePieces = []string{
	"'", `"`, "`", `\`, "$", "$(touch MARKER)", "`touch MARKER`", "${x:-$(touch MARKER)}", "$((1+1))",
	"a[$(touch MARKER)]", ";touch MARKER;", "&& touch MARKER", "|| touch MARKER", "| touch MARKER", "& touch MARKER &",
	"\ntouch MARKER\n", `'\''`, `'\''; touch MARKER; '\''`, `\'; touch MARKER; #`, "'\"$(touch MARKER)\"'",
	"\r", "\t", " ", "  ", "\n", "*", "?", "[a]", "~", "~root", "-c", "-v", "-n", "-e", "--", "-", "-oProxyCommand=touch MARKER",
	`$'\x41'`, `$'\''`, `$"x"`, "!", "!!", "#", "# touch MARKER", ")", "(", "))", "$((", "]]", "[[", "}", "{", "${", "esac", "EOF", "fi", "done",
	"<", ">", ">>MARKER", "<<EOF", "<(touch MARKER)", "=", "x=1", "%s", "%n", "%b", `\c`, `\n`, `\0`, "\x7f", "\xff", "\xc3", "\xe2\x98\x83",
	"é", "\x01", "\x1b[31m", "IFS=x", "$IFS", "$1", "$@", "$*", "${IFS}", "a b", "-c touch MARKER",
}

// hostileValue makes a NUL-free value from hostile pieces, random bytes and
// filler, sometimes long.
func hostileValue(r *rand.Rand) string {
	var b strings.Builder
	switch r.IntN(12) {
	case 0:
		return ""
	case 1: // arbitrary bytes, invalid UTF-8 included
		for n := 1 + r.IntN(40); n > 0; n-- {
			b.WriteByte(byte(1 + r.IntN(255)))
		}
		return b.String()
	case 2: // long
		for b.Len() < 1000+r.IntN(4000) {
			b.WriteString(hostilePieces[r.IntN(len(hostilePieces))])
		}
		return b.String()
	}
	for n := 1 + r.IntN(6); n > 0; n-- {
		if r.IntN(3) == 0 {
			b.WriteString(strconv.Itoa(r.IntN(100)))
		}
		b.WriteString(hostilePieces[r.IntN(len(hostilePieces))])
	}
	return b.String()
}

// propertyValues is every piece (eight to a value), the old table of
// hostile values, and seeded random values. RELCTL_QUOTING_SEED picks
// another seed, RELCTL_QUOTING_VALUES how many random values.
func propertyValues(t *testing.T) []string {
	seed, n := uint64(10), 12
	if testing.Short() {
		n = 4
	}
	if s := os.Getenv("RELCTL_QUOTING_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RELCTL_QUOTING_SEED=%q: %v", s, err)
		}
		seed = v
	}
	if s := os.Getenv("RELCTL_QUOTING_VALUES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("RELCTL_QUOTING_VALUES=%q: %v", s, err)
		}
		n = v
	}
	t.Logf("seed %d (RELCTL_QUOTING_SEED), %d random values (RELCTL_QUOTING_VALUES)", seed, n)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	values := append([]string{}, hostile...)
	for i := 0; i < len(hostilePieces); i += 8 {
		values = append(values, strings.Join(hostilePieces[i:min(i+8, len(hostilePieces))], ""))
	}
	for range n {
		values = append(values, hostileValue(r))
	}
	return values
}

// propertyScript renders every accepted position for each value into one
// script: value i, position k runs in d_i and prints to o_i_k. Each
// position is a { } group (a subshell if it changes the shell's state), so
// the script forks little.
func propertyScript(t *testing.T, bash bool, values []string) (string, [][]int) {
	var script strings.Builder
	ran := make([][]int, len(values))
	for i, x := range values {
		data := propertyData(x)
		for k, p := range acceptedPositions {
			if p.bashOnly && !bash || p.skip != nil && p.skip(x) {
				continue
			}
			cmd, err := RenderCommand(p.name, p.tmpl, data)
			if err != nil {
				t.Fatalf("%s: RenderCommand(%q) with %q: %v", p.name, p.tmpl, x, err)
			}
			open, end := "{", "}"
			if p.isolate {
				open, end = "(", ")"
			}
			fmt.Fprintf(&script, "cd d_%d\n%s :\n%s\n%s >../o_%d_%d 2>../e_%d_%d\ncd ..\n", i, open, cmd, end, i, k, i, k)
			ran[i] = append(ran[i], k)
		}
	}
	return script.String(), ran
}

func propertyData(x string) *TemplateData {
	return &TemplateData{Version: x, Vars: map[string]string{"x": x}, Host: HostData{Roles: propertyRoles(x)}}
}

func propertyRoles(x string) []string { return []string{x, "web", "it's $(touch MARKER)"} }

// checkProperty runs values through shell and reports every value that
// arrived altered or ran something; a batch that fails as a whole is run
// again one value at a time, to name the value.
func checkProperty(t *testing.T, shell string, values []string) {
	t.Helper()
	bash := strings.HasSuffix(shell, "bash")
	script, ran := propertyScript(t, bash, values)
	dir := t.TempDir()
	for i := range values {
		if err := os.Mkdir(filepath.Join(dir, "d_"+strconv.Itoa(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The script goes in a file: with long values it outgrows the 128 KiB
	// a single argument (sh -c SCRIPT) may have on Linux.
	if err := os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runShell(shell, dir, ". ./script")
	var ranCode []int
	for i := range values {
		if _, err := os.Stat(filepath.Join(dir, "d_"+strconv.Itoa(i), "MARKER")); err == nil {
			ranCode = append(ranCode, i)
		}
	}
	if (err != nil || len(ranCode) > 0) && len(values) > 1 {
		for _, v := range values {
			checkProperty(t, shell, []string{v})
		}
		return
	}
	if err != nil {
		t.Errorf("%s -c (every position) with %q: %v: %s", shell, values[0], err, stderr)
	}
	for _, i := range ranCode {
		t.Errorf("%s: a command carried by %q ran (MARKER exists)", shell, values[i])
	}
	for i, x := range values {
		for _, k := range ran[i] {
			p := acceptedPositions[k]
			got, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("o_%d_%d", i, k)))
			want := p.want(x, propertyRoles(x))
			ok := string(got) == want
			if p.file != nil {
				name, content := p.file(x)
				b, err := os.ReadFile(filepath.Join(dir, "d_"+strconv.Itoa(i), name))
				ok = ok && err == nil && string(b) == content
			}
			if !ok {
				cmd, _ := RenderCommand(p.name, p.tmpl, propertyData(x))
				stderr, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("e_%d_%d", i, k)))
				t.Errorf("%s, %s: %q with %q\nrendered %q\nprinted %q, want %q (stderr %q)", shell, p.name, p.tmpl, x, cmd, got, want, stderr)
			}
		}
	}
}

func TestShellContextPropertyAcceptedPositions(t *testing.T) {
	shells := oracleShells(t)
	for _, p := range acceptedPositions {
		if err := quotedActionError(p.tmpl); err != nil {
			t.Fatalf("%s: %q refused: %v", p.name, p.tmpl, err)
		}
	}
	values := propertyValues(t)
	const batch = 24
	for _, shell := range shells {
		for i := 0; i < len(values); i += batch {
			checkProperty(t, shell, values[i:min(i+batch, len(values))])
		}
	}
}

// refusedPosition is a template the scanner must refuse, at line:column,
// with a reason that says so. exploit, when set, holds vars under which
// the template, quoted the plain way, runs touch MARKER in shells.
type refusedPosition struct {
	tmpl      string
	line, col int
	reason    string
	vars      map[string]string
	roles     []string
	shells    []string // where the exploit runs: "dash", "bash"
	needs     string   // a program the exploit needs
	dynamicOK bool     // the template text alone passes; only the rendered text shows it
}

func touch(v string) map[string]string { return map[string]string{"x": v} }

var refusedPositions = []refusedPosition{
	{tmpl: "sleep $(( {{.Vars.x}} ))", line: 1, col: 11, reason: "is inside shell arithmetic $(( ))", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo \"$(( {{.Vars.x}} ))\"", line: 1, col: 11, reason: "is inside shell arithmetic $(( ))", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "x=$(( $(printf %s {{.Vars.x}}) + 1 ))", line: 1, col: 19, reason: "is inside shell arithmetic $(( ))", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "echo $(( \\\n {{.Vars.x}} ))", line: 2, col: 2, reason: "is inside shell arithmetic $(( ))", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "case x in x) echo $(( {{.Vars.x}} ));; esac", line: 1, col: 23, reason: "is inside shell arithmetic $(( ))", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo $[ {{.Vars.x}} ]", line: 1, col: 9, reason: "is inside shell arithmetic $[ ]", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "(( {{.Vars.x}} ))", line: 1, col: 4, reason: "is inside shell arithmetic (( ))", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "for (( i={{.Vars.x}}; i<1; i++ )); do :; done", line: 1, col: 10, reason: "is inside shell arithmetic (( ))", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "[[ {{.Vars.x}} -eq 1 ]]", line: 1, col: 4, reason: "is inside [[ ]]", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "[[ -n x && \\\n {{.Vars.x}} == y ]]", line: 2, col: 2, reason: "is inside [[ ]]"},
	{tmpl: "echo ${HOME:{{.Vars.x}}}", line: 1, col: 13, reason: "is inside a parameter expansion ${...}", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "a=(1); echo ${a[{{.Vars.x}}]}", line: 1, col: 17, reason: "is inside a parameter expansion ${...}", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "echo ${y:-{{.Vars.x}}}", line: 1, col: 11, reason: "is inside a parameter expansion ${...}"},
	{tmpl: "echo `echo {{.Vars.x}}`", line: 1, col: 12, reason: "is inside backquotes", vars: touch("`; touch MARKER; `"), shells: []string{"bash"}},
	{tmpl: "echo \"{{.Vars.x}}\"", line: 1, col: 7, reason: "is inside double quotes", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo '{{.Vars.x}}'", line: 1, col: 7, reason: "is inside single quotes", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo $'{{.Vars.x}}'", line: 1, col: 8, reason: "is inside $'...' quotes", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo ${{.Vars.x}}", line: 1, col: 7, reason: "follows a $", vars: touch(`\'; touch MARKER; #`), shells: []string{"bash"}},
	{tmpl: "echo \\{{.Vars.x}}", line: 1, col: 7, reason: "follows a backslash", vars: touch("; touch MARKER; '"), shells: []string{"dash", "bash"}},
	{tmpl: "echo ok # {{.Vars.x}}", line: 1, col: 11, reason: "is in a shell comment", vars: touch("\ntouch MARKER #"), shells: []string{"dash", "bash"}},
	{tmpl: "cat <<EOF\n{{.Vars.x}}\nEOF", line: 2, col: 1, reason: "is inside an unquoted heredoc (<<EOF)", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "cat <<'EOF'\n{{.Vars.x}}\nEOF", line: 2, col: 1, reason: "is inside a heredoc (<<'EOF') whose body is literal text"},
	{tmpl: "eval {{.Vars.x}}", line: 1, col: 6, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "command eval {{.Vars.x}}", line: 1, col: 14, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "eval \"$(printf %s {{.Vars.x}})\"", line: 1, col: 19, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "let {{.Vars.x}}", line: 1, col: 5, reason: "is an argument of let", vars: touch("y=a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "trap {{.Vars.x}} EXIT", line: 1, col: 6, reason: "is an argument of trap", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "alias y={{.Vars.x}}\ny", line: 1, col: 9, reason: "is an argument of alias", vars: touch("touch MARKER"), shells: []string{"dash"}},
	{tmpl: "watch {{.Vars.x}}", line: 1, col: 7, reason: "is an argument of watch"},
	{tmpl: "declare -i n={{.Vars.x}}", line: 1, col: 14, reason: "is assigned by declare -i", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -n r={{.Vars.x}}; echo $r", line: 1, col: 14, reason: "is assigned by declare -n", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -i n\nn={{.Vars.x}}", line: 2, col: 3, reason: "is assigned to n, which the template declares integer", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -i n; read -r n <<< {{.Vars.x}}", line: 1, col: 29, reason: "is read into n, which the template declares integer", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare {{.Vars.x}}=1", line: 1, col: 9, reason: "is part of the name declare declares", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "f() { local {{.Vars.x}}=1; }; f", line: 1, col: 13, reason: "is part of the name local declares", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "a[{{.Vars.x}}]=1", line: 1, col: 3, reason: "is inside an array subscript a[...]", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "a=([{{.Vars.x}}]=1)", line: 1, col: 5, reason: "is inside an array subscript [...]", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "printf -v {{.Vars.x}} %s 1", line: 1, col: 11, reason: "is the variable name of printf -v", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "read {{.Vars.x}} </dev/null", line: 1, col: 6, reason: "is an argument of read", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "a=(1); unset {{.Vars.x}}", line: 1, col: 14, reason: "is an argument of unset", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "getopts ab {{.Vars.x}}", line: 1, col: 12, reason: "is an argument of getopts"},
	{tmpl: "[ -v {{.Vars.x}} ]", line: 1, col: 6, reason: "follows -v in a test", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "[ {{.Vars.x}} {{.Vars.y}} ]", line: 1, col: 3, reason: `is "-v", right before another value or expansion in a test`, vars: map[string]string{"x": "-v", "y": "a[$(touch MARKER)]"}, shells: []string{"bash"}, dynamicOK: true},
	{tmpl: "sh -c {{.Vars.x}}", line: 1, col: 7, reason: "is the command string of sh -c", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "sudo -u nobody bash -ec {{.Vars.x}}", line: 1, col: 25, reason: "is the command string of bash -c"},
	{tmpl: "nohup /bin/sh -o errexit -c {{.Vars.x}} >/dev/null", line: 1, col: 29, reason: "is the command string of sh -c", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "sh {{.Vars.x}} {{.Vars.y}}", line: 1, col: 4, reason: `is "-c", where sh reads options`, vars: map[string]string{"x": "-c", "y": "touch MARKER"}, shells: []string{"dash", "bash"}, dynamicOK: true},
	{tmpl: "sh -{{.Vars.x}} {{.Vars.y}}", line: 1, col: 5, reason: "is part of an option of sh", vars: map[string]string{"x": "c", "y": "touch MARKER"}, shells: []string{"dash", "bash"}},
	{tmpl: "su -c {{.Vars.x}} nobody", line: 1, col: 7, reason: "is the command su -c runs"},
	{tmpl: "env -S {{.Vars.x}}", line: 1, col: 8, reason: "is the string env -S splits", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "ssh localhost {{.Vars.x}}", line: 1, col: 15, reason: "is part of the remote command of ssh"},
	{tmpl: "ssh {{.Vars.x}} true", line: 1, col: 5, reason: `is "-oProxyCommand=touch MARKER", where ssh reads options`, vars: touch("-oProxyCommand=touch MARKER"), shells: []string{"dash", "bash"}, needs: "ssh", dynamicOK: true},
	{tmpl: "ssh -o {{.Vars.x}} true", line: 1, col: 8, reason: "would name an ssh -o option", vars: touch("ProxyCommand=touch MARKER"), shells: []string{"dash", "bash"}, needs: "ssh"},
	{tmpl: "echo $((echo a); echo b) {{.Vars.x}}", line: 1, col: 26, reason: "comes after shell syntax relctl cannot follow with certainty: a $(( that ends in a single )"},
	{tmpl: "echo \"${x#'a'}\" {{.Vars.x}}", line: 1, col: 17, reason: "comes after shell syntax relctl cannot follow with certainty: a ' inside a double-quoted ${...}"},
	{tmpl: "echo $'a\\'b' {{.Vars.x}}", line: 1, col: 14, reason: "comes after shell syntax relctl cannot follow with certainty: a $'...' with a backslash"},
	// A command name or option is what the shell sees after quote removal.
	{tmpl: "\"eval\" {{.Vars.x}}", line: 1, col: 8, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "e\\val {{.Vars.x}}", line: 1, col: 7, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "$'eval' {{.Vars.x}}", line: 1, col: 9, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "sh \"-c\" {{.Vars.x}}", line: 1, col: 9, reason: "is the command string of sh -c", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	// After an alias definition (or an eval, which may hold one) every value is refused.
	{tmpl: "alias e=eval\ne {{.Vars.x}}", line: 2, col: 3, reason: "an alias definition", vars: touch("touch MARKER"), shells: []string{"dash"}},
	{tmpl: "alias t='sh -c'\nt {{.Vars.x}}", line: 2, col: 3, reason: "an alias definition", vars: touch("touch MARKER"), shells: []string{"dash"}},
	{tmpl: "shopt -s expand_aliases\nalias t='sh -c'\nt {{.Vars.x}}", line: 3, col: 3, reason: "an alias definition", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "alias t='command eval'\nt {{.Vars.x}}", line: 2, col: 3, reason: "an alias definition", vars: touch("touch MARKER"), shells: []string{"dash"}},
	{tmpl: "shopt -s expand_aliases\nalias t='[['\nt 1 -eq {{.Vars.x}} ]]", line: 3, col: 9, reason: "an alias definition", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "eval 'alias e=eval'\ne {{.Vars.x}}", line: 2, col: 3, reason: "an alias definition (or an eval", vars: touch("touch MARKER"), shells: []string{"dash"}},
	{tmpl: "shopt -s expand_aliases; BASH_ALIASES[ls]={{.Vars.x}}\nls", line: 1, col: 43, reason: "is assigned to BASH_ALIASES", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "shopt -s expand_aliases; BASH_ALIASES[t]='sh -c'\nt {{.Vars.x}}", line: 2, col: 3, reason: "an assignment to BASH_ALIASES", vars: touch("touch MARKER"), shells: []string{"bash"}},
	// bash brace expansion can make options and command names.
	{tmpl: "sh {-c,-e} {{.Vars.x}}", line: 1, col: 12, reason: "a bash brace expansion {a,b} among the arguments of sh", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "command {eval,true} {{.Vars.x}}", line: 1, col: 21, reason: "a bash brace expansion {a,b} among the arguments", vars: touch("; touch MARKER"), shells: []string{"bash"}},
	// An expansion where options are read could be -c, -v, -i.
	{tmpl: "o=-c; sh $o {{.Vars.x}}", line: 1, col: 13, reason: "comes after $o, an expansion where sh reads options", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "o=-v; [ \"$o\" {{.Vars.x}} ]", line: 1, col: 14, reason: `comes right after "$o" in [`, vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "o=-v; printf \"$o\" {{.Vars.x}} 1", line: 1, col: 19, reason: `comes right after "$o" in printf`, vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "o=-i; declare $o n={{.Vars.x}}", line: 1, col: 20, reason: "comes after $o, an expansion where declare reads options", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "bash {/dev/stdin,x} <<< {{.Vars.x}}", line: 1, col: 25, reason: "a bash brace expansion {a,b} among the arguments of bash", vars: touch("touch MARKER"), shells: []string{"bash"}},
	// Variables whose text the shell runs, and bash's integer variables.
	{tmpl: "PS4={{.Vars.x}}; set -x; true", line: 1, col: 5, reason: "is assigned to PS4, whose text the shell expands again", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "BASH_ENV={{.Vars.x}} bash -c true", line: 1, col: 10, reason: "is assigned to BASH_ENV", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "export PS4={{.Vars.x}}", line: 1, col: 12, reason: "is assigned by export to PS4"},
	{tmpl: "env BASH_ENV={{.Vars.x}} bash -c :", line: 1, col: 14, reason: "is assigned to BASH_ENV in the environment of the program env starts", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "env A=1 BASH_ENV={{.Vars.x}} bash -c :", line: 1, col: 18, reason: "is assigned to BASH_ENV in the environment", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "env ENV={{.Vars.x}} sh -i -c :", line: 1, col: 9, reason: "is assigned to ENV in the environment", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "env BASH_FUNC_ls%%={{.Vars.x}} bash -c ls", line: 1, col: 20, reason: "is assigned to BASH_FUNC_ls%% in the environment", vars: touch("() { touch MARKER; }"), shells: []string{"dash", "bash"}},
	{tmpl: "compgen -W {{.Vars.x}}", line: 1, col: 12, reason: "is an argument of compgen", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "compgen -C {{.Vars.x}} x", line: 1, col: 12, reason: "is an argument of compgen", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "python3.11 -c {{.Vars.x}}", line: 1, col: 15, reason: "is program text for python", vars: touch("import os; os.system('touch MARKER')"), shells: []string{"dash", "bash"}, needs: "python3.11"},
	{tmpl: "perl5.36 -e {{.Vars.x}}", line: 1, col: 13, reason: "is program text for perl"},
	{tmpl: "RANDOM={{.Vars.x}}", line: 1, col: 8, reason: "is assigned to RANDOM, which bash keeps as an integer", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "OPTIND={{.Vars.x}}; getopts a o", line: 1, col: 8, reason: "is assigned to OPTIND, which bash keeps as an integer", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "for RANDOM in {{.Vars.x}}; do :; done", line: 1, col: 15, reason: "is assigned by for to RANDOM", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -i n; for n in {{.Vars.x}}; do :; done", line: 1, col: 24, reason: "is assigned by for to n", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "printf -v OPTIND %s {{.Vars.x}}", line: 1, col: 21, reason: "is assigned by printf -v to OPTIND", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -i n; printf -v n %s {{.Vars.x}}", line: 1, col: 30, reason: "is assigned by printf -v to n", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -i n; echo {{.Vars.x}} | { read n; }", line: 1, col: 20, reason: "is read into n", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "v=n; declare -i $v; n={{.Vars.x}}", line: 1, col: 23, reason: "an expansion among the arguments of declare", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "eval 'declare -i n'; n={{.Vars.x}}", line: 1, col: 24, reason: "an eval", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -i n; declare -n r=n; r={{.Vars.x}}", line: 1, col: 33, reason: "declares with declare -n", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -n r=OPTIND; r={{.Vars.x}}", line: 1, col: 24, reason: "declares with declare -n", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "declare -n r=PS4; r={{.Vars.x}}; set -x; :", line: 1, col: 21, reason: "declares with declare -n", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "declare -a v; declare v={{.Vars.x}}", line: 1, col: 25, reason: "declares with declare -a", vars: touch("([$(touch MARKER)]=1)"), shells: []string{"bash"}},
	{tmpl: "declare -A v; declare v={{.Vars.x}}", line: 1, col: 25, reason: "declares with declare -A", vars: touch("([$(touch MARKER)]=1)"), shells: []string{"bash"}},
	// A shell or an interpreter that reads its script from standard input.
	{tmpl: "printf '%s\\n' {{.Vars.x}} | sh", line: 1, col: 15, reason: "is fed to the standard input of sh, which reads the script it runs from there", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "printf '%s\\n' {{.Vars.x}} |\n  cat | bash -s -- x", line: 1, col: 15, reason: "is fed to the standard input of bash", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "{ printf '%s\\n' {{.Vars.x}}; echo; } | sh", line: 1, col: 17, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "if true; then\n  printf '%s\\n' {{.Vars.x}}\nfi | sh", line: 2, col: 17, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "( printf '%s\\n' {{.Vars.x}} ) | sh", line: 1, col: 17, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "bash <<< {{.Vars.x}}", line: 1, col: 10, reason: "is fed to the standard input of bash", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "sh < <(printf '%s' {{.Vars.x}})", line: 1, col: 20, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "bash <(printf '%s' {{.Vars.x}})", line: 1, col: 20, reason: "is written into the script bash runs (through <(...))", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: ". /dev/stdin <<< {{.Vars.x}}", line: 1, col: 18, reason: "is fed to the standard input of .", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "printf '%s' {{.Vars.x}} | xargs sh -c", line: 1, col: 13, reason: "is fed to the standard input of sh", vars: touch("'touch MARKER'"), shells: []string{"dash", "bash"}},
	{tmpl: "printf '%s' {{.Vars.x}} | python3", line: 1, col: 13, reason: "is fed to the standard input of python3", vars: touch("import os; os.system('touch MARKER')"), shells: []string{"dash", "bash"}, needs: "python3"},
	// Program text of sed, awk, perl, python: the value would be code.
	{tmpl: "echo x | sed -e {{.Vars.x}}", line: 1, col: 17, reason: "is program text for sed", vars: touch("e touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "echo x | sed {{.Vars.x}}", line: 1, col: 14, reason: "is program text for sed", vars: touch("e touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "echo x | sed -e p {{.Vars.x}}", line: 1, col: 19, reason: `is "--expression=e touch MARKER", where sed reads options`, dynamicOK: true, vars: touch("--expression=e touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "awk {{.Vars.x}} /dev/null", line: 1, col: 5, reason: "is program text for awk", vars: touch("BEGIN { system(\"touch MARKER\") }"), shells: []string{"dash", "bash"}},
	{tmpl: "perl -e {{.Vars.x}}", line: 1, col: 9, reason: "is program text for perl", vars: touch("system('touch MARKER')"), shells: []string{"dash", "bash"}, needs: "perl"},
	{tmpl: "python3 -c {{.Vars.x}}", line: 1, col: 12, reason: "is program text for python3", vars: touch("import os; os.system('touch MARKER')"), shells: []string{"dash", "bash"}, needs: "python3"},
	{tmpl: "python3 {{.Vars.x}}", line: 1, col: 9, reason: "where python3 reads options, and an option like -c takes program text", dynamicOK: true, vars: touch("-cimport os; os.system('touch MARKER')"), shells: []string{"dash", "bash"}, needs: "python3"},
	// Only the rendered text shows these: {{if}} picks the command, a list
	// becomes several words.
	{tmpl: "{{if .Vars.y}}sh -c{{else}}printf %s{{end}} {{.Vars.x}}", line: 1, col: 45, reason: "is the command string of sh -c", vars: map[string]string{"x": "touch MARKER", "y": "1"}, shells: []string{"dash", "bash"}, dynamicOK: true},
	{tmpl: "x={{.Host.Roles}}", line: 1, col: 3, reason: "is a list, which renders as one word per element", vars: touch(""), roles: []string{"a", "touch", "MARKER"}, shells: []string{"dash", "bash"}, dynamicOK: true},
	{tmpl: "printf %s {{.Vars.x}}", line: 1, col: 11, reason: "holds a NUL byte", vars: touch("a\x00b"), dynamicOK: true},
	// Line continuations: the shells remove backslash-newline before they
	// read a token, so an operator may be split across lines.
	{tmpl: "(\\\n( {{.Vars.x}} ))", line: 2, col: 3, reason: "is inside shell arithmetic (( ))", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "(\\\n({{.Vars.x}}))", line: 2, col: 2, reason: "is inside shell arithmetic (( ))", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "for (\\\n( i={{.Vars.x}}; 0; )); do :; done", line: 2, col: 5, reason: "is inside shell arithmetic (( ))", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "$(\\\n( {{.Vars.x}} ))", line: 2, col: 3, reason: "is inside shell arithmetic $(( ))", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo $\\\n[ {{.Vars.x}} ]", line: 2, col: 3, reason: "is inside shell arithmetic $[ ]", vars: touch("$(touch MARKER)"), shells: []string{"bash"}},
	{tmpl: "echo $\\\n(( {{.Vars.x}} ))", line: 2, col: 4, reason: "is inside shell arithmetic $(( ))", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo $\\\n{{.Vars.x}}", line: 2, col: 1, reason: "follows a $", vars: touch(`\'; touch MARKER; #`), shells: []string{"bash"}},
	{tmpl: "[\\\n[ 1 -eq {{.Vars.x}} ]]", line: 2, col: 9, reason: "is inside [[ ]]", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "cat <\\\n<EOF\necho {{.Vars.x}}\nEOF", line: 3, col: 6, reason: "is inside an unquoted heredoc (<<EOF)", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "cat <<E\\\nOF\necho {{.Vars.x}}\nEOF", line: 3, col: 6, reason: "is inside an unquoted heredoc (<<EOF)", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	// In an unquoted heredoc body, foo\<newline>EOF is one line: no end.
	{tmpl: "cat <<EOF\nfoo\\\nEOF\necho {{.Vars.x}}\nEOF", line: 4, col: 6, reason: "is inside an unquoted heredoc (<<EOF)", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "cat <<EOF >/dev/null\nfoo\\\nEOF\necho {{.Vars.x}}\nEOF", line: 4, col: 6, reason: "is inside an unquoted heredoc (<<EOF)", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "cat <<-EOF\n\tfoo\\\n\tEOF\necho {{.Vars.x}}\nEOF", line: 4, col: 6, reason: "is inside an unquoted heredoc (<<-EOF)", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	{tmpl: "echo <<EOF\\\nX\nEOF\necho {{.Vars.x}}\nEOF\\\nX", line: 4, col: 6, reason: "is inside an unquoted heredoc (<<EOFX)", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	// bash's time takes options, and coproc a NAME before a compound command.
	{tmpl: "time -p eval {{.Vars.x}}", line: 1, col: 14, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "time -p sh -c {{.Vars.x}}", line: 1, col: 15, reason: "is the command string of sh -c", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "time -- sh -c {{.Vars.x}}", line: 1, col: 15, reason: "is the command string of sh -c", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "time -p [[ 1 -eq {{.Vars.x}} ]]", line: 1, col: 18, reason: "is inside [[ ]]", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "time -p a[1{{.Vars.x}}]=1", line: 1, col: 12, reason: "is inside an array subscript a[1...]", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "echo {{.Vars.x}} | time -p sh", line: 1, col: 6, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "coproc NAME { [[ 1 -eq {{.Vars.x}} ]]; }; wait", line: 1, col: 24, reason: "is inside [[ ]]", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "coproc eval {{.Vars.x}}; wait", line: 1, col: 13, reason: "is an argument of eval", vars: touch("touch MARKER"), shells: []string{"bash"}},
	// An array subscript stays open past a quote or an expansion in it.
	{tmpl: "a[$i{{.Vars.x}}]=1", line: 1, col: 5, reason: "is inside an array subscript", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "a[\"\"{{.Vars.x}}]=1", line: 1, col: 5, reason: "is inside an array subscript", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "a[''{{.Vars.x}}]=1", line: 1, col: 5, reason: "is inside an array subscript", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	{tmpl: "a[$i{{.Vars.x}}]=1 true", line: 1, col: 5, reason: "is inside an array subscript"},
	{tmpl: "a[$(printf %s {{.Vars.x}})]=1", line: 1, col: 15, reason: "is inside an array subscript", vars: touch("a[$(touch MARKER)]"), shells: []string{"bash"}},
	// After a wrapper, any later word naming a shell may be what it runs.
	{tmpl: "env -u sh bash -c {{.Vars.x}}", line: 1, col: 19, reason: "is the command string of bash -c", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "exec -a sh bash -c {{.Vars.x}}", line: 1, col: 20, reason: "is the command string of bash -c", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "find . -maxdepth 0 ! -name sh -exec bash -c {{.Vars.x}} \\;", line: 1, col: 45, reason: "is the command string of bash -c", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "sudo -u sh bash -c {{.Vars.x}}", line: 1, col: 20, reason: "is the command string of bash -c"},
	{tmpl: "flock ./l -c {{.Vars.x}}", line: 1, col: 14, reason: "is the command flock -c runs", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}, needs: "flock"},
	{tmpl: "flock -n ./l --comm={{.Vars.x}}", line: 1, col: 21, reason: "is the command flock -c runs"},
	{tmpl: "env -vS {{.Vars.x}}", line: 1, col: 9, reason: "is the string env -S splits", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "env --split={{.Vars.x}}", line: 1, col: 13, reason: "is the string env -S splits", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "env -iS{{.Vars.x}}", line: 1, col: 8, reason: "is the string env -S splits", vars: touch("/usr/bin/touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "env {{.Vars.x}}", line: 1, col: 5, reason: `is "-S/usr/bin/touch MARKER", where env reads options`, vars: touch("-S/usr/bin/touch MARKER"), shells: []string{"dash", "bash"}, dynamicOK: true},
	{tmpl: "printf '%s\\n' {{.Vars.x}} | xargs -rI{} sh -c 'echo {}'", line: 1, col: 15, reason: "is fed to the standard input of sh", vars: touch("$(touch MARKER)"), shells: []string{"dash", "bash"}},
	// A value flows on into subshells, compound commands and process
	// substitutions of its pipeline, and through a file descriptor.
	{tmpl: "echo {{.Vars.x}} | (sh)", line: 1, col: 6, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "echo {{.Vars.x}} | (:; sh)", line: 1, col: 6, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "echo {{.Vars.x}} | if :; then sh; fi", line: 1, col: 6, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "echo {{.Vars.x}} | { :; sh; }", line: 1, col: 6, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "echo {{.Vars.x}} | case a in a) sh;; esac", line: 1, col: 6, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"dash", "bash"}},
	{tmpl: "echo {{.Vars.x}} | tee >(sh) >/dev/null; sleep 0.3", line: 1, col: 6, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "echo {{.Vars.x}} > >(sh); sleep 0.3", line: 1, col: 6, reason: "writes into a process substitution >(...)", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "sh /dev/fd/3 3<<< {{.Vars.x}}", line: 1, col: 19, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"bash"}},
	{tmpl: "exec 3<<< {{.Vars.x}}; sh <&3", line: 1, col: 11, reason: "is fed to the standard input of sh", vars: touch("touch MARKER"), shells: []string{"bash"}},
}

func TestShellContextRefusedPositions(t *testing.T) {
	shells := oracleShells(t)
	for _, p := range refusedPositions {
		t.Run(p.tmpl, func(t *testing.T) {
			vars := map[string]string{"x": "v", "y": "w"}
			for k, v := range p.vars {
				vars[k] = v
			}
			data := &TemplateData{Vars: vars, Host: HostData{Roles: p.roles}}
			staticErr := quotedActionError(p.tmpl)
			if p.dynamicOK {
				if staticErr != nil {
					t.Fatalf("the template text alone is refused: %v", staticErr)
				}
			}
			_, err := RenderCommand("t", p.tmpl, data)
			if !p.dynamicOK && err != nil && staticErr != nil && err.Error() != staticErr.Error() {
				t.Errorf("RenderCommand says %q, Load would say %q", err, staticErr)
			}
			var sce *ShellContextError
			if !errors.As(err, &sce) {
				t.Fatalf("RenderCommand: want a *ShellContextError, got %T %v", err, err)
			}
			if sce.Line != p.line || sce.Column != p.col || !strings.Contains(sce.Reason, p.reason) {
				t.Errorf("got line %d column %d %q\nwant line %d column %d, reason containing %q", sce.Line, sce.Column, sce.Reason, p.line, p.col, p.reason)
			}
			if want := "{{"; !strings.HasPrefix(sce.Action, want) || !strings.HasPrefix(sce.Reason, sce.Action) && !strings.HasPrefix(sce.Reason, "the value of") {
				t.Errorf("action %q, reason %q: the reason should start with the action", sce.Action, sce.Reason)
			}
			if sce.Line > 1 && !strings.HasPrefix(err.Error(), fmt.Sprintf("template line %d: ", sce.Line)) {
				t.Errorf("error %q does not name its line", err)
			}
			if len(p.shells) == 0 {
				return
			}
			// Quoted the plain way, without the scanner, the value runs.
			tmpl, err := parseCommand("t", p.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			cmd, err := execute(tmpl, data)
			if err != nil {
				t.Fatal(err)
			}
			if p.needs != "" {
				if _, err := exec.LookPath(p.needs); err != nil {
					t.Skipf("%s not installed: exploit not run", p.needs)
				}
			}
			for _, shell := range shells {
				name := filepath.Base(shell)
				dir := t.TempDir()
				runShell(shell, dir, cmd)
				_, err := os.Stat(filepath.Join(dir, "MARKER"))
				if ran, want := err == nil, contains(p.shells, name); ran != want {
					t.Errorf("%s -c %q: the value ran: %v, want %v", name, cmd, ran, want)
				}
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
