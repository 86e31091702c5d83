package main

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Every run reads the project first, through its options: a project that
// cannot be read stops it before it opens a session or writes a thing.
func TestRunsStopAtTheProject(t *testing.T) {
	errNoProject := errors.New("no project")
	var out, errOut bytes.Buffer
	io := output.Test(nil, &out, &errOut)
	project := func() (*playbooks.Project, error) { return nil, errNoProject }
	open := func(*playbooks.Config, string, bool) (*session, error) {
		t.Fatal("a session was opened")
		return nil, nil
	}
	ctx := context.Background()
	runs := map[string]func() error{
		"deploy":   func() error { return deployRun(ctx, &DeployOptions{IO: io, Project: project, OpenSession: open}) },
		"rollback": func() error { return rollbackRun(ctx, &RollbackOptions{IO: io, Project: project, OpenSession: open}) },
		"rehearse": func() error { return rehearseRun(ctx, &RehearseOptions{IO: io, Project: project, OpenSession: open}) },
		"finalize": func() error { return finalizeRun(ctx, &FinalizeOptions{IO: io, Project: project, OpenSession: open}) },
		"plan":     func() error { return planRun(&PlanOptions{IO: io, Project: project}) },
		"validate": func() error { return validateRun(&ValidateOptions{IO: io, Project: project}) },
		"status":   func() error { return statusRun(ctx, &StatusOptions{IO: io, Project: project, OpenSession: open}) },
		"check":    func() error { return checkRun(ctx, &CheckOptions{IO: io, Project: project, OpenSession: open}) },
		"history":  func() error { return historyRun(ctx, &HistoryOptions{IO: io, Project: project, OpenSession: open}) },
		"history show": func() error {
			return historyShowRun(ctx, &HistoryShowOptions{IO: io, Project: project, OpenSession: open})
		},
		"unlock": func() error { return unlockRun(ctx, &UnlockOptions{IO: io, Project: project, OpenSession: open}) },
		"parity": func() error { return parityRun(ctx, &ParityOptions{IO: io, Project: project, OpenSession: open}) },
	}
	for name, run := range runs {
		t.Run(name, func(t *testing.T) {
			out.Reset()
			errOut.Reset()
			if err := run(); !errors.Is(err, errNoProject) {
				t.Errorf("error %v, want the project's", err)
			}
			if out.Len()+errOut.Len() > 0 {
				t.Errorf("wrote stdout %q, stderr %q", out.String(), errOut.String())
			}
		})
	}
}

// validate prints one line on stdout: the config and what it holds.
func TestValidateRunPrints(t *testing.T) {
	var out, errOut bytes.Buffer
	opts := &ValidateOptions{IO: output.Test(nil, &out, &errOut),
		Project: func() (*playbooks.Project, error) { return playbooks.Load("../../playbooks/examples/relctl.toml") }}
	if err := validateRun(opts); err != nil {
		t.Fatal(err)
	}
	if want := "../../playbooks/examples/relctl.toml: ok (2 environments, 1 playbook, 4 host targets)\n"; out.String() != want || errOut.Len() > 0 {
		t.Errorf("stdout %q, stderr %q; want stdout %q", out.String(), errOut.String(), want)
	}
}

// After a failed run whose rollback left hosts behind, the help names them,
// why, and the rollback that finishes the job per release they ran before.
func TestPrintFailureHelpUnresolved(t *testing.T) {
	step := func(phase, name, status string) *deploy.StepResult {
		return &deploy.StepResult{Phase: phase, Name: name, Status: status}
	}
	rep := &deploy.Report{Kind: deploy.KindDeploy, Env: "production", Version: "1.2.0", RolledBack: true, Hosts: []*deploy.HostReport{
		{Name: "web-1", Before: "1.1.0", After: "1.1.0", Touched: true, Steps: []*deploy.StepResult{step("activate", "switch", "ok")},
			Rollback: &deploy.HostRollback{Healthy: true, Steps: []*deploy.StepResult{{Name: "switch back", Status: "ok"}}}},
		{Name: "web-2", Before: "1.1.0", After: "1.2.0", Touched: true, Steps: []*deploy.StepResult{step("activate", "switch", "ok"), step("verify", "health", "failed")},
			Rollback: &deploy.HostRollback{Error: "unreachable\nmore", Steps: []*deploy.StepResult{{Name: "switch back", Status: "failed"}}}},
		{Name: "web-3", Before: "1.0.0", After: "1.2.0", Touched: true, Steps: []*deploy.StepResult{step("activate", "switch", "ok")}},
		{Name: "web-4", Before: "1.1.0", After: "1.1.0"},
	}}
	p := &deploy.Plan{Kind: deploy.KindDeploy, Env: "production", Playbook: "web", Version: "1.2.0"}
	var b bytes.Buffer
	printFailureHelp(&b, p, rep, "/state/runs/r1.log")
	want := `
Steps run per host:
  web-1: activate/switch ok
  web-1 rollback: switch back ok -> on 1.1.0, healthy
  web-2: activate/switch ok, verify/health failed
  web-2 rollback: switch back failed -> on 1.2.0, NOT healthy
  web-3: activate/switch ok
Hosts NOT known to be back on their previous release and healthy: web-[2-3]
  web-2: on 1.2.0: unreachable
  web-3: on 1.2.0
Next: relctl status --env production
Then: relctl rollback --env production --playbook web --to 1.1.0 --hosts web-2
Then: relctl rollback --env production --playbook web --to 1.0.0 --hosts web-3
Run log: /state/runs/r1.log
`
	if b.String() != want {
		t.Errorf("printFailureHelp:\n%s\nwant:\n%s", b.String(), want)
	}
}

// deploy's session is opened once, when a host is first needed, however
// many hosts ask at once; its error is every asker's; unopened, Close does
// nothing.
func TestRunLazySession(t *testing.T) {
	errOpen := errors.New("cannot open the run log")
	var opened atomic.Int32
	l := &lazySession{open: func() (*session, error) { opened.Add(1); return nil, errOpen }}
	l.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Get(context.Background(), transport.Target{Name: "web-1"}); !errors.Is(err, errOpen) {
				t.Errorf("Get: %v, want the open error", err)
			}
		}()
	}
	wg.Wait()
	if _, err := l.get(); !errors.Is(err, errOpen) || opened.Load() != 1 {
		t.Errorf("get: %v after %d opens, want the open error after 1", err, opened.Load())
	}
	l.Close()
}
