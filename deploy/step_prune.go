package deploy

import (
	"context"
	"strings"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// pruneAction removes old release directories after a successful deploy.
type pruneAction struct {
	Keep int
}

func (a *pruneAction) Do(ctx context.Context, h *hostRun) (string, error) {
	// The state read under the lock, as this run's switch left it: only
	// this run changed the host since.
	st, _, err := h.knownState(ctx)
	if err != nil {
		return "", err
	}
	var doomed []string
	for _, v := range state.PruneCandidates(st, a.Keep, h.plan.Version) {
		// Only names relctl could have created; anything else is left alone.
		if playbooks.ValidateVersion(v) == nil {
			doomed = append(doomed, v)
		}
	}
	if len(doomed) == 0 {
		return "nothing to prune", nil
	}
	// rm -rf of whole releases takes as long as they are big: command_timeout.
	if _, err := h.conn.Run(ctx, h.host.Layout.PruneScript(doomed), transport.RunOptions{Label: "post/prune", Limit: transport.CommandLimit}); err != nil {
		return "", err
	}
	return "removed " + strings.Join(doomed, ", "), nil
}
