package deploy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
)

func TestBatchSize(t *testing.T) {
	tests := []struct {
		name    string
		v       any
		total   int
		want    int
		wantErr string
		// knownBug: fails today for the reason given; skipped (with what
		// BatchSize returned) until fixed, then fails so the marker goes.
		knownBug string
	}{
		{"unset means one host at a time", nil, 10, 1, "", ""},
		{"count", int64(3), 10, 3, "", ""},
		{"count as a Go int", 3, 10, 3, "", ""},
		{"count larger than the fleet", int64(20), 4, 20, "", ""},
		{"count written as a string", "3", 10, 3, "", ""},
		{"25% of 10 rounds up", "25%", 10, 3, "", ""},
		{"25% of 4", "25%", 4, 1, "", ""},
		{"25% of 5 rounds up", "25%", 5, 2, "", ""},
		{"25% of 1 is still a host", "25%", 1, 1, "", ""},
		{"1% of 3 is still a host", "1%", 3, 1, "", ""},
		{"50% of 7 rounds up", "50%", 7, 4, "", ""},
		{"100% is every host", "100%", 7, 7, "", ""},
		{"space around a percentage", " 50% ", 4, 2, "", ""},
		{"zero", int64(0), 10, 0, "must be at least 1, got 0", ""},
		{"zero as a Go int", 0, 10, 0, "must be at least 1, got 0", ""},
		{"negative", int64(-1), 10, 0, "must be at least 1, got -1", ""},
		{"negative as a Go int", -1, 10, 0, "must be at least 1, got -1", ""},
		{"zero as a string", "0", 10, 0, "must be at least 1, got 0", ""},
		{"0%", "0%", 10, 0, `"0%": a percentage must be above 0% and at most 100%`, ""},
		{"150%", "150%", 10, 0, `"150%": a percentage must be above 0% and at most 100%`, ""},
		{"negative percentage", "-5%", 10, 0, `"-5%": a percentage must be above 0% and at most 100%`, ""},
		{"not a number", "abc", 10, 0, `"abc" is neither a count nor a percentage like "25%"`, ""},
		{"not a percentage", "abc%", 10, 0, `"abc%": a percentage must be above 0% and at most 100%`, ""},
		{"a float", 2.5, 10, 0, "must be a count or a percentage string, got float64", ""},
		{"a bool", true, 10, 0, "must be a count or a percentage string, got bool", ""},
		{"NaN%", "NaN%", 10, 0, `"NaN%": a percentage must be above 0% and at most 100%`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deploy.BatchSize(tt.v, tt.total)
			if tt.knownBug != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Skipf("known bug: %s (got %d, %v; want error %q)", tt.knownBug, got, err, tt.wantErr)
				}
				t.Fatalf("known bug fixed (%s): drop the knownBug marker", tt.knownBug)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("BatchSize(%#v, %d) = %d, %v; want error %q", tt.v, tt.total, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("BatchSize(%#v, %d) = %d, %v; want %d", tt.v, tt.total, got, err, tt.want)
			}
		})
	}
}

// project is a relctl.toml and one playbook written to a temporary
// directory, with the artifacts of the releases named in artifacts.
type project struct {
	hosts     int    // search hosts production-1..N
	strategy  string // the [strategy] table's body
	artifacts []string
	playbook  string // the playbook; default searchPlaybook
}

const searchPlaybook = `name = "search"
roles = ["search"]
keep_releases = 3

[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"

[strategy]
%s

[checks.health]
type = "http"
url = "http://127.0.0.1:{{.Vars.port}}/health"
body_contains = "{{.Version}}"

[[steps]]
phase = "preflight"
name = "base-dir"
run = "mkdir -p {{.BaseDir}} && test -w {{.BaseDir}}"

[[steps]]
phase = "stage"
kind = "upload"

[[steps]]
phase = "stage"
name = "unpack"
run = "tar -xzf {{.Artifact}} -C {{.ReleaseDir}}"

[[steps]]
phase = "activate"
kind = "activate"

[[steps]]
phase = "activate"
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"

[[steps]]
phase = "verify"
name = "health"
kind = "check"
checks = ["health"]

[[steps]]
phase = "post"
name = "notify"
run = "logger deployed {{.Version}}"

# Written last, runs in preflight: steps run by phase.
[[steps]]
phase = "preflight"
name = "disk"
run = "df -P {{.BaseDir}}"

[rollback]
requires = ["bin/start", "bin/stop"]

[[rollback.steps]]
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"
`

// write lays the project out and returns its directory.
func (p project) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("project = \"search\"\n\n[ssh]\nuser = \"relctl\"\nknown_hosts = \"known_hosts\"\n\n[environments.production]\n")
	for i := 1; i <= p.hosts; i++ {
		fmt.Fprintf(&cfg, "[[environments.production.hosts]]\nname = \"production-%d\"\naddress = \"127.0.0.1:%d\"\nroles = [\"search\"]\nvars = { base_dir = \"/srv/search-%d\", port = %d }\n", i, 2200+i, i, 8080+i)
	}
	// Not a target of the search playbook.
	cfg.WriteString("[[environments.production.hosts]]\nname = \"db-1\"\naddress = \"127.0.0.1:2299\"\nroles = [\"db\"]\n")
	body := p.playbook
	if body == "" {
		body = fmt.Sprintf(searchPlaybook, p.strategy)
	}
	files := map[string]string{"relctl.toml": cfg.String(), "playbooks/search.toml": body}
	for _, v := range p.artifacts {
		files["artifacts/search-"+v+".tar.gz"] = "artifact of release " + v + "\n"
	}
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (p project) load(t *testing.T) *playbooks.Project {
	t.Helper()
	proj, err := playbooks.Load(filepath.Join(p.write(t), "relctl.toml"))
	if err != nil {
		t.Fatalf("loading the test project:\n%v", err)
	}
	return proj
}

func TestBuildPlanBatches(t *testing.T) {
	tests := []struct {
		hosts    int
		strategy string
		// sizes of the batches, in order; the first is the canary when canary > 0.
		want   []int
		canary bool
	}{
		{1, "canary = 1\nbatch_size = 2", []int{1}, true},
		{1, "canary = 0\nbatch_size = 2", []int{1}, false},
		{1, "canary = 2\nbatch_size = 1", []int{1}, true},
		{2, "canary = 1\nbatch_size = 2", []int{1, 1}, true},
		{2, "canary = 2\nbatch_size = 1", []int{2}, true},
		{3, "canary = 1\nbatch_size = 2", []int{1, 2}, true},
		{3, "canary = 0\nbatch_size = 1", []int{1, 1, 1}, false},
		{4, "canary = 1\nbatch_size = 2", []int{1, 2, 1}, true},
		{4, "batch_size = 2", []int{1, 2, 1}, true}, // canary defaults to 1
		{4, "canary = 0", []int{1, 1, 1, 1}, false}, // batch_size defaults to 1
		{5, "canary = 2\nbatch_size = 2", []int{2, 2, 1}, true},
		{5, "canary = 1\nbatch_size = \"25%\"", []int{1, 2, 2}, true},
		{6, "canary = 1\nbatch_size = \"100%\"", []int{1, 5}, true},
		{6, "canary = 2\nbatch_size = 10", []int{2, 4}, true},
		{7, "canary = 1\nbatch_size = \"50%\"", []int{1, 4, 2}, true},
		{7, "canary = 2\nbatch_size = 3", []int{2, 3, 2}, true},
		{7, "canary = 0\nbatch_size = \"100%\"", []int{7}, false},
		{7, "canary = 0\nbatch_size = 1", []int{1, 1, 1, 1, 1, 1, 1}, false},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%d hosts, %s", tt.hosts, strings.ReplaceAll(tt.strategy, "\n", ", "))
		t.Run(name, func(t *testing.T) {
			proj := project{hosts: tt.hosts, strategy: tt.strategy, artifacts: []string{"1.1.0"}}.load(t)
			p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "production", Version: "1.1.0", RunID: "r1"})
			if err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var order []string
			for i, b := range p.Batches {
				sizes = append(sizes, len(b.Hosts))
				if b.Index != i+1 {
					t.Errorf("batch %d has index %d", i+1, b.Index)
				}
				if want := i == 0 && tt.canary; b.Canary != want {
					t.Errorf("batch %d canary = %v; want %v", b.Index, b.Canary, want)
				}
				for _, h := range b.Hosts {
					order = append(order, h.Name)
				}
			}
			if !reflect.DeepEqual(sizes, tt.want) {
				t.Errorf("batch sizes = %v; want %v", sizes, tt.want)
			}
			var config []string
			for i := 1; i <= tt.hosts; i++ {
				config = append(config, fmt.Sprintf("production-%d", i))
			}
			if !reflect.DeepEqual(order, config) {
				t.Errorf("hosts in batch order = %v; want every search host once, in config order %v", order, config)
			}
		})
	}
}

func TestBuildPlanHostSelection(t *testing.T) {
	proj := project{hosts: 5, strategy: "canary = 1\nbatch_size = 2", artifacts: []string{"1.1.0"}}.load(t)
	tests := []struct {
		name    string
		only    []string
		batches [][]string
		wantErr string
	}{
		{"all targeted hosts, not the db host", nil, [][]string{{"production-1"}, {"production-2", "production-3"}, {"production-4", "production-5"}}, ""},
		{"a subset, in the order given", []string{"production-5", "production-2", "production-3"}, [][]string{{"production-5"}, {"production-2", "production-3"}}, ""},
		{"one host is its own canary", []string{"production-4"}, [][]string{{"production-4"}}, ""},
		{"unknown host", []string{"production-1", "production-9"}, nil, `host "production-9" is not a target of this playbook in environment production`},
		{"host of another role", []string{"db-1"}, nil, `host "db-1" is not a target of this playbook in environment production`},
		{"duplicate host", []string{"production-2", "production-3", "production-2"}, nil, `host "production-2" is listed twice in --hosts`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "production", Version: "1.1.0", Hosts: tt.only})
			if tt.wantErr != "" {
				if !errors.Is(err, deploy.ErrBadInput) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("BuildPlan(--hosts %v) error = %v; want bad input saying %q", tt.only, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for _, b := range p.Batches {
				var names []string
				for _, h := range b.Hosts {
					names = append(names, h.Name)
				}
				got = append(got, names)
			}
			if !reflect.DeepEqual(got, tt.batches) {
				t.Errorf("batches = %v; want %v", got, tt.batches)
			}
		})
	}
}

func TestBuildPlanRefuses(t *testing.T) {
	dir := project{hosts: 2, strategy: "canary = 1", artifacts: []string{"1.1.0"}}.write(t)
	proj, err := playbooks.Load(filepath.Join(dir, "relctl.toml"))
	if err != nil {
		t.Fatal(err)
	}
	pbPath := filepath.Join(dir, "playbooks", "search.toml")
	tests := []struct {
		name string
		opts deploy.PlanOptions
		want []string
	}{
		{"version with a command in it", deploy.PlanOptions{Env: "production", Version: "1.0;rm -rf ~"}, []string{`release "1.0;rm -rf ~": version "1.0;rm -rf ~" contains ';'`}},
		{"version with a command substitution", deploy.PlanOptions{Env: "production", Version: "1.0$(id)"}, []string{`contains '$'`}},
		{"version climbing out of releases/", deploy.PlanOptions{Env: "production", Version: "1..0"}, []string{`version "1..0" must not contain ".."`}},
		{"version that is a path", deploy.PlanOptions{Env: "production", Version: "../../etc"}, []string{`must start with a letter or digit`}},
		{"version with a newline", deploy.PlanOptions{Env: "production", Version: "1.0\nid"}, []string{`contains '\n'`}},
		{"empty version", deploy.PlanOptions{Env: "production", Version: ""}, []string{`version is empty`}},
		{"unknown environment", deploy.PlanOptions{Env: "staging", Version: "1.1.0"}, []string{`unknown environment "staging" (known: production)`}},
		{"unknown playbook", deploy.PlanOptions{Env: "production", Version: "1.1.0", Playbook: "web"}, []string{`playbook "web" does not apply to environment production (it has: search)`}},
		{"missing artifact", deploy.PlanOptions{Env: "production", Version: "9.9.9"}, []string{
			"artifact for release 9.9.9: open " + filepath.Join(dir, "artifacts", "search-9.9.9.tar.gz") + ": no such file or directory",
			"(from " + pbPath + ":",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := deploy.BuildPlan(proj, tt.opts)
			if !errors.Is(err, deploy.ErrBadInput) {
				t.Fatalf("BuildPlan = %v, %v; want a bad-input error", p, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestBuildPlanSteps(t *testing.T) {
	proj := project{hosts: 2, strategy: "canary = 1", artifacts: []string{"1.1.0"}}.load(t)
	p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "production", Version: "1.1.0", RunID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	content := "artifact of release 1.1.0\n"
	sum := sha256.Sum256([]byte(content))
	if p.Kind != deploy.KindDeploy || !p.AutoRollback || p.Version != "1.1.0" || p.Playbook != "search" || p.KeepReleases != 3 {
		t.Errorf("plan header: kind %q auto_rollback %v release %q playbook %q keep %d", p.Kind, p.AutoRollback, p.Version, p.Playbook, p.KeepReleases)
	}
	if p.Artifact.Name != "search-1.1.0.tar.gz" || p.Artifact.SHA256 != hex.EncodeToString(sum[:]) || p.Artifact.Size != int64(len(content)) {
		t.Errorf("artifact = %+v; want search-1.1.0.tar.gz, %d bytes, sha256 %x", p.Artifact, len(content), sum)
	}
	want, err := deploy.ReleaseDigest(proj.Playbooks["search"], "1.1.0", p.Artifact.SHA256)
	if err != nil || p.Digest != want {
		t.Errorf("plan digest %q; ReleaseDigest = %q, %v", p.Digest, want, err)
	}
	h := p.Hosts()[1]
	var ids []string
	describe := map[string]string{}
	for _, s := range h.Steps {
		ids = append(ids, s.ID())
		describe[s.ID()] = s.Describe
	}
	wantIDs := []string{
		"preflight/base-dir", "preflight/disk", "preflight/rollback-ready",
		"stage/upload", "stage/unpack",
		"activate/activate", "activate/restart",
		"verify/health",
		"post/notify", "post/prune",
	}
	if !reflect.DeepEqual(ids, wantIDs) {
		t.Errorf("steps of %s:\n got %v\nwant %v", h.Name, ids, wantIDs)
	}
	for id, want := range map[string]string{
		"preflight/rollback-ready": "check the current release can be rolled back to: its directory and artifact sha256 match history; bin/start, bin/stop present",
		"stage/unpack":             "run: tar -xzf '/srv/search-2/releases/1.1.0/search-1.1.0.tar.gz' -C '/srv/search-2/releases/1.1.0'",
		"activate/activate":        "switch /srv/search-2/current -> releases/1.1.0 atomically; append to .relctl/history.json",
		"post/notify":              "run: logger deployed '1.1.0'",
		"post/prune":               "keep at most 3 releases (never the current, the previous or a rollback target)",
	} {
		if describe[id] != want {
			t.Errorf("%s %s:\n got %q\nwant %q", h.Name, id, describe[id], want)
		}
	}
}

func TestBuildPlanSkipArtifact(t *testing.T) {
	proj := project{hosts: 2, strategy: "canary = 1"}.load(t)
	p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "production", Version: "2.0.0", SkipArtifact: true})
	if err != nil {
		t.Fatalf("planning without the artifact: %v", err)
	}
	if p.Artifact.Path != "(not read)" || len(p.Hosts()) != 2 {
		t.Errorf("artifact %+v, %d hosts", p.Artifact, len(p.Hosts()))
	}
}

func TestReleaseDigest(t *testing.T) {
	const shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	const shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	base := project{hosts: 1, strategy: "canary = 1"}
	edited := project{hosts: 1, playbook: fmt.Sprintf(searchPlaybook, "canary = 1") + "# a comment is a change too\n"}
	digest := func(t *testing.T, p project, version, sha string) string {
		t.Helper()
		d, err := deploy.ReleaseDigest(p.load(t).Playbooks["search"], version, sha)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(d, "sha256:") || len(d) != len("sha256:")+64 {
			t.Errorf("digest %q is not sha256:<64 hex>", d)
		}
		return d
	}
	ref := digest(t, base, "1.1.0", shaA)
	tests := []struct {
		name    string
		p       project
		version string
		sha     string
		same    bool
	}{
		{"same inputs, another checkout of the same playbook", base, "1.1.0", shaA, true},
		{"playbook bytes changed", edited, "1.1.0", shaA, false},
		{"artifact changed", base, "1.1.0", shaB, false},
		{"version changed", base, "1.1.1", shaA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := digest(t, tt.p, tt.version, tt.sha)
			if (got == ref) != tt.same {
				t.Errorf("digest %s vs reference %s: same = %v, want %v", got, ref, got == ref, tt.same)
			}
		})
	}

	t.Run("playbook file gone", func(t *testing.T) {
		pb := base.load(t).Playbooks["search"]
		if err := os.Remove(pb.Path); err != nil {
			t.Fatal(err)
		}
		if d, err := deploy.ReleaseDigest(pb, "1.1.0", shaA); err == nil || !strings.Contains(err.Error(), "reading playbook") {
			t.Errorf("ReleaseDigest without the playbook = %q, %v; want a reading playbook error", d, err)
		}
	})
}
