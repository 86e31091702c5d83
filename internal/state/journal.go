package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	mu    sync.Mutex
	f     *os.File
	path  string
	runID string
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
	return &Journal{f: f, path: p, runID: runID}, nil
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

// Close closes the journal; later Appends fail.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// ReadJournal reads every event of a journal. A last line without its
// newline is a write torn by a crash and is ignored; any other bad line is
// an error.
func ReadJournal(path string) ([]JournalEvent, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) {
		data = data[:i+1]
	}
	var out []JournalEvent
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var ev JournalEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return out, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, ev)
	}
	return out, sc.Err()
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

// journalIDs lists the run ids that have a journal, unsorted.
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
		if id, ok := strings.CutSuffix(e.Name(), ".jsonl"); ok && e.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// ListRuns reads every journal in stateDir, newest first, without steps.
func ListRuns(stateDir string) ([]RunRecord, error) {
	ids, err := journalIDs(stateDir)
	if err != nil {
		return nil, err
	}
	var out []RunRecord
	var bad []string
	for _, id := range ids {
		evs, err := ReadJournal(JournalPath(stateDir, id))
		if err != nil && len(evs) == 0 {
			bad = append(bad, err.Error())
			continue
		}
		out = append(out, recordFrom(id, evs, false))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].RunID > out[j].RunID
	})
	if len(bad) > 0 {
		return out, fmt.Errorf("unreadable journals: %s", strings.Join(bad, "; "))
	}
	return out, nil
}

// LoadRun reads one run with its steps. runID may be any unique prefix of
// the id.
func LoadRun(stateDir, runID string) (*RunRecord, error) {
	if runID == "" {
		return nil, errors.New("a run id is required")
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
		return nil, fmt.Errorf("no run %q in %s (relctl history lists the runs)", runID, filepath.Join(stateDir, "runs"))
	case len(match) > 1:
		sort.Strings(match)
		return nil, fmt.Errorf("run id %q is ambiguous: it matches %s", runID, strings.Join(match, ", "))
	}
	evs, err := ReadJournal(JournalPath(stateDir, match[0]))
	if err != nil && len(evs) == 0 {
		return nil, err
	}
	r := recordFrom(match[0], evs, true)
	return &r, err
}
