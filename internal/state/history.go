// Package state owns what relctl remembers: on each host the release layout
// (releases/<v>, the current symlink, .relctl/history.json) and, on the
// controller, run ids and the state directory. It builds the shell scripts
// that read and change the on-host layout; it does not run them.
package state

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
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
	// HistorySum is the sha256 (hex) of history.json as it was read, or
	// "absent" when there was none: ActivateScriptIfUnchanged replaces the
	// file only while it still is what was read.
	HistorySum string
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

// ReadScript prints the host state for ParseHostState: one section per
// thing read, each opened by its marker and a status word (present, absent,
// or unreadable and why), history.json's bytes counted, and an end marker.
// A path that exists but cannot be read is never reported as absent.
func (l Layout) ReadScript() string {
	return strings.Join([]string{
		// The releases are listed by the shell's glob and counted in bytes
		// (${#} counts characters in a multibyte locale): only readlink, stat
		// and cat start a process.
		"LC_ALL=C",
		"relctl_s=",
		ancestorCheck(l.BaseDir),
		fmt.Sprintf(`if [ -n "$relctl_s" ]; then echo %[1]s $relctl_s
elif [ -L %[2]s ]; then
  if relctl_t=$(readlink %[2]s); then echo %[1]s present; printf '%%s\n' "$relctl_t"; else echo %[1]s unreadable read-failed; fi
elif [ -e %[2]s ]; then echo %[1]s unreadable not-symlink
else echo %[1]s absent; fi`, markCurrent, shellquote.Quote(l.Current())),
		fmt.Sprintf(`if [ -n "$relctl_s" ]; then echo %[1]s $relctl_s
elif [ -L %[2]s ] && ! [ -e %[2]s ]; then echo %[1]s unreadable dangling-symlink
elif [ -d %[2]s ]; then
  if ! [ -r %[2]s ] || ! [ -x %[2]s ]; then echo %[1]s unreadable permission
  else
    relctl_l=
    for relctl_e in %[2]s/*; do
      if [ -e "$relctl_e" ] || [ -L "$relctl_e" ]; then relctl_l="$relctl_l${relctl_e##*/}
"; fi
    done
    echo %[1]s present ${#relctl_l}; printf '%%s\n' "$relctl_l"
  fi
elif [ -e %[2]s ]; then echo %[1]s unreadable not-directory
else echo %[1]s absent; fi`, markReleases, shellquote.Quote(l.Releases())),
		readFileSection(markHistory, shellquote.Quote(l.HistoryFile()), l.StateDir()),
		"echo " + markEnd,
	}, "\n")
}

// ParseHostState reads ReadScript's output for a host whose layout is not
// at hand; errors name the files relative to the base directory.
func ParseHostState(out string) (*HostState, error) { return Layout{}.ParseHostState(out) }

// ParseHostState reads ReadScript's output. It never panics: output that is
// not what ReadScript prints (truncated, reordered, garbage) is an
// *OutputError, and a file or directory that is unreadable or corrupt is a
// *StateError naming it and the fix. Both are ErrHostState.
func (l Layout) ParseHostState(out string) (*HostState, error) {
	r := &reply{out: out, what: "host state"}
	st := &HostState{}

	// current: a symlink to releases/<version>, or nothing.
	status, err := r.header(markCurrent)
	if err != nil {
		return nil, err
	}
	switch status.word {
	case statusAbsent:
	case statusPresent:
		link, err := r.line()
		if err != nil {
			return nil, err
		}
		v := path.Base(strings.TrimRight(link, "/"))
		if link == "" || v == "." || v == ".." || v == "/" || strings.ContainsRune(link, 0) {
			return nil, &StateError{Path: l.Current(), Problem: fmt.Sprintf(" points at %q, not at a release", truncate(link, 100)),
				Fix: "point it at the release the host runs (ln -sfn releases/VERSION " + shellquote.Quote(l.Current()) + ") after checking it, then re-run"}
		}
		st.Current = v
	default:
		return nil, problem(l.Current(), ancestors(l.BaseDir), status.args)
	}

	// releases/: one directory per release.
	if status, err = r.header(markReleases); err != nil {
		return nil, err
	}
	switch status.word {
	case statusAbsent:
	case statusPresent:
		// The listing is counted like a file's bytes: a name lost or
		// repeated on the way is caught, not a release that vanished.
		list, err := r.fileBody(status, l.Releases())
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, name := range strings.Split(string(list.Body), "\n") {
			if name == "" {
				continue
			}
			if seen[name] {
				return nil, r.fail("release " + strconv.Quote(truncate(name, 40)) + " listed twice")
			}
			seen[name] = true
			st.Releases = append(st.Releases, name)
		}
		sort.Strings(st.Releases)
	default:
		return nil, problem(l.Releases(), ancestors(l.BaseDir), status.args)
	}

	// history.json.
	f, err := r.file(markHistory, l.HistoryFile())
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	st.HistorySum = f.SHA256
	if f.Present {
		h, err := ParseHistory(l.HistoryFile(), f.Body)
		if err != nil {
			return nil, err
		}
		st.History = *h
	}
	return st, nil
}

// ParseHistory reads history.json's bytes (p names it in errors). An empty
// file, one that is not a JSON object, or one whose activations lack a
// version is refused: the history a rollback needs was lost, and writing a
// new one over it would hide that.
func ParseHistory(p string, body []byte) (*History, error) {
	var h History
	if err := DecodeJSONFile(p, body, &h); err != nil {
		return nil, err
	}
	for i, a := range h.Activations {
		if a.Version == "" {
			return nil, &StateError{Path: p, Problem: fmt.Sprintf(": activation %d has no version", i+1), Fix: fixCorrupt(p)}
		}
	}
	return &h, nil
}

// ActivateScript switches current to version atomically (a symlink under a
// temporary name, then rename over current) and installs the new history,
// read from stdin, in the same script so the two cannot disagree for long.
// Before changing anything it checks that history.json is absent or a
// regular file it can read, and that current is a symlink or absent.
func (l Layout) ActivateScript(version, runID string) string {
	return l.ActivateScriptIfUnchanged(version, runID, "")
}

// ActivateScriptIfUnchanged is ActivateScript that also refuses, changing
// nothing, when history.json is no longer what was read: historySum is
// HostState.HistorySum ("absent" when there was none; "" checks nothing).
// A concurrent writer, or a file made unreadable since, is not overwritten.
func (l Layout) ActivateScriptIfUnchanged(version, runID, historySum string) string {
	tmpLink := path.Join(l.BaseDir, ".current.tmp."+runID)
	tmpHist := l.HistoryFile() + ".tmp." + runID
	cur := shellquote.Quote(l.Current())
	return strings.Join([]string{
		"set -e",
		scriptPrelude,
		fmt.Sprintf(`test -d %[1]s || { printf 'release directory %%s is missing\n' %[1]s >&2; exit 1; }`, shellquote.Quote(l.Release(version))),
		fmt.Sprintf(`if [ -e %[1]s ] && ! [ -L %[1]s ]; then relctl_refuse %[2]s; fi`, cur,
			shellquote.Quote(l.Current()+" is not a symlink: relctl will not replace it; move it aside (mv "+cur+" "+shellquote.Quote(l.Current()+".broken")+") after checking it, then re-run")),
		fmt.Sprintf("[ -d %[1]s ] || mkdir -p %[1]s", shellquote.Quote(l.StateDir())),
		// The target's form is checked before the body arrives and again
		// after, with its sha256: the body may be large and slow, and only a
		// few system calls may separate the check from the renames, so a
		// history written meanwhile is not lost.
		guardReplace(l.HistoryFile(), "", ""),
		removeOnExit(shellquote.Quote(tmpHist)),
		fmt.Sprintf(`cat > %[1]s
[ -s %[1]s ] || relctl_refuse 'no history arrived on stdin: nothing was changed'`, shellquote.Quote(tmpHist)),
		guardReplace(l.HistoryFile(), historySum, ""),
		fmt.Sprintf(`ln -sfn %[2]s %[3]s
mv -T %[3]s %[4]s
mv -f -T %[1]s %[5]s
echo %[6]s`, shellquote.Quote(tmpHist), shellquote.Quote("releases/"+version), shellquote.Quote(tmpLink), cur, shellquote.Quote(l.HistoryFile()), ActivateDone),
	}, "\n")
}

// ActivateDone is the activate script's last line of output: the host says
// it switched, which exit status 0 alone (a wrapper's, a forced command's)
// does not prove.
const ActivateDone = "relctl-switched"

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
		fmt.Fprintf(&b, "\nrm -rf -- %s", shellquote.Quote(l.Release(v)))
	}
	return b.String()
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
