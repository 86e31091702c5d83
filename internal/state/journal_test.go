package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func at(sec int) time.Time { return time.Date(2026, 3, 1, 12, 0, sec, 0, time.UTC) }

func writeJournal(t *testing.T, stateDir, runID string, evs ...JournalEvent) string {
	t.Helper()
	j, err := OpenJournal(stateDir, runID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if err := j.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return j.Path()
}

func TestJournalRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".relctl")
	j, err := OpenJournal(dir, "20260301T120000Z-aa11")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "runs", "20260301T120000Z-aa11.jsonl"); j.Path() != want {
		t.Errorf("Path = %s, want %s", j.Path(), want)
	}
	// Concurrent appends from many host goroutines: every line intact.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j.Append(JournalEvent{Kind: "step-end", Host: "h", Step: "activate", Status: "ok", Detail: strings.Repeat("x", i*100)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(JournalEvent{Kind: "run-end"}); err == nil {
		t.Error("Append after Close succeeded")
	}
	evs, err := ReadJournal(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 20 {
		t.Fatalf("read %d events, want 20", len(evs))
	}
	for _, ev := range evs {
		if ev.RunID != "20260301T120000Z-aa11" || ev.Time.IsZero() || ev.Kind != "step-end" {
			t.Errorf("event not filled in: %+v", ev)
		}
	}
	for p, want := range map[string]os.FileMode{filepath.Join(dir, "runs"): 0o700, j.Path(): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}
}

func TestReadJournalTornLastLine(t *testing.T) {
	dir := t.TempDir()
	p := writeJournal(t, dir, "r1", JournalEvent{Kind: "run-start", Env: "staging"}, JournalEvent{Kind: "step-start", Host: "h1"})
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2026-03-01T12:00:00Z","run_id":"r1","kind":"step-e`) // kill -9 mid-write
	f.Close()
	evs, err := ReadJournal(p)
	if err != nil {
		t.Fatalf("ReadJournal: %v", err)
	}
	if len(evs) != 2 || evs[1].Kind != "step-start" {
		t.Errorf("events = %+v, want the two complete ones", evs)
	}

	// A bad line in the middle is damage, not a torn write: say where.
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"kind\":\"run-start\"}\nnot json\n{\"kind\":\"run-end\"}\n"), 0o600)
	if _, err := ReadJournal(bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Errorf("ReadJournal of a damaged journal: %v", err)
	}
}

func TestListRuns(t *testing.T) {
	dir := t.TempDir()
	start := func(sec int, release string) JournalEvent {
		return JournalEvent{Time: at(sec), Kind: "run-start", Env: "staging", Command: "deploy", Release: release, From: "1.0.0", Operator: "alice", Controller: "laptop"}
	}
	writeJournal(t, dir, "20260301T120000Z-0001",
		start(0, "1.1.0"),
		JournalEvent{Time: at(1), Kind: "step-start", Host: "h1", Step: "activate"},
		JournalEvent{Time: at(2), Kind: "step-end", Host: "h1", Step: "activate", Status: "ok"},
		JournalEvent{Time: at(30), Kind: "run-end", Result: "succeeded", Hosts: map[string]string{"h1": "1.1.0"}})
	writeJournal(t, dir, "20260301T120100Z-0002",
		start(60, "1.2.0"),
		JournalEvent{Time: at(61), Kind: "step-start", Host: "h1", Step: "activate"},
		JournalEvent{Time: at(65), Kind: "step-end", Host: "h1", Step: "check", Status: "failed", Error: "HTTP 500"},
		JournalEvent{Time: at(66), Kind: "rollback-start"},
		JournalEvent{Time: at(70), Kind: "run-end", Result: "rolled-back", Hosts: map[string]string{"h1": "1.1.0"}})
	// kill -9 after two steps: no run-end.
	writeJournal(t, dir, "20260301T120200Z-0003",
		start(120, "1.3.0"),
		JournalEvent{Time: at(121), Kind: "step-start", Host: "h1", Step: "upload"},
		JournalEvent{Time: at(125), Kind: "step-end", Host: "h1", Step: "upload", Status: "ok"})
	// The run logs next to the journals are not runs.
	os.WriteFile(RunLogPath(dir, "20260301T120200Z-0003"), []byte("log\n"), 0o600)

	runs, err := ListRuns(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id, release, result string
		dur                 time.Duration
	}{
		{"20260301T120200Z-0003", "1.3.0", "interrupted", 5 * time.Second},
		{"20260301T120100Z-0002", "1.2.0", "rolled-back", 10 * time.Second},
		{"20260301T120000Z-0001", "1.1.0", "succeeded", 30 * time.Second},
	}
	if len(runs) != len(want) {
		t.Fatalf("ListRuns = %+v", runs)
	}
	for i, w := range want {
		r := runs[i]
		if r.RunID != w.id || r.Release != w.release || r.Result != w.result || r.Duration != w.dur ||
			r.Env != "staging" || r.Operator != "alice" || r.Controller != "laptop" || r.From != "1.0.0" || r.Steps != nil {
			t.Errorf("run %d = %+v, want %+v", i, r, w)
		}
	}
	if runs[1].Hosts["h1"] != "1.1.0" {
		t.Errorf("hosts of the rolled-back run = %v", runs[1].Hosts)
	}

	empty, err := ListRuns(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(empty) != 0 {
		t.Errorf("ListRuns of a missing state dir = %v, %v", empty, err)
	}
}

func TestLoadRun(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, dir, "20260301T120000Z-ab12",
		JournalEvent{Time: at(0), Kind: "run-start", Env: "production", Command: "rollback", Release: "1.0.0"},
		JournalEvent{Time: at(1), Kind: "undo-start", Host: "h2", Step: "activate"},
		JournalEvent{Time: at(2), Kind: "undo-end", Host: "h2", Step: "activate", Status: "ok"},
		JournalEvent{Time: at(3), Kind: "run-end", Result: "succeeded"})
	writeJournal(t, dir, "20260301T120000Z-ab34", JournalEvent{Time: at(0), Kind: "run-start"})

	tests := []struct {
		id, wantID, wantErr string
	}{
		{id: "20260301T120000Z-ab12", wantID: "20260301T120000Z-ab12"},
		{id: "20260301T120000Z-ab1", wantID: "20260301T120000Z-ab12"},
		{id: "20260301T120000Z-ab", wantErr: `run id "20260301T120000Z-ab" is ambiguous: it matches 20260301T120000Z-ab12, 20260301T120000Z-ab34`},
		{id: "1999", wantErr: `no run "1999" in ` + filepath.Join(dir, "runs")},
		{id: "", wantErr: "a run id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			r, err := LoadRun(dir, tt.id)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.RunID != tt.wantID || r.Command != "rollback" || r.Result != "succeeded" || len(r.Steps) != 2 || r.Steps[1].Kind != "undo-end" {
				t.Errorf("LoadRun = %+v", r)
			}
		})
	}
}

func TestOpenJournalRejectsPathsAsIDs(t *testing.T) {
	for _, id := range []string{"../../etc/x", "a/b", ""} {
		if _, err := OpenJournal(t.TempDir(), id); err == nil {
			t.Errorf("OpenJournal(%q) succeeded", id)
		}
	}
}

func TestParseJournal(t *testing.T) {
	ev := func(kind string) string { return `{"time":"2026-03-01T12:00:00Z","run_id":"r1","kind":"` + kind + `"}` }
	tests := []struct {
		name     string
		data     string
		kinds    []string
		problems []string // "line: reason" prefixes
	}{
		{name: "intact", data: ev("run-start") + "\n" + ev("run-end") + "\n", kinds: []string{"run-start", "run-end"}},
		{name: "empty", data: ""},
		{name: "blank lines and CRLF", data: "\n" + ev("run-start") + "\r\n  \n" + ev("run-end") + "\n", kinds: []string{"run-start", "run-end"}},
		{name: "torn last line is the crash, not damage", data: ev("run-start") + "\n" + `{"time":"2026-03-01T12:00:01Z","kind":"step-e`,
			kinds: []string{"run-start"}},
		{name: "a whole last event without its newline counts", data: ev("run-start") + "\n" + ev("run-end"), kinds: []string{"run-start", "run-end"}},
		{name: "damage in the middle hides nothing after it",
			data:  ev("run-start") + "\nnot json\n" + ev("step-end") + "\n" + `{"kind":"step-e{"time":"2026-03-01T12:00:02Z","kind":"run-end"}` + "\n" + ev("run-end") + "\n",
			kinds: []string{"run-start", "step-end", "run-end"},
			problems: []string{`2: not a JSON object (starts with "not json")`,
				`4: not valid JSON at byte 18: invalid character 't' after object key:value pair`}},
		{name: "JSON that is not an event",
			data:     "null\n[1]\n\"x\"\n{}\n" + `{"kind":7}` + "\n" + `{"kind":"x","hosts":[1]}` + "\n" + `{"kind":"x","time":"yesterday"}` + "\n",
			problems: []string{`1: not a JSON object`, `2: not a JSON object`, `3: not a JSON object`, `4: not a journal event: no "kind"`, `5: field "kind" is a JSON number, not a string`, `6: field "hosts" is a JSON array`, `7: not a journal event: parsing time`}},
		{name: "a line longer than the bound", data: ev("run-start") + "\n{\"kind\":\"" + strings.Repeat("x", maxJournalLine) + "\"}\n" + ev("run-end") + "\n",
			kinds: []string{"run-start", "run-end"}, problems: []string{"2: a line longer than 16 MiB"}},
		{name: "a torn line longer than the bound", data: ev("run-start") + "\n{\"kind\":\"" + strings.Repeat("x", maxJournalLine),
			kinds: []string{"run-start"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, problems := ParseJournal("j.jsonl", strings.NewReader(tt.data))
			var kinds []string
			for _, ev := range evs {
				kinds = append(kinds, ev.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(tt.kinds, ",") {
				t.Errorf("events %v, want %v", kinds, tt.kinds)
			}
			if len(problems) != len(tt.problems) {
				t.Fatalf("problems %v, want %v", problems, tt.problems)
			}
			for i, p := range problems {
				if got := p.String(); !strings.HasPrefix(got, "j.jsonl:"+tt.problems[i]) {
					t.Errorf("problem %d = %q, want prefix j.jsonl:%s", i, got, tt.problems[i])
				}
			}
		})
	}
}

// One damaged journal hides no other run: every readable run is listed,
// and every other journal is named with what is wrong with it.
func TestReadRunsPartial(t *testing.T) {
	dir := t.TempDir()
	start := func(sec int, release string) JournalEvent {
		return JournalEvent{Time: at(sec), Kind: "run-start", Env: "staging", Command: "deploy", Release: release}
	}
	end := func(sec int) JournalEvent { return JournalEvent{Time: at(sec), Kind: "run-end", Result: "succeeded"} }
	writeJournal(t, dir, "20260301T120000Z-0001", start(0, "1.0.0"), end(10))
	damaged := writeJournal(t, dir, "20260301T120100Z-0002", start(60, "1.1.0"), end(70))
	appendTo(t, damaged, "\x00\x00garbage\n"+`{"time":"2026-03-01T12:01:20Z","kind":"lock-takeover"}`+"\n")
	garbage := JournalPath(dir, "20260301T120200Z-0003")
	os.WriteFile(garbage, []byte("PK\x03\x04 this was overwritten\n"), 0o600)
	empty := JournalPath(dir, "20260301T120300Z-0004")
	os.WriteFile(empty, nil, 0o600)
	headless := writeJournal(t, dir, "20260301T120400Z-0005", JournalEvent{Time: at(240), Kind: "step-end", Host: "h1", Step: "activate", Status: "ok"})
	asDir := JournalPath(dir, "20260301T120500Z-0006")
	os.Mkdir(asDir, 0o700)
	torn := JournalPath(dir, "20260301T120600Z-0007")
	os.WriteFile(torn, []byte(`{"time":"2026-03-01T12:06:00Z","kind":"run-st`), 0o600)

	runs, unreadable, err := ReadRuns(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].RunID != "20260301T120100Z-0002" || runs[1].RunID != "20260301T120000Z-0001" {
		t.Fatalf("runs = %+v, want the two readable ones", runs)
	}
	if r := runs[0]; r.Result != "succeeded" || r.Release != "1.1.0" || len(r.Problems) != 1 || r.Problems[0].String() != damaged+`:3: not a JSON object (starts with "\x00\x00garbage")` {
		t.Errorf("damaged run = %+v", r)
	}
	if runs[1].Problems != nil {
		t.Errorf("intact run has problems %v", runs[1].Problems)
	}
	var got []string
	for _, p := range unreadable {
		got = append(got, p.String())
	}
	want := []string{
		garbage + ": no line of it is readable",
		garbage + `:1: not a JSON object (starts with "PK\x03\x04 this was overwr...")`,
		empty + ": empty: the run wrote nothing (or only a line torn by a crash)",
		headless + ": its run-start line is missing or unreadable, so its environment is unknown",
		asDir + ": cannot read it: not a regular file (a directory)",
		torn + ": empty: the run wrote nothing (or only a line torn by a crash)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unreadable:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// ListRuns (deploy --resume) still refuses to act on an incomplete list.
	if runs, err := ListRuns(dir); len(runs) != 2 || err == nil || !strings.Contains(err.Error(), "unreadable journals: "+garbage) {
		t.Errorf("ListRuns = %d runs, %v", len(runs), err)
	}

	// history show: a damaged run shows its readable lines and names the
	// rest; a journal with nothing readable is an error that says why.
	r, err := LoadRun(dir, "20260301T120100Z-0002")
	if err != nil || len(r.Steps) != 1 || r.Steps[0].Kind != "lock-takeover" || len(r.Problems) != 1 {
		t.Errorf("LoadRun(damaged) = %+v, %v", r, err)
	}
	r, err = LoadRun(dir, "20260301T120400Z-0005")
	if err != nil || len(r.Steps) != 1 || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Reason, "run-start line is missing") {
		t.Errorf("LoadRun(headless) = %+v, %v", r, err)
	}
	var je *JournalError
	for id, want := range map[string]string{
		"20260301T120200Z-0003": "run 20260301T120200Z-0003: " + garbage + ": no line of it is readable; " + garbage + ":1: not a JSON object",
		"20260301T120500Z-0006": "run 20260301T120500Z-0006: " + asDir + ": cannot read it: not a regular file (a directory)",
	} {
		r, err := LoadRun(dir, id)
		if r != nil || !errors.As(err, &je) || !strings.HasPrefix(err.Error(), want) || errors.Is(err, ErrNoSuchRun) {
			t.Errorf("LoadRun(%s) = %v, %v; want %q", id, r, err, want)
		}
	}
	if _, err := LoadRun(dir, "1999"); !errors.Is(err, ErrNoSuchRun) {
		t.Errorf("LoadRun(unknown) = %v, want ErrNoSuchRun", err)
	}
}

func TestReadRunsUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads a mode 000 file")
	}
	dir := t.TempDir()
	p := writeJournal(t, dir, "20260301T120000Z-0001", JournalEvent{Time: at(0), Kind: "run-start", Env: "staging"})
	os.Chmod(p, 0)
	runs, unreadable, err := ReadRuns(dir)
	if err != nil || len(runs) != 0 || len(unreadable) != 1 || unreadable[0].String() != p+": cannot read it: permission denied" {
		t.Errorf("ReadRuns = %v, %v, %v", runs, unreadable, err)
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// A journal reopened after a kill -9 mid-write gets its torn line ended, so
// the resumed run's events are lines of their own and read back whole.
func TestOpenJournalEndsATornLine(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "20260101T000000Z-abc123")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(JournalEvent{Kind: "run-start"}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	f, err := os.OpenFile(j.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"kind":"step-st`); err != nil { // torn by kill -9
		t.Fatal(err)
	}
	f.Close()
	j, err = OpenJournal(dir, "20260101T000000Z-abc123")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(JournalEvent{Kind: "run-end"}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	b, err := os.ReadFile(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || lines[1] != `{"kind":"step-st` || !strings.Contains(lines[2], `"kind":"run-end"`) {
		t.Fatalf("journal after resume:\n%s", b)
	}
}
