package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
)

func act(version, previous string) Activation {
	return Activation{Version: version, Previous: previous, ReleaseDigest: "d-" + version, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Operator: "a", Controller: "c", RunID: "r"}
}

// hs builds ReadScript-shaped output: history "" is absent.
func hs(current, releases, history string) string {
	var b strings.Builder
	if current == "" {
		b.WriteString("--relctl-current-- absent\n")
	} else {
		b.WriteString("--relctl-current-- present\n" + current + "\n")
	}
	if releases == "" {
		b.WriteString("--relctl-releases-- absent\n")
	} else {
		fmt.Fprintf(&b, "--relctl-releases-- present %d\n%s\n", len(releases), releases)
	}
	if history == "" {
		b.WriteString("--relctl-history-- absent\n")
	} else {
		fmt.Fprintf(&b, "--relctl-history-- present %d 644\n%s\n", len(history), history)
	}
	b.WriteString("--relctl-end--\n")
	return b.String()
}

func TestParseHostState(t *testing.T) {
	hist := `{"activations":[{"version":"1.0.0","release_digest":"d","time":"2026-01-01T00:00:00Z","operator":"a","controller":"c","run_id":"r"},` +
		`{"version":"1.1.0","previous":"1.0.0","release_digest":"d","time":"2026-01-02T00:00:00Z","operator":"a","controller":"c","run_id":"r2"}]}`
	good := hs("releases/1.1.0", "1.1.0\n1.0.0\n", hist)
	tests := []struct {
		name         string
		out          string
		wantCurrent  string
		wantReleases []string
		wantActs     int
		wantPrevious string
		wantErr      string // substring
		wantIs       error  // ErrHostState or ErrHostOutput
	}{
		{
			name:         "fresh host",
			out:          hs("", "", ""),
			wantReleases: nil,
		},
		{
			name:         "empty releases directory",
			out:          "--relctl-current-- absent\n--relctl-releases-- present 0\n\n--relctl-history-- absent\n--relctl-end--\n",
			wantReleases: nil,
		},
		{
			name:         "two releases, history",
			out:          good,
			wantCurrent:  "1.1.0",
			wantReleases: []string{"1.0.0", "1.1.0"},
			wantActs:     2,
			wantPrevious: "1.0.0",
		},
		{
			name:         "absolute link with a trailing slash",
			out:          hs("/srv/search/releases/2.0.0/", "2.0.0\n", ""),
			wantCurrent:  "2.0.0",
			wantReleases: []string{"2.0.0"},
		},
		{
			name:         "history holding a marker-like line is read by length",
			out:          hs("", "", "{\"activations\":[],\n\"x\":\"--relctl-end--\"}"),
			wantReleases: nil,
		},
		{name: "not our output", out: "sh: 1: readlink: not found\n", wantErr: "expected the --relctl-current-- line", wantIs: ErrHostOutput},
		{name: "empty output", out: "", wantErr: "the output ends early", wantIs: ErrHostOutput},
		{name: "the old format (no status words)", out: "--relctl-current--\n--relctl-releases--\n--relctl-history--\n", wantErr: "expected the --relctl-current-- line", wantIs: ErrHostOutput},
		{name: "releases marker dropped", out: strings.Replace(good, "--relctl-releases-- present 12\n", "", 1), wantErr: "expected the --relctl-releases-- line", wantIs: ErrHostOutput},
		{name: "current marker dropped", out: strings.Replace(good, "--relctl-current-- present\n", "", 1), wantErr: "expected the --relctl-current-- line", wantIs: ErrHostOutput},
		{name: "a release name dropped", out: strings.Replace(good, "1.0.0\n", "", 1), wantErr: "bytes announced", wantIs: ErrHostOutput},
		{name: "a release name repeated", out: hs("", "1.0.0\n1.0.0\n", ""), wantErr: `release "1.0.0" listed twice`, wantIs: ErrHostOutput},
		{name: "releases without a count", out: "--relctl-current-- absent\n--relctl-releases-- present\n1.0.0\n", wantErr: "needs its size", wantIs: ErrHostOutput},
		{name: "history marker dropped", out: strings.Replace(good, "--relctl-history-- present", "", 1), wantErr: "", wantIs: ErrHostOutput},
		{name: "end marker dropped", out: strings.TrimSuffix(good, "--relctl-end--\n"), wantErr: "the output ends early", wantIs: ErrHostOutput},
		{name: "truncated: no trailing newline", out: strings.TrimSuffix(good, "\n"), wantErr: "ends in the middle of a line", wantIs: ErrHostOutput},
		{name: "truncated inside the history", out: good[:strings.Index(good, "run_id")], wantErr: "bytes announced", wantIs: ErrHostOutput},
		{name: "a history line dropped", out: strings.Replace(good, `"previous":"1.0.0",`, "", 1), wantErr: "bytes announced", wantIs: ErrHostOutput},
		{name: "markers in the wrong order", out: "--relctl-releases-- absent\n--relctl-current-- absent\n--relctl-history-- absent\n--relctl-end--\n", wantErr: "expected the --relctl-current-- line", wantIs: ErrHostOutput},
		{name: "duplicated marker", out: "--relctl-current-- absent\n--relctl-current-- absent\n--relctl-releases-- absent\n--relctl-history-- absent\n--relctl-end--\n", wantErr: "expected the --relctl-releases-- line", wantIs: ErrHostOutput},
		{name: "duplicated section after the end", out: good + "--relctl-end--\n", wantErr: "output after the end marker", wantIs: ErrHostOutput},
		{name: "garbage after the end", out: good + "motd\n", wantErr: "output after the end marker", wantIs: ErrHostOutput},
		{name: "garbage before", out: "Welcome!\n" + good, wantErr: "expected the --relctl-current-- line", wantIs: ErrHostOutput},
		{name: "unknown status word", out: strings.Replace(good, "--relctl-history-- present", "--relctl-history-- maybe", 1), wantErr: "unknown status", wantIs: ErrHostOutput},
		{name: "absent with words", out: "--relctl-current-- absent x\n", wantErr: "unknown status", wantIs: ErrHostOutput},
		{name: "unreadable without a reason", out: "--relctl-current-- unreadable\n", wantErr: "unknown status", wantIs: ErrHostOutput},
		{name: "size not a number", out: strings.Replace(good, fmt.Sprintf("present %d", len(hist)), "present lots", 1), wantErr: "not a file size", wantIs: ErrHostOutput},
		{name: "negative size", out: strings.Replace(good, fmt.Sprintf("present %d", len(hist)), "present -5", 1), wantErr: "not a file size", wantIs: ErrHostOutput},
		{name: "huge size", out: strings.Replace(good, fmt.Sprintf("present %d", len(hist)), "present 99999999999999999999", 1), wantErr: "not a file size", wantIs: ErrHostOutput},
		{name: "size too large by one", out: strings.Replace(good, fmt.Sprintf("present %d", len(hist)), fmt.Sprintf("present %d", len(hist)+1), 1), wantErr: "bytes announced", wantIs: ErrHostOutput},
		{name: "current present without its line", out: "--relctl-current-- present\n", wantErr: "ends early", wantIs: ErrHostOutput},
		{name: "current is a marker", out: "--relctl-current-- present\n--relctl-releases-- absent\n--relctl-history-- absent\n--relctl-end--\n", wantErr: "", wantIs: ErrHostOutput},
		{name: "current points at the root", out: hs("/", "", ""), wantErr: "current points at \"/\", not at a release", wantIs: ErrHostState},
		{name: "current points at ..", out: hs("releases/..", "", ""), wantErr: "not at a release", wantIs: ErrHostState},
		{name: "NUL bytes in the history", out: hs("", "", "\x00\x00"), wantErr: ".relctl/history.json: not valid JSON at byte 1", wantIs: ErrHostState},
		{name: "NUL bytes in a marker", out: "--relctl-current--\x00 absent\n", wantErr: "expected the --relctl-current-- line", wantIs: ErrHostOutput},
		{name: "broken history", out: hs("", "", "{\"activations\":["), wantErr: ".relctl/history.json: not valid JSON at byte 16", wantIs: ErrHostState},
		{name: "empty history", out: hs("", "", "\n "), wantErr: ".relctl/history.json is empty", wantIs: ErrHostState},
		{name: "history not an object", out: hs("", "", "[1,2]"), wantErr: ".relctl/history.json: unexpected JSON at byte", wantIs: ErrHostState},
		{name: "history null", out: hs("", "", "null"), wantErr: "holds null, not a JSON object", wantIs: ErrHostState},
		{name: "history with trailing garbage", out: hs("", "", "{}{}"), wantErr: "not valid JSON at byte 3", wantIs: ErrHostState},
		{name: "activation without a version", out: hs("", "", `{"activations":[{"previous":"1.0.0"}]}`), wantErr: "activation 1 has no version", wantIs: ErrHostState},
		{name: "history with a bad time", out: hs("", "", `{"activations":[{"version":"1","time":"yesterday"}]}`), wantErr: ".relctl/history.json: not valid", wantIs: ErrHostState},
		{name: "history is a directory", out: "--relctl-current-- absent\n--relctl-releases-- absent\n--relctl-history-- unreadable directory\n--relctl-end--\n", wantErr: ".relctl/history.json is a directory; move it aside (mv '.relctl/history.json' '.relctl/history.json.broken') after checking it, then re-run", wantIs: ErrHostState},
		{name: "history unreadable for an unknown reason", out: "--relctl-current-- absent\n--relctl-releases-- absent\n--relctl-history-- unreadable cosmic-rays\n--relctl-end--\n", wantErr: `.relctl/history.json is unreadable ("cosmic-rays")`, wantIs: ErrHostState},
		{name: "ancestor index out of range", out: "--relctl-current-- unreadable cannot-search 99\n", wantErr: "is unreadable", wantIs: ErrHostState},
		{name: "releases unreadable", out: "--relctl-current-- absent\n--relctl-releases-- unreadable permission\n", wantErr: "releases cannot be read by the SSH user", wantIs: ErrHostState},
		{name: "huge line", out: "--relctl-current-- present\n" + strings.Repeat("x", 1<<20) + "\n--relctl-releases-- absent\n--relctl-history-- absent\n--relctl-end--\n", wantCurrent: strings.Repeat("x", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ParseHostState(tt.out)
			if tt.wantIs != nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, tt.wantIs) {
					t.Fatalf("err = %v, want %q (%v)", err, tt.wantErr, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Current != tt.wantCurrent || !reflect.DeepEqual(st.Releases, tt.wantReleases) || len(st.History.Activations) != tt.wantActs || st.Previous() != tt.wantPrevious {
				t.Errorf("got current=%q releases=%v acts=%d previous=%q", truncate(st.Current, 20), st.Releases, len(st.History.Activations), st.Previous())
			}
		})
	}
}

func TestPruneCandidates(t *testing.T) {
	tests := []struct {
		name    string
		st      HostState
		keep    int
		protect []string
		want    []string
	}{
		{
			name: "keeps current, previous and the recent ones; prunes the old",
			st: HostState{Current: "1.4.0", Releases: []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"},
				History: History{Activations: []Activation{act("1.0.0", ""), act("1.1.0", "1.0.0"), act("1.2.0", "1.1.0"), act("1.3.0", "1.2.0"), act("1.4.0", "1.3.0")}}},
			keep: 3,
			want: []string{"1.0.0", "1.1.0"},
		},
		{
			name: "history lost: nothing is pruned (rollback targets unknown)",
			st:   HostState{Current: "1.3.0", Releases: []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"}},
			keep: 2,
			want: nil,
		},
		{
			name: "history does not know current: nothing is pruned",
			st: HostState{Current: "1.3.0", Releases: []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"},
				History: History{Activations: []Activation{act("1.0.0", "")}}},
			keep: 2,
			want: nil,
		},
		{
			name: "staged but never activated is pruned",
			st: HostState{Current: "1.1.0", Releases: []string{"1.0.0", "1.1.0", "9.9.9"},
				History: History{Activations: []Activation{act("1.0.0", ""), act("1.1.0", "1.0.0")}}},
			keep: 5,
			want: []string{"9.9.9"},
		},
		{
			name: "protected staged release survives",
			st: HostState{Current: "1.1.0", Releases: []string{"1.0.0", "1.1.0", "1.2.0"},
				History: History{Activations: []Activation{act("1.0.0", ""), act("1.1.0", "1.0.0")}}},
			keep:    2,
			protect: []string{"1.2.0"},
			want:    nil,
		},
		{
			name: "after a rollback the previous is the one current came back from",
			st: HostState{Current: "1.0.0", Releases: []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"},
				History: History{Activations: []Activation{act("1.1.0", ""), act("1.2.0", "1.1.0"), act("1.3.0", "1.2.0"), act("1.0.0", "1.3.0")}}},
			keep: 2,
			want: []string{"1.1.0", "1.2.0"},
		},
		{
			name: "keep below 2 still keeps current and previous",
			st: HostState{Current: "1.2.0", Releases: []string{"1.0.0", "1.1.0", "1.2.0"},
				History: History{Activations: []Activation{act("1.0.0", ""), act("1.1.0", "1.0.0"), act("1.2.0", "1.1.0")}}},
			keep: 0,
			want: []string{"1.0.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PruneCandidates(&tt.st, tt.keep, tt.protect...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PruneCandidates = %v, want %v", got, tt.want)
			}
			for _, v := range got {
				if v == tt.st.Current || v == tt.st.Previous() {
					t.Errorf("would prune %s (current %s, previous %s)", v, tt.st.Current, tt.st.Previous())
				}
			}
		})
	}
}

// TestActivateAndReadOnHost runs the layout scripts on a real host: what
// ReadScript prints is what ActivateScript made.
func TestActivateAndReadOnHost(t *testing.T) {
	c := startCluster(t)
	tg := c.targets(t)[0]
	ctx := testCtx(t)
	l := tg.Layout
	run(t, tg, "mkdir -p "+shellquote.Quote(l.Release("1.0.0"))+" "+shellquote.Quote(l.Release("1.1.0")), "")

	activate := func(version, runID string, hist History) error {
		body, _ := json.Marshal(hist)
		_, err := tg.Conn.Run(ctx, l.ActivateScript(version, runID), transport.RunOptions{Stdin: strings.NewReader(string(body))})
		return err
	}
	h := History{Activations: []Activation{act("1.0.0", "")}}
	if err := activate("1.0.0", "r1", h); err != nil {
		t.Fatal(err)
	}
	h.Activations = append(h.Activations, act("1.1.0", "1.0.0"))
	if err := activate("1.1.0", "r2", h); err != nil {
		t.Fatal(err)
	}
	if link, err := os.Readlink(l.Current()); err != nil || link != "releases/1.1.0" {
		t.Errorf("current -> %q (%v), want releases/1.1.0", link, err)
	}

	st, err := ParseHostState(run(t, tg, l.ReadScript(), ""))
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != "1.1.0" || st.Previous() != "1.0.0" || !reflect.DeepEqual(st.Releases, []string{"1.0.0", "1.1.0"}) || !reflect.DeepEqual(st.History, h) {
		t.Errorf("read back %+v, want current 1.1.0, previous 1.0.0, history %+v", st, h)
	}

	// A missing release directory: a clear message, and nothing changed.
	bad := h
	bad.Activations = append(append([]Activation(nil), h.Activations...), act("2.0.0", "1.1.0"))
	err = activate("2.0.0", "r3", bad)
	var ce *transport.CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Tail, "release directory "+l.Release("2.0.0")+" is missing") {
		t.Fatalf("activating a missing release: %v", err)
	}
	st2, err := ParseHostState(run(t, tg, l.ReadScript(), ""))
	if err != nil {
		t.Fatal(err)
	}
	if st2.Current != "1.1.0" || len(st2.History.Activations) != 2 {
		t.Errorf("a failed activation changed the host: current %s, %d activations", st2.Current, len(st2.History.Activations))
	}
	if leftovers, _ := filepath.Glob(filepath.Join(l.BaseDir, ".current.tmp.*")); len(leftovers) != 0 {
		t.Errorf("temporary links left: %v", leftovers)
	}

	// Pruning on the host removes exactly the candidates.
	run(t, tg, "mkdir -p "+shellquote.Quote(l.Release("0.9.0")), "")
	st3, _ := ParseHostState(run(t, tg, l.ReadScript(), ""))
	prune := PruneCandidates(st3, 2)
	if !reflect.DeepEqual(prune, []string{"0.9.0"}) {
		t.Fatalf("prune = %v", prune)
	}
	run(t, tg, l.PruneScript(prune), "")
	if _, err := os.Stat(l.Release("0.9.0")); !os.IsNotExist(err) {
		t.Errorf("0.9.0 not pruned")
	}
	if _, err := os.Stat(l.Release("1.0.0")); err != nil {
		t.Errorf("1.0.0 pruned: %v", err)
	}
}
