package deploy

import (
	"context"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// runAction runs a shell command on the host.
type runAction struct {
	Command string
	Undo    string
	Timeout time.Duration
	label   string
}

func buildRunStep(s *playbooks.Step, _ *Plan, hp *HostPlan) (Action, string, error) {
	cmd, err := playbooks.RenderCommand(s.Phase+"/"+s.Name+".run", s.Run, hp.Data)
	if err != nil {
		return nil, "", err
	}
	a := &runAction{Command: cmd, Timeout: s.Timeout.Duration, label: s.Phase + "/" + s.Name}
	if s.Undo != "" {
		if a.Undo, err = playbooks.RenderCommand(s.Phase+"/"+s.Name+".undo", s.Undo, hp.Data); err != nil {
			return nil, "", err
		}
	}
	return a, "run: " + cmd, nil
}

func (a *runAction) Do(ctx context.Context, h *hostRun) (string, error) {
	if a.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.Timeout)
		defer cancel()
	}
	_, err := h.conn.Run(ctx, a.Command, transport.RunOptions{Label: a.label})
	return "", err
}
