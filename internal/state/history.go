// Package state owns what relctl remembers: on each host the release layout
// (releases/<v>, the current symlink, .relctl/history.json) and, on the
// controller, run ids and the state directory. It builds the shell scripts
// that read and change the on-host layout; it does not run them.
package state

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Activation is one switch of `current`, appended to the host's history.
type Activation struct {
	Version        string    `json:"version"`
	Previous       string    `json:"previous,omitempty"`
	ReleaseDigest  string    `json:"release_digest"`
	ArtifactSHA256 string    `json:"artifact_sha256,omitempty"`
	Time           time.Time `json:"time"`
	Operator       string    `json:"operator"`
	Controller     string    `json:"controller"`
	RunID          string    `json:"run_id"`
	Playbook       string    `json:"playbook,omitempty"`
	// Kind is "deploy" or "rollback"; empty in files written before it existed (= deploy).
	Kind string `json:"kind,omitempty"`
	// Artifact is the artifact's file name in the release directory.
	Artifact string `json:"artifact,omitempty"`
	// Rehearsal names the rehearsal record a gated deploy was let through
	// by, or the reason the gate was skipped.
	Rehearsal string `json:"rehearsal,omitempty"`
	// Component is what the release is a version of (the playbook's
	// component); empty in activations recorded before relctl kept it, whose
	// constraints are therefore unknown.
	Component string `json:"component,omitempty"`
	// Requires is the release's constraints on other components' versions
	// (component -> semver constraint), so a rollback to it can be checked
	// against what the environment runs then.
	Requires map[string]string `json:"requires,omitempty"`
}

// History is <base_dir>/.relctl/history.json: every activation, oldest first.
type History struct {
	Activations []Activation   `json:"activations"`
	Events      []HistoryEvent `json:"events,omitempty"`
}

// HistoryEvent is something done to a host that is not an activation but
// that the next operator must be able to find, such as a forced unlock.
type HistoryEvent struct {
	Time       time.Time         `json:"time"`
	Kind       string            `json:"kind"` // unlock | skip-rehearsal | ...
	Operator   string            `json:"operator"`
	Controller string            `json:"controller"`
	RunID      string            `json:"run_id,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	Detail     map[string]string `json:"detail,omitempty"`
}

// Latest returns the newest activation, or nil.
func (h *History) Latest() *Activation {
	if h == nil || len(h.Activations) == 0 {
		return nil
	}
	return &h.Activations[len(h.Activations)-1]
}

// RecentVersions lists distinct activated versions, newest first.
func (h *History) RecentVersions() []string {
	if h == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for i := len(h.Activations) - 1; i >= 0; i-- {
		v := h.Activations[i].Version
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// Layout names the paths of one host's release layout.
type Layout struct{ BaseDir string }

func (l Layout) Releases() string        { return path.Join(l.BaseDir, "releases") }
func (l Layout) Release(v string) string { return path.Join(l.BaseDir, "releases", v) }
func (l Layout) Current() string         { return path.Join(l.BaseDir, "current") }
func (l Layout) StateDir() string        { return path.Join(l.BaseDir, ".relctl") }
func (l Layout) HistoryFile() string     { return path.Join(l.BaseDir, ".relctl", "history.json") }

// HostState is what a host says about its releases.
type HostState struct {
	Current  string   // version `current` points at; "" when there is none
	Releases []string // directories under releases/
	History  History
}

// Previous is the version active before Current, from history.
func (s *HostState) Previous() string {
	acts := s.History.Activations
	for i := len(acts) - 1; i >= 0; i-- {
		if acts[i].Version == s.Current {
			return acts[i].Previous
		}
	}
	return ""
}

const (
	markCurrent  = "--relctl-current--"
	markReleases = "--relctl-releases--"
	markHistory  = "--relctl-history--"
)

// ReadScript prints the host state in sections that ParseHostState reads.
func (l Layout) ReadScript() string {
	return fmt.Sprintf(`echo %[1]s; readlink %[4]s 2>/dev/null || true
echo %[2]s; if [ -d %[5]s ]; then ls -1 %[5]s; fi
echo %[3]s; cat %[6]s 2>/dev/null || true`,
		markCurrent, markReleases, markHistory,
		Quote(l.Current()), Quote(l.Releases()), Quote(l.HistoryFile()))
}

// ParseHostState reads ReadScript's output.
func ParseHostState(out string) (*HostState, error) {
	sections := map[string]*strings.Builder{}
	var cur *strings.Builder
	for _, line := range strings.SplitAfter(out, "\n") {
		switch strings.TrimRight(line, "\n") {
		case markCurrent, markReleases, markHistory:
			cur = &strings.Builder{}
			sections[strings.TrimRight(line, "\n")] = cur
			continue
		}
		if cur != nil {
			cur.WriteString(line)
		}
	}
	if sections[markCurrent] == nil || sections[markHistory] == nil {
		return nil, fmt.Errorf("unexpected output reading host state: %q", truncate(out, 200))
	}
	st := &HostState{}
	if link := strings.TrimSpace(sections[markCurrent].String()); link != "" {
		st.Current = path.Base(strings.TrimRight(link, "/"))
	}
	for _, r := range strings.Fields(sections[markReleases].String()) {
		st.Releases = append(st.Releases, r)
	}
	sort.Strings(st.Releases)
	if h := strings.TrimSpace(sections[markHistory].String()); h != "" {
		if err := json.Unmarshal([]byte(h), &st.History); err != nil {
			return nil, fmt.Errorf("history.json is not valid JSON: %w", err)
		}
	}
	return st, nil
}

// ActivateScript switches current to version atomically (a symlink under a
// temporary name, then rename over current) and installs the new history,
// read from stdin, in the same script so the two cannot disagree for long.
func (l Layout) ActivateScript(version, runID string) string {
	tmpLink := path.Join(l.BaseDir, ".current.tmp."+runID)
	tmpHist := l.HistoryFile() + ".tmp." + runID
	return fmt.Sprintf(`set -e
test -d %[1]s || { printf 'release directory %%s is missing\n' %[1]s >&2; exit 1; }
mkdir -p %[2]s
cat > %[3]s
ln -sfn %[4]s %[5]s
mv -T %[5]s %[6]s
mv -f %[3]s %[7]s`,
		Quote(l.Release(version)), Quote(l.StateDir()), Quote(tmpHist),
		Quote("releases/"+version), Quote(tmpLink), Quote(l.Current()),
		Quote(l.HistoryFile()))
}

// PruneCandidates returns the release directories to delete so that at most
// keep releases remain. Never pruned: the current release, the one before it,
// protect (e.g. the release a running deploy staged), and the keep most recently
// activated versions, any of which a rollback could target. Releases that were
// staged but never activated are pruned.
func PruneCandidates(st *HostState, keep int, protect ...string) []string {
	if keep < 2 {
		keep = 2
	}
	if st.Current != "" && latest(st.History, st.Current) == nil {
		// History does not know the current release (lost or hand-made):
		// there is no telling which releases a rollback needs, so keep all.
		return nil
	}
	kept := map[string]bool{st.Current: true, st.Previous(): true}
	for _, p := range protect {
		kept[p] = true
	}
	for i, v := range st.History.RecentVersions() {
		if i < keep {
			kept[v] = true
		}
	}
	var out []string
	for _, r := range st.Releases {
		if !kept[r] {
			out = append(out, r)
		}
	}
	return out
}

// PruneScript removes the named release directories.
func (l Layout) PruneScript(versions []string) string {
	var b strings.Builder
	b.WriteString("set -e")
	for _, v := range versions {
		fmt.Fprintf(&b, "\nrm -rf -- %s", Quote(l.Release(v)))
	}
	return b.String()
}

// Quote single-quotes s for POSIX sh.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func latest(h History, version string) *Activation {
	for i := len(h.Activations) - 1; i >= 0; i-- {
		if h.Activations[i].Version == version {
			return &h.Activations[i]
		}
	}
	return nil
}
