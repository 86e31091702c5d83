package deploy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/state"
)

// deploy --resume reads past a damaged journal only when it cannot hold the
// run to resume: last written before the environment's newest deploy
// started. Any other damaged journal, and an interrupted newest deploy whose
// own lines are damaged, leave the choice in doubt (the hosts decide).
func TestSortResumeJournals(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	run := func(id, env, command, result string, started time.Time, problems ...state.JournalProblem) state.RunRecord {
		return state.RunRecord{RunID: id, Env: env, Command: command, Result: result, Started: started, Problems: problems}
	}
	unreadable := func(files ...string) []state.JournalProblem {
		var ps []state.JournalProblem
		for _, f := range files {
			ps = append(ps, state.JournalProblem{File: f, Reason: "no line of it is readable"}, state.JournalProblem{File: f, Line: 1, Reason: "not a JSON object"})
		}
		return ps
	}
	modTimes := map[string]time.Time{
		"/s/runs/long-ago.jsonl":    t0.Add(-time.Hour),
		"/s/runs/just-before.jsonl": t0.Add(-time.Second), // within the margin: not surely older
		"/s/runs/after.jsonl":       t0.Add(time.Minute),
	}
	modTime := func(f string) (time.Time, error) {
		if mt, ok := modTimes[f]; ok {
			return mt, nil
		}
		return time.Time{}, errors.New("permission denied")
	}
	files := func(ps []state.JournalProblem) []string {
		var out []string
		for _, p := range ps {
			if len(out) == 0 || out[len(out)-1] != p.File {
				out = append(out, p.File)
			}
		}
		return out
	}
	damagedLine := state.JournalProblem{File: "/s/runs/r2.jsonl", Line: 7, Reason: "not valid JSON"}
	tests := []struct {
		name          string
		runs          []state.RunRecord
		unreadable    []state.JournalProblem
		newest        string
		newestDamaged bool
		older         []string
		doubtful      []string
	}{
		{
			name: "interrupted newest deploy, damaged journals before and after it",
			runs: []state.RunRecord{
				run("r3", "production", "deploy", "interrupted", t0.Add(2*time.Minute)),
				run("r2", "staging", "deploy", "interrupted", t0),
				run("r1", "staging", "deploy", "succeeded", t0.Add(-2*time.Hour)),
			},
			unreadable: unreadable("/s/runs/long-ago.jsonl", "/s/runs/just-before.jsonl", "/s/runs/after.jsonl", "/s/runs/unstattable.jsonl"),
			newest:     "r2",
			older:      []string{"/s/runs/long-ago.jsonl"},
			doubtful:   []string{"/s/runs/just-before.jsonl", "/s/runs/after.jsonl", "/s/runs/unstattable.jsonl"},
		},
		{
			name: "refused deploys and other commands do not count",
			runs: []state.RunRecord{
				run("r4", "staging", "rollback", "succeeded", t0.Add(3*time.Minute)),
				run("r3", "staging", "deploy", "refused", t0.Add(2*time.Minute)),
				run("r2", "staging", "deploy", "succeeded", t0),
			},
			unreadable: unreadable("/s/runs/long-ago.jsonl"),
			newest:     "r2",
			older:      []string{"/s/runs/long-ago.jsonl"},
		},
		{
			name:          "the interrupted newest deploy's own end may be a damaged line",
			runs:          []state.RunRecord{run("r2", "staging", "deploy", "interrupted", t0, damagedLine)},
			newest:        "r2",
			newestDamaged: true,
		},
		{
			name:   "a finished newest deploy's damaged line is not its end",
			runs:   []state.RunRecord{run("r2", "staging", "deploy", "succeeded", t0, damagedLine)},
			newest: "r2",
		},
		{
			name:       "no deploy of the environment: every damaged journal may be one",
			runs:       []state.RunRecord{run("r3", "production", "deploy", "interrupted", t0)},
			unreadable: unreadable("/s/runs/long-ago.jsonl"),
			doubtful:   []string{"/s/runs/long-ago.jsonl"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := sortResumeJournals(tt.runs, tt.unreadable, "staging", modTime)
			newest := ""
			if j.newest != nil {
				newest = j.newest.RunID
			}
			if newest != tt.newest || j.newestDamaged != tt.newestDamaged {
				t.Errorf("newest = %q (damaged %v), want %q (damaged %v)", newest, j.newestDamaged, tt.newest, tt.newestDamaged)
			}
			if got := files(j.older); !reflect.DeepEqual(got, tt.older) {
				t.Errorf("older = %q, want %q", got, tt.older)
			}
			if got := files(j.doubtful); !reflect.DeepEqual(got, tt.doubtful) {
				t.Errorf("doubtful = %q, want %q", got, tt.doubtful)
			}
			if len(j.older)+len(j.doubtful) != len(tt.unreadable) {
				t.Errorf("%d problems sorted, want all %d", len(j.older)+len(j.doubtful), len(tt.unreadable))
			}
			if j.inDoubt() != (len(tt.doubtful) > 0 || tt.newestDamaged) {
				t.Errorf("inDoubt() = %v", j.inDoubt())
			}
		})
	}
}

// The refusal names each journal in doubt and the way out.
func TestResumeCannotTell(t *testing.T) {
	j := resumeJournals{
		newest:        &state.RunRecord{RunID: "r2", Problems: []state.JournalProblem{{File: "/s/runs/r2.jsonl", Line: 7, Reason: "x"}}},
		newestDamaged: true,
		doubtful:      []state.JournalProblem{{File: "/s/runs/a b.jsonl"}, {File: "/s/runs/a b.jsonl", Line: 2}, {File: "/s/runs/c.jsonl"}},
	}
	got := j.cannotTell("staging").Error()
	for _, want := range []string{
		"cannot tell which deploy of staging to resume: /s/runs/a b.jsonl, /s/runs/c.jsonl cannot be read and may hold a later deploy; ",
		"the journal of run r2, which looks interrupted, has damaged lines, one of which may be its end; ",
		"no host holds a stale deploy lock that names the interrupted run",
		"(mv '/s/runs/a b.jsonl' '/s/runs/a b.jsonl.broken')",
		"relctl deploy --env staging --release VERSION",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("refusal %q does not say %q", got, want)
		}
	}
}

// A host counts as finished when its last finished step is post/prune, passed.
func TestResumeFinishedHosts(t *testing.T) {
	end := func(host, step, status string) state.JournalEvent {
		return state.JournalEvent{Kind: "step-end", Host: host, Step: step, Status: status}
	}
	got := finishedHosts([]state.JournalEvent{
		end("web-1", "activate/switch", "ok"), end("web-1", "post/prune", "ok"),
		end("web-2", "post/prune", "ok"), end("web-2", "rollback/switch", "ok"), // rolled back after it finished
		end("web-3", "post/prune", "failed"),
		{Kind: "step-start", Host: "web-4", Step: "post/prune"},
		end("web-5", "verify/health", "ok"),
	})
	if want := map[string]bool{"web-1": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("finishedHosts = %v, want %v", got, want)
	}
}

// The journals decide alone when the newest deploy was interrupted and no
// damaged journal may hide a later one; else the hosts' stale lock does;
// else it is a refusal (in doubt) or nothing to resume.
func TestResumeDecide(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	interrupted := &state.RunRecord{RunID: "r2", Env: "staging", Command: "deploy", Result: "interrupted", Started: t0, Operator: "alice"}
	finished := &state.RunRecord{RunID: "r2", Env: "staging", Command: "deploy", Result: "succeeded", Started: t0}
	doubtful := []state.JournalProblem{{File: "/s/runs/x.jsonl", Reason: "no line of it is readable"}}
	held := &state.RunRecord{RunID: "r3", Release: "1.2.0"}
	tests := []struct {
		name       string
		j          resumeJournals
		held       *state.RunRecord
		alone      bool
		wantRun    string
		wantErr    string
		wantSuffix string // of the doubtful journals' warning
	}{
		{name: "interrupted newest deploy", j: resumeJournals{newest: interrupted}, alone: true, wantRun: "r2"},
		{name: "the hosts name the run", j: resumeJournals{newest: finished, doubtful: doubtful}, held: held, wantRun: "r3",
			wantSuffix: "; the hosts' stale deploy lock names the run to resume, r3"},
		{name: "the hosts name the journal's run", j: resumeJournals{newest: interrupted, doubtful: doubtful}, held: &state.RunRecord{RunID: "r2"}, wantRun: "r2",
			wantSuffix: "; the hosts' stale deploy lock names the run to resume, r2"},
		{name: "in doubt", j: resumeJournals{newest: finished, doubtful: doubtful}, wantErr: "cannot tell which deploy of staging to resume",
			wantSuffix: "; it may hold a later deploy of staging"},
		{name: "nothing to resume", j: resumeJournals{newest: finished},
			wantErr: "no interrupted deploy of staging to resume (the newest deploy finished, and no host holds a stale deploy lock)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, alone := tt.j.fromJournal(); alone != tt.alone {
				t.Errorf("fromJournal decides alone = %v, want %v", alone, tt.alone)
			}
			run, warnings, err := tt.j.decide("staging", tt.held)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || run != nil {
					t.Errorf("decide = %v, %v; want the error %q", run, err, tt.wantErr)
				}
			case err != nil || run == nil || run.RunID != tt.wantRun:
				t.Errorf("decide = %v, %v; want run %s", run, err, tt.wantRun)
			case tt.wantRun == "r2" && run.Operator != "alice":
				t.Errorf("the journal's record of the run is not the one returned: %+v", run)
			}
			last := warnings[len(warnings)-1]
			if tt.wantSuffix != "" && last.Suffix != tt.wantSuffix {
				t.Errorf("doubtful journals' warning ends %q, want %q", last.Suffix, tt.wantSuffix)
			}
			if len(last.Problems) != len(tt.j.doubtful) {
				t.Errorf("the last warning is not about the doubtful journals: %+v", last)
			}
		})
	}
}

// A stale lock of a deploy names the run to resume; a live one, or one of
// another command, does not.
func TestResumeStaleDeployRun(t *testing.T) {
	owner := func(command string) *state.LockOwner {
		return &state.LockOwner{RunID: "r-" + command, Command: command, Release: "1.2.0", Env: "staging"}
	}
	tests := []struct {
		locks []state.HostLockState
		want  string
	}{
		{[]state.HostLockState{{Host: "a", Held: true, Owner: owner("deploy")}}, ""},
		{[]state.HostLockState{{Host: "a", Held: true, Stale: true, Owner: owner("rollback")}}, ""},
		{[]state.HostLockState{{Host: "a", Held: true, Stale: true}}, ""},
		{[]state.HostLockState{{Host: "a"}, {Host: "b", Held: true, Stale: true, Owner: owner("deploy")}}, "r-deploy"},
	}
	for i, tt := range tests {
		got := ""
		if r := staleDeployRun(tt.locks); r != nil {
			got = r.RunID
			if r.Release != "1.2.0" || r.Env != "staging" {
				t.Errorf("%d: run %+v does not carry the lock's release and environment", i, r)
			}
		}
		if got != tt.want {
			t.Errorf("%d: staleDeployRun = %q, want %q", i, got, tt.want)
		}
	}
}
