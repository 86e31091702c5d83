package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/relctl/relctl/healthcheck"
)

const kindRestoreIfUnhealthy = "restore-if-unhealthy"

// restoreIfUnhealthyAction is for a host a rollback finds already on the
// target release: one probe of each health check, and only if one fails,
// the playbook's [rollback] steps (e.g. a restart). A healthy host is left
// alone, so converging a mixed fleet restarts nothing that works.
type restoreIfUnhealthyAction struct {
	checks  []*Step
	restore []*Step
}

func (a *restoreIfUnhealthyAction) Do(ctx context.Context, h *hostRun) (string, error) {
	var failed []string
	for _, s := range a.checks {
		ca, ok := s.Action.(*checkAction)
		if !ok {
			continue
		}
		for _, spec := range ca.Specs {
			if _, err := healthcheck.Probe(ctx, spec, h.conn); err != nil {
				failed = append(failed, spec.Name)
			}
		}
	}
	if len(failed) == 0 {
		return "healthy: nothing to restore", nil
	}
	var ran []string
	for _, s := range a.restore {
		if _, err := s.Action.Do(ctx, h); err != nil {
			return "", fmt.Errorf("%s (run because %s failed): %w", s.ID(), strings.Join(failed, ", "), err)
		}
		ran = append(ran, s.Name)
	}
	return fmt.Sprintf("%s failed; ran %s", strings.Join(failed, ", "), strings.Join(ran, ", ")), nil
}
