package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relctl/relctl/internal/output"
)

// completionProject writes a project for completion tests: two
// environments, three playbooks (search and cache ship local artifacts,
// docs is pulled from a URL), artifacts, and two journals in the state
// directory. It returns relctl.toml's path.
func completionProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", filepath.Join(dir, "home")) // no ~/.ssh/config of the machine's
	cfg := filepath.Join(dir, "relctl.toml")
	writeFile(t, cfg, `project = "search"
[environments.staging]
vars = { base_dir = "/srv/search" }
[[environments.staging.hosts]]
name = "stage-1"
address = "127.0.0.1:22001"
roles = ["search"]
[[environments.staging.hosts]]
name = "stage-2"
address = "127.0.0.1:22002"
roles = ["search"]
[[environments.staging.hosts]]
name = "stage-cache"
address = "127.0.0.1:22003"
roles = ["cache", "docs"]
[environments.production]
playbooks = ["search"]
vars = { base_dir = "/srv/search" }
[[environments.production.hosts]]
name = "web-1"
address = "127.0.0.1:22011"
roles = ["search"]
[[environments.production.hosts]]
name = "web-2"
address = "127.0.0.1:22012"
roles = ["search"]
`)
	const steps = `
[[steps]]
phase = "stage"
kind = "upload"
[[steps]]
phase = "activate"
kind = "activate"
`
	writeFile(t, filepath.Join(dir, "playbooks", "search.toml"), `name = "search"
roles = ["search"]
[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"
`+steps)
	// The version is a directory here, and the environment is in the name.
	writeFile(t, filepath.Join(dir, "playbooks", "cache.toml"), `name = "cache"
roles = ["cache"]
[artifact]
path = "artifacts/cache/{{.Version}}/cache-{{.Env}}.tgz"
`+steps)
	writeFile(t, filepath.Join(dir, "playbooks", "docs.toml"), `name = "docs"
roles = ["docs"]
[artifact]
url = "https://example.com/docs-{{.Version}}.tgz"
`+steps)
	for _, f := range []string{
		"search-1.2.0.tar.gz", "search-1.10.0.tar.gz", "search-1.9.0-rc.1.tar.gz", "search-nightly.tar.gz",
		"search-.tar.gz", "README.txt", "docs-4.0.0.tgz",
		"cache/2.0.0/cache-staging.tgz", "cache/2.1.0/cache-staging.tgz", "cache/2.2.0/cache-production.tgz",
	} {
		writeFile(t, filepath.Join(dir, "artifacts", f), "x")
	}
	if err := os.MkdirAll(filepath.Join(dir, "artifacts", "search-9.9.9.tar.gz"), 0o755); err != nil { // a directory is no artifact
		t.Fatal(err)
	}
	runs := filepath.Join(dir, ".relctl", "runs")
	writeFile(t, filepath.Join(runs, "20260301T120000Z-aaaaaa.jsonl"),
		`{"time":"2026-03-01T12:00:00Z","run_id":"20260301T120000Z-aaaaaa","kind":"run-start","env":"staging","command":"deploy","release":"1.2.0"}`+"\n"+
			`{"time":"2026-03-01T12:01:00Z","run_id":"20260301T120000Z-aaaaaa","kind":"run-end","result":"succeeded"}`+"\n")
	writeFile(t, filepath.Join(runs, "20260301T120000Z-aaaaaa.log"), "run log\n")
	writeFile(t, filepath.Join(runs, "20260302T090000Z-bbbbbb.jsonl"),
		`{"time":"2026-03-02T09:00:00Z","run_id":"20260302T090000Z-bbbbbb","kind":"run-start","env":"production","command":"rollback","release":"1.1.0"}`+"\n")
	writeFile(t, filepath.Join(dir, "other-state", "runs", "20251224T000000Z-cccccc.jsonl"), "torn")
	writeFile(t, filepath.Join(dir, "broken.toml"), "project = \n")
	return cfg
}

// TestCompletions drives cobra's __complete through relctl's command tree,
// as the shell scripts do, and checks every dynamic completion and its
// directive (1 error, 4 no files, 8 file extensions, 16 directories, 32 keep order).
func TestCompletions(t *testing.T) {
	cfg := completionProject(t)
	dir := filepath.Dir(cfg)
	const releasesAll = "2.1.0 2.0.0 1.10.0 1.9.0-rc.1 1.2.0 nightly" // cache-production: production does not apply cache
	for _, tt := range []struct {
		name      string
		args      []string // after __complete; -c cfg is added in front unless noConfig
		noConfig  bool
		want      string // completions, space-separated
		directive string
	}{
		{"environments", []string{"deploy", "--env", ""}, false, "production staging", ":4"},
		{"environments by prefix", []string{"status", "-e", "st"}, false, "staging", ":4"},
		{"environment as --env=", []string{"plan", "--env=p"}, false, "production", ":4"},
		{"parity leaves out the environment given", []string{"parity", "--env", "staging", "--env", ""}, false, "production", ":4"},
		{"playbooks", []string{"deploy", "--playbook", ""}, false, "cache docs search", ":4"},
		{"playbooks of --env", []string{"deploy", "--env", "production", "--playbook", ""}, false, "search", ":4"},
		{"releases of every playbook, newest first", []string{"deploy", "--release", ""}, false, releasesAll, ":36"},
		{"releases --env sees", []string{"plan", "--env", "staging", "-r", ""}, false, "2.1.0 2.0.0 1.10.0 1.9.0-rc.1 1.2.0 nightly", ":36"},
		{"releases of --env's playbooks", []string{"deploy", "--env", "production", "--release", ""}, false, "1.10.0 1.9.0-rc.1 1.2.0 nightly", ":36"},
		{"releases of --playbook", []string{"check", "--env", "staging", "--playbook", "cache", "--release", ""}, false, "2.1.0 2.0.0", ":36"},
		{"releases by prefix", []string{"rehearse", "--release", "1."}, false, "1.10.0 1.9.0-rc.1 1.2.0", ":36"},
		{"a pulled playbook has none", []string{"deploy", "--playbook", "docs", "--release", ""}, false, "", ":36"},
		{"rollback --to", []string{"rollback", "--env", "production", "--to", ""}, false, "prev 1.10.0 1.9.0-rc.1 1.2.0 nightly", ":36"},
		{"rollback --to by prefix", []string{"rollback", "--env", "production", "--to", "p"}, false, "prev", ":36"},
		{"hosts of --env", []string{"deploy", "--env", "staging", "--hosts", ""}, false, "stage-1 stage-2 stage-cache", ":4"},
		{"hosts of --env and --playbook", []string{"rollback", "--env", "staging", "--playbook", "search", "--hosts", ""}, false, "stage-1 stage-2", ":4"},
		{"hosts after a comma", []string{"unlock", "--env", "staging", "--hosts", "stage-1,"}, false, "stage-1,stage-2 stage-1,stage-cache", ":4"},
		{"hosts after a comma, by prefix", []string{"check", "--env", "staging", "--hosts", "stage-2,stage-c"}, false, "stage-2,stage-cache", ":4"},
		{"hosts without --env", []string{"deploy", "--hosts", ""}, false, "", ":4"},
		{"hosts of an unknown environment", []string{"deploy", "--env", "qa", "--hosts", ""}, false, "", ":4"},
		{"explain-ssh hosts", []string{"validate", "--explain-ssh", "w"}, false, "web-1 web-2", ":4"},
		{"run ids, newest first", []string{"history", "show", ""}, false,
			"20260302T090000Z-bbbbbb\trollback production 1.1.0|20260301T120000Z-aaaaaa\tdeploy staging 1.2.0", ":36"},
		{"run ids by prefix", []string{"history", "show", "20260301"}, false, "20260301T120000Z-aaaaaa\tdeploy staging 1.2.0", ":36"},
		{"run ids from --state-dir", []string{"--state-dir", filepath.Join(dir, "other-state"), "history", "show", ""}, false, "20251224T000000Z-cccccc", ":36"},
		{"one run id only", []string{"history", "show", "20260301T120000Z-aaaaaa", ""}, false, "", ":4"},
		{"output formats", []string{"status", "--output", ""}, false, "text json", ":4"},
		{"config files", []string{"deploy", "-c", ""}, true, "toml", ":8"},
		{"state dir", []string{"history", "--state-dir", ""}, true, "", ":16"},
		{"a config that does not load", []string{"-c", filepath.Join(dir, "broken.toml"), "deploy", "--env", ""}, true, "", ":4"},
		{"a config that does not exist", []string{"-c", filepath.Join(dir, "missing.toml"), "rollback", "--to", ""}, true, "", ":4"},
		{"no run ids without a config", []string{"-c", filepath.Join(dir, "broken.toml"), "history", "show", ""}, true, "", ":4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"__complete"}, tt.args...)
			if !tt.noConfig {
				args = append([]string{"__complete", "-c", cfg}, tt.args...)
			}
			var out, errOut bytes.Buffer
			if code := run(args, output.Test(nil, &out, &errOut)); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			got, directive := lines[:len(lines)-1], lines[len(lines)-1]
			sep := " "
			if strings.Contains(tt.want, "\t") {
				sep = "|"
			}
			if strings.Join(got, sep) != tt.want || directive != tt.directive {
				t.Errorf("completions %q %s, want %q %s", got, directive, tt.want, tt.directive)
			}
			if strings.Contains(errOut.String(), "rror") {
				t.Errorf("stderr: %s", errOut.String())
			}
		})
	}
}

// TestCompletionInBash sources `relctl completion bash` in a real bash and
// calls the function it registers for relctl, as bash does on TAB.
func TestCompletionInBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	relctl, err := exec.LookPath("relctl")
	if err != nil {
		t.Fatalf("relctl is not on PATH (TestMain puts the test binary there): %v", err)
	}
	cfg := completionProject(t)
	script, err := exec.Command(relctl, "completion", "bash").Output()
	if err != nil {
		t.Fatalf("relctl completion bash: %v", err)
	}
	if !bytes.Contains(script, []byte("__start_relctl")) {
		t.Fatalf("the bash script registers no __start_relctl:\n%s", script)
	}
	scriptPath := filepath.Join(t.TempDir(), "relctl.bash")
	if err := os.WriteFile(scriptPath, script, 0o644); err != nil {
		t.Fatal(err)
	}
	// cobra's script needs bash-completion's _get_comp_words_by_ref; without
	// that package, a minimal one (no word-break handling) stands in.
	const prelude = `
[ -f /usr/share/bash-completion/bash_completion ] && . /usr/share/bash-completion/bash_completion
if ! declare -F _get_comp_words_by_ref >/dev/null; then
	_get_comp_words_by_ref() {
		cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cword=$COMP_CWORD
		words=("${COMP_WORDS[@]}")
	}
fi
source "$1"
fn=$(complete -p relctl | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$fn" ] || { echo "no completion function for relctl" >&2; exit 1; }
`
	for _, tt := range []struct {
		name  string
		dir   string // where bash runs
		words string // COMP_WORDS, in bash syntax; the last one is completed
		want  string
	}{
		{"environments, relctl.toml of the current directory", filepath.Dir(cfg), `relctl deploy --env ""`, "production staging"},
		{"environments, -c earlier on the line", t.TempDir(), `relctl -c ` + cfg + ` status --env ""`, "production staging"},
		{"hosts after a comma", filepath.Dir(cfg), `relctl deploy --env staging --hosts stage-1,`, "stage-1,stage-2 stage-1,stage-cache"},
		{"releases, newest first", filepath.Dir(cfg), `relctl rollback --env production --to ""`, "prev 1.10.0 1.9.0-rc.1 1.2.0 nightly"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := prelude + `
COMP_WORDS=(` + tt.words + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
"$fn" relctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
echo "${COMPREPLY[@]}"
`
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c", body, "bash", scriptPath)
			cmd.Dir = tt.dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, stderr.String())
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("COMPREPLY = %q, want %q (stderr %q)", got, tt.want, stderr.String())
			}
		})
	}
}
