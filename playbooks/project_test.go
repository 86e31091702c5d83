package playbooks

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func loadExample(t *testing.T) *Project {
	t.Helper()
	p, err := Load("examples/relctl.toml")
	if err != nil {
		t.Fatalf("the shipped example must load:\n%v", err)
	}
	return p
}

func TestExampleUsesEveryKey(t *testing.T) {
	p := loadExample(t)
	cfg := p.Config
	if cfg.Project != "search" || cfg.SSH.User != "deploy" || cfg.SSH.HostKeyPolicy != HostKeyStrict {
		t.Errorf("config: %+v", cfg)
	}
	pb := p.Playbooks["web"]
	if pb == nil {
		t.Fatal("playbook web not loaded")
	}
	// Every key the types declare appears somewhere in the example.
	cfgText, _ := os.ReadFile("examples/relctl.toml")
	pbText, _ := os.ReadFile("examples/playbooks/web.toml")
	moveText, _ := os.ReadFile("examples/solr-upgrade-and-move.toml")
	all := string(cfgText) + string(pbText) + string(moveText)
	for _, typ := range []any{Config{}, SecretConfig{}, SSHConfig{}, EnvSSH{}, RehearsalConfig{}, Environment{}, Host{}, Playbook{}, Rollback{}, Artifact{}, Strategy{}, Check{}, Step{}, Traffic{}, Move{}, Dependent{}} {
		rt := reflect.TypeOf(typ)
		for i := range rt.NumField() {
			tag := rt.Field(i).Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			if !strings.Contains(all, "\n"+tag+" =") && !strings.Contains(all, "["+tag) && !strings.Contains(all, "."+tag+"]") && !strings.Contains(all, tag+" = {") && !strings.Contains(all, "\n"+tag+" ") && !strings.Contains(all, "\n# "+tag+" = ") {
				t.Errorf("example never uses %s.%s (%q)", rt.Name(), rt.Field(i).Name, tag)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	writeProject(t, map[string]string{
		"relctl.toml": goodConfig + "\n[ssh]\nkeepalive = \"0s\"\n",
		"playbooks/web.toml": goodPlaybook + `
[strategy]
canary = 0

[checks.up]
type = "http"
url = "http://127.0.0.1/"

[checks.cmd]
type = "command"
command = "true"

[[steps]]
kind = "check"
checks = ["up"]

[[steps]]
kind = "check"
checks = ["cmd"]

[[steps]]
phase = "post"
run = "true"

[rollback]

[[rollback.steps]]
name = "restart"
run = "true"

[[rollback.steps]]
run = "true"
timeout = "30s"

[[rollback.steps]]
kind = "run"
run = "true"
`,
	})
	p, err := Load("relctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.Config
	if cfg.Path != "relctl.toml" || !filepath.IsAbs(cfg.Dir) {
		t.Errorf("Path %q Dir %q", cfg.Path, cfg.Dir)
	}
	s := cfg.SSH
	if cfg.StateDir != ".relctl" || s.HostKeyPolicy != "strict" || s.ConnectTimeout.Duration != 10*time.Second ||
		s.CommandTimeout.Duration != 10*time.Minute || s.MaxParallel != 20 || s.KnownHosts != "~/.ssh/known_hosts" {
		t.Errorf("ssh defaults: %+v state_dir %q", s, cfg.StateDir)
	}
	if s.Keepalive.Duration != 0 {
		t.Errorf("explicit keepalive \"0s\" must stay 0 (disabled), got %v", s.Keepalive)
	}
	h := cfg.Environments["staging"].Hosts[0]
	if h.User == "" || h.User != s.User {
		t.Errorf("host user %q, ssh user %q", h.User, s.User)
	}
	pb := p.Playbooks["web"]
	if pb.KeepReleases != 5 || pb.Strategy.Canary != 0 || pb.Strategy.BatchSize != 1 {
		t.Errorf("strategy defaults: keep %d %+v", pb.KeepReleases, pb.Strategy)
	}
	up := pb.Checks["up"]
	if up.ExpectStatus != 200 || up.Via != "host" || up.Timeout.Duration != 5*time.Second ||
		up.Interval.Duration != time.Second || up.Retries != 10 || up.HealthyFor != 1 || up.Name != "up" {
		t.Errorf("check defaults: %+v", up)
	}
	var names, phases, kinds []string
	for _, st := range pb.Steps {
		names = append(names, st.Name)
		phases = append(phases, st.Phase)
		kinds = append(kinds, st.Kind)
		if st.Timeout.Duration != 10*time.Minute {
			t.Errorf("step %s timeout %v, want ssh.command_timeout", st.Name, st.Timeout)
		}
	}
	wantNames := []string{"upload", "unpack", "activate", "check", "check-5", "run-6"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("step names %q, want %q", names, wantNames)
	}
	wantPhases := []string{"stage", "stage", "activate", "verify", "verify", "post"}
	if !reflect.DeepEqual(phases, wantPhases) {
		t.Errorf("phases %q, want %q", phases, wantPhases)
	}
	if kinds[1] != StepRun || kinds[5] != StepRun {
		t.Errorf("kinds %q", kinds)
	}
	if got := len(pb.StepsIn(PhaseStage)); got != 2 {
		t.Errorf("StepsIn(stage) = %d steps, want 2", got)
	}
	if cfg.LockTTL.Duration != 2*time.Minute {
		t.Errorf("lock_ttl default %v, want 2m", cfg.LockTTL)
	}
	type rollbackStep struct {
		Name, Kind, Phase string
		Timeout           time.Duration
	}
	var gotRollback []rollbackStep
	for _, st := range pb.RollbackSteps() {
		gotRollback = append(gotRollback, rollbackStep{st.Name, st.Kind, st.Phase, st.Timeout.Duration})
	}
	wantRollback := []rollbackStep{
		{"restart", StepRun, "", 10 * time.Minute},
		{"rollback-2", StepRun, "", 30 * time.Second}, // n counts [[rollback.steps]] entries, 1-based
		{"rollback-3", StepRun, "", 10 * time.Minute},
	}
	if !reflect.DeepEqual(gotRollback, wantRollback) {
		t.Errorf("rollback steps %+v, want %+v", gotRollback, wantRollback)
	}
	if pb.Rollback.Requires != nil {
		t.Errorf("requires default %q, want none", pb.Rollback.Requires)
	}
}

func TestLockTTLSet(t *testing.T) {
	writeProject(t, map[string]string{
		"relctl.toml":        strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\nlock_ttl = \"10s\"", 1),
		"playbooks/web.toml": goodPlaybook,
	})
	p, err := Load("relctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Config.LockTTL.Duration; got != 10*time.Second {
		t.Errorf("lock_ttl %v, want the minimum, 10s, kept", got)
	}
	if steps := p.Playbooks["web"].RollbackSteps(); len(steps) != 0 {
		t.Errorf("no [rollback]: RollbackSteps() = %d steps, want 0", len(steps))
	}
}

func TestExampleRollback(t *testing.T) {
	p := loadExample(t)
	pb := p.Playbooks["web"]
	env, err := p.Environment("production")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"bin/restart", "bin/search"}; !reflect.DeepEqual(pb.Rollback.Requires, want) {
		t.Errorf("requires %q, want %q", pb.Rollback.Requires, want)
	}
	d, err := p.Data(pb, env, env.Hosts[0], "1.3.0", "run-43")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range pb.RollbackSteps() {
		run, err := RenderCommand(s.Name, s.Run, d)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s.Name+": "+run)
	}
	want := []string{
		"restart: '/srv/search/current'/bin/restart 'search'",
		`rollback-2: printf '%s rollback\n' '1.3.0' >> '/srv/search'/deployed.log`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rollback steps render\n%q\nwant\n%q", got, want)
	}
}

func TestTargetsVarsAndData(t *testing.T) {
	p := loadExample(t)
	pb := p.Playbooks["web"]
	env, err := p.Environment("production")
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, h := range pb.TargetHosts(env) {
		targets = append(targets, h.Name)
	}
	if want := []string{"web-1", "web-2", "web-3"}; !reflect.DeepEqual(targets, want) {
		t.Errorf("TargetHosts = %q, want %q", targets, want)
	}

	d, err := p.Data(pb, env, env.Hosts[1], "1.4.0", "run-42")
	if err != nil {
		t.Fatal(err)
	}
	want := &TemplateData{
		Project: "search", Env: "production", Playbook: "web", Version: "1.4.0", RunID: "run-42",
		Host: HostData{Name: "web-2", Address: "127.0.0.1:22012", Roles: []string{"web"}},
		// playbook vars < environment vars < host vars
		Vars:         map[string]string{"service": "search", "health_path": "/healthz", "base_dir": "/srv/search", "port": "8081"},
		BaseDir:      "/srv/search",
		ReleasesDir:  "/srv/search/releases",
		ReleaseDir:   "/srv/search/releases/1.4.0",
		CurrentDir:   "/srv/search/current",
		Artifact:     "/srv/search/releases/1.4.0/search-1.4.0.tar.gz",
		ArtifactName: "search-1.4.0.tar.gz",
		Secrets:      map[string]Secret{"db_password": {name: "db_password"}, "api_token": {name: "api_token"}, "license": {name: "license"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Data =\n%+v\nwant\n%+v", d, want)
	}
	local, err := pb.ArtifactPath(p.Config, d)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("examples/artifacts/search-1.4.0.tar.gz")
	if local != abs {
		t.Errorf("ArtifactPath = %q, want %q", local, abs)
	}
	run, err := RenderCommand("unpack", pb.Steps[2].Run, d)
	if err != nil {
		t.Fatal(err)
	}
	if want := "tar -xzf '/srv/search/releases/1.4.0/search-1.4.0.tar.gz' -C '/srv/search/releases/1.4.0'"; run != want {
		t.Errorf("unpack renders %q, want %q", run, want)
	}
	url, err := RenderText("health", pb.Checks["health"].URL, d)
	if err != nil || url != "http://127.0.0.1:8081/healthz" {
		t.Errorf("health url %q, %v", url, err)
	}

	for _, bad := range []string{"", "../etc", "1.0/x", "1..0"} {
		if _, err := p.Data(pb, env, env.Hosts[0], bad, "r"); err == nil {
			t.Errorf("Data accepted version %q", bad)
		}
	}
}

func TestProjectLookups(t *testing.T) {
	p := loadExample(t)
	tests := []struct {
		env     string
		want    []string
		wantErr string
	}{
		{env: "staging", want: []string{"web"}},
		{env: "production", want: []string{"web"}},
		{env: "prod", wantErr: `unknown environment "prod" (known: production, staging)`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			pbs, err := p.PlaybooksFor(tt.env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			var got []string
			for _, pb := range pbs {
				got = append(got, pb.Name)
			}
			if !reflect.DeepEqual(got, tt.want) || err != nil {
				t.Errorf("PlaybooksFor = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestWhere(t *testing.T) {
	p := loadExample(t)
	pb := p.Playbooks["web"]
	tests := []struct {
		where func(string) string
		key   string
		want  string
	}{
		{pb.Where, "steps.2.run", "examples/playbooks/web.toml:81:1"},
		{pb.Where, "steps.2", "examples/playbooks/web.toml:78:3"},
		{pb.Where, "checks.health.url", "examples/playbooks/web.toml:51:1"},
		{pb.Where, "strategy.batch_size", "examples/playbooks/web.toml:29:1"},
		{pb.Where, "steps.1.name", "examples/playbooks/web.toml:75:3"}, // defaulted: the [[steps]] entry
		{pb.Where, "nothing", "examples/playbooks/web.toml"},
		{pb.Where, "rollback.requires.1", "examples/playbooks/web.toml:110:28"},
		{pb.Where, "rollback.steps.1.run", "examples/playbooks/web.toml:118:1"},
		{pb.Where, "rollback.steps.1.name", "examples/playbooks/web.toml:117:3"}, // defaulted: the [[rollback.steps]] entry
		{p.Config.Where, "environments.production.hosts.1.address", "examples/relctl.toml:86:1"},
		{p.Config.Where, "environments.production.hosts.1.vars.port", "examples/relctl.toml:89:10"},
		{p.Config.Where, "playbooks.0", "examples/relctl.toml:17:14"},
		{p.Config.Where, "lock_ttl", "examples/relctl.toml:13:1"},
	}
	for _, tt := range tests {
		if got := tt.where(tt.key); got != tt.want {
			t.Errorf("Where(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestResolvePath(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home directory")
	}
	c := &Config{Dir: "/etc/relctl"}
	tests := map[string]string{
		"":                   "",
		"keys/id":            "/etc/relctl/keys/id",
		"/abs/../x":          "/x",
		"~/.ssh/known_hosts": filepath.Join(home, ".ssh/known_hosts"),
	}
	for in, want := range tests {
		if got := c.ResolvePath(in); got != want {
			t.Errorf("ResolvePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateNames(t *testing.T) {
	tests := []struct {
		fn   func(string) error
		in   string
		want string // "" means valid
	}{
		{ValidateVersion, "1.4.0", ""},
		{ValidateVersion, "v2.0.0-rc.1+build_7", ""},
		{ValidateVersion, "", "version is empty"},
		{ValidateVersion, "-1", `version "-1" must start with a letter or digit`},
		{ValidateVersion, "1.0/../x", `version "1.0/../x" contains '/'; use only letters, digits, '.', '_', '+' and '-'`},
		{ValidateVersion, "1..0", `version "1..0" must not contain ".."`},
		{ValidateVersion, "1 0", `version "1 0" contains ' '; use only letters, digits, '.', '_', '+' and '-'`},
		{ValidateVersion, strings.Repeat("a", 129), `version "` + strings.Repeat("a", 129) + `" is too long (129 characters, at most 128)`},
		{ValidateHostName, "web-1.dc2", ""},
		{ValidateHostName, "web;rm", `host name "web;rm" contains ';'; use only letters, digits, '.', '_' and '-'`},
		{ValidateHostName, ".hidden", `host name ".hidden" must start with a letter or digit`},
	}
	for _, tt := range tests {
		err := tt.fn(tt.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}
