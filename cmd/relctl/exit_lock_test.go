package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// TestExitCodeLockFailures: a lock command that failed stops a run before it
// changed anything (a deploy exits 3, a rollback that changed nothing 6); a
// lock held by another run is 5; unlock that removed a lock but could not
// record it in history is an error (1), not a refusal, while on-host state
// that could not be read outside a run still is (6).
func TestExitCodeLockFailures(t *testing.T) {
	lockCut := multierror.Append(nil, fmt.Errorf("lb-1: taking the lock: %w",
		&transport.TimeoutError{Host: "lb-1", Label: "lock", Setting: transport.SettingControlTimeout, Limit: time.Minute}))
	notLocked := func(kind string) error {
		return &deploy.Failure{Phase: playbooks.PhasePreflight, Err: fmt.Errorf("cannot lock what the run changes: %w", lockCut),
			Report: &deploy.Report{Kind: kind, Env: "production", Version: "1.2.0",
				Hosts: []*deploy.HostReport{{Name: "web-1", Before: "1.1.0", After: "1.1.0", Reached: true}}}}
	}
	history := "/srv/app/.relctl/history.json"
	unreadable := &state.StateError{Path: history, Problem: " is a directory", Fix: "move it aside"}
	unrecorded := multierror.Append(nil, &state.UnrecordedUnlockError{Host: "web-1", Lock: "/srv/app/.relctl/lock", History: history, Err: unreadable})
	tests := []struct {
		name    string
		err     error
		want    int
		wantMsg string
	}{
		{"deploy, lock command cut", notLocked(deploy.KindDeploy), exitFailedClean, "lb-1: taking the lock: lb-1: [lock] ssh.control_timeout 1m0s reached"},
		{"rollback, lock command cut", notLocked(deploy.KindRollback), exitRefused, "rollback of 1.2.0 to production failed in preflight: cannot lock what the run changes"},
		{"locked by another run", &state.LockedError{Env: "production"}, exitLocked, "environment production is locked"},
		{"unlock, history not written", unrecorded.ErrorOrNil(), exitError,
			"web-1: the lock (/srv/app/.relctl/lock) was removed, but the history entry saying so could not be written: " + history + " is a directory"},
		{"on-host state unreadable", multierror.Append(nil, fmt.Errorf("web-1: %w", unreadable)).ErrorOrNil(), exitRefused, history},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			got := exitCode(output.Test(nil, io.Discard, &errOut), tt.err)
			if got != tt.want || !strings.Contains(errOut.String(), tt.wantMsg) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", got, errOut.String(), tt.want, tt.wantMsg)
			}
		})
	}
}
