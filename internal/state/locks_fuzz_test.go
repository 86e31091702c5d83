package state

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// terminalSafe: what relctl prints of a lock has no control characters.
func terminalSafe(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' })
}

func lockOwnerSeeds() [][]byte {
	valid, _ := json.Marshal(LockOwner{Operator: "alice", Controller: "ci-7", PID: 4242, RunID: "20260101T000000Z-ab12",
		Env: "production", Command: "deploy", Release: "1.2.0", Started: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Heartbeat: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)})
	return [][]byte{
		valid,
		valid[:len(valid)/2],
		append(append([]byte{}, valid...), '\n'),
		append(append([]byte{}, valid...), []byte(" trailing")...),
		[]byte(`{"lock_format":2,` + string(valid[1:])),
		[]byte(strings.Replace(string(valid), `"alice"`, `"\u001b[2J\u0000al\ud800ice"`, 1)),
		[]byte(strings.Replace(string(valid), `4242`, `-1`, 1)),
		[]byte(strings.Replace(string(valid), `4242`, `1e99`, 1)),
		[]byte(strings.Replace(string(valid), `"20260101T000000Z-ab12"`, `"../../etc"`, 1)),
		[]byte(strings.Replace(string(valid), `"2026-01-01T00:01:00Z"`, `"9999-12-31T23:59:59Z"`, 1)),
		[]byte(strings.Replace(string(valid), `"2026-01-01T00:01:00Z"`, `"yesterday"`, 1)),
		[]byte(`{"run_id":"20260101T000000Z-x","run_id":"20260101T000000Z-y"}`),
		[]byte(`{}`), []byte(`null`), []byte(`[]`), []byte(`"x"`), []byte(``), []byte(" \n\t"), []byte("\x00\x01\xff"),
		[]byte(`{"pid":{"nested":[1,2,{"deep":null}]}}`),
	}
}

// FuzzParseLockOwner: any owner.json is either refused with a printable
// reason, or gives an owner that is complete, printable and survives a
// write and a read unchanged.
func FuzzParseLockOwner(f *testing.F) {
	for _, s := range lockOwnerSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := ParseLockOwner(raw)
		if err != nil {
			if o != nil {
				t.Fatalf("an owner and an error: %+v, %v", o, err)
			}
			if !terminalSafe(err.Error()) {
				t.Fatalf("error is not printable: %q", err.Error())
			}
			return
		}
		if checkRunID(o.RunID) != nil || o.PID <= 0 || o.Heartbeat.IsZero() || o.Env == "" || o.Command == "" || o.Operator == "" || o.Controller == "" {
			t.Fatalf("incomplete owner accepted: %+v from %q", o, raw)
		}
		for _, s := range []string{o.Operator, o.Controller, o.Env, o.Command, o.Release} {
			if !terminalSafe(s) || strings.Contains(s, "\n") || utf8.RuneCountInString(s) > 201 {
				t.Fatalf("field not printable: %q", s)
			}
		}
		body, err := json.Marshal(o)
		if err != nil {
			// A time.Time outside years 0-9999 does not marshal: relctl
			// never writes one, and never writes an owner it parsed.
			return
		}
		again, err := ParseLockOwner(body)
		if err != nil {
			t.Fatalf("its own output refused: %v\n%s", err, body)
		}
		if !again.Heartbeat.Equal(o.Heartbeat) || !again.Started.Equal(o.Started) {
			t.Fatalf("times changed: %+v -> %+v", o, again)
		}
		again.Heartbeat, again.Started, o.Heartbeat, o.Started = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if *again != *o {
			t.Fatalf("owner changed on a round trip: %+v -> %+v", o, again)
		}
	})
}

// FuzzLockProbe: whatever a host prints for a lock, relctl reads it as
// none, a lock held by a run, or a broken lock, with a printable reason,
// or refuses the output; it never panics.
func FuzzLockProbe(f *testing.F) {
	for _, s := range lockOwnerSeeds() {
		f.Add(append([]byte("held\n"), s...))
	}
	for _, s := range []string{"none\n", "gone\n", "held\n", "broken symlink\n/etc", "broken file\n12", "broken no-owner\na\nb\n",
		"broken \x1b[2J\n", "broken\n", "broken unreadable", "acquired\n", "", "\n\n", "held"} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC)
	opts := LockOptions{TTL: 2 * time.Minute, Now: func() time.Time { return now }}.withDefaults()
	f.Fuzz(func(t *testing.T, out []byte) {
		p, err := parseProbe(out)
		if err != nil {
			if !terminalSafe(err.Error()) {
				t.Fatalf("error is not printable: %q", err.Error())
			}
			return
		}
		if p.word != "held" && p.word != "broken" {
			return
		}
		st := judgeProbe("h", "/srv/x/.relctl/lock", p, opts)
		if !st.Held || (st.Broken == "" && st.Owner == nil) {
			t.Fatalf("neither held by a run nor broken: %+v", st)
		}
		if st.Broken != "" && st.Stale {
			t.Fatalf("broken and stale: %+v", st)
		}
		if !terminalSafe(st.Broken) || strings.Contains(st.Broken, "\n") {
			t.Fatalf("reason not printable: %q", st.Broken)
		}
		msg := (&LockedError{Env: "production", Holders: []HostLockState{st}, now: now}).Error()
		if !terminalSafe(msg) {
			t.Fatalf("LockedError not printable: %q", msg)
		}
	})
}
