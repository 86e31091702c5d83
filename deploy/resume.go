package deploy

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/state"
)

// deploy --resume: which interrupted deploy to finish, and which of its
// hosts it had finished, decided from the controller's journals and, when
// they cannot tell, the hosts' stale deploy lock.

// ResumeRequest asks for env's interrupted deploy.
type ResumeRequest struct {
	StateDir string // the controller's journals
	Env      string
	// Release, when set, must be the interrupted run's release.
	Release string
	// ReadLocks reads the lock on every reachable host of Env (asked only
	// when the journals cannot tell).
	ReadLocks func(ctx context.Context) ([]state.HostLockState, error)
}

// Resumption is the interrupted deploy to finish: its record (when, by
// whom) and where it stopped.
type Resumption struct {
	Run   *state.RunRecord
	Point ResumePoint
}

// FindResume decides which deploy of req.Env to finish: the newest in the
// journals when it was interrupted, else the one a stale deploy lock on
// the hosts names. A damaged journal blocks the resume only when it may
// hide the answer and no host's lock gives it. The warnings (one per
// damaged journal, saying why it did not decide) come with any answer.
func FindResume(ctx context.Context, req ResumeRequest) (*Resumption, []JournalWarning, error) {
	runs, unreadable, err := state.ReadRuns(req.StateDir)
	if err != nil {
		return nil, nil, err
	}
	j := sortResumeJournals(runs, unreadable, req.Env, fileModTime)
	var held *state.RunRecord
	if _, ok := j.fromJournal(); !ok && req.ReadLocks != nil {
		// Only the hosts can tell: read their locks.
		locks, err := req.ReadLocks(ctx)
		if err != nil {
			return nil, nil, err
		}
		held = staleDeployRun(locks)
	}
	run, warnings, err := j.decide(req.Env, held)
	if err != nil {
		return nil, warnings, err
	}
	if req.Release != "" && req.Release != run.Release {
		return nil, warnings, badInput("the interrupted run %s deployed %s, not %s", run.RunID, run.Release, req.Release)
	}
	res := &Resumption{Run: run, Point: ResumePoint{RunID: run.RunID, Release: run.Release, Skip: map[string]bool{}}}
	if full, err := state.LoadRun(req.StateDir, run.RunID); err == nil {
		res.Point.Skip = finishedHosts(full.Steps)
	}
	return res, warnings, nil
}

// finishedHosts are the hosts whose last finished step in a deploy's
// journal is its last one, post/prune, passed.
func finishedHosts(steps []state.JournalEvent) map[string]bool {
	last := map[string]state.JournalEvent{}
	for _, ev := range steps {
		if ev.Kind == "step-end" {
			last[ev.Host] = ev
		}
	}
	done := map[string]bool{}
	for host, ev := range last {
		if ev.Step == "post/prune" && ev.Status == StatusOK {
			done[host] = true
		}
	}
	return done
}

// staleDeployRun is the deploy run a stale lock names, if any.
func staleDeployRun(locks []state.HostLockState) *state.RunRecord {
	for _, l := range locks {
		if l.Held && l.Stale && l.Owner != nil && l.Owner.Command == KindDeploy {
			o := l.Owner
			return &state.RunRecord{RunID: o.RunID, Env: o.Env, Command: o.Command, Release: o.Release, Operator: o.Operator, Started: o.Started}
		}
	}
	return nil
}

// resumeJournals sorts the local journals for deploy --resume.
type resumeJournals struct {
	// newest is env's newest deploy that was not refused; nil when none is.
	newest *state.RunRecord
	// newestDamaged: newest looks interrupted but has damaged lines, one of
	// which may be its end.
	newestDamaged bool
	// doubtful are the problems of journals that cannot be read and may
	// hold a later deploy of env than newest; older those of journals last
	// written before newest started, which cannot.
	doubtful, older []state.JournalProblem
}

// modTimeMargin absorbs file systems that keep modification times coarsely
// (FAT: 2 s), so a journal counts as older only when it surely is.
const modTimeMargin = 2 * time.Second

// sortResumeJournals finds env's newest deploy among runs (newest first, as
// state.ReadRuns returns them) and sorts the journals it could not read: a
// run's journal is written from its start on, so one last modified before
// newest started holds an older run; any other may be a later deploy.
func sortResumeJournals(runs []state.RunRecord, unreadable []state.JournalProblem, env string, modTime func(file string) (time.Time, error)) resumeJournals {
	var j resumeJournals
	for i := range runs {
		r := &runs[i]
		if r.Env == env && r.Command == KindDeploy && r.Result != "refused" {
			j.newest = r
			j.newestDamaged = r.Result == state.ResultInterrupted && len(r.Problems) > 0
			break
		}
	}
	older := map[string]bool{}
	for _, p := range unreadable {
		ok, seen := older[p.File]
		if !seen && j.newest != nil {
			t, err := modTime(p.File)
			ok = err == nil && t.Add(modTimeMargin).Before(j.newest.Started)
			older[p.File] = ok
		}
		if ok {
			j.older = append(j.older, p)
		} else {
			j.doubtful = append(j.doubtful, p)
		}
	}
	return j
}

func (j *resumeJournals) inDoubt() bool { return len(j.doubtful) > 0 || j.newestDamaged }

// fromJournal is the run to resume when the journals alone decide it: the
// newest deploy, interrupted, with no damaged journal that may hide a later one.
func (j *resumeJournals) fromJournal() (*state.RunRecord, bool) {
	if !j.inDoubt() && j.newest != nil && j.newest.Result == state.ResultInterrupted {
		return j.newest, true
	}
	return nil, false
}

// decide is the run to resume, given held, the run the hosts' stale deploy
// lock names (nil: none, or not read because the journals decide), and the
// warnings about damaged journals to print with the answer.
func (j *resumeJournals) decide(env string, held *state.RunRecord) (*state.RunRecord, []JournalWarning, error) {
	if run, ok := j.fromJournal(); ok {
		return run, j.warnings(env, ""), nil
	}
	switch {
	case held != nil:
		if j.newest != nil && j.newest.RunID == held.RunID {
			held = j.newest // the journal also says when and by whom
		}
		return held, j.warnings(env, "; the hosts' stale deploy lock names the run to resume, "+held.RunID), nil
	case j.inDoubt():
		return nil, j.warnings(env, ""), j.cannotTell(env)
	}
	return nil, j.warnings(env, ""), badInput("no interrupted deploy of %s to resume (the newest deploy finished, and no host holds a stale deploy lock)", env)
}

// JournalWarning is a warning about damaged journals: their problems,
// then what that means for the resume (Suffix).
type JournalWarning struct {
	Problems []state.JournalProblem
	Suffix   string
}

// warnings are one per damaged journal, saying why it did not decide
// (decidedBy) or, when nothing did, what it may hide.
func (j *resumeJournals) warnings(env, decidedBy string) []JournalWarning {
	doubt, ownEnd := "; it may hold a later deploy of "+env, "; a damaged line may be the end of that run, so it may not have been interrupted"
	if decidedBy != "" {
		doubt, ownEnd = decidedBy, decidedBy
	}
	var out []JournalWarning
	if j.newest != nil {
		out = append(out, JournalWarning{j.older, fmt.Sprintf("; last written before run %s started, so it holds no later deploy of %s", j.newest.RunID, env)})
		if j.newestDamaged {
			out = append(out, JournalWarning{j.newest.Problems, ownEnd})
		}
	}
	return append(out, JournalWarning{j.doubtful, doubt})
}

// cannotTell is the refusal when the damaged journals may hide the run to
// resume and no host names it: what is in doubt, and the two ways out.
func (j *resumeJournals) cannotTell(env string) error {
	var why []string
	var files []string
	for _, p := range j.doubtful {
		if !slices.Contains(files, p.File) {
			files = append(files, p.File)
		}
	}
	if len(files) > 0 {
		why = append(why, fmt.Sprintf("%s cannot be read and may hold a later deploy", strings.Join(files, ", ")))
	}
	if j.newestDamaged {
		why = append(why, fmt.Sprintf("the journal of run %s, which looks interrupted, has damaged lines, one of which may be its end", j.newest.RunID))
		files = append(files, j.newest.Problems[0].File)
	}
	return fmt.Errorf("cannot tell which deploy of %s to resume: %s; and no host holds a stale deploy lock that names the interrupted run. "+
		"Move a journal that holds no deploy of %s aside (mv %s %s) and run deploy --resume again, or deploy a release explicitly: relctl deploy --env %s --release VERSION",
		env, strings.Join(why, "; "), env, shellquote.Quote(files[0]), shellquote.Quote(files[0]+".broken"), env)
}

func fileModTime(file string) (time.Time, error) {
	fi, err := os.Lstat(file)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}
