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
	UndoCmd string
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
		if a.UndoCmd, err = playbooks.RenderCommand(s.Phase+"/"+s.Name+".undo", s.Undo, hp.Data); err != nil {
			return nil, "", err
		}
	}
	describe := "run: " + cmd
	if a.UndoCmd != "" {
		describe += "\n\tundo: " + a.UndoCmd
	}
	return a, describe, nil
}

func (a *runAction) Do(ctx context.Context, h *hostRun) (string, error) {
	_, err := h.conn.Run(ctx, a.Command, transport.RunOptions{Label: a.label, Timeout: a.Timeout})
	return "", err
}

// Undo runs the step's undo command, when it has one.
func (a *runAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	if a.UndoCmd == "" {
		return "", errNoUndo
	}
	_, err := h.conn.Run(ctx, a.UndoCmd, transport.RunOptions{Label: "undo " + a.label, Timeout: a.Timeout})
	return "", err
}
