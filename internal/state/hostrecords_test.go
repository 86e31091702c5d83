package state

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHostRunSummaries(t *testing.T) {
	c := startCluster(t)
	tg := c.targets(t)[0]
	ctx := testCtx(t)

	if got, err := ReadHostRunSummaries(ctx, tg.Conn, tg.Layout); err != nil || len(got) != 0 {
		t.Fatalf("summaries of a fresh host = %v, %v", got, err)
	}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 52 {
		s := HostRunSummary{
			RunID: fmt.Sprintf("20260301T12%02d00Z-%04d", i, i), Env: "staging", Command: "deploy", Release: fmt.Sprintf("1.%d.0", i),
			From: "1.0.0", Operator: "alice", Controller: "laptop", Started: base.Add(time.Duration(i) * time.Minute),
			Finished: base.Add(time.Duration(i)*time.Minute + 30*time.Second), Result: "succeeded", Host: tg.Host,
			Steps: []StepRecord{{Phase: "cutover", Name: "activate", Status: "ok", Detail: "it's \"quoted\"\n$(id)", Started: base, Elapsed: 1500 * time.Millisecond}},
		}
		if err := WriteHostRunSummary(ctx, tg.Conn, tg.Layout, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadHostRunSummaries(ctx, tg.Conn, tg.Layout)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 {
		t.Fatalf("host keeps %d summaries, want 50", len(got))
	}
	if got[0].RunID != "20260301T125100Z-0051" || got[49].RunID != "20260301T120200Z-0002" {
		t.Errorf("order: first %s, last %s; want newest first, the two oldest pruned", got[0].RunID, got[49].RunID)
	}
	st := got[0].Steps[0]
	if st.Detail != "it's \"quoted\"\n$(id)" || st.Elapsed != 1500*time.Millisecond || !st.Started.Equal(base) {
		t.Errorf("step came back as %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(tg.Layout.RunsDir(), "*"))
	if len(files) != 50 {
		t.Errorf("%d files in %s, want 50 (no temp files)", len(files), tg.Layout.RunsDir())
	}

	// A damaged summary does not hide the others.
	os.WriteFile(filepath.Join(tg.Layout.RunsDir(), "20260301T130000Z-bad.json"), []byte("{not json"), 0o644)
	got, err = ReadHostRunSummaries(ctx, tg.Conn, tg.Layout)
	if err != nil || len(got) != 50 {
		t.Errorf("with a damaged file: %d summaries, %v", len(got), err)
	}

	if err := WriteHostRunSummary(ctx, tg.Conn, tg.Layout, HostRunSummary{RunID: "../escape"}); err == nil {
		t.Error("a run id with a path was accepted")
	}
}

func TestAppendHistoryEvent(t *testing.T) {
	c := startCluster(t)
	tg := c.targets(t)[0]
	ctx := testCtx(t)
	evs := []HistoryEvent{
		{Kind: "skip-rehearsal", Operator: "alice", Controller: "laptop", RunID: "r1", Reason: "hotfix; 'approved'"},
		{Kind: "unlock", Operator: "bob", Controller: "ops", Reason: "stuck", Detail: map[string]string{"removed_run_id": "r0"}},
	}
	for _, ev := range evs {
		if err := AppendHistoryEvent(ctx, tg.Conn, tg.Layout, ev); err != nil {
			t.Fatal(err)
		}
	}
	out := run(t, tg, tg.Layout.ReadScript(), "")
	st, err := ParseHostState(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.History.Events) != 2 || st.History.Events[0].Reason != "hotfix; 'approved'" || st.History.Events[1].Detail["removed_run_id"] != "r0" || st.History.Events[0].Time.IsZero() {
		t.Errorf("events = %+v", st.History.Events)
	}
	if entries := stateDirEntries(t, tg); len(entries) != 1 || entries[0] != "history.json" {
		t.Errorf(".relctl holds %v, want only history.json", entries)
	}

	os.WriteFile(tg.Layout.HistoryFile(), []byte("{broken"), 0o644)
	err = AppendHistoryEvent(ctx, tg.Conn, tg.Layout, evs[0])
	if err == nil || !strings.Contains(err.Error(), "history.json: not valid JSON at byte 2") {
		t.Errorf("appending to a broken history: %v", err)
	}
	if data, _ := os.ReadFile(tg.Layout.HistoryFile()); string(data) != "{broken" {
		t.Errorf("a broken history was overwritten: %q", data)
	}
}

func TestActivationKindArtifactJSON(t *testing.T) {
	// Files written before kind/artifact existed still read; new ones carry them.
	var old Activation
	if err := json.Unmarshal([]byte(`{"version":"1.0.0","release_digest":"d","time":"2026-01-01T00:00:00Z","operator":"a","controller":"c","run_id":"r"}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Kind != "" || old.Artifact != "" {
		t.Errorf("old activation = %+v", old)
	}
	b, _ := json.Marshal(Activation{Version: "1.1.0", Kind: "rollback", Artifact: "search-1.1.0.tar.gz"})
	for _, want := range []string{`"kind":"rollback"`, `"artifact":"search-1.1.0.tar.gz"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}
