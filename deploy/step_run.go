package deploy

import (
	"context"
	"errors"
	"strings"
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
	// secrets and undoSecrets are the secrets Command and UndoCmd refer to:
	// their values go on the session's stdin (runWithSecrets).
	secrets, undoSecrets []string
}

func buildRunStep(s *playbooks.Step, _ *Plan, hp *HostPlan) (Action, string, error) {
	cmd, secrets, err := playbooks.RenderStepCommand(s.Phase+"/"+s.Name+".run", s.Run, hp.Data)
	if err != nil {
		return nil, "", err
	}
	a := &runAction{Command: cmd, Timeout: s.Timeout.Duration, label: s.Phase + "/" + s.Name, secrets: secrets}
	if s.Undo != "" {
		if a.UndoCmd, a.undoSecrets, err = playbooks.RenderStepCommand(s.Phase+"/"+s.Name+".undo", s.Undo, hp.Data); err != nil {
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
	return "", runWithSecrets(ctx, h, a.Command, a.secrets, transport.RunOptions{Label: a.label, Timeout: a.Timeout})
}

// Undo runs the step's undo command, when it has one.
func (a *runAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	if a.UndoCmd == "" {
		return "", errNoUndo
	}
	return "", runWithSecrets(ctx, h, a.UndoCmd, a.undoSecrets, transport.RunOptions{Label: "undo " + a.label, Timeout: a.Timeout})
}

// runWithSecrets runs a step's command. The secrets it uses are read by a
// prelude from the session's stdin, never put on a command line; whatever
// the command printed has every resolved secret masked before it reaches
// an error (and so the journal, the report and the hosts' run summaries).
func runWithSecrets(ctx context.Context, h *hostRun, cmd string, names []string, opts transport.RunOptions) error {
	sec := h.run.opts.Secrets
	if len(names) > 0 {
		in, err := sec.SecretInput(names)
		if err != nil {
			return err
		}
		cmd = playbooks.SecretPrelude(names) + cmd
		opts.Stdin = strings.NewReader(in)
	}
	_, err := h.conn.Run(ctx, cmd, opts)
	var ce *transport.CommandError
	if errors.As(err, &ce) {
		ce.Tail = sec.Redact(ce.Tail)
	}
	return sec.RedactError(err)
}
