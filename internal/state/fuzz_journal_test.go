package state

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// journalSeeds are whole journals: intact, torn by kill -9, damaged in the
// middle, overwritten, and a torn write that a --resume appended after.
var journalSeeds = []string{
	`{"time":"2026-03-01T12:00:00Z","run_id":"r1","kind":"run-start","env":"staging","command":"deploy","release":"1.1.0"}` + "\n" +
		`{"time":"2026-03-01T12:00:01Z","run_id":"r1","kind":"step-end","host":"h1","step":"stage/upload","status":"ok"}` + "\n" +
		`{"time":"2026-03-01T12:00:09Z","run_id":"r1","kind":"run-end","result":"succeeded","hosts":{"h1":"1.1.0"}}` + "\n",
	`{"time":"2026-03-01T12:00:00Z","run_id":"r1","kind":"run-start"}` + "\n" + `{"time":"2026-03-01T12:00:01Z","run_id":"r1","kind":"step-e`,
	`{"time":"2026-03-01T12:00:00Z","kind":"run-start"}` + "\n\x00\x00\x00\n" + `{"time":"2026-03-01T12:00:02Z","kind":"run-end","result":"failed"}` + "\n",
	`{"kind":"step-e{"time":"2026-03-01T12:00:02Z","kind":"run-end"}` + "\n",
	"null\n[]\n\"x\"\n{}\n{\"kind\":7}\n{\"kind\":\"x\",\"time\":\"yesterday\"}\r\n\n",
	"PK\x03\x04\x14\x00\x00\x00",
	"",
}

// FuzzParseJournal: whatever the bytes, ParseJournal neither panics nor
// loses an intact event to damage elsewhere; every event it returns has a
// kind and survives a round trip; every problem names the file and a line.
func FuzzParseJournal(f *testing.F) {
	for _, s := range journalSeeds {
		f.Add([]byte(s))
	}
	const intact = `{"time":"2026-03-01T12:00:00Z","run_id":"r9","kind":"run-end","result":"succeeded"}`
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, problems := ParseJournal("j.jsonl", bytes.NewReader(data))
		lines := bytes.Count(data, []byte("\n")) + 1
		if len(evs)+len(problems) > lines {
			t.Fatalf("%d events and %d problems from %d lines", len(evs), len(problems), lines)
		}
		for _, p := range problems {
			if p.File != "j.jsonl" || p.Line < 1 || p.Line > lines || p.Reason == "" {
				t.Fatalf("problem %+v: want the file, a line in 1..%d and a reason", p, lines)
			}
		}
		for _, ev := range evs {
			roundTrip(t, ev)
		}
		// Damage before an intact line never hides it.
		after, _ := ParseJournal("j.jsonl", bytes.NewReader(append(append(bytes.Clone(data), '\n'), intact+"\n"...)))
		if len(after) == 0 || after[len(after)-1].RunID != "r9" {
			t.Fatalf("an intact last line after %q was lost: %+v", data, after)
		}
	})
}

// FuzzParseJournalLine: one line never panics; what it accepts has a kind
// and survives a round trip.
func FuzzParseJournalLine(f *testing.F) {
	for _, s := range journalSeeds {
		for _, line := range strings.Split(s, "\n") {
			f.Add([]byte(line))
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParseJournalLine(line)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		roundTrip(t, ev)
	})
}

func roundTrip(t *testing.T, ev JournalEvent) {
	t.Helper()
	if ev.Kind == "" {
		t.Fatalf("event without a kind: %+v", ev)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		// A time outside years 0..9999 parses but does not marshal; Append
		// would refuse to write it, so it cannot round-trip: not a bug here.
		if strings.Contains(err.Error(), "year outside of range") {
			return
		}
		t.Fatalf("marshal %+v: %v", ev, err)
	}
	again, err := ParseJournalLine(b)
	if err != nil {
		t.Fatalf("%s does not parse again: %v", b, err)
	}
	b2, _ := json.Marshal(again)
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the event:\n%s\n%s", b, b2)
	}
}
