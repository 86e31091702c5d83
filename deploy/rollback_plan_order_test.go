package deploy_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/relctl/relctl/deploy"
)

// TestRollbackPlanOrder: `relctl rollback` runs a deploy's batches; with
// [traffic] in reverse (the latest first, the canary last, no canary label),
// so hosts a failed deploy left out of the load balancer are back in before
// the ones still serving leave it. Without [traffic] the canary goes first,
// and --parallel all is one batch of every host either way.
func TestRollbackPlanOrder(t *testing.T) {
	const traffic = "\n[traffic]\nprovider = \"command\"\ndisable = \"true\"\nenable = \"true\"\n"
	strategy := "canary = 1\nbatch_size = 2\nmax_parallel = 4"
	tests := []struct {
		name        string
		traffic     bool
		parallelAll bool
		hosts       []string // --hosts
		want        [][]string
		canary      bool // the first batch is labelled the canary
	}{
		{"no [traffic]: canary first", false, false, nil,
			[][]string{{"production-1"}, {"production-2", "production-3"}, {"production-4", "production-5"}}, true},
		{"[traffic]: latest batch first, canary last", true, false, nil,
			[][]string{{"production-4", "production-5"}, {"production-2", "production-3"}, {"production-1"}}, false},
		{"[traffic], --hosts of a failed deploy's canary and one left out", true, false, []string{"production-1", "production-3"},
			[][]string{{"production-3"}, {"production-1"}}, false},
		{"[traffic], --parallel all: every host at once", true, true, nil,
			[][]string{{"production-1", "production-2", "production-3", "production-4", "production-5"}}, false},
		{"no [traffic], --parallel all", false, true, nil,
			[][]string{{"production-1", "production-2", "production-3", "production-4", "production-5"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := fmt.Sprintf(searchPlaybook, strategy)
			if tt.traffic {
				pb += traffic
			}
			proj := project{hosts: 5, playbook: pb}.load(t)
			current := map[string]string{}
			for i := 1; i <= 5; i++ {
				current[fmt.Sprintf("production-%d", i)] = "1.1.0"
			}
			p, err := deploy.BuildRollbackPlan(proj, deploy.RollbackPlanOptions{
				Env: "production", RunID: "r1", Target: "1.0.0", From: "1.1.0",
				Hosts: tt.hosts, ParallelAll: tt.parallelAll, Current: current,
			})
			if err != nil {
				t.Fatalf("BuildRollbackPlan: %v", err)
			}
			var got [][]string
			for i, b := range p.Batches {
				if b.Index != i+1 {
					t.Errorf("batch %d has index %d", i+1, b.Index)
				}
				if want := i == 0 && tt.canary; b.Canary != want {
					t.Errorf("batch %d canary = %v; want %v", b.Index, b.Canary, want)
				}
				var names []string
				for _, h := range b.Hosts {
					names = append(names, h.Name)
				}
				got = append(got, names)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("batches = %v; want %v", got, tt.want)
			}
		})
	}
}
