package rollback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relctl/relctl/deploy"
)

// GateOutcome is the rehearsal gate's answer for a deploy, as the run
// carries it (Decision) and as the operator is told it.
type GateOutcome struct {
	Decision deploy.GateDecision
	// Gated: the environment has require_rehearsal.
	Gated bool
	// Result is the gate's answer when it let the deploy through (nil when
	// it was overridden or the environment is not gated).
	Result *GateResult
	// Overridden is the refusal that skipReason overrode (nil otherwise).
	Overridden *GateError
}

// DecideGate applies the environment's require_rehearsal to o.Plan. A
// refusal is an error unless skipReason is set: then it becomes an
// override, which the engine writes to every host's history before any
// host changes. A pass carries the release the hosts ran and the record's
// expiry, both checked again under the lock. A skip reason for an
// environment without a gate is a usage error.
func DecideGate(ctx context.Context, o GateOptions, skipReason string) (*GateOutcome, error) {
	env, err := o.Project.Environment(o.Plan.Env)
	if err != nil || env.RequireRehearsal == "" {
		if skipReason != "" {
			return nil, fmt.Errorf("%w: --skip-rehearsal: environment %s has no rehearsal gate (no require_rehearsal in relctl.toml)", deploy.ErrBadInput, o.Plan.Env)
		}
		return &GateOutcome{}, nil
	}
	res, err := CheckGate(ctx, o)
	var refused *GateError
	switch {
	case errors.As(err, &refused) && skipReason != "":
		return &GateOutcome{Gated: true, Overridden: refused,
			Decision: deploy.GateDecision{Skipped: skipReason, Record: "gate skipped: " + skipReason}}, nil
	case err != nil:
		return nil, err
	}
	out := &GateOutcome{Gated: true, Result: res}
	if rec := res.Record; res.Note == "" && rec != nil {
		out.Decision = deploy.GateDecision{From: res.From, Until: rec.Finished.Add(env.RehearsalMaxAge.Duration),
			Record: fmt.Sprintf("rehearsed in %s from %s, finished %s, signed by %s (%s)", rec.Environment, rec.From,
				rec.Finished.Format(time.RFC3339), strings.Join(res.Signer.Principals, ","), res.Signer.Fingerprint)}
	}
	return out, nil
}
