package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
	"github.com/rs/zerolog"
)

// Reading on-host files. Every read script prints, per file or directory, a
// marker line with a status word - present, absent, or unreadable and why -
// then, for a present file, exactly as many bytes as it announced; and an end
// marker. A path that exists but cannot be read (a directory where a file
// belongs, a symlink to nothing, a file the SSH user may not read, a
// directory it may not search on the way) is never reported as absent, and
// the parsers never panic on output that is not what the script prints.

// ErrHostState marks on-host state relctl refuses to act on: a file or
// directory it cannot read, or one whose content is corrupt (*StateError).
var ErrHostState = errors.New("on-host state unreadable or corrupt")

// ErrHostOutput marks a host's answer that is not what relctl's read
// script prints: truncated, lines missing or reordered, garbage
// (*OutputError).
var ErrHostOutput = errors.New("unexpected output from the host")

// StateError is a file or directory on a host that relctl will neither
// trust nor write over: what is wrong with it, and how to fix it.
type StateError struct {
	Path    string // the file or directory on the host
	Problem string // follows Path: " is a directory", ": not valid JSON at byte 17: ..."
	Fix     string // what the operator does about it
}

func (e *StateError) Error() string { return e.Path + e.Problem + "; " + e.Fix }

// Is makes every StateError ErrHostState.
func (e *StateError) Is(target error) bool { return target == ErrHostState }

// OutputError is a read script's output that does not parse.
type OutputError struct {
	What   string // what was read: "host state", a file's path
	Reason string
	Near   string // the output where it went wrong
}

func (e *OutputError) Error() string {
	return fmt.Sprintf("unexpected output reading %s (%s) at %q: the host's shell or a wrapper around it printed something else; see the run log", e.What, e.Reason, e.Near)
}

// Is makes every OutputError ErrHostOutput.
func (e *OutputError) Is(target error) bool { return target == ErrHostOutput }

// Status words of a read script.
const (
	statusPresent    = "present"
	statusAbsent     = "absent"
	statusUnreadable = "unreadable"
	sumAbsent        = "absent" // HostFile.SHA256 of a file that is not there
)

const (
	markEnd  = "--relctl-end--"
	markFile = "--relctl-file--"
)

// maxFileBytes bounds what a read script sends back for one file.
const maxFileBytes = 32 << 20

// scriptPrelude defines what the write scripts use: relctl_refuse prints its
// message and exits 3; relctl_sha256 hashes stdin.
const scriptPrelude = `relctl_refuse() { printf '%s\n' "$1" >&2; exit 3; }
relctl_sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; elif command -v shasum >/dev/null 2>&1; then shasum -a 256; else echo 'relctl: neither sha256sum nor shasum is installed on this host' >&2; return 127; fi; }`

// ancestors lists dir and the directories above it (not "/" or "."), top
// first: each must be a directory the SSH user can search for a file below
// it to be readable.
func ancestors(dir string) []string {
	dir = path.Clean(dir)
	var out []string
	for dir != "/" && dir != "." && dir != "" {
		out = append(out, dir)
		dir = path.Dir(dir)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// ancestorCheck sets relctl_s to "absent" when a directory above is missing,
// or to "unreadable cannot-search I" / "unreadable parent-not-directory I"
// (I indexes ancestors(dir)); it leaves relctl_s empty when all are there.
func ancestorCheck(dir string) string {
	anc := ancestors(dir)
	if len(anc) == 0 {
		return ""
	}
	q := make([]string, len(anc))
	for i, a := range anc {
		q[i] = shellquote.Quote(a)
	}
	return fmt.Sprintf(`relctl_i=0
for relctl_d in %s; do
  if [ -d "$relctl_d" ]; then [ -x "$relctl_d" ] || { relctl_s="unreadable cannot-search $relctl_i"; break; }
  elif [ -e "$relctl_d" ] || [ -L "$relctl_d" ]; then relctl_s="unreadable parent-not-directory $relctl_i"; break
  else relctl_s=absent; break; fi
  relctl_i=$((relctl_i+1))
done`, strings.Join(q, " "))
}

// readFileSection prints one file: "MARK absent", "MARK unreadable REASON..."
// (size and mode come from one stat, wc -c where stat fails)
// or "MARK present SIZE MODE", SIZE bytes and a newline. mark is shell text
// (words, possibly a variable), file a shell word naming the file, and dir
// the directory whose ancestors are checked first ("" for none).
func readFileSection(mark, file, dir string) string {
	return fmt.Sprintf(`relctl_s=
%[3]s
relctl_f=%[2]s
if [ -z "$relctl_s" ]; then
  if [ -L "$relctl_f" ] && ! [ -e "$relctl_f" ]; then relctl_s="unreadable dangling-symlink"
  elif [ -d "$relctl_f" ]; then relctl_s="unreadable directory"
  elif ! [ -e "$relctl_f" ]; then relctl_s=absent
  elif ! [ -f "$relctl_f" ]; then relctl_s="unreadable not-regular"
  elif ! [ -r "$relctl_f" ]; then relctl_s="unreadable permission"
  else
    if relctl_n=$(stat -L -c '%%s %%a' -- "$relctl_f" 2>/dev/null); then set -- $relctl_n; relctl_n=${1:-x} relctl_m=${2:--}
    elif relctl_n=$(wc -c < "$relctl_f"); then set -- $relctl_n; relctl_n=${1:-x} relctl_m=-
    else relctl_n=x; fi
    case $relctl_n in *[!0-9]*) relctl_s="unreadable read-failed";; esac
    if [ -z "$relctl_s" ] && [ "$relctl_n" -gt %[4]d ]; then relctl_s="unreadable too-large $relctl_n"; fi
  fi
fi
if [ -n "$relctl_s" ]; then echo %[1]s $relctl_s
else echo %[1]s present $relctl_n ${relctl_m:--}; cat -- "$relctl_f"; echo
fi`, mark, file, ancestorCheck(dir), maxFileBytes)
}

// HostFile is one file as a host has it.
type HostFile struct {
	Path    string
	Present bool
	Body    []byte
	Mode    uint32 // permission bits, when ModeKnown
	// ModeKnown says whether the host reported the mode (stat -c %a).
	ModeKnown bool
	SHA256    string // hex sha256 of Body, or "absent"
}

// ReadFileScript prints the file at p for ParseFileRead.
func ReadFileScript(p string) string {
	return readFileSection(markFile, shellquote.Quote(p), path.Dir(p)) + "\necho " + markEnd
}

// ParseFileRead reads ReadFileScript(p)'s output: the file, or nil and a
// *StateError (unreadable) or *OutputError (not the script's output).
func ParseFileRead(p string, out []byte) (*HostFile, error) {
	r := &reply{out: string(out), what: p}
	f, err := r.file(markFile, p)
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return f, nil
}

// ReadFile reads one file of a host (label names the command in the run log).
// A missing file is Present false; one that cannot be read is an error.
func ReadFile(ctx context.Context, conn transport.Conn, p, label string, quiet bool) (*HostFile, error) {
	if label == "" {
		label = "read " + p
	}
	res, err := conn.Run(ctx, ReadFileScript(p), transport.RunOptions{Label: label, QuietStdout: quiet})
	if err != nil {
		return nil, err
	}
	return ParseFileRead(p, res.Stdout)
}

// DecodeJSONFile decodes an on-host JSON file's bytes into v (a pointer to
// a struct). An empty file, or one that is not one JSON object, is a
// *StateError naming p, where it went wrong and the fix.
func DecodeJSONFile(p string, body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return &StateError{Path: p, Problem: " is empty", Fix: "it was truncated: restore it, or remove it (rm " + shellquote.Quote(p) + ") if nothing in it is needed; then re-run"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return &StateError{Path: p, Problem: fmt.Sprintf(": not valid JSON at byte %d: %v", syntax.Offset, err), Fix: fixCorrupt(p)}
		case errors.As(err, &typ):
			return &StateError{Path: p, Problem: fmt.Sprintf(": unexpected JSON at byte %d: %v", typ.Offset, err), Fix: fixCorrupt(p)}
		default:
			return &StateError{Path: p, Problem: fmt.Sprintf(": not valid: %v", err), Fix: fixCorrupt(p)}
		}
	}
	if trimmed[0] != '{' {
		return &StateError{Path: p, Problem: fmt.Sprintf(": holds %s, not a JSON object", truncate(string(trimmed), 20)), Fix: fixCorrupt(p)}
	}
	return nil
}

func fixCorrupt(p string) string {
	return "fix or restore it (keep a copy first: cp " + shellquote.Quote(p) + " " + shellquote.Quote(p+".broken") + "), then re-run"
}

func fixMoveAside(p string) string {
	return "move it aside (mv " + shellquote.Quote(p) + " " + shellquote.Quote(p+".broken") + ") after checking it, then re-run"
}

// problem says what is wrong with p for a read script's reason words, and
// the fix; anc is what an index in the words refers to.
func problem(p string, anc []string, words []string) *StateError {
	reason, arg := "", ""
	if len(words) > 0 {
		reason = words[0]
	}
	if len(words) > 1 {
		arg = words[1]
	}
	ancestor := func() (string, bool) {
		i, err := strconv.Atoi(arg)
		if err != nil || i < 0 || i >= len(anc) {
			return "", false
		}
		return anc[i], true
	}
	switch reason {
	case "directory":
		return &StateError{Path: p, Problem: " is a directory", Fix: fixMoveAside(p)}
	case "dangling-symlink":
		return &StateError{Path: p, Problem: " is a symlink to nothing (dangling, or a loop)", Fix: "point it at the right file or remove it (rm " + shellquote.Quote(p) + ") after checking it, then re-run"}
	case "not-regular":
		return &StateError{Path: p, Problem: " is not a regular file", Fix: fixMoveAside(p)}
	case "not-symlink":
		return &StateError{Path: p, Problem: " is not a symlink", Fix: fixMoveAside(p)}
	case "not-directory":
		return &StateError{Path: p, Problem: " is not a directory", Fix: fixMoveAside(p)}
	case "permission":
		return &StateError{Path: p, Problem: " cannot be read by the SSH user", Fix: "give that user access to it (chown or chmod), then re-run"}
	case "too-large":
		return &StateError{Path: p, Problem: fmt.Sprintf(" is %s bytes, more than relctl reads (%d)", truncate(arg, 20), maxFileBytes), Fix: fixMoveAside(p)}
	case "cannot-search":
		if a, ok := ancestor(); ok {
			return &StateError{Path: a, Problem: " cannot be searched by the SSH user, so " + p + " cannot be read", Fix: "give that user access to it (chmod u+x or chown), then re-run"}
		}
	case "parent-not-directory":
		if a, ok := ancestor(); ok {
			return &StateError{Path: a, Problem: " is not a directory, so " + p + " cannot be read", Fix: fixMoveAside(a)}
		}
	case "read-failed":
		return &StateError{Path: p, Problem: " could not be read", Fix: "check it and the disk on the host, then re-run"}
	}
	return &StateError{Path: p, Problem: fmt.Sprintf(" is unreadable (%q)", truncate(strings.Join(words, " "), 60)), Fix: "check it on the host, then re-run"}
}

// guardReplace is sh (for a script with scriptPrelude) that exits 3 with a
// message, changing nothing, unless p is absent or a regular file the SSH
// user can read; and, when expect is not "", unless p's sha256 is still
// expect ("absent": p must not exist). onChanged runs instead of refusing
// when only the checksum differs ("" refuses).
func guardReplace(p, expect, onChanged string) string {
	q := shellquote.Quote(p)
	refuse := func(e *StateError) string {
		return "relctl_refuse " + shellquote.Quote(e.Path+e.Problem+": relctl will not replace it; "+e.Fix)
	}
	lines := []string{
		fmt.Sprintf(`if [ -L %[1]s ] && ! [ -e %[1]s ]; then %[2]s; fi`, q, refuse(problem(p, nil, []string{"dangling-symlink"}))),
		fmt.Sprintf(`if [ -d %[1]s ]; then %[2]s; fi`, q, refuse(problem(p, nil, []string{"directory"}))),
		fmt.Sprintf(`if [ -e %[1]s ] && ! [ -f %[1]s ]; then %[2]s; fi`, q, refuse(problem(p, nil, []string{"not-regular"}))),
		fmt.Sprintf(`if [ -e %[1]s ] && ! [ -r %[1]s ]; then %[2]s; fi`, q, refuse(problem(p, nil, []string{"permission"}))),
	}
	if expect != "" {
		if onChanged == "" {
			onChanged = "relctl_refuse " + shellquote.Quote(p+" "+ChangedSinceRead+" (another run, or someone on the host): nothing was changed; check it, then re-run")
		}
		lines = append(lines,
			fmt.Sprintf(`if [ -e %[1]s ]; then relctl_now=$(relctl_sha256 < %[1]s) || relctl_refuse %[2]s; set -- $relctl_now; relctl_now=${1:-}; else relctl_now=%[3]s; fi`,
				q, shellquote.Quote("cannot checksum "+p+": nothing was changed"), sumAbsent),
			fmt.Sprintf(`if [ "$relctl_now" != %s ]; then %s; fi`, shellquote.Quote(expect), onChanged))
	}
	return strings.Join(lines, "\n")
}

// removeOnExit removes the temp file (a shell word) when the script exits,
// if it is still there. The trap names it through a variable: a quoted path
// inside the trap's own quotes would lose its quoting.
func removeOnExit(tmp string) string {
	return "relctl_tmp=" + tmp + "\ntrap '[ ! -e \"$relctl_tmp\" ] || rm -f -- \"$relctl_tmp\"' EXIT"
}

// ChangedSinceRead is in the refusal of a script that finds a file it
// replaces changed since relctl read it (exit status 3).
const ChangedSinceRead = "changed since relctl read it"

// reply is a read script's output, consumed a line (or, for a file's
// bytes, a length) at a time.
type reply struct {
	out  string
	pos  int
	what string
	last int // where the last line read started, for errors
}

func (r *reply) fail(reason string) error {
	return &OutputError{What: r.what, Reason: reason, Near: truncate(r.out[r.last:], 80)}
}

// line returns the next line without its newline. Output that ends without
// one was cut short.
func (r *reply) line() (string, error) {
	r.last = r.pos
	rest := r.out[r.pos:]
	i := strings.IndexByte(rest, '\n')
	if i < 0 {
		if rest == "" {
			return "", r.fail("the output ends early")
		}
		return "", r.fail("the output ends in the middle of a line")
	}
	r.pos += i + 1
	return rest[:i], nil
}

// atMarker says whether the next line is one of relctl's markers.
func (r *reply) atMarker() bool {
	return strings.HasPrefix(r.out[r.pos:], "--relctl-") || r.pos >= len(r.out)
}

type sectionStatus struct {
	word string   // present, absent, unreadable
	args []string // after the word
}

// header reads a section's marker line, "MARK WORD ARGS...".
func (r *reply) header(mark string) (sectionStatus, error) {
	line, err := r.line()
	if err != nil {
		return sectionStatus{}, err
	}
	rest, ok := strings.CutPrefix(line, mark+" ")
	if !ok {
		return sectionStatus{}, r.fail("expected the " + mark + " line")
	}
	return r.status(strings.Fields(rest))
}

func (r *reply) status(f []string) (sectionStatus, error) {
	if len(f) == 0 {
		return sectionStatus{}, r.fail("no status word")
	}
	st := sectionStatus{word: f[0], args: f[1:]}
	switch {
	case st.word == statusAbsent && len(st.args) == 0,
		st.word == statusUnreadable && len(st.args) > 0,
		st.word == statusPresent:
		return st, nil
	}
	return sectionStatus{}, r.fail("unknown status " + strconv.Quote(truncate(strings.Join(f, " "), 40)))
}

// file reads one readFileSection of the file p.
func (r *reply) file(mark, p string) (*HostFile, error) {
	st, err := r.header(mark)
	if err != nil {
		return nil, err
	}
	return r.fileBody(st, p)
}

// fileBody reads what follows a file's marker line.
func (r *reply) fileBody(st sectionStatus, p string) (*HostFile, error) {
	switch st.word {
	case statusAbsent:
		return &HostFile{Path: p, SHA256: sumAbsent}, nil
	case statusUnreadable:
		return nil, problem(p, ancestors(path.Dir(p)), st.args)
	}
	if len(st.args) < 1 || len(st.args) > 2 {
		return nil, r.fail("a present file needs its size and mode")
	}
	size, err := strconv.Atoi(st.args[0])
	if err != nil || size < 0 || size > maxFileBytes {
		return nil, r.fail("not a file size")
	}
	f := &HostFile{Path: p, Present: true}
	if len(st.args) == 2 && st.args[1] != "-" {
		if m, err := strconv.ParseUint(st.args[1], 8, 32); err == nil && m <= 0o7777 {
			f.Mode, f.ModeKnown = uint32(m)&0o777, true
		}
	}
	if len(r.out)-r.pos < size+1 || r.out[r.pos+size] != '\n' {
		r.last = r.pos
		return nil, r.fail(fmt.Sprintf("%s: %d bytes announced, a different number sent (cut short, or changed while read)", p, size))
	}
	f.Body = []byte(r.out[r.pos : r.pos+size])
	r.pos += size + 1
	sum := sha256.Sum256(f.Body)
	f.SHA256 = hex.EncodeToString(sum[:])
	return f, nil
}

// end reads the end marker, which must be the last line.
func (r *reply) end() error {
	line, err := r.line()
	if err != nil {
		return err
	}
	if line != markEnd {
		return r.fail("expected the end marker")
	}
	if r.pos != len(r.out) {
		r.last = r.pos
		return r.fail("output after the end marker")
	}
	return nil
}

// RunsDir holds the host's run summaries, one <runid>.json per run.
func (l Layout) RunsDir() string { return path.Join(l.StateDir(), "runs") }

// maxHostRunSummaries bounds what each host keeps.
const maxHostRunSummaries = 50

// historyReadScript prints history.json alone, as ReadScript does.
func (l Layout) historyReadScript() string {
	return readFileSection(markHistory, shellquote.Quote(l.HistoryFile()), l.StateDir()) + "\necho " + markEnd
}

// parseHistoryRead reads historyReadScript's output.
func (l Layout) parseHistoryRead(out []byte) (*History, string, error) {
	r := &reply{out: string(out), what: l.HistoryFile()}
	f, err := r.file(markHistory, l.HistoryFile())
	if err != nil {
		return nil, "", err
	}
	if err := r.end(); err != nil {
		return nil, "", err
	}
	if !f.Present {
		return &History{}, f.SHA256, nil
	}
	h, err := ParseHistory(l.HistoryFile(), f.Body)
	if err != nil {
		return nil, "", err
	}
	return h, f.SHA256, nil
}

// AppendHistoryEvent adds ev to the host's history.json. The file is read,
// extended and written back (temp file + rename) only if it did not change in
// between, so a concurrent writer is retried rather than overwritten. A
// history that cannot be read, or is corrupt, is refused and left alone.
func AppendHistoryEvent(ctx context.Context, conn transport.Conn, layout Layout, ev HistoryEvent) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	hist := layout.HistoryFile()
	const attempts = 5
	for range attempts {
		res, err := conn.Run(ctx, layout.historyReadScript(), transport.RunOptions{Label: "read history"})
		if err != nil {
			return err
		}
		h, want, err := layout.parseHistoryRead(res.Stdout)
		if err != nil {
			return err
		}
		h.Events = append(h.Events, ev)
		body, err := json.MarshalIndent(h, "", "  ")
		if err != nil {
			return err
		}
		tmp := hist + ".tmp.event." + randomSuffix()
		script := strings.Join([]string{
			"set -e",
			scriptPrelude,
			fmt.Sprintf("[ -d %[1]s ] || mkdir -p %[1]s", shellquote.Quote(layout.StateDir())),
			// Form, body, form and sha256, rename (see ActivateScriptIfUnchanged).
			guardReplace(hist, "", ""),
			removeOnExit(shellquote.Quote(tmp)),
			fmt.Sprintf(`cat > %[1]s
[ -s %[1]s ] || relctl_refuse 'no history arrived on stdin: nothing was changed'`, shellquote.Quote(tmp)),
			guardReplace(hist, want, "echo changed; exit 0"),
			fmt.Sprintf(`mv -f -T %[1]s %[2]s
echo written`, shellquote.Quote(tmp), shellquote.Quote(hist)),
		}, "\n")
		res, err = conn.Run(ctx, script, transport.RunOptions{Label: "write history", Stdin: strings.NewReader(string(body) + "\n")})
		if err != nil {
			return err
		}
		switch word, _ := firstLine(res.Stdout); word {
		case "written":
			return nil
		case "changed":
			continue
		default:
			return fmt.Errorf("unexpected output writing %s: %q", hist, truncate(string(res.Stdout), 200))
		}
	}
	return fmt.Errorf("%s kept changing while an event was added; try again", hist)
}

// HostRunSummary is a host's own record of one run: <base>/.relctl/runs/<runid>.json.
type HostRunSummary struct {
	RunID      string       `json:"run_id"`
	Env        string       `json:"env"`
	Command    string       `json:"command"`
	Release    string       `json:"release,omitempty"`
	From       string       `json:"from,omitempty"`
	Operator   string       `json:"operator"`
	Controller string       `json:"controller"`
	Started    time.Time    `json:"started"`
	Finished   time.Time    `json:"finished"`
	Result     string       `json:"result"`
	Host       string       `json:"host"`
	Steps      []StepRecord `json:"steps,omitempty"`
}

// StepRecord is one step of a run on one host.
type StepRecord struct {
	Phase   string        `json:"phase"`
	Name    string        `json:"name"`
	Status  string        `json:"status"`
	Detail  string        `json:"detail,omitempty"`
	Error   string        `json:"error,omitempty"`
	Started time.Time     `json:"started,omitzero"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// WriteHostRunSummary stores s on the host (RunSummaryScript).
func WriteHostRunSummary(ctx context.Context, conn transport.Conn, layout Layout, s HostRunSummary) error {
	script, body, err := RunSummaryScript(layout, s)
	if err != nil {
		return err
	}
	_, err = conn.Run(ctx, script, transport.RunOptions{Label: "write run summary", Stdin: bytes.NewReader(body)})
	return err
}

// RunSummaryScript is the script that stores s on the host (temp file +
// rename) and keeps only the newest maxHostRunSummaries summaries (run ids
// sort by time), and the body it reads on stdin. Something other than a
// regular file in the summary's place is refused.
func RunSummaryScript(layout Layout, s HostRunSummary) (script string, stdin []byte, err error) {
	if err := checkRunID(s.RunID); err != nil {
		return "", nil, err
	}
	body, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", nil, err
	}
	dir := layout.RunsDir()
	tmp := path.Join(dir, ".tmp."+s.RunID)
	final := path.Join(dir, s.RunID+".json")
	script = strings.Join([]string{
		"set -e",
		scriptPrelude,
		fmt.Sprintf("[ -d %[1]s ] || mkdir -p %[1]s", shellquote.Quote(dir)),
		guardReplace(final, "", ""),
		// The old summaries are listed and sorted only when there are too
		// many: most runs start no process for it.
		fmt.Sprintf(`cat > %[1]s
[ -s %[1]s ] || { rm -f %[1]s; relctl_refuse 'no run summary arrived on stdin: nothing was changed'; }
mv -f -T %[1]s %[2]s
cd %[3]s
set -- *.json
if [ "$#" -gt %[4]d ]; then
  ls -1 | grep '\.json$' | sort -r | sed 1,%[4]dd | while IFS= read -r f; do [ -f "$f" ] && rm -f -- "$f"; done; true
fi`,
			shellquote.Quote(tmp), shellquote.Quote(final), shellquote.Quote(dir), maxHostRunSummaries),
	}, "\n")
	return script, append(body, '\n'), nil
}

const (
	markRuns    = "--relctl-runs--"
	markSummary = "--relctl-run-summary--"
)

// runSummariesScript prints the runs directory's status, then each summary
// file as "MARK NAME STATUS..." (names of other shapes are not relctl's and
// are skipped), then the end marker.
func (l Layout) runSummariesScript() string {
	dir := l.RunsDir()
	return fmt.Sprintf(`relctl_s=
%[1]s
relctl_r=%[2]s
if [ -n "$relctl_s" ]; then echo %[3]s $relctl_s
elif [ -L "$relctl_r" ] && ! [ -e "$relctl_r" ]; then echo %[3]s unreadable dangling-symlink
elif [ -d "$relctl_r" ]; then
  if ! [ -r "$relctl_r" ] || ! [ -x "$relctl_r" ]; then echo %[3]s unreadable permission
  elif cd "$relctl_r"; then
    echo %[3]s present
    for relctl_g in *.json; do
      case $relctl_g in *[!A-Za-z0-9._-]*|.*) continue;; esac
      [ -e "$relctl_g" ] || [ -L "$relctl_g" ] || continue
      %[4]s
    done
  else echo %[3]s unreadable read-failed; fi
elif [ -e "$relctl_r" ]; then echo %[3]s unreadable not-directory
else echo %[3]s absent; fi
echo %[5]s`, ancestorCheck(path.Dir(dir)), shellquote.Quote(dir), markRuns,
		strings.ReplaceAll(readFileSection(markSummary+` "$relctl_g"`, `"$relctl_g"`, ""), "\n", "\n      "), markEnd)
}

// ParseHostRunSummaries reads the output of the run summaries script for
// the runs directory dir: the summaries that parse, a *StateError for each
// one that does not (one damaged file must not hide the others), or an
// error when the directory cannot be read or the output is not the
// script's.
func ParseHostRunSummaries(dir string, out []byte) ([]HostRunSummary, []error, error) {
	r := &reply{out: string(out), what: dir}
	st, err := r.header(markRuns)
	if err != nil {
		return nil, nil, err
	}
	switch st.word {
	case statusUnreadable:
		return nil, nil, problem(dir, ancestors(path.Dir(dir)), st.args)
	case statusAbsent:
		return nil, nil, r.end()
	}
	if len(st.args) != 0 {
		return nil, nil, r.fail("unexpected words after present")
	}
	var sums []HostRunSummary
	var problems []error
	seen := map[string]bool{}
	for !strings.HasPrefix(r.out[r.pos:], markEnd) {
		line, err := r.line()
		if err != nil {
			return nil, nil, err
		}
		rest, ok := strings.CutPrefix(line, markSummary+" ")
		if !ok {
			return nil, nil, r.fail("expected a " + markSummary + " line")
		}
		f := strings.Fields(rest)
		if len(f) < 2 || strings.ContainsAny(f[0], "/\x00") || seen[f[0]] {
			return nil, nil, r.fail("not a run summary's name and status")
		}
		seen[f[0]] = true
		name := path.Join(dir, f[0])
		st, err := r.status(f[1:])
		if err != nil {
			return nil, nil, err
		}
		file, err := r.fileBody(st, name)
		if err != nil {
			var se *StateError
			if errors.As(err, &se) {
				problems = append(problems, err)
				continue
			}
			return nil, nil, err
		}
		if !file.Present {
			continue // gone between the listing and the read
		}
		var s HostRunSummary
		if err := DecodeJSONFile(name, file.Body, &s); err != nil {
			problems = append(problems, err)
			continue
		}
		if s.RunID == "" {
			problems = append(problems, &StateError{Path: name, Problem: ": no run_id", Fix: fixCorrupt(name)})
			continue
		}
		sums = append(sums, s)
	}
	if err := r.end(); err != nil {
		return nil, nil, err
	}
	sort.SliceStable(sums, func(i, j int) bool {
		if !sums[i].Started.Equal(sums[j].Started) {
			return sums[i].Started.After(sums[j].Started)
		}
		return sums[i].RunID > sums[j].RunID
	})
	return sums, problems, nil
}

// ReadHostRunSummariesAll returns every run summary on the host that
// parses, newest first, and a *StateError for each one that does not. A
// runs directory that cannot be read is an error (a missing one is none).
func ReadHostRunSummariesAll(ctx context.Context, conn transport.Conn, layout Layout) ([]HostRunSummary, []error, error) {
	res, err := conn.Run(ctx, layout.runSummariesScript(), transport.RunOptions{Label: "read run summaries"})
	if err != nil {
		return nil, nil, err
	}
	return ParseHostRunSummaries(layout.RunsDir(), res.Stdout)
}

// ReadHostRunSummaries returns every run summary on the host, newest first.
// A summary that does not parse is skipped (and logged): one damaged file
// must not hide the others.
func ReadHostRunSummaries(ctx context.Context, conn transport.Conn, layout Layout) ([]HostRunSummary, error) {
	sums, problems, err := ReadHostRunSummariesAll(ctx, conn, layout)
	if err != nil {
		return nil, err
	}
	log := zerolog.Ctx(ctx)
	for _, p := range problems {
		log.Warn().Str("host", conn.Host()).Err(p).Msg("skipping an unreadable run summary")
	}
	return sums, nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ReadHostState reads a host's release state (current, releases, history)
// in one command. Output cut short or mangled is read once more (a file
// replaced while it was read looks the same) before it is an error.
func ReadHostState(ctx context.Context, conn transport.Conn, l Layout, label string) (*HostState, error) {
	var err error
	for range 2 {
		var res *transport.Result
		res, err = conn.Run(ctx, l.ReadScript(), transport.RunOptions{Label: label})
		if err != nil {
			return nil, err
		}
		var st *HostState
		if st, err = l.ParseHostState(string(res.Stdout)); err == nil || !errors.Is(err, ErrHostOutput) {
			return st, err
		}
	}
	return nil, err
}
