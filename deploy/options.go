package deploy

import (
	"time"

	"github.com/relctl/relctl/playbooks"
)

// RunOptions are the decisions one run of a plan is made with, taken before
// it starts (Prepare, or the command): the plan itself never changes.
type RunOptions struct {
	// Skip names hosts to leave alone: deploy --resume skips the hosts the
	// interrupted run finished.
	Skip map[string]bool
	// ResumeRun is the interrupted run being resumed: hosts it switched roll
	// back to what they ran before it.
	ResumeRun string
	// TakeOverStaleLocks replaces a lock whose holder is gone (rollback, resume).
	TakeOverStaleLocks bool
	// Gate is what the environment's rehearsal gate decided.
	Gate GateDecision
	// Secrets resolves the secrets the plan's playbook uses, once, before
	// any host is contacted (Engine.Run), and masks their values.
	Secrets *playbooks.Secrets
}

// GateDecision is the rehearsal gate's answer for a deploy.
type GateDecision struct {
	// Skipped is why the gate was overridden (deploy --skip-rehearsal
	// --reason); written to every host's history before any host changes.
	Skipped string `json:"skipped,omitempty"`
	// Record describes the rehearsal record the gate accepted (or the
	// override), recorded with each activation.
	Record string `json:"record,omitempty"`
	// From is the release the gate saw the hosts on and Until when the
	// record expires: both are checked again under the lock.
	From  string    `json:"from,omitempty"`
	Until time.Time `json:"until,omitzero"`
}
