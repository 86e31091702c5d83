package deploy_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/relctl/relctl/deploy"
)

// watchdogPlaybook is the search playbook with a [watchdog] of kind.
func watchdogPlaybook(kind string) string {
	control := `control_file = "/etc/monit/monitrc"` + "\n"
	if kind == "systemd" {
		control = ""
	}
	return fmt.Sprintf(searchPlaybook, "canary = 1") + fmt.Sprintf(`
[watchdog]
kind = %q
snippet = "monit/search.monitrc"
install_path = "/etc/monit/conf.d/search-{{.Vars.port}}.monitrc"
%sservice = "search"
`, kind, control)
}

// With monit, relctl's own restart (activate/restart) runs while monit
// leaves the service alone: watchdog-unmonitor opens the activate phase,
// watchdog-install (which monitors it again) closes it. systemd restarts the
// service itself: nothing to unmonitor.
func TestWatchdogUnmonitorDeploySteps(t *testing.T) {
	tests := []struct {
		kind string
		want []string
	}{
		{"monit", []string{
			"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "preflight/watchdog-precheck",
			"stage/upload", "stage/unpack", "stage/watchdog-check",
			"activate/watchdog-unmonitor", "activate/activate", "activate/restart", "activate/watchdog-install",
			"verify/health", "post/notify", "post/prune",
		}},
		{"systemd", []string{
			"preflight/base-dir", "preflight/disk", "preflight/rollback-ready", "preflight/watchdog-precheck",
			"stage/upload", "stage/unpack", "stage/watchdog-check",
			"activate/activate", "activate/restart", "activate/watchdog-install",
			"verify/health", "post/notify", "post/prune",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			proj := project{hosts: 2, artifacts: []string{"1.1.0"}, playbook: watchdogPlaybook(tt.kind)}.load(t)
			p, err := deploy.BuildPlan(proj, deploy.PlanOptions{Env: "production", Version: "1.1.0", RunID: "r1"})
			if err != nil {
				t.Fatal(err)
			}
			h := p.Hosts()[0]
			if got := stepIDs(h); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("steps of %s:\n got %v\nwant %v", h.Name, got, tt.want)
			}
			install := describeOf(h, "activate/watchdog-install")
			if hands := strings.Contains(install, "monitor search, "); hands != (tt.kind == "monit") {
				t.Errorf("watchdog-install: %q; monitors search again: %v, want %v", install, hands, tt.kind == "monit")
			}
			if tt.kind == "monit" {
				want := "monit -c /etc/monit/monitrc unmonitor search (if monit knows it), wait until monit reports it Not monitored, so relctl's restart does not race monit's; watchdog-install monitors it again"
				if got := describeOf(h, "activate/watchdog-unmonitor"); got != want {
					t.Errorf("watchdog-unmonitor:\n got %q\nwant %q", got, want)
				}
			}
		})
	}
}

// relctl rollback: a host that switches is unmonitored before current moves
// and its [rollback] restart runs, and watchdog-install hands it back; a
// host already on the target may run its [rollback] steps (if unhealthy),
// so its restore is unmonitored too, and watchdog-supervised hands it back
// in either case.
func TestWatchdogUnmonitorRollbackPlan(t *testing.T) {
	proj := project{hosts: 2, playbook: watchdogPlaybook("monit")}.load(t)
	p, err := deploy.BuildRollbackPlan(proj, deploy.RollbackPlanOptions{
		Env: "production", Playbook: "search", RunID: "r1", Target: "1.0.0", From: "1.1.0",
		Current: map[string]string{"production-1": "1.1.0", "production-2": "1.0.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"production-1": {"preflight/rollback-ready", "preflight/watchdog-check",
			"activate/watchdog-unmonitor", "activate/activate", "activate/restart", "activate/watchdog-install", "verify/health"},
		"production-2": {"preflight/rollback-ready", "activate/restore-if-unhealthy", "activate/watchdog-supervised", "verify/health"},
	}
	for _, h := range p.Hosts() {
		if got := stepIDs(h); !reflect.DeepEqual(got, want[h.Name]) {
			t.Errorf("steps of %s:\n got %v\nwant %v", h.Name, got, want[h.Name])
		}
	}
	supervised := describeOf(p.Hosts()[1], "activate/watchdog-supervised")
	if want := "monit reload, monitor search, wait until monit runs search"; supervised != want {
		t.Errorf("watchdog-supervised: %q; want %q", supervised, want)
	}
}

func describeOf(h *deploy.HostPlan, id string) string {
	for _, s := range h.Steps {
		if s.ID() == id {
			return s.Describe
		}
	}
	return "(no step " + id + ")"
}
