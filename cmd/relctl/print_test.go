package main

import (
	"strings"
	"testing"

	"github.com/relctl/relctl/deploy"
)

// The plan a rollback shows before asking says it is a rollback, names the
// release it goes back to, and shows no artifact (it moves none).
func TestPrintPlanHeading(t *testing.T) {
	batches := []*deploy.Batch{{Hosts: []*deploy.HostPlan{{Name: "staging-2"}}}, {Canary: true, Hosts: []*deploy.HostPlan{{Name: "staging-1"}}}}
	for _, tc := range []struct {
		plan      deploy.Plan
		want, not string
	}{
		{deploy.Plan{Kind: deploy.KindDeploy, Playbook: "search", Version: "1.1.0", Env: "staging", Batches: batches,
			Artifact: deploy.ArtifactInfo{Path: "artifacts/search-1.1.0.tar.gz", SHA256: "ab"}},
			"Plan: deploy search 1.1.0 to staging (2 hosts in 2 batches)\nArtifact: artifacts/search-1.1.0.tar.gz", ""},
		{deploy.Plan{Kind: deploy.KindRollback, Playbook: "search", Version: "1.0.0", Env: "staging", Batches: batches},
			"Plan: rollback search to 1.0.0 on staging (2 hosts in 2 batches)\n", "Artifact:"},
	} {
		var b strings.Builder
		printPlan(&b, &tc.plan, false)
		if !strings.HasPrefix(b.String(), tc.want) {
			t.Errorf("printPlan:\n%s\nwant it to start with:\n%s", b.String(), tc.want)
		}
		if tc.not != "" && strings.Contains(b.String(), tc.not) {
			t.Errorf("printPlan:\n%s\nwant no %q", b.String(), tc.not)
		}
	}
}

// status of an environment whose host (a shared load balancer) is locked by
// another environment's run points at that environment, not at unlocking.
func TestPrintLockOfAnotherEnvironment(t *testing.T) {
	l := &lockStatus{RunID: "20261207T000000Z-abc123", Env: "staging", Command: "deploy", Release: "1.1.0",
		Operator: "ci", Controller: "ci-1", PID: 42, Hosts: []string{"lb-1"}}
	var b strings.Builder
	printLock(&b, "production", l, &deploy.EnvStatus{})
	want := "\nIn progress in environment staging: run 20261207T000000Z-abc123 (deploy 1.1.0 in staging by ci@ci-1, pid 42) holds the lock on lb-1 (shared with production); see relctl status --env staging.\n"
	if b.String() != want {
		t.Errorf("printLock:\n%q\nwant\n%q", b.String(), want)
	}
}
