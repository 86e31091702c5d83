package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// activateAction switches `current` to the new release atomically and
// records the activation in the host's history.
type activateAction struct {
	Version string
}

func buildActivateStep(_ *playbooks.Step, p *Plan, hp *HostPlan) (Action, string, error) {
	return &activateAction{Version: p.Version},
		fmt.Sprintf("switch %s -> releases/%s atomically; append to .relctl/history.json", hp.Layout.Current(), p.Version), nil
}

func (a *activateAction) Do(ctx context.Context, h *hostRun) (string, error) {
	// Re-read right before switching: history must build on what is there now.
	st, err := h.readState(ctx)
	if err != nil {
		return "", err
	}
	hist := st.History
	previous := st.Current
	if previous == a.Version {
		// Re-activating the current release must not make it its own predecessor.
		previous = st.Previous()
	}
	hist.Activations = append(hist.Activations, state.Activation{
		Version: a.Version, Previous: previous,
		ReleaseDigest: h.plan.Digest, ArtifactSHA256: h.plan.Artifact.SHA256,
		Time: h.now().UTC(), Operator: h.engine.Operator, Controller: h.engine.Controller,
		RunID: h.plan.RunID, Playbook: h.plan.Playbook,
	})
	body, err := json.MarshalIndent(hist, "", "  ")
	if err != nil {
		return "", err
	}
	script := h.host.Layout.ActivateScript(a.Version, h.plan.RunID)
	if _, err := h.conn.Run(ctx, script, transport.RunOptions{Label: "activate", Stdin: bytes.NewReader(append(body, '\n'))}); err != nil {
		return "", err
	}
	h.setCurrent(a.Version)
	switch st.Current {
	case "":
		return "current -> " + a.Version + " (first release)", nil
	case a.Version:
		return "current already " + a.Version + " (re-activated)", nil
	}
	return st.Current + " -> " + a.Version, nil
}
