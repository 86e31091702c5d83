package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// JournalEvent is one line of a run's journal on the controller.
type JournalEvent struct {
	Time  time.Time `json:"time"`
	RunID string    `json:"run_id"`
	// Kind: run-start | step-start | step-end | rollback-start | undo-start |
	// undo-end | check-end | run-end | lock-takeover
	Kind string `json:"kind"`

	// On run-start.
	Env        string `json:"env,omitempty"`
	Command    string `json:"command,omitempty"`
	Release    string `json:"release,omitempty"`
	From       string `json:"from,omitempty"`
	Operator   string `json:"operator,omitempty"`
	Controller string `json:"controller,omitempty"`

	// On step and undo events; Status is ok | failed | skipped.
	Host   string `json:"host,omitempty"`
	Step   string `json:"step,omitempty"`
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`

	// On run-end: succeeded | rolled-back | failed | rollback-failed | interrupted | refused.
	Result string            `json:"result,omitempty"`
	Hosts  map[string]string `json:"hosts,omitempty"` // host -> release it ended on
}

// Journal is a run's append-only event log: <stateDir>/runs/<runID>.jsonl.
// Every event is synced to disk before Append returns, so after a crash (even
// kill -9) the journal says exactly how far the run got.
type Journal struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	runID  string
	redact func(string) string
}

// SetRedactor makes Append pass every event's text (command, error,
// detail) through redact first: it masks the run's secrets. Call it before
// the run appends events.
func (j *Journal) SetRedactor(redact func(string) string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.redact = redact
}

// JournalPath is where a run's journal lives.
func JournalPath(stateDir, runID string) string {
	return filepath.Join(stateDir, "runs", runID+".jsonl")
}

// OpenJournal creates (or reopens, for --resume) a run's journal.
func OpenJournal(stateDir, runID string) (*Journal, error) {
	if err := checkRunID(runID); err != nil {
		return nil, err
	}
	p := JournalPath(stateDir, runID)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("creating the journal directory: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the journal: %w", err)
	}
	// A run killed mid-write (kill -9) leaves a torn last line: end it, so
	// the resumed run's first event is a line of its own, not more damage.
	if torn, err := endsTorn(p); err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the journal: %w", err)
	} else if torn {
		if _, err := f.Write([]byte("\n")); err != nil {
			f.Close()
			return nil, fmt.Errorf("opening the journal: %w", err)
		}
	}
	return &Journal{f: f, path: p, runID: runID}, nil
}

// endsTorn reports whether the file at p is not empty and its last byte is
// not a newline.
func endsTorn(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false, err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
		return false, err
	}
	return last[0] != '\n', nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Append writes ev as one JSON line and syncs it to disk. It fills Time and
// RunID when they are empty. Safe for concurrent use.
func (j *Journal) Append(ev JournalEvent) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if ev.RunID == "" {
		ev.RunID = j.runID
	}
	j.mu.Lock()
	redact := j.redact
	j.mu.Unlock()
	if redact != nil {
		ev.Command, ev.Error, ev.Detail = redact(ev.Command), redact(ev.Error), redact(ev.Detail)
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return fmt.Errorf("journal %s is closed", j.path)
	}
	// One write per line: with O_APPEND a line is never interleaved with another.
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("writing the journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing the journal: %w", err)
	}
	return nil
}

// Close closes the journal; later Appends fail. A journal still empty
// (a deploy the rehearsal gate or a check refused before it ran) is
// removed, so history does not list a run that never started; a run
// killed before its first event leaves its empty journal behind.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	fi, statErr := j.f.Stat()
	err := j.f.Close()
	j.f = nil
	if err == nil && statErr == nil && fi.Size() == 0 {
		if rmErr := os.Remove(j.path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return fmt.Errorf("removing the empty journal: %w", rmErr)
		}
	}
	return err
}

// maxJournalLine bounds one journal line; a longer one is damage, and is
// skipped without being held in memory.
const maxJournalLine = 16 << 20

// JournalProblem is a part of a journal relctl could not read: one line, or
// (Line 0) the whole file.
type JournalProblem struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Reason string `json:"problem"`
}

func (p JournalProblem) String() string {
	if p.Line == 0 {
		return p.File + ": " + p.Reason
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
}

// JournalError lists what could not be read of one or more journals.
type JournalError struct{ Problems []JournalProblem }

func (e *JournalError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.String()
	}
	return strings.Join(msgs, "; ")
}

// ParseJournal reads a journal's events from r, naming file in problems. It
// never fails as a whole: every line that is an event is returned, and every
// other line is a problem, so damage in one place hides nothing else. Blank
// lines are skipped. A last line without its newline is a write torn by a
// crash (kill -9 in the middle of Append): it is kept if it is a whole event
// and otherwise ignored, as the run simply ended there.
func ParseJournal(file string, r io.Reader) ([]JournalEvent, []JournalProblem) {
	var events []JournalEvent
	var problems []JournalProblem
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for n := 1; ; n++ {
		chunk, err := br.ReadSlice('\n')
		overlong := false
		line = append(line[:0], chunk...)
		for errors.Is(err, bufio.ErrBufferFull) { // a long line: keep reading it, up to the bound
			chunk, err = br.ReadSlice('\n')
			if !overlong && len(line)+len(chunk) > maxJournalLine {
				overlong, line = true, line[:0]
			}
			if !overlong {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == io.EOF && len(line) == 0 && !overlong:
			return events, problems
		case err != nil && err != io.EOF:
			return events, append(problems, JournalProblem{File: file, Line: n, Reason: "cannot read: " + err.Error()})
		}
		torn := err == io.EOF
		switch ev, perr := ParseJournalLine(line); {
		case overlong && !torn:
			problems = append(problems, JournalProblem{File: file, Line: n, Reason: fmt.Sprintf("a line longer than %d MiB", maxJournalLine>>20)})
		case errors.Is(perr, errBlankLine), torn && (perr != nil || overlong):
		case perr != nil:
			problems = append(problems, JournalProblem{File: file, Line: n, Reason: perr.Error()})
		default:
			events = append(events, ev)
		}
		if torn {
			return events, problems
		}
	}
}

var errBlankLine = errors.New("blank line")

// ParseJournalLine reads one journal line: a JSON object with a "kind".
func ParseJournalLine(line []byte) (JournalEvent, error) {
	line = bytes.TrimSpace(line)
	switch {
	case len(line) == 0:
		return JournalEvent{}, errBlankLine
	case line[0] != '{':
		return JournalEvent{}, fmt.Errorf("not a JSON object (starts with %q)", truncateRunes(string(line), 20))
	}
	var ev JournalEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return JournalEvent{}, fmt.Errorf("not valid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
		case errors.As(err, &typ):
			return JournalEvent{}, fmt.Errorf("field %q is a JSON %s, not a %s", typ.Field, typ.Value, typ.Type)
		}
		return JournalEvent{}, fmt.Errorf("not a journal event: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if ev.Kind == "" {
		return JournalEvent{}, errors.New(`not a journal event: no "kind"`)
	}
	return ev, nil
}

// truncateRunes shortens s to at most n runes, for quoting damage in a message.
func truncateRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}

// ReadJournal reads every event of a journal that can be read (see
// ParseJournal). The error is a *JournalError when some line could not be
// read, with the events of every other line; or the file's own error.
func ReadJournal(path string) ([]JournalEvent, error) {
	f, err := openJournalFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	evs, problems := ParseJournal(path, f)
	if len(problems) > 0 {
		return evs, &JournalError{Problems: problems}
	}
	return evs, nil
}

// openJournalFile opens a journal for reading; a directory or other
// non-file in its place is an error that says so.
func openJournalFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file (%s)", path, fileKind(fi.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// RunRecord is a run as its journal tells it.
type RunRecord struct {
	RunID      string            `json:"run_id"`
	Env        string            `json:"env"`
	Command    string            `json:"command"`
	Release    string            `json:"release,omitempty"`
	From       string            `json:"from,omitempty"`
	Operator   string            `json:"operator"`
	Controller string            `json:"controller"`
	Started    time.Time         `json:"started"`
	Finished   time.Time         `json:"finished,omitzero"`
	Result     string            `json:"result"`
	Duration   time.Duration     `json:"duration_ns"`
	Hosts      map[string]string `json:"hosts,omitempty"`
	Steps      []JournalEvent    `json:"steps,omitempty"`
	// Problems are the lines of its journal that could not be read: the
	// record tells the run from every other line.
	Problems []JournalProblem `json:"problems,omitempty"`
}

// ResultInterrupted is the result of a run whose journal has no run-end.
const ResultInterrupted = "interrupted"

// recordFrom folds a journal into a run record.
func recordFrom(runID string, evs []JournalEvent, withSteps bool) RunRecord {
	r := RunRecord{RunID: runID}
	var last time.Time
	for _, ev := range evs {
		if ev.Time.After(last) {
			last = ev.Time
		}
		switch ev.Kind {
		case "run-start":
			r.Env, r.Command, r.Release, r.From = ev.Env, ev.Command, ev.Release, ev.From
			r.Operator, r.Controller, r.Started = ev.Operator, ev.Controller, ev.Time
		case "run-end":
			r.Result, r.Finished, r.Hosts = ev.Result, ev.Time, ev.Hosts
		default:
			if withSteps {
				r.Steps = append(r.Steps, ev)
			}
		}
	}
	if r.Started.IsZero() && len(evs) > 0 {
		r.Started = evs[0].Time
	}
	end := r.Finished
	if r.Result == "" {
		// No run-end: the run died (or, if the caller knows better, still runs).
		r.Result = ResultInterrupted
		end = last
	}
	if !end.IsZero() && !r.Started.IsZero() {
		r.Duration = end.Sub(r.Started)
	}
	return r
}

// journalIDs lists the run ids that have a journal (anything named
// <id>.jsonl in the runs directory, so that a directory or other non-file in
// a journal's place is reported, not skipped), unsorted.
func journalIDs(stateDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(stateDir, "runs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".jsonl"); ok && id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// readRun reads one run's journal. A journal of which nothing is readable,
// or whose run-start line is not (so that its environment is unknown), is a
// *JournalError; a record with problems has its other lines.
func readRun(stateDir, id string, withSteps bool) (RunRecord, error) {
	p := JournalPath(stateDir, id)
	evs, err := ReadJournal(p)
	var damaged *JournalError
	if err != nil && !errors.As(err, &damaged) {
		reason := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
		return RunRecord{}, &JournalError{Problems: []JournalProblem{{File: p, Reason: "cannot read it: " + strings.TrimPrefix(reason, p+": ")}}}
	}
	r := recordFrom(id, evs, withSteps)
	if damaged != nil {
		r.Problems = damaged.Problems
	}
	started := slices.ContainsFunc(evs, func(ev JournalEvent) bool { return ev.Kind == "run-start" })
	switch {
	case len(evs) == 0 && len(r.Problems) == 0:
		return r, &JournalError{Problems: []JournalProblem{{File: p, Reason: "empty: the run wrote nothing (or only a line torn by a crash)"}}}
	case len(evs) == 0:
		return r, &JournalError{Problems: append([]JournalProblem{{File: p, Reason: "no line of it is readable"}}, r.Problems...)}
	case !started:
		return r, &JournalError{Problems: append([]JournalProblem{{File: p, Reason: "its run-start line is missing or unreadable, so its environment is unknown"}}, r.Problems...)}
	}
	return r, nil
}

// ReadRuns reads every journal in stateDir, newest first, without steps. A
// damaged journal hides nothing else: every run whose journal has a readable
// run-start is returned (with Problems naming its unreadable lines), and
// every other journal is listed in unreadable, with the file and what is
// wrong. The error is for the runs directory itself.
func ReadRuns(stateDir string) (runs []RunRecord, unreadable []JournalProblem, err error) {
	ids, err := journalIDs(stateDir)
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(ids)
	for _, id := range ids {
		r, err := readRun(stateDir, id, false)
		var je *JournalError
		if errors.As(err, &je) {
			unreadable = append(unreadable, je.Problems...)
			continue
		}
		runs = append(runs, r)
	}
	sort.SliceStable(runs, func(i, j int) bool {
		if !runs[i].Started.Equal(runs[j].Started) {
			return runs[i].Started.After(runs[j].Started)
		}
		return runs[i].RunID > runs[j].RunID
	})
	return runs, unreadable, nil
}

// ListRuns is ReadRuns for callers that must not act on an incomplete list
// (deploy --resume looks for the interrupted run): the runs it could read,
// and an error naming every journal it could not.
func ListRuns(stateDir string) ([]RunRecord, error) {
	runs, unreadable, err := ReadRuns(stateDir)
	if err != nil {
		return nil, err
	}
	if len(unreadable) > 0 {
		return runs, fmt.Errorf("unreadable journals: %w", &JournalError{Problems: unreadable})
	}
	return runs, nil
}

// ErrNoSuchRun: no journal matches a run id, or several do.
var ErrNoSuchRun = errors.New("no such run")

type runLookupError struct{ msg string }

func (e *runLookupError) Error() string        { return e.msg }
func (e *runLookupError) Is(target error) bool { return target == ErrNoSuchRun }

// LoadRun reads one run with its steps. runID may be any unique prefix of
// the id. A journal with damaged lines gives the record of its other lines
// (Problems names the rest); a journal of which nothing is readable is a
// *JournalError naming the file and what is wrong; an id that matches no
// journal, or several, is ErrNoSuchRun.
func LoadRun(stateDir, runID string) (*RunRecord, error) {
	if runID == "" {
		return nil, &runLookupError{"a run id is required"}
	}
	ids, err := journalIDs(stateDir)
	if err != nil {
		return nil, err
	}
	var match []string
	for _, id := range ids {
		if id == runID {
			match = []string{id}
			break
		}
		if strings.HasPrefix(id, runID) {
			match = append(match, id)
		}
	}
	switch {
	case len(match) == 0:
		return nil, &runLookupError{fmt.Sprintf("no run %q in %s (relctl history lists the runs)", runID, filepath.Join(stateDir, "runs"))}
	case len(match) > 1:
		sort.Strings(match)
		return nil, &runLookupError{fmt.Sprintf("run id %q is ambiguous: it matches %s", runID, strings.Join(match, ", "))}
	}
	r, err := readRun(stateDir, match[0], true)
	var je *JournalError
	if errors.As(err, &je) && len(r.Steps) > 0 {
		// Steps without a run-start still say what happened to the hosts.
		r.Problems = je.Problems
		return &r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", match[0], err)
	}
	return &r, nil
}
