package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/hostlist"
	"github.com/relctl/relctl/internal/state"
)

// bigReport is a failed deploy of 1.2.0 to 1,000 hosts: web-7's verify
// failed; every touched host was rolled back, web-500's rollback failed;
// the hosts of the last batch (601-1000) were never touched.
func bigReport() *deploy.Report {
	step := func(phase, name, status string) *deploy.StepResult {
		return &deploy.StepResult{Phase: phase, Name: name, Status: status}
	}
	rep := &deploy.Report{RunID: "20261207T000000Z-abc123", Kind: deploy.KindDeploy, Env: "production", Version: "1.2.0", RolledBack: true}
	for i := 1; i <= 1000; i++ {
		h := &deploy.HostReport{Name: fmt.Sprintf("web-%d", i), Reached: true, Before: "1.1.0", After: "1.1.0"}
		switch {
		case i > 600:
		case i == 7:
			h.Touched = true
			h.Steps = []*deploy.StepResult{step("activate", "switch", "ok"), step("verify", "health", "failed")}
			h.Rollback = &deploy.HostRollback{Healthy: true, Steps: []*deploy.StepResult{{Name: "switch back", Status: "ok"}}}
		case i == 500:
			h.Touched, h.After = true, "1.2.0"
			h.Steps = []*deploy.StepResult{step("activate", "switch", "ok"), step("verify", "health", "ok")}
			h.Rollback = &deploy.HostRollback{Error: "unreachable\nmore", Steps: []*deploy.StepResult{{Name: "switch back", Status: "failed"}}}
		default:
			h.Touched = true
			h.Steps = []*deploy.StepResult{step("activate", "switch", "ok"), step("verify", "health", "ok")}
			h.Rollback = &deploy.HostRollback{Healthy: true, Steps: []*deploy.StepResult{{Name: "switch back", Status: "ok"}}}
		}
		rep.Hosts = append(rep.Hosts, h)
	}
	return rep
}

// Past perHostMax hosts the result table has a row per outcome, with the
// failed and unresolved hosts named, and says where each host is shown.
func TestPrintReportGrouped(t *testing.T) {
	var b bytes.Buffer
	printReport(&b, bigReport())
	want := `COUNT  BEFORE  AFTER  RESULT                                         HOSTS
598    1.1.0   1.1.0  rolled back, healthy                           web-[1-6,8-499,501-600]
1      1.1.0   1.1.0  failed at verify/health, rolled back, healthy  web-7
1      1.1.0   1.2.0  ROLLBACK FAILED                                web-500
400    1.1.0   1.1.0  not changed                                    web-[601-1000]
Per host: relctl history show 20261207T000000Z-abc123
`
	if b.String() != want {
		t.Errorf("printReport:\n%s\nwant:\n%s", b.String(), want)
	}
}

// The steps per host of a large run: a line per distinct steps, every host
// whose step or rollback failed named.
func TestPrintFailureHelpGrouped(t *testing.T) {
	rep := bigReport()
	p := &deploy.Plan{Kind: deploy.KindDeploy, Env: "production", Playbook: "web", Version: "1.2.0"}
	var b bytes.Buffer
	printFailureHelp(&b, p, rep, "/state/runs/r1.log")
	want := `
Steps run per host:
  web-[1-6,8-499,501-600]: activate/switch ok, verify/health ok
  web-[1-6,8-499,501-600] rollback: switch back ok -> on 1.1.0, healthy
  web-7: activate/switch ok, verify/health failed
  web-7 rollback: switch back ok -> on 1.1.0, healthy
  web-500: activate/switch ok, verify/health ok
  web-500 rollback: switch back failed -> on 1.2.0, NOT healthy
Hosts NOT known to be back on their previous release and healthy: web-500
  web-500: on 1.2.0: unreachable
Next: relctl status --env production
Then: relctl rollback --env production --playbook web --to 1.1.0 --hosts web-500
Run log: /state/runs/r1.log
`
	if b.String() != want {
		t.Errorf("printFailureHelp:\n%s\nwant:\n%s", b.String(), want)
	}
}

// Hosts whose names do not fold: the successes are cut at LineMax, every
// failed host is still named.
func TestPrintReportGroupedUnfoldable(t *testing.T) {
	rep := &deploy.Report{RunID: "r1", Kind: deploy.KindDeploy, Env: "production", Version: "1.2.0"}
	var failed []string
	for i := range 1000 {
		h := &deploy.HostReport{Name: fmt.Sprintf("node-%03x.example", (i*7919)%4096), Reached: true, Before: "1.1.0", After: "1.2.0",
			Touched: true, Steps: []*deploy.StepResult{{Phase: "activate", Name: "switch", Status: "ok"}}}
		if i%100 == 3 {
			h.After = "1.1.0"
			h.Steps[0].Status = deploy.StatusFailed
			failed = append(failed, h.Name)
		}
		rep.Hosts = append(rep.Hosts, h)
	}
	var b bytes.Buffer
	printReport(&b, rep)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("printReport: %d lines, want a heading, 2 rows and the history line:\n%s", len(lines), b.String())
	}
	ok := strings.Fields(lines[1])
	if ok[0] != "990" || ok[3] != "ok" || !strings.HasSuffix(lines[1], " more") ||
		utf8.RuneCountInString(strings.Join(ok[4:len(ok)-4], " ")) > hostlist.LineMax {
		t.Errorf("ok row: %q, want 990 hosts, cut at %d runes", lines[1], hostlist.LineMax)
	}
	if !strings.HasPrefix(lines[2], "10   ") || !strings.HasSuffix(lines[2], "  "+hostlist.Compress(failed)) {
		t.Errorf("failed row: %q, want every failed host: %s", lines[2], hostlist.Compress(failed))
	}
}

// The progress lines that list hosts fold them; every host not locked and
// every stale lock taken over is named, one line per reason.
func TestProgressHostLines(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, "/state/runs/r1.log")
	var hosts []*deploy.HostPlan
	var names []string
	for i := 1; i <= 1000; i++ {
		hosts = append(hosts, &deploy.HostPlan{Name: fmt.Sprintf("web-%02d", i)})
		names = append(names, fmt.Sprintf("web-%02d", i))
	}
	plan := &deploy.Plan{Batches: []*deploy.Batch{{Index: 1, Canary: true, Hosts: hosts[:1]}, {Index: 2, Hosts: hosts[1:]}}}
	p.observe(deploy.Event{Kind: deploy.BatchStarted, Plan: plan, Batch: plan.Batches[0]})
	p.observe(deploy.Event{Kind: deploy.BatchStarted, Plan: plan, Batch: plan.Batches[1]})
	owner := &state.LockOwner{RunID: "r0", Command: "deploy", Operator: "ci", Controller: "ci-1", PID: 7, Heartbeat: time.Now().Add(-time.Hour)}
	var locks []state.HostLockState
	for i, n := range names[:30] {
		l := state.HostLockState{Host: n, Owner: owner, Stale: true, StaleReason: "no heartbeat"}
		if i%10 == 9 {
			l = state.HostLockState{Host: n, Err: "not reachable: connection refused"}
		}
		locks = append(locks, l)
	}
	p.observe(deploy.Event{Kind: deploy.LocksTaken, Plan: plan, Locks: locks})
	p.observe(deploy.Event{Kind: deploy.RollbackStarted, Plan: plan, Hosts: names[:600]})
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []string{
		"Batch 1/2 (canary): web-01",
		"Batch 2/2: web-[02-99], web-[100-1000]",
		"Took over the stale lock on web-[01-09,11-19,21-29]: " + describeOwner(locks[0]),
		"Not locked: web-[10,20,30] not reachable: connection refused",
		"Rolling back 600 touched hosts: web-[01-99], web-[100-600]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
