package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/shellquote"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// activateAction switches `current` to a release atomically and records the
// activation in the host's history. Its undo switches back to the release
// the host ran before the run.
type activateAction struct {
	Version string
	Kind    string // state.Activation kind: deploy or rollback
	// started: Do ran, so current may have moved; switchedBack: Undo
	// switched current back to the release before the run.
	started, switchedBack bool
}

func (a *activateAction) switchState() (started, switchedBack bool) { return a.started, a.switchedBack }

func buildActivateStep(_ *playbooks.Step, p *Plan, hp *HostPlan) (Action, string, error) {
	return &activateAction{Version: p.Version, Kind: p.Kind},
		fmt.Sprintf("switch %s -> releases/%s atomically; append to .relctl/history.json", hp.Layout.Current(), p.Version), nil
}

func (a *activateAction) Do(ctx context.Context, h *hostRun) (string, error) {
	a.started = true
	from, err := h.switchTo(ctx, a.Version, a.Kind)
	if err != nil {
		return "", err
	}
	switch from {
	case "":
		return "current -> " + a.Version + " (first release)", nil
	case a.Version:
		return "current already " + a.Version + " (re-activated)", nil
	}
	return from + " -> " + a.Version, nil
}

// Undo puts current back on the release the host ran before this run.
func (a *activateAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	prev := h.report.Before
	if prev == "" {
		h.forgetState()
		if _, err := h.conn.Run(ctx, "rm -f -- "+shellquote.Quote(h.host.Layout.Current()), transport.RunOptions{Label: "rollback/undo-activate"}); err != nil {
			return "", err
		}
		h.setCurrent("")
		return "no release before this run: current removed", nil
	}
	st, err := h.readState(ctx)
	if err != nil {
		return "", err
	}
	// What the host says now is what the switch back builds on.
	h.state, h.stateFresh = st, true
	if st.Current == prev {
		h.setCurrent(prev)
		return "current still " + prev + " (never switched)", nil
	}
	from, err := h.switchTo(ctx, prev, KindRollback)
	if err != nil {
		return "", err
	}
	a.switchedBack = true
	return from + " -> " + prev, nil
}

// switchTo points current at version and appends the activation to history,
// in one remote script. It returns the release current pointed at before.
// It builds on the state the run read under its lock; if history.json
// changed since (the script refuses then, changing nothing), it reads the
// host again and tries once more.
func (h *hostRun) switchTo(ctx context.Context, version, kind string) (string, error) {
	st, cached, err := h.knownState(ctx)
	if err != nil {
		return "", err
	}
	from, err := h.switchFrom(ctx, st, version, kind)
	if err != nil && cached && historyChanged(err) {
		h.forgetState()
		if st, _, err = h.knownState(ctx); err != nil {
			return "", err
		}
		from, err = h.switchFrom(ctx, st, version, kind)
	}
	return from, err
}

// historyChanged: the activate script refused because history.json is not
// what the run read (see state.ActivateScriptIfUnchanged).
func historyChanged(err error) bool {
	var ce *transport.CommandError
	return errors.As(err, &ce) && ce.ExitCode == 3 && strings.Contains(ce.Tail, state.ChangedSinceRead)
}

func (h *hostRun) switchFrom(ctx context.Context, st *state.HostState, version, kind string) (string, error) {
	previous := st.Current
	if previous == version {
		// Re-activating the current release must not make it its own predecessor.
		previous = st.Previous()
	}
	act := state.Activation{
		Version: version, Previous: previous, Kind: kind,
		Time: h.now().UTC(), Operator: h.engine.Operator, Controller: h.engine.Controller,
		RunID: h.plan.RunID, Playbook: h.plan.Playbook,
	}
	if version == h.plan.Version && h.plan.Kind == KindDeploy {
		act.ReleaseDigest, act.ArtifactSHA256, act.Artifact = h.plan.Digest, h.plan.Artifact.SHA256, h.plan.Artifact.Name
		act.Rehearsal = h.run.opts.Gate.Record
		if pb := h.plan.pb; pb != nil {
			act.Component, act.Requires = pb.ComponentName(), maps.Clone(pb.Requires)
		}
	} else if old := latestActivation(&st.History, version); old != nil {
		// Going back to a release: it keeps the identity it was deployed
		// with, and the constraints it carries with it.
		act.ReleaseDigest, act.ArtifactSHA256, act.Artifact = old.ReleaseDigest, old.ArtifactSHA256, old.Artifact
		act.Component, act.Requires = old.Component, maps.Clone(old.Requires)
	}
	hist := st.History
	hist.Activations = append(slices.Clip(hist.Activations), act)
	// Constraints such as "<2" stay readable in history.json (no \u003c).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(hist); err != nil {
		return "", err
	}
	body := append(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), '\n')
	// The script refuses a history.json that changed since st was read, so a
	// history written in between (or made unreadable) is never replaced.
	script := h.host.Layout.ActivateScriptIfUnchanged(version, h.plan.RunID, st.HistorySum)
	res, err := h.conn.Run(ctx, script, transport.RunOptions{Label: "activate " + version, Stdin: bytes.NewReader(body)})
	if err == nil && strings.TrimSpace(string(res.Stdout)) != state.ActivateDone {
		// Exit 0 without the script's last word: something between relctl
		// and the host ate or changed its answer. Where current points is
		// unknown until read again.
		err = fmt.Errorf("%s: the activate script answered \"%s\", not %q: a wrapper or forced command on the host changed its output",
			h.host.Name, transport.Printable(strings.TrimSpace(string(res.Stdout)), 80), state.ActivateDone)
	}
	if err != nil {
		h.forgetState()
		if !historyChanged(err) {
			// Refused for a changed history, the script changed nothing;
			// otherwise current may have moved.
			h.recheckCurrent(ctx)
		}
		return "", err
	}
	// The host now holds exactly this: the next switch builds on it.
	sum := sha256.Sum256(body)
	h.state = &state.HostState{Current: version, Releases: st.Releases, History: hist, HistorySum: hex.EncodeToString(sum[:])}
	h.stateFresh = true
	h.setCurrent(version)
	return st.Current, nil
}

// recheckCurrent learns where current points after a failed switch (the
// script may have renamed the symlink before the connection dropped), so the
// report never claims a host unchanged that was switched. If the host cannot
// be read, its release is unknown.
func (h *hostRun) recheckCurrent(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	conn, err := h.engine.Connector.Get(ctx, h.host.Target)
	if err == nil {
		h.conn = conn
		var st *state.HostState
		if st, err = h.readState(ctx); err == nil {
			h.setCurrent(st.Current)
			return
		}
	}
	h.report.Unknown = true
}
