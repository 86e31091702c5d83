package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
)

func act(version, previous string) Activation {
	return Activation{Version: version, Previous: previous, ReleaseDigest: "d-" + version, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Operator: "a", Controller: "c", RunID: "r"}
}

func TestParseHostState(t *testing.T) {
	hist := `{"activations":[{"version":"1.0.0","release_digest":"d","time":"2026-01-01T00:00:00Z","operator":"a","controller":"c","run_id":"r"},` +
		`{"version":"1.1.0","previous":"1.0.0","release_digest":"d","time":"2026-01-02T00:00:00Z","operator":"a","controller":"c","run_id":"r2"}]}`
	tests := []struct {
		name         string
		out          string
		wantCurrent  string
		wantReleases []string
		wantActs     int
		wantPrevious string
		wantErr      string
	}{
		{
			name:         "fresh host",
			out:          "--relctl-current--\n--relctl-releases--\n--relctl-history--\n",
			wantReleases: nil,
		},
		{
			name:         "two releases, history",
			out:          "--relctl-current--\nreleases/1.1.0\n--relctl-releases--\n1.1.0\n1.0.0\n--relctl-history--\n" + hist + "\n",
			wantCurrent:  "1.1.0",
			wantReleases: []string{"1.0.0", "1.1.0"},
			wantActs:     2,
			wantPrevious: "1.0.0",
		},
		{
			name:         "absolute link with a trailing slash",
			out:          "--relctl-current--\n/srv/search/releases/2.0.0/\n--relctl-releases--\n2.0.0\n--relctl-history--\n",
			wantCurrent:  "2.0.0",
			wantReleases: []string{"2.0.0"},
		},
		{
			name:    "not our output",
			out:     "sh: 1: readlink: not found\n",
			wantErr: "unexpected output reading host state",
		},
		{
			name:    "broken history",
			out:     "--relctl-current--\n--relctl-releases--\n--relctl-history--\n{\"activations\":[\n",
			wantErr: "history.json is not valid JSON",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ParseHostState(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Current != tt.wantCurrent || !reflect.DeepEqual(st.Releases, tt.wantReleases) || len(st.History.Activations) != tt.wantActs || st.Previous() != tt.wantPrevious {
				t.Errorf("got current=%q releases=%v acts=%d previous=%q", st.Current, st.Releases, len(st.History.Activations), st.Previous())
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
	run(t, tg, "mkdir -p "+Quote(l.Release("1.0.0"))+" "+Quote(l.Release("1.1.0")), "")

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
	run(t, tg, "mkdir -p "+Quote(l.Release("0.9.0")), "")
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

func TestQuote(t *testing.T) {
	tests := map[string]string{
		"":                     "''",
		"/srv/search":          "/srv/search",
		"it's":                 `'it'"'"'s'`,
		"a b":                  "'a b'",
		"$(id)":                "'$(id)'",
		"x;rm -rf /":           "'x;rm -rf /'",
		"releases/1.0.0+build": "releases/1.0.0+build",
	}
	for in, want := range tests {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}
