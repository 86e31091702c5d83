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
