package playbooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goodConfig and goodPlaybook are a small valid project; bad cases replace
// one file or append to it.
const goodConfig = `project = "search"

[environments.staging.vars]
base_dir = "/srv/search"

[[environments.staging.hosts]]
name = "web-1"
address = "127.0.0.1:22001"
roles = ["web"]
`

const goodPlaybook = `name = "web"
roles = ["web"]

[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"

[[steps]]
kind = "upload"

[[steps]]
name = "unpack"
phase = "stage"
run = "tar -xzf {{.Artifact}} -C {{.ReleaseDir}}"

[[steps]]
kind = "activate"
`

// writeProject writes files (relative names) into a temp dir and makes it
// the working directory, so messages show paths as a user would type them.
func writeProject(t *testing.T, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
}

func TestLoadReportsProblems(t *testing.T) {
	tests := []struct {
		name     string
		config   string // default goodConfig
		playbook string // playbooks/web.toml; default goodPlaybook
		want     string // Problems.Error(), one problem per line
	}{
		{
			name:   "unknown key in an environment",
			config: goodConfig + "\n[environments.staging]\nhots = []\n",
			want:   `relctl.toml:12:1: unknown key "hots" in [environments.staging] (did you mean hosts?)`,
		},
		{
			name:   "unknown key in a host",
			config: strings.Replace(goodConfig, `roles = ["web"]`, "roles = [\"web\"]\nadress = \"x\"", 1),
			want:   `relctl.toml:10:1: unknown key "adress" in [[environments.staging.hosts]] (did you mean address?)`,
		},
		{
			name:   "unknown table",
			config: goodConfig + "\n[environment.prod]\nx = 1\n",
			want:   `relctl.toml:11:2: unknown table [environment.prod] (did you mean environments.prod?)`,
		},
		{
			name:     "bad duration",
			playbook: goodPlaybook + "\n[strategy]\npause = \"5 minutes\"\n",
			want:     `playbooks/web.toml:19:1: strategy.pause: invalid duration "5 minutes" (use a form like "30s" or "1m30s")`,
		},
		{
			name:   "duration written as a number",
			config: goodConfig + "\n[ssh]\nconnect_timeout = 5\n",
			want:   `relctl.toml:12:1: ssh.connect_timeout: expected a duration string like "30s", got an integer`,
		},
		{
			name:   "wrong type",
			config: strings.Replace(goodConfig, `roles = ["web"]`, `roles = "web"`, 1),
			want:   `relctl.toml:9:9: environments.staging.hosts.roles: expected a list of strings, got a string`,
		},
		{
			name:   "TOML syntax error",
			config: "project = 'search\n",
			want:   `relctl.toml:1:18: literal strings cannot have new lines`,
		},
		{
			name:   "missing project and bad ssh settings",
			config: strings.Replace(goodConfig, `project = "search"`, "[ssh]\nhost_key_policy = \"yes\"\nmax_parallel = -1\ncommand_timeout = \"0s\"", 1),
			want: `relctl.toml: missing required key project (the name of what is released)
relctl.toml:2:1: ssh.host_key_policy "yes" is not valid (use "strict" or "accept-new")
relctl.toml:3:1: ssh.max_parallel must not be negative (got -1)
relctl.toml:4:1: ssh.command_timeout must be more than 0s`,
		},
		{
			name: "duplicate and invalid host names, bad address, no roles",
			config: goodConfig + `
[[environments.staging.hosts]]
name = "web-1"
address = "127.0.0.1:99999"
roles = ["web"]

[[environments.staging.hosts]]
name = "web 2"
address = "127.0.0.1"
`,
			want: `relctl.toml:12:1: duplicate host name "web-1" in environment "staging" (also at relctl.toml:7:1)
relctl.toml:13:1: host "web-1": address "127.0.0.1:99999" has an invalid port "99999" (use 1-65535)
relctl.toml:16:3: host "web 2" has no roles
relctl.toml:17:1: host name "web 2" contains ' '; use only letters, digits, '.', '_' and '-'`,
		},
		{
			name:   "playbook list names a missing playbook",
			config: strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\nplaybooks = [\"web\", \"api\"]", 1),
			want:   `relctl.toml:2:21: playbook "api" not found (no file playbooks/api.toml)`,
		},
		{
			name:     "playbook missing everything required",
			playbook: "keep_releases = -1\n",
			want: `playbooks/web.toml: missing required key name (it must be "web", the file name)
playbooks/web.toml: missing required key roles (the host roles this playbook targets)
playbooks/web.toml: missing required key artifact.path (the file shipped to every host)
playbooks/web.toml: no steps: add at least one [[steps]]
playbooks/web.toml:1:1: keep_releases must be at least 1 (got -1)`,
		},
		{
			name:     "playbook name does not match its file",
			playbook: strings.Replace(goodPlaybook, `name = "web"`, `name = "www"`, 1),
			want:     `playbooks/web.toml:1:1: name "www" does not match the file name web.toml`,
		},
		{
			name:     "unknown phase and unknown kind",
			playbook: goodPlaybook + "\n[[steps]]\nphase = \"deploy\"\nrun = \"true\"\n\n[[steps]]\nkind = \"reboot\"\n",
			want: `playbooks/web.toml:19:1: step "run-4": unknown phase "deploy" (use one of preflight, stage, activate, verify, cutover, post)
playbooks/web.toml:23:1: step "reboot": unknown kind "reboot" (use run, upload, activate or check)`,
		},
		{
			name:     "run step without phase, upload with run",
			playbook: strings.Replace(goodPlaybook, "kind = \"upload\"", "kind = \"upload\"\nrun = \"scp x y\"", 1) + "\n[[steps]]\nrun = \"true\"\n",
			want: `playbooks/web.toml:9:1: step "upload": kind upload does not take run (relctl does this step itself; use a separate run step)
playbooks/web.toml:19:3: step "run-4": missing phase (one of preflight, stage, activate, verify, cutover, post)`,
		},
		{
			name: "check steps: unknown check, no checks",
			playbook: goodPlaybook + `
[checks.health]
type = "http"
url = "http://127.0.0.1/"

[[steps]]
name = "verify"
kind = "check"
checks = ["health", "helth"]

[[steps]]
name = "verify-again"
kind = "check"
`,
			want: `playbooks/web.toml:25:21: step "verify": unknown check "helth" (defined: health)
playbooks/web.toml:27:3: step "verify-again": kind check needs checks (names from [checks])`,
		},
		{
			name:     "batch size zero, canary negative",
			playbook: goodPlaybook + "\n[strategy]\nbatch_size = 0\ncanary = -1\nmax_parallel = -2\n",
			want: `playbooks/web.toml:19:1: strategy.batch_size must be at least 1 (got 0)
playbooks/web.toml:20:1: strategy.canary must not be negative (got -1)
playbooks/web.toml:21:1: strategy.max_parallel must not be negative (got -2)`,
		},
		{
			name:     "batch size percentage out of range",
			playbook: goodPlaybook + "\n[strategy]\nbatch_size = \"150%\"\n",
			want:     `playbooks/web.toml:19:1: strategy.batch_size "150%" must be between 1% and 100%`,
		},
		{
			name:     "batch size zero percent",
			playbook: goodPlaybook + "\n[strategy]\nbatch_size = \"0%\"\n",
			want:     `playbooks/web.toml:19:1: strategy.batch_size "0%" must be between 1% and 100%`,
		},
		{
			name:     "batch size neither count nor percentage",
			playbook: goodPlaybook + "\n[strategy]\nbatch_size = \"half\"\n",
			want:     `playbooks/web.toml:19:1: strategy.batch_size "half" is not a count or a percentage like "25%"`,
		},
		{
			name:     "role with no hosts",
			playbook: strings.Replace(goodPlaybook, `roles = ["web"]`, `roles = ["web", "db"]`, 1),
			want:     `playbooks/web.toml:2:17: role "db" has no hosts in environment "staging"`,
		},
		{
			name:     "duplicate step names",
			playbook: goodPlaybook + "\n[[steps]]\nname = \"unpack\"\nphase = \"post\"\nrun = \"true\"\n",
			want:     `playbooks/web.toml:19:1: step "unpack": duplicate step name (also at playbooks/web.toml:11:1)`,
		},
		{
			name: "bad checks",
			playbook: goodPlaybook + `
[checks.a]
type = "ping"

[checks.b]
type = "http"
url = "http://127.0.0.1/"
via = "jump"
body_regex = "ok("
retries = -1

[checks.c]
type = "tcp"
url = "http://x/"
`,
			want: `playbooks/web.toml:19:1: check "a": unknown type "ping" (use http, tcp or command)
playbooks/web.toml:24:1: check "b": via "jump" is not valid (use "host" or "controller")
playbooks/web.toml:25:1: check "b": body_regex does not compile: missing closing ): ` + "`ok(`" + `
playbooks/web.toml:26:1: check "b": retries must not be negative (got -1)
playbooks/web.toml:28:2: check "c": tcp check needs address (host:port)
playbooks/web.toml:30:1: check "c": url is only for http checks`,
		},
		{
			name:     "template syntax error",
			playbook: strings.Replace(goodPlaybook, "-C {{.ReleaseDir}}", "-C {{.ReleaseDir}", 1),
			want:     `playbooks/web.toml:13:1: steps.run: template: bad character U+007D '}'`,
		},
		{
			name:     "action inside quotes",
			playbook: strings.Replace(goodPlaybook, `run = "tar -xzf {{.Artifact}} -C {{.ReleaseDir}}"`, `run = 'tar -xzf {{.Artifact}} -C "{{.ReleaseDir}}/x"'`, 1),
			want:     `playbooks/web.toml:13:35: steps.run: {{.ReleaseDir}} is inside double quotes; relctl shell-quotes every value itself, so remove the quotes around it`,
		},
		{
			name:     "unknown field in a template",
			playbook: strings.Replace(goodPlaybook, "{{.ReleaseDir}}", "{{.RelaseDir}}", 1),
			want:     `playbooks/web.toml:13:1: steps.run: template: <.RelaseDir>: can't evaluate field RelaseDir in type *playbooks.TemplateData (rendering for host "web-1" in environment "staging")`,
		},
		{
			name:     "var missing for a host",
			playbook: strings.Replace(goodPlaybook, "{{.ReleaseDir}}", "{{.ReleaseDir}} --port {{.Vars.port}}", 1),
			want:     `playbooks/web.toml:13:1: steps.run: template: <.Vars.port>: map has no entry for key "port" (rendering for host "web-1" in environment "staging")`,
		},
		{
			name:   "vars must be scalars",
			config: goodConfig + "\n[environments.staging.hosts.vars]\nports = [1, 2]\n",
			want:   `relctl.toml:12:1: var "ports" must be a string, number or boolean (got a list)`,
		},
		{
			name:   "base_dir missing",
			config: strings.Replace(goodConfig, `base_dir = "/srv/search"`, `user_dir = "/srv"`, 1),
			want:   `relctl.toml:6:3: host "web-1" in environment "staging": vars.base_dir is not set (playbook "web" needs it; set it in the playbook's, the environment's or the host's vars)`,
		},
		{
			name:     "base_dir relative",
			playbook: goodPlaybook,
			config:   strings.Replace(goodConfig, `roles = ["web"]`, "roles = [\"web\"]\nvars = { base_dir = \"srv/search\" }", 1),
			want:     `relctl.toml:10:10: base_dir "srv/search" is not an absolute path (host "web-1" in environment "staging")`,
		},
		{
			name:     "two uploads, activate before upload",
			playbook: strings.Replace(goodPlaybook, "kind = \"upload\"", "kind = \"upload\"\nphase = \"post\"", 1) + "\n[[steps]]\nname = \"again\"\nkind = \"upload\"\n",
			want: `playbooks/web.toml:17:1: step "activate": activate runs before upload step "upload" (steps run by phase: preflight, stage, activate, verify, cutover, post)
playbooks/web.toml:21:1: step "again": more than one upload step (the first is "upload")`,
		},
		{
			name:   "lock_ttl too short",
			config: strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\nlock_ttl = \"5s\"", 1),
			want:   `relctl.toml:2:1: lock_ttl must be at least 10s (got 5s): the lock's heartbeat is refreshed every lock_ttl/4 over SSH, so a shorter one lets a slow refresh make a live run's lock look stale to the next run`,
		},
		{
			name:   "lock_ttl zero",
			config: strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\nlock_ttl = \"0s\"", 1),
			want:   `relctl.toml:2:1: lock_ttl must be at least 10s (got 0s): the lock's heartbeat is refreshed every lock_ttl/4 over SSH, so a shorter one lets a slow refresh make a live run's lock look stale to the next run`,
		},
		{
			name:   "lock_ttl not a duration is reported once",
			config: strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\nlock_ttl = \"2 minutes\"", 1),
			want:   `relctl.toml:2:1: lock_ttl: invalid duration "2 minutes" (use a form like "30s" or "1m30s")`,
		},
		{
			name:   "lock_ttl written as a number",
			config: strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\nlock_ttl = 120", 1),
			want:   `relctl.toml:2:1: lock_ttl: expected a duration string like "30s", got an integer`,
		},
		{
			name: "rollback step with phase, undo, checks, another kind and no run",
			playbook: goodPlaybook + `
[rollback]

[[rollback.steps]]
phase = "activate"
run = "true"
undo = "false"

[[rollback.steps]]
name = "swap"
kind = "activate"
checks = ["health"]
`,
			want: `playbooks/web.toml:21:1: rollback step "rollback-1": phase is not allowed: rollback steps have no phase (they run after current is switched back)
playbooks/web.toml:23:1: rollback step "rollback-1": undo is not allowed: a rollback step is not itself undone
playbooks/web.toml:25:3: rollback step "swap": missing run (the command)
playbooks/web.toml:27:1: rollback step "swap": kind "activate" is not allowed: rollback steps are run steps (relctl switches current back itself)
playbooks/web.toml:28:1: rollback step "swap": checks is not allowed: the playbook's check steps run after the rollback steps`,
		},
		{
			name:     "rollback requires: empty, absolute, outside, template, the directory itself, control character",
			playbook: goodPlaybook + "\n[rollback]\nrequires = [\"bin/start\", \"\", \"/opt/start\", \"bin/../../start\", \"bin/{{.Version}}\", \"./\", \"bin/a\\nb\"]\n",
			want: `playbooks/web.toml:19:26: rollback.requires: an entry is empty (write a path inside the release directory, e.g. "bin/start")
playbooks/web.toml:19:30: rollback.requires: "/opt/start" is absolute; write it relative to the release directory (e.g. "bin/start")
playbooks/web.toml:19:44: rollback.requires: "bin/../../start" has a ".." part; it must stay inside the release directory
playbooks/web.toml:19:63: rollback.requires: "bin/{{.Version}}" contains a template action; requires are plain paths, the same for every release
playbooks/web.toml:19:83: rollback.requires: "./" is the release directory itself; name a file inside it
playbooks/web.toml:19:89: rollback.requires: "bin/a\nb" contains a control character`,
		},
		{
			name: "watchdog: unknown kind, snippet outside the release, template error, bad service, zero timeout",
			playbook: goodPlaybook + `
[watchdog]
kind = "supervisord"
snippet = "../monit/web.monitrc"
install_path = "/etc/monit/conf.d/{{.Vars.nope"
control_file = "/etc/monit/monitrc"
service = "web app"
timeout = "0s"
`,
			want: `playbooks/web.toml:19:1: watchdog.kind "supervisord" is not valid (use "monit" or "systemd")
playbooks/web.toml:20:1: watchdog.snippet: "../monit/web.monitrc" has a ".." part; it must stay inside the release directory
playbooks/web.toml:21:1: watchdog.install_path: template: unclosed action
playbooks/web.toml:23:1: watchdog.service: name "web app" contains ' '; use only letters, digits, '.', '_' and '-'
playbooks/web.toml:24:1: watchdog.timeout must be more than 0s`,
		},
		{
			name:     "watchdog: missing snippet, paths and service",
			playbook: goodPlaybook + "\n[watchdog]\nkind = \"monit\"\n",
			want: `playbooks/web.toml:18:2: watchdog.snippet is missing (the snippet template's path inside the release, e.g. "monit/app.monitrc")
playbooks/web.toml:18:2: watchdog.install_path is missing
playbooks/web.toml:18:2: watchdog.control_file is missing
playbooks/web.toml:18:2: watchdog.service is missing (the monit service or systemd unit to wait for)`,
		},
		{
			name: "rollback step names: invalid, duplicate",
			playbook: goodPlaybook + `
[[rollback.steps]]
name = "re start"
run = "true"

[[rollback.steps]]
name = "unpack"
run = "true"

[[rollback.steps]]
name = "unpack"
run = "true"
`,
			want: `playbooks/web.toml:19:1: rollback step "re start": name "re start" contains ' '; use only letters, digits, '.', '_' and '-'
playbooks/web.toml:27:1: rollback step "unpack": duplicate rollback step name (also at playbooks/web.toml:23:1)`,
		},
		{
			name:     "rollback step timeouts: zero, not a duration",
			playbook: goodPlaybook + "\n[[rollback.steps]]\nrun = \"true\"\ntimeout = \"0s\"\n\n[[rollback.steps]]\nrun = \"true\"\ntimeout = \"soon\"\n",
			want: `playbooks/web.toml:20:1: rollback step "rollback-1": timeout must be more than 0s
playbooks/web.toml:24:1: rollback.steps.timeout: invalid duration "soon" (use a form like "30s" or "1m30s")`,
		},
		{
			name:     "rollback step timeout written as a number",
			playbook: goodPlaybook + "\n[[rollback.steps]]\nrun = \"true\"\ntimeout = 30\n",
			want:     `playbooks/web.toml:20:1: rollback.steps.timeout: expected a duration string like "30s", got an integer`,
		},
		{
			name:     "unknown keys in rollback",
			playbook: goodPlaybook + "\n[rollback]\nrequire = [\"bin/start\"]\n\n[[rollback.steps]]\nrn = \"true\"\n",
			want: `playbooks/web.toml:19:1: unknown key "require" in [rollback] (did you mean requires?)
playbooks/web.toml:21:3: rollback step "rollback-1": missing run (the command)
playbooks/web.toml:22:1: unknown key "rn" in [[rollback.steps]] (did you mean run?)`,
		},
		{
			name:     "rollback step template syntax error",
			playbook: goodPlaybook + "\n[[rollback.steps]]\nrun = \"{{.CurrentDir}/bin/restart\"\n",
			want:     `playbooks/web.toml:19:1: rollback.steps.run: template: bad character U+007D '}'`,
		},
		{
			name:     "rollback step action inside quotes",
			playbook: goodPlaybook + "\n[[rollback.steps]]\nrun = \"'{{.CurrentDir}}/bin/restart'\"\n",
			want:     `playbooks/web.toml:19:9: rollback.steps.run: {{.CurrentDir}} is inside single quotes; relctl shell-quotes every value itself, so remove the quotes around it`,
		},
		{
			name:     "rollback step rendered for every host: var missing on one",
			config:   goodConfig + "\n[[environments.staging.hosts]]\nname = \"web-2\"\naddress = \"127.0.0.1:22002\"\nroles = [\"web\"]\nvars = { port = 8081 }\n",
			playbook: goodPlaybook + "\n[[rollback.steps]]\nrun = \"{{.CurrentDir}}/bin/restart {{.Vars.port}}\"\n",
			want:     `playbooks/web.toml:19:1: rollback.steps.run: template: <.Vars.port>: map has no entry for key "port" (rendering for host "web-1" in environment "staging")`,
		},
		{
			name:     "rollback step unknown field",
			playbook: goodPlaybook + "\n[rollback]\nrequires = [\"bin/restart\"]\n\n[[rollback.steps]]\nrun = \"{{.CurentDir}}/bin/restart\"\n",
			want:     `playbooks/web.toml:22:1: rollback.steps.run: template: <.CurentDir>: can't evaluate field CurentDir in type *playbooks.TemplateData (rendering for host "web-1" in environment "staging")`,
		},
		{
			name:     "one file, many problems",
			playbook: "name = \"web\"\nroles = [\"web\"]\n[artifact]\npath = \"a-{{.Version\"\n[strategy]\nbatch_size = 1.5\n[[steps]]\nkind = \"check\"\nrun = \"true\"\n",
			want: `playbooks/web.toml:4:1: artifact.path: template: unclosed action
playbooks/web.toml:6:1: strategy.batch_size must be a whole number or a percentage like "25%"
playbooks/web.toml:7:3: step "check": kind check needs checks (names from [checks])
playbooks/web.toml:9:1: step "check": kind check does not take run (relctl does this step itself; use a separate run step)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"relctl.toml": goodConfig, "playbooks/web.toml": goodPlaybook}
			if tt.config != "" {
				files["relctl.toml"] = tt.config
			}
			if tt.playbook != "" {
				files["playbooks/web.toml"] = tt.playbook
			}
			writeProject(t, files)
			_, err := Load("relctl.toml")
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Load: want Problems, got %T %v", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
