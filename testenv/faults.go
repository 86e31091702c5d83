package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// StepEnv is the environment variable relctl's transport sends with every
// command, set to the command's label (e.g. "verify/health"); step faults
// match on it.
const StepEnv = "RELCTL_STEP"

// ForwardLabel is the step label of a forwarded TCP connection (direct-tcpip,
// e.g. an http health check dialled through the host): "forward ADDR". The
// output faults and NeverEndsStep match it like a command's label, so
// "forward" damages what every forwarded connection of the host returns.
const ForwardLabel = "forward"

// DefaultDropEvery is the line DropLinesStep drops when DropEvery is 0:
// every third line (in relctl's host-state output, the second section
// marker).
const DefaultDropEvery = 3

// FaultSpec is the set of faults active on one host. The zero value is a
// healthy host.
//
// A step NAME matches a command whose RELCTL_STEP label equals NAME, whose
// label's part after the first "/" equals NAME, or whose label's first word
// equals NAME: "health" matches "verify/health", "verify/health" matches
// only itself, "upload" matches "upload /srv/search/releases/1.1.0/x.tar.gz"
// and "activate" matches "activate 1.1.0"; "lock" and "read-state" both
// match "lock+read-state". When several step faults match a
// command, FailStep wins over HangStep, HangStep over NeverEndsStep; the
// output faults combine (lines dropped, then the rest truncated, then
// garbage in its place).
type FaultSpec struct {
	// DropSSH closes the host's SSH port (dials are refused) and drops its
	// open connections; processes on the host keep running.
	DropSSH bool `json:"drop_ssh,omitempty"`
	// Hang keeps connections open but stops answering: new connections get
	// no banner, new sessions and global requests (keepalives) no reply,
	// requests on open sessions are held and running commands' output
	// stops. A client sees a hang, not an error. Clearing it answers what
	// was held.
	Hang bool `json:"hang,omitempty"`
	// FailStep makes commands of that step exit 1 at once, without running,
	// with stderr "testenv: injected failure in step NAME on HOST".
	FailStep string `json:"fail_step,omitempty"`
	// HangStep holds commands of that step (they do not start) until the
	// host's HangStep changes; then they run normally. A signal from the
	// client or the session closing ends the wait.
	HangStep string `json:"hang_step,omitempty"`

	// The output faults: commands of the step run to the end (their side
	// effects happen, their stderr and exit status are their own) but their
	// stdout reaches the client damaged, all at once when they end.
	//
	// TruncateStep cuts stdout in half, and trailing newlines off what is
	// left: output ends mid-way, without a final newline.
	TruncateStep string `json:"truncate_step,omitempty"`
	// DropLinesStep drops every DropEvery-th line of stdout (the 3rd, 6th,
	// ... when DropEvery is 0), or with DropMatching, the lines that regular
	// expression matches (a wrapper that filters what it does not like).
	DropLinesStep string `json:"drop_lines_step,omitempty"`
	DropEvery     int    `json:"drop_every,omitempty"`
	DropMatching  string `json:"drop_matching,omitempty"`
	// GarbageStep replaces stdout with bytes that are not text: NULs,
	// invalid UTF-8, stray newlines, at least as many bytes as the real
	// output (64 at least). The same command gets the same garbage.
	GarbageStep string `json:"garbage_step,omitempty"`

	// NeverEndsStep lets commands of the step run to the end, sends the
	// first half of their (possibly damaged) stdout, then neither closes
	// the output nor reports an exit status, like a command whose
	// background child kept its stdout open. A signal from the client
	// (reported as killed by it), the session or connection closing, or the
	// fault being lifted (the rest of the output and the real exit status
	// follow) ends it.
	NeverEndsStep string `json:"never_ends_step,omitempty"`

	// Unreadable replaces a file of the host with an empty directory of the
	// same name, as a botched repair (mkdir where a file belongs) leaves it:
	// `[ -f FILE ]` is false and reading it fails with "Is a directory".
	// The path is relative to the host's base_dir, or absolute inside the
	// host's root. The original is kept aside and put back when the fault is
	// lifted; if the directory was written into or replaced meanwhile, what
	// is there stays and the original goes next to it as
	// FILE.testenv-original, so nothing is ever deleted.
	Unreadable string `json:"unreadable,omitempty"`
}

// IsZero reports a host without faults.
func (f FaultSpec) IsZero() bool { return f == FaultSpec{} }

// String lists the active faults, e.g. "drop-ssh, fail-step=health"; "none".
func (f FaultSpec) String() string {
	var parts []string
	if f.DropSSH {
		parts = append(parts, "drop-ssh")
	}
	if f.Hang {
		parts = append(parts, "hang")
	}
	for _, s := range []struct{ flag, name string }{
		{"fail-step", f.FailStep}, {"hang-step", f.HangStep}, {"truncate-step", f.TruncateStep},
	} {
		if s.name != "" {
			parts = append(parts, s.flag+"="+s.name)
		}
	}
	switch {
	case f.DropLinesStep != "" && f.DropMatching != "":
		parts = append(parts, "drop-lines-step="+f.DropLinesStep+" (lines matching "+f.DropMatching+")")
	case f.DropLinesStep != "":
		parts = append(parts, "drop-lines-step="+f.DropLinesStep+" (every "+ordinal(f.dropEvery())+" line)")
	}
	for _, s := range []struct{ flag, name string }{
		{"garbage-step", f.GarbageStep}, {"never-ends-step", f.NeverEndsStep}, {"unreadable", f.Unreadable},
	} {
		if s.name != "" {
			parts = append(parts, s.flag+"="+s.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return strconv.Itoa(n) + "th"
	case n%10 == 1:
		return strconv.Itoa(n) + "st"
	case n%10 == 2:
		return strconv.Itoa(n) + "nd"
	case n%10 == 3:
		return strconv.Itoa(n) + "rd"
	}
	return strconv.Itoa(n) + "th"
}

func (f FaultSpec) dropEvery() int {
	if f.DropEvery <= 0 {
		return DefaultDropEvery
	}
	return f.DropEvery
}

// stepFaults is the part of the spec that decides what happens to one
// command; a change to it wakes held commands.
func (f FaultSpec) stepFaults() FaultSpec {
	f.DropSSH, f.Hang, f.Unreadable = false, false, ""
	return f
}

// validate keeps step names printable (FailStep goes into a message) and
// the unreadable path a plain path.
func (f FaultSpec) validate() error {
	for _, s := range []struct{ flag, name string }{
		{"fail step", f.FailStep}, {"hang step", f.HangStep}, {"truncate step", f.TruncateStep},
		{"drop-lines step", f.DropLinesStep}, {"garbage step", f.GarbageStep}, {"never-ends step", f.NeverEndsStep},
		{"unreadable file", f.Unreadable},
	} {
		if len(s.name) > 200 {
			return fmt.Errorf("testenv: %s name is longer than 200 bytes", s.flag)
		}
		if strings.TrimSpace(s.name) != s.name || strings.IndexFunc(s.name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("testenv: %s name %q: no control characters or surrounding spaces", s.flag, s.name)
		}
	}
	if f.DropEvery < 0 {
		return fmt.Errorf("testenv: drop every %d lines: want 1 or more (0: every %s)", f.DropEvery, ordinal(DefaultDropEvery))
	}
	if (f.DropEvery != 0 || f.DropMatching != "") && f.DropLinesStep == "" {
		return errors.New("testenv: drop-every and drop-matching need a drop-lines step")
	}
	if f.DropEvery != 0 && f.DropMatching != "" {
		return errors.New("testenv: drop every Nth line or the lines matching a regexp, not both")
	}
	if len(f.DropMatching) > 200 {
		return errors.New("testenv: drop-matching regexp is longer than 200 bytes")
	}
	if _, err := regexp.Compile(f.DropMatching); err != nil {
		return fmt.Errorf("testenv: drop-matching: %w", err)
	}
	if u := f.Unreadable; u != "" && !filepath.IsAbs(u) && (filepath.Clean(u) != u || u == "." || strings.HasPrefix(u, "../") || u == "..") {
		return fmt.Errorf("testenv: unreadable file %q: want a clean path inside the host's base_dir (no ..)", u)
	}
	return nil
}

// stepMatches says whether the fault step name covers a command's label. A
// label that joins several with "+" (relctl's "lock+read-state": the state
// read in the lock's session) is matched by each of them.
func stepMatches(name, label string) bool {
	if name == "" || label == "" {
		return false
	}
	if parts := strings.Split(label, "+"); len(parts) > 1 {
		for _, part := range parts {
			if stepMatches(name, part) {
				return true
			}
		}
		return false
	}
	if name == label {
		return true
	}
	if _, after, ok := strings.Cut(label, "/"); ok && after == name {
		return true
	}
	first, _, ok := strings.Cut(label, " ")
	return ok && first == name
}

// stepOf is the command's label: the last RELCTL_STEP the client sent.
func stepOf(env []string) string {
	step := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, StepEnv+"="); ok {
			step = v
		}
	}
	return step
}

// outputFault is what the output faults and NeverEndsStep do to one
// command of step.
type outputFault struct {
	drop      int            // every drop-th line dropped; 0: none
	dropRE    *regexp.Regexp // or the lines it matches (without their newline)
	truncate  bool
	garbage   bool
	neverEnds bool
}

func (o outputFault) none() bool { return o == outputFault{} }

func (f FaultSpec) outputFaultFor(step string) outputFault {
	var o outputFault
	if stepMatches(f.DropLinesStep, step) {
		if f.DropMatching != "" {
			o.dropRE = regexp.MustCompile(f.DropMatching) // validated when set
		} else {
			o.drop = f.dropEvery()
		}
	}
	o.truncate = stepMatches(f.TruncateStep, step)
	o.garbage = stepMatches(f.GarbageStep, step)
	o.neverEnds = stepMatches(f.NeverEndsStep, step)
	return o
}

// damage applies the output faults to out; label seeds the garbage.
func (o outputFault) damage(out []byte, label string) []byte {
	if o.drop > 0 || o.dropRE != nil {
		var kept []byte
		for i, line := range bytes.SplitAfter(out, []byte("\n")) {
			switch {
			case o.dropRE != nil && o.dropRE.Match(bytes.TrimSuffix(line, []byte("\n"))):
			case o.drop > 0 && (i+1)%o.drop == 0:
			default:
				kept = append(kept, line...)
			}
		}
		out = kept
	}
	if o.truncate {
		out = bytes.TrimRight(out[:len(out)/2], "\n")
	}
	if o.garbage {
		out = garbage(label, max(len(out), 64))
	}
	return out
}

// garbage is n bytes that no parser of text should accept, the same for the
// same label: NUL, invalid UTF-8 and a newline first, then random bytes.
func garbage(label string, n int) []byte {
	h := fnv.New64a()
	h.Write([]byte(label))
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(n)))
	out := make([]byte, n)
	copy(out, "\x00\xff\xfe\n\xc3\x28--\x00")
	for i := 9; i < n; i++ {
		out[i] = byte(r.UintN(256))
	}
	return out[:n]
}

// unreadableFile is an applied Unreadable fault: the directory now at path
// and where the original went (stash; "" when there was none).
type unreadableFile struct {
	name  string // as given in the spec
	path  string
	stash string
}

// resolveUnreadable maps the spec's path to one inside the host's root.
func (h *sshHost) resolveUnreadable(name string) (string, error) {
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(h.info.BaseDir, p)
	}
	p = filepath.Clean(p)
	rel, err := filepath.Rel(h.info.Root, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("testenv: %s: unreadable file %q is not inside the host (%s)", h.info.Name, name, h.info.Root)
	}
	return p, nil
}

// makeUnreadable moves the file at name aside and puts an empty directory
// in its place.
func (h *sshHost) makeUnreadable(name string) (*unreadableFile, error) {
	p, err := h.resolveUnreadable(name)
	if err != nil {
		return nil, err
	}
	u := &unreadableFile{name: name, path: p}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("testenv: %s: unreadable %s: %w", h.info.Name, name, err)
	}
	if _, err := os.Lstat(p); err == nil {
		stashDir := filepath.Join(h.info.Root, ".testenv-faults")
		if err := os.MkdirAll(stashDir, 0o700); err != nil {
			return nil, fmt.Errorf("testenv: %s: unreadable %s: %w", h.info.Name, name, err)
		}
		tmp, err := os.MkdirTemp(stashDir, "unreadable-*")
		if err != nil {
			return nil, fmt.Errorf("testenv: %s: unreadable %s: %w", h.info.Name, name, err)
		}
		u.stash = filepath.Join(tmp, filepath.Base(p))
		if err := os.Rename(p, u.stash); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("testenv: %s: unreadable %s: %w", h.info.Name, name, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("testenv: %s: unreadable %s: %w", h.info.Name, name, err)
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		if u.stash != "" {
			os.Rename(u.stash, p)
			os.Remove(filepath.Dir(u.stash))
		}
		return nil, fmt.Errorf("testenv: %s: unreadable %s: %w", h.info.Name, name, err)
	}
	return u, nil
}

// restore puts the original back if the directory is still empty; else
// it leaves what is there and puts the original next to it.
func (u *unreadableFile) restore() (kept string, err error) {
	fi, lerr := os.Lstat(u.path)
	untouched := false
	if lerr == nil && fi.IsDir() {
		entries, rerr := os.ReadDir(u.path)
		untouched = rerr == nil && len(entries) == 0
	}
	switch {
	case untouched:
		if err := os.Remove(u.path); err != nil {
			return "", err
		}
	case errors.Is(lerr, fs.ErrNotExist):
		// Removed meanwhile: the original goes back.
	default:
		kept = u.path
		if u.stash == "" {
			return kept, nil
		}
		return kept, u.unstash(u.path + ".testenv-original")
	}
	if u.stash == "" {
		return "", nil
	}
	return "", u.unstash(u.path)
}

// unstash moves the original to dst and removes its temporary directory.
func (u *unreadableFile) unstash(dst string) error {
	if err := os.Rename(u.stash, dst); err != nil {
		return err
	}
	return os.Remove(filepath.Dir(u.stash))
}

// SetFault replaces host's faults with f; SetFault(host, FaultSpec{})
// clears them. Held commands and requests are released as their fault
// goes away.
func (c *Cluster) SetFault(host string, f FaultSpec) error {
	return c.editFault(host, func(FaultSpec) FaultSpec { return f })
}

func (c *Cluster) editFault(host string, edit func(FaultSpec) FaultSpec) error {
	h, err := c.host(host)
	if err != nil {
		return err
	}
	f, err := h.editFault(edit)
	if err != nil {
		return err
	}
	c.log.Info().Str("host", host).Stringer("faults", f).Msg("testenv fault")
	return nil
}

// Faults returns the faults of every host that has any, by host name.
func (c *Cluster) Faults() map[string]FaultSpec {
	out := map[string]FaultSpec{}
	for _, h := range c.hosts {
		if f := h.faults(); !f.IsZero() {
			out[h.info.Name] = f
		}
	}
	return out
}

// Held counts, per host name, the commands a HangStep or NeverEndsStep
// fault holds now: a test waits for it to know relctl reached the step.
func (c *Cluster) Held() map[string]int {
	out := make(map[string]int, len(c.hosts))
	for _, h := range c.hosts {
		out[h.info.Name] = int(h.held.Load())
	}
	return out
}

// SetSSHDown sets or clears only the DropSSH fault of host: its listener
// closes (dials are refused) and live connections drop; processes on the
// host keep running. SetSSHDown(host, false) reopens the same port.
func (c *Cluster) SetSSHDown(host string, down bool) error {
	return c.editFault(host, func(f FaultSpec) FaultSpec {
		f.DropSSH = down
		return f
	})
}
