package deploy_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
)

// forcedStep is the name (and kind) of the step a rehearsal injects, as
// reports and `relctl plan` show it.
const forcedStep = "forced-failure"

// rehearsalPlan is a five-host plan in batches of 1 (canary), 2 and 2, so the
// last batch has more than one host and two batches come before it.
func rehearsalPlan(t *testing.T, playbook string) *deploy.Plan {
	t.Helper()
	proj := project{hosts: 5, strategy: "canary = 1\nbatch_size = 2", artifacts: []string{"1.1.0"}, playbook: playbook}.load(t)
	p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "production", Version: "1.1.0", RunID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.Batches); got != 3 || len(p.Batches[2].Hosts) != 2 {
		t.Fatalf("test plan has %d batches; want 3, the last with 2 hosts", got)
	}
	return p
}

func stepIDs(hp *deploy.HostPlan) []string {
	ids := make([]string, len(hp.Steps))
	for i, s := range hp.Steps {
		ids[i] = s.ID()
	}
	return ids
}

func TestParseFailPoints(t *testing.T) {
	p := rehearsalPlan(t, "")
	tests := []struct {
		spec string
		want []deploy.FailPoint
		// wantErr: every string must appear in the bad-input error.
		wantErr []string
	}{
		{"", []deploy.FailPoint{{Phase: playbooks.PhaseCutover}}, nil},
		{"cutover", []deploy.FailPoint{{Phase: playbooks.PhaseCutover}}, nil},
		{"all", []deploy.FailPoint{{Phase: "stage"}, {Phase: "activate"}, {Phase: "verify"}, {Phase: "cutover"}}, nil},
		{"stage", []deploy.FailPoint{{Phase: "stage"}}, nil},
		{"verify", []deploy.FailPoint{{Phase: "verify"}}, nil},
		{"post", []deploy.FailPoint{{Phase: "post"}}, nil},
		{"activate/restart", []deploy.FailPoint{{Phase: "activate", Step: "activate/restart"}}, nil},
		{"post/notify", []deploy.FailPoint{{Phase: "post", Step: "post/notify"}}, nil},
		{"preflight", nil, []string{"--fail-at preflight", "no rollback to rehearse"}},
		{"nope", nil, []string{
			`--fail-at "nope" is neither a phase (stage, activate, verify, cutover, post)`,
			"a step of playbook search (stage/upload, stage/unpack, activate/activate, activate/restart, verify/health, post/notify, post/prune)",
		}},
		// A preflight step changes nothing, so it is not offered either.
		{"preflight/disk", nil, []string{`--fail-at "preflight/disk" is neither`, "(stage/upload, stage/unpack,"}},
		{"restart", nil, []string{`--fail-at "restart" is neither`}},
		{"Cutover", nil, []string{`--fail-at "Cutover" is neither`}},
	}
	for _, tt := range tests {
		name := tt.spec
		if name == "" {
			name = "empty means the end of cutover"
		}
		t.Run(name, func(t *testing.T) {
			got, err := deploy.ParseFailPoints(p, tt.spec)
			if tt.wantErr != nil {
				if !errors.Is(err, deploy.ErrBadInput) {
					t.Fatalf("ParseFailPoints(%q) = %v, %v; want a bad-input error", tt.spec, got, err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				// The spec itself may be a preflight step; the offered list must not.
				if strings.Contains(strings.ReplaceAll(err.Error(), tt.spec, ""), "preflight/") {
					t.Errorf("error %q offers a preflight step as a fail point", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFailPoints(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseFailPoints(%q) = %+v; want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestFailPointString(t *testing.T) {
	for at, want := range map[deploy.FailPoint]string{
		{Phase: "cutover"}: "end of cutover",
		{Phase: "activate", Step: "activate/restart"}: "after activate/restart",
	} {
		if got := at.String(); got != want {
			t.Errorf("%+v.String() = %q; want %q", at, got, want)
		}
	}
}

// withCutoverSteps is the search playbook with two cutover steps of its own.
func withCutoverSteps(t *testing.T) string {
	t.Helper()
	pb := strings.Replace(fmt.Sprintf(searchPlaybook, "canary = 1\nbatch_size = 2"), "\n[rollback]\n", `
[[steps]]
phase = "cutover"
name = "lb-enable"
run = "true"

[[steps]]
phase = "cutover"
name = "dns"
run = "true"

[rollback]
`, 1)
	if !strings.Contains(pb, `name = "dns"`) {
		t.Fatal("could not add cutover steps to the test playbook")
	}
	return pb
}

func TestInjectFailure(t *testing.T) {
	tests := []struct {
		name     string
		playbook string // "" is searchPlaybook, which has no cutover steps
		at       deploy.FailPoint
		// want is the last batch's step list; the forced step shows as <phase>/forced-failure.
		want []string
	}{
		{
			name: "end of stage",
			at:   deploy.FailPoint{Phase: "stage"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack", "stage/forced-failure",
				"activate/activate", "activate/restart", "verify/health", "post/notify", "post/prune"},
		},
		{
			name: "end of activate",
			at:   deploy.FailPoint{Phase: "activate"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack",
				"activate/activate", "activate/restart", "activate/forced-failure", "verify/health", "post/notify", "post/prune"},
		},
		{
			name: "end of verify",
			at:   deploy.FailPoint{Phase: "verify"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack",
				"activate/activate", "activate/restart", "verify/health", "verify/forced-failure", "post/notify", "post/prune"},
		},
		{
			name: "end of cutover, a phase without steps of its own: before the first post step",
			at:   deploy.FailPoint{Phase: "cutover"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack",
				"activate/activate", "activate/restart", "verify/health", "cutover/forced-failure", "post/notify", "post/prune"},
		},
		{
			name:     "end of cutover after its own steps",
			playbook: "cutover",
			at:       deploy.FailPoint{Phase: "cutover"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack",
				"activate/activate", "activate/restart", "verify/health", "cutover/lb-enable", "cutover/dns", "cutover/forced-failure", "post/notify", "post/prune"},
		},
		{
			name: "end of post: the very last step",
			at:   deploy.FailPoint{Phase: "post"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack",
				"activate/activate", "activate/restart", "verify/health", "post/notify", "post/prune", "post/forced-failure"},
		},
		{
			name: "after a named step, not at the end of its phase",
			at:   deploy.FailPoint{Phase: "activate", Step: "activate/activate"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack",
				"activate/activate", "activate/forced-failure", "activate/restart", "verify/health", "post/notify", "post/prune"},
		},
		{
			name:     "after the first of two cutover steps",
			playbook: "cutover",
			at:       deploy.FailPoint{Phase: "cutover", Step: "cutover/lb-enable"},
			want: []string{"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "stage/upload", "stage/unpack",
				"activate/activate", "activate/restart", "verify/health", "cutover/lb-enable", "cutover/forced-failure", "cutover/dns", "post/notify", "post/prune"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := ""
			if tt.playbook == "cutover" {
				pb = withCutoverSteps(t)
			}
			before := rehearsalPlan(t, pb)
			p := rehearsalPlan(t, pb)
			if err := p.InjectFailure(tt.at); err != nil {
				t.Fatalf("InjectFailure(%+v): %v", tt.at, err)
			}
			last := len(p.Batches) - 1
			for bi, b := range p.Batches {
				for hi, hp := range b.Hosts {
					got := stepIDs(hp)
					orig := stepIDs(before.Batches[bi].Hosts[hi])
					if bi < last {
						if !reflect.DeepEqual(got, orig) {
							t.Errorf("batch %d host %s changed:\n got %v\nwant %v", b.Index, hp.Name, got, orig)
						}
						continue
					}
					if !reflect.DeepEqual(got, tt.want) {
						t.Errorf("last batch host %s:\n got %v\nwant %v", hp.Name, got, tt.want)
					}
					if len(got) != len(orig)+1 {
						t.Errorf("last batch host %s has %d steps; want %d (one more than planned)", hp.Name, len(got), len(orig)+1)
					}
					i := slices.IndexFunc(hp.Steps, func(s *deploy.Step) bool { return s.Name == forcedStep })
					if i < 0 {
						continue
					}
					s := hp.Steps[i]
					if s.Kind != forcedStep || s.Phase != tt.at.Phase || s.Action == nil || !strings.Contains(s.Describe, tt.at.String()) {
						t.Errorf("forced step on %s: %+v; want kind %s, phase %s, an action, describing %q", hp.Name, s, forcedStep, tt.at.Phase, tt.at.String())
					}
				}
			}
		})
	}
}

// Each host of the last batch gets its own forced step: a run reports it per host.
func TestInjectFailureOneStepPerHost(t *testing.T) {
	p := rehearsalPlan(t, "")
	if err := p.InjectFailure(deploy.DefaultFailPoint); err != nil {
		t.Fatal(err)
	}
	var forced []*deploy.Step
	for _, hp := range p.Hosts() {
		for _, s := range hp.Steps {
			if s.Name == forcedStep {
				forced = append(forced, s)
			}
		}
	}
	if len(forced) != 2 || forced[0] == forced[1] {
		t.Fatalf("forced steps in the plan: %d (distinct: %v); want one per last-batch host, 2", len(forced), len(forced) == 2 && forced[0] != forced[1])
	}
	_, err := forced[0].Action.Do(t.Context(), nil)
	if !errors.Is(err, deploy.ErrForcedFailure) || !strings.Contains(err.Error(), "end of cutover") {
		t.Errorf("forced step's action returned %v; want ErrForcedFailure naming the end of cutover", err)
	}
}

func TestInjectFailureRefuses(t *testing.T) {
	tests := []struct {
		name    string
		at      deploy.FailPoint
		wantErr string
	}{
		{"preflight", deploy.FailPoint{Phase: "preflight"}, `cannot fail at phase "preflight"`},
		{"unknown phase", deploy.FailPoint{Phase: "deploy"}, `cannot fail at phase "deploy"`},
		{"no phase", deploy.FailPoint{}, `cannot fail at phase ""`},
		{"unknown step", deploy.FailPoint{Phase: "activate", Step: "activate/reboot"}, "has no step activate/reboot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rehearsalPlan(t, "")
			err := p.InjectFailure(tt.at)
			if !errors.Is(err, deploy.ErrBadInput) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("InjectFailure(%+v) = %v; want bad input saying %q", tt.at, err, tt.wantErr)
			}
		})
	}
	if err := (&deploy.Plan{}).InjectFailure(deploy.DefaultFailPoint); !errors.Is(err, deploy.ErrBadInput) {
		t.Errorf("InjectFailure on a plan without hosts = %v; want bad input", err)
	}
}

func TestForcedFailureOnly(t *testing.T) {
	step := func(id, kind, status string) *deploy.StepResult {
		phase, name, _ := strings.Cut(id, "/")
		return &deploy.StepResult{Phase: phase, Name: name, Kind: kind, Status: status}
	}
	ok := func(id string) *deploy.StepResult { return step(id, "run", deploy.StatusOK) }
	forced := step("cutover/"+forcedStep, forcedStep, deploy.StatusFailed)
	hostWith := func(name string, steps ...*deploy.StepResult) *deploy.HostReport {
		return &deploy.HostReport{Name: name, Steps: steps}
	}
	tests := []struct {
		name  string
		hosts []*deploy.HostReport
		want  bool
	}{
		{"no host", nil, false},
		{"nothing failed: the forced failure never ran", []*deploy.HostReport{hostWith("a", ok("stage/unpack"), ok("post/notify"))}, false},
		{"only the forced step failed", []*deploy.HostReport{
			hostWith("a", ok("stage/unpack"), ok("verify/health")),
			hostWith("b", ok("stage/unpack"), ok("verify/health"), forced),
		}, true},
		{"forced on every last-batch host, skipped steps after it", []*deploy.HostReport{
			hostWith("a", ok("verify/health"), forced, step("post/notify", "run", deploy.StatusSkipped)),
			hostWith("b", ok("verify/health"), forced, step("post/notify", "run", deploy.StatusSkipped)),
		}, true},
		{"a real step failed on another host too", []*deploy.HostReport{
			hostWith("a", ok("stage/unpack"), step("verify/health", "check", deploy.StatusFailed)),
			hostWith("b", forced),
		}, false},
		{"a real step failed before the fail point on the same host", []*deploy.HostReport{
			hostWith("a", step("activate/restart", "run", deploy.StatusFailed), forced),
		}, false},
		{"only a real step failed", []*deploy.HostReport{hostWith("a", step("stage/unpack", "run", deploy.StatusFailed))}, false},
		{"a real step that happens to be named forced-failure", []*deploy.HostReport{
			hostWith("a", step("stage/"+forcedStep, "run", deploy.StatusFailed)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &deploy.Report{Hosts: tt.hosts}
			if got := r.ForcedFailureOnly(); got != tt.want {
				t.Errorf("ForcedFailureOnly() = %v; want %v", got, tt.want)
			}
		})
	}
}
