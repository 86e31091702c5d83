package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/relctl/relctl/internal/transport"
	"github.com/rs/zerolog"
)

// LockOwner is <base_dir>/.relctl/lock/owner.json: who holds an environment lock.
type LockOwner struct {
	Operator   string    `json:"operator"`
	Controller string    `json:"controller"`
	PID        int       `json:"pid"`
	RunID      string    `json:"run_id"`
	Env        string    `json:"env"`
	Command    string    `json:"command"`
	Release    string    `json:"release,omitempty"`
	Started    time.Time `json:"started"`
	Heartbeat  time.Time `json:"heartbeat"`
}

// LockTarget is one host of the environment to lock.
type LockTarget struct {
	Host   string
	Conn   transport.Conn
	Layout Layout
	// Reconnect, when set, gives a fresh connection after Conn was lost (a
	// run that reconnects to a host keeps its lock there alive and releasable).
	Reconnect func(ctx context.Context) (transport.Conn, error)
}

// run runs a lock script on the target, once more on a fresh connection when
// the one it had was lost.
func (t *LockTarget) run(ctx context.Context, script string, opts transport.RunOptions) (*transport.Result, error) {
	res, err := t.Conn.Run(ctx, script, opts)
	if err == nil || t.Reconnect == nil || !connectionGone(err) {
		return res, err
	}
	conn, rerr := t.Reconnect(ctx)
	if rerr != nil {
		return nil, err
	}
	t.Conn = conn
	return t.Conn.Run(ctx, script, opts)
}

func connectionGone(err error) bool {
	var dial *transport.DialError
	return errors.Is(err, transport.ErrConnectionLost) || errors.As(err, &dial)
}

// LockOptions tune how locks are taken and kept.
type LockOptions struct {
	TTL           time.Duration // a heartbeat older than this is stale; default 2m
	TakeOverStale bool
	Now           func() time.Time // default time.Now
	Refresh       time.Duration    // heartbeat interval; default TTL/4
}

// DefaultLockTTL is the heartbeat age after which a lock is stale.
const DefaultLockTTL = 2 * time.Minute

// refreshFailuresWarn is how many refreshes in a row may fail on a host
// before the lock there counts as lost.
const refreshFailuresWarn = 3

func (o LockOptions) withDefaults() LockOptions {
	if o.TTL <= 0 {
		o.TTL = DefaultLockTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh <= 0 {
		o.Refresh = o.TTL / 4
	}
	return o
}

// HostLockState is what one host's lock looks like.
type HostLockState struct {
	Host        string
	Held        bool
	Owner       *LockOwner // nil when not held or owner.json is unreadable
	Stale       bool
	StaleReason string // e.g. "pid 1234 is not running on this controller", "heartbeat 5m old (ttl 2m)"
	Err         string // the host could not be asked
}

// LockedError says the environment is locked by another run.
type LockedError struct {
	Env     string
	Holders []HostLockState
	now     time.Time // when the holders were read, for heartbeat ages
}

func (e *LockedError) Error() string {
	now := e.now
	if now.IsZero() {
		now = time.Now()
	}
	// One clause per holding run: usually a single run holds every host.
	type group struct {
		st    HostLockState
		hosts []string
	}
	var groups []*group
	byRun := map[string]*group{}
	for _, h := range e.Holders {
		key := "?"
		if h.Owner != nil {
			key = h.Owner.RunID
		}
		g := byRun[key]
		if g == nil {
			g = &group{st: h}
			byRun[key] = g
			groups = append(groups, g)
		}
		g.hosts = append(g.hosts, h.Host)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "environment %s is locked", e.Env)
	stale := false
	for i, g := range groups {
		if i > 0 {
			b.WriteString(";")
		}
		if o := g.st.Owner; o != nil {
			fmt.Fprintf(&b, " by run %s (%s", o.RunID, o.Command)
			if o.Release != "" {
				fmt.Fprintf(&b, " %s", o.Release)
			}
			fmt.Fprintf(&b, " by %s@%s, pid %d, heartbeat %s ago)", o.Operator, o.Controller, o.PID, age(now, o.Heartbeat))
		} else {
			b.WriteString(" by an unknown holder (owner.json is unreadable)")
		}
		fmt.Fprintf(&b, " on %s", strings.Join(g.hosts, ", "))
		if g.st.Stale {
			stale = true
			fmt.Fprintf(&b, "; the lock is stale: %s", g.st.StaleReason)
		}
	}
	if stale {
		fmt.Fprintf(&b, "\n`relctl rollback --env %[1]s --to prev` takes over a stale lock; `relctl unlock --env %[1]s --force --reason TEXT` removes it", e.Env)
	} else {
		fmt.Fprintf(&b, "\nwait for that run to finish; if it is gone, `relctl unlock --env %s --force --reason TEXT` removes the lock", e.Env)
	}
	return b.String()
}

func age(now, t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second)
}

// LockSet is the environment lock held on a set of hosts.
type LockSet struct {
	owner   LockOwner
	opts    LockOptions
	targets []LockTarget
	took    []HostLockState

	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}

	releaseOnce sync.Once
	releaseErr  error
}

// ErrLockLost is the cause of the lock context's cancellation when another
// run took the lock or the lock directory vanished.
var ErrLockLost = errors.New("environment lock lost")

// errLockReleased is the cause after Release: the lock ended on purpose.
var errLockReleased = errors.New("environment lock released")

var runIDOK = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkRunID(id string) error {
	if !runIDOK.MatchString(id) {
		return fmt.Errorf("invalid run id %q: use letters, digits, '.', '_' and '-'", id)
	}
	return nil
}

// LockDir is the environment lock on this host.
func (l Layout) LockDir() string { return path.Join(l.StateDir(), "lock") }

// lockCommon starts every lock script: work relative to .relctl so that the
// renames below stay within one directory (and so atomic).
func lockCommon(l Layout) string {
	return fmt.Sprintf("mkdir -p %[1]s && cd %[1]s || exit 1\n", Quote(l.StateDir()))
}

// acquireScript installs the lock: owner.json (stdin) is written into a
// private directory which is then renamed to "lock". rename(2) onto an
// existing, non-empty lock fails, and a lock directory never exists without
// its owner.json, so a reader never sees a half-made lock.
func acquireScript(l Layout, runID string) string {
	n := Quote("lock.new." + runID)
	return lockCommon(l) + fmt.Sprintf(`rm -rf %[1]s && mkdir %[1]s && cat > %[1]s/owner.json || exit 1
if mv -T %[1]s lock 2>/dev/null; then echo acquired; exit 0; fi
rm -rf %[1]s
if [ -f lock/owner.json ]; then echo held; cat lock/owner.json; else echo retry; fi`, n)
}

// takeOverScript replaces a stale lock, but only the very one judged stale:
// it moves "lock" aside (atomic), compares its owner.json with the digest read
// before, and puts it back when it changed (its holder refreshed it, or
// another run got there first).
func takeOverScript(l Layout, runID, wantSHA string) string {
	n, s := Quote("lock.new."+runID), Quote("lock.stale."+runID)
	return lockCommon(l) + fmt.Sprintf(`rm -rf %[1]s %[2]s && mkdir %[1]s && cat > %[1]s/owner.json || exit 1
if ! mv -T lock %[2]s 2>/dev/null; then
  if mv -T %[1]s lock 2>/dev/null; then echo acquired; exit 0; fi
  rm -rf %[1]s; echo retry; exit 0
fi
set -- $(sha256sum < %[2]s/owner.json 2>/dev/null)
if [ "${1:-}" = %[3]s ]; then
  if mv -T %[1]s lock 2>/dev/null; then rm -rf %[2]s; echo took-over; exit 0; fi
  rm -rf %[1]s %[2]s; echo retry; exit 0
fi
mv -T %[2]s lock 2>/dev/null || rm -rf %[2]s
rm -rf %[1]s; echo retry`, n, s, Quote(wantSHA))
}

// ownedBy matches our run in owner.json as encoding/json writes it (run ids
// are validated, so they need no JSON escaping).
func ownedBy(runID string) string { return Quote(`"run_id":"` + runID + `"`) }

// refreshScript rewrites owner.json with a new heartbeat (stdin). It works
// from inside the lock directory: if the lock is moved aside by a takeover
// meanwhile, the write lands in the moved directory, never in the new lock.
func refreshScript(l Layout, runID string) string {
	t := Quote("owner.json.tmp." + runID)
	return fmt.Sprintf(`cd %[1]s 2>/dev/null || { echo gone; exit 0; }
grep -qF %[2]s owner.json 2>/dev/null || { echo other; exit 0; }
cat > %[3]s || exit 1
# Check again right before the rename: another run may have taken the lock
# while the new owner.json was arriving on stdin.
grep -qF %[2]s owner.json 2>/dev/null || { rm -f %[3]s; echo other; exit 0; }
mv -f %[3]s owner.json && echo ok`, Quote(l.LockDir()), ownedBy(runID), t)
}

// releaseScript removes the lock if it is ours. The final rmdir by name
// cannot remove another run's lock: a lock directory is never empty.
func releaseScript(l Layout, runID string) string {
	return fmt.Sprintf(`cd %[1]s 2>/dev/null || { echo gone; exit 0; }
grep -qF %[2]s owner.json 2>/dev/null || { echo other; exit 0; }
rm -f owner.json owner.json.tmp.* && cd .. && rmdir lock 2>/dev/null
echo released`, Quote(l.LockDir()), ownedBy(runID))
}

// inspectScript prints the lock's owner.json, or "none".
func inspectScript(l Layout) string {
	return fmt.Sprintf(`if [ -d %[1]s ]; then echo held; cat %[1]s/owner.json 2>/dev/null; else echo none; fi`, Quote(l.LockDir()))
}

// forceRemoveScript moves any lock aside, prints its owner and deletes it.
func forceRemoveScript(l Layout, runID string) string {
	r := Quote("lock.removed." + runID)
	return lockCommon(l) + fmt.Sprintf(`rm -rf %[1]s
if mv -T lock %[1]s 2>/dev/null; then echo removed; cat %[1]s/owner.json 2>/dev/null; rm -rf %[1]s; else echo none; fi`, r)
}

// firstLine splits a script's output into its status word and the rest.
func firstLine(out []byte) (string, []byte) {
	s := string(out)
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return strings.TrimSpace(s), nil
	}
	return strings.TrimSpace(s[:i]), []byte(s[i+1:])
}

// judge reads a held lock's owner.json and decides whether it is stale.
func judge(host string, raw []byte, opts LockOptions) HostLockState {
	st := HostLockState{Host: host, Held: true}
	var o LockOwner
	if err := json.Unmarshal(raw, &o); err != nil || o.RunID == "" {
		// Only a broken or hand-made lock has no readable owner: nobody can
		// refresh it, so it is stale rather than a lock forever.
		st.Stale, st.StaleReason = true, "owner.json is missing or unreadable"
		return st
	}
	st.Owner = &o
	now := opts.Now()
	switch {
	case o.Controller == Controller() && o.PID > 0 && !pidAlive(o.PID):
		st.Stale, st.StaleReason = true, fmt.Sprintf("pid %d is not running on this controller", o.PID)
	case now.Sub(o.Heartbeat) > opts.TTL:
		st.Stale, st.StaleReason = true, fmt.Sprintf("heartbeat %s old (ttl %s)", age(now, o.Heartbeat), opts.TTL)
	}
	return st
}

// pidAlive: a zombie (killed, not yet reaped) is not alive.
func pidAlive(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill(0)
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// AcquireLocks takes the environment lock on every target in parallel. If any
// host is held by another live run (or a stale one while !TakeOverStale), it
// releases the locks it took and returns *LockedError. The returned context is
// cancelled when the lock is lost on any host; a goroutine refreshes the
// heartbeat every opts.Refresh until Release, which the caller must call.
func AcquireLocks(ctx context.Context, targets []LockTarget, owner LockOwner, opts LockOptions) (*LockSet, context.Context, error) {
	opts = opts.withDefaults()
	if err := checkRunID(owner.RunID); err != nil {
		return nil, nil, err
	}
	now := opts.Now().UTC()
	if owner.Started.IsZero() {
		owner.Started = now
	}
	owner.Started = owner.Started.UTC()
	owner.Heartbeat = now
	body, err := json.Marshal(owner)
	if err != nil {
		return nil, nil, err
	}
	log := zerolog.Ctx(ctx)

	type outcome struct {
		got    bool
		took   *HostLockState
		holder *HostLockState
		err    error
	}
	// The first host by name is taken alone, first: of two runs racing for
	// the same hosts, the one that gets it goes on and the other stops there,
	// instead of each winning half the hosts and both giving up.
	targets = slices.Clone(targets)
	slices.SortStableFunc(targets, func(a, b LockTarget) int { return strings.Compare(a.Host, b.Host) })
	res := make([]outcome, len(targets))
	one := func(i int) {
		got, took, holder, err := acquireOne(ctx, targets[i], owner.RunID, body, opts)
		res[i] = outcome{got, took, holder, err}
	}
	if len(targets) > 0 {
		one(0)
	}
	if len(targets) > 0 && res[0].holder != nil {
		// Refused: only look at the other hosts, to name every holder.
		states, _ := InspectLocks(ctx, targets[1:], opts)
		for i, st := range states {
			if st.Held && (st.Owner == nil || st.Owner.RunID != owner.RunID) {
				res[i+1].holder = &st
			}
		}
	} else {
		var wg sync.WaitGroup
		for i := 1; i < len(targets); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				one(i)
			}()
		}
		wg.Wait()
	}

	ls := &LockSet{owner: owner, opts: opts}
	var holders []HostLockState
	var errs *multierror.Error
	for i, r := range res {
		if r.got {
			ls.targets = append(ls.targets, targets[i])
		}
		if r.took != nil {
			ls.took = append(ls.took, *r.took)
		}
		if r.holder != nil {
			holders = append(holders, *r.holder)
		}
		if r.err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s: taking the lock: %w", targets[i].Host, r.err))
		}
	}
	if len(holders) > 0 || errs.ErrorOrNil() != nil {
		// Give back what we took: a refused run must leave no lock behind.
		if rerr := ls.releaseAll(context.WithoutCancel(ctx)); rerr != nil {
			log.Warn().Err(rerr).Str("run", owner.RunID).Msg("releasing locks after a refused acquire")
		}
		if len(holders) > 0 {
			return nil, nil, &LockedError{Env: owner.Env, Holders: holders, now: opts.Now()}
		}
		return nil, nil, errs.ErrorOrNil()
	}
	for _, t := range ls.took {
		log.Debug().Str("host", t.Host).Interface("owner", t.Owner).Str("reason", t.StaleReason).Msg("took over stale lock")
	}

	lockCtx, cancel := context.WithCancelCause(ctx)
	ls.cancel = cancel
	ls.stop = make(chan struct{})
	ls.done = make(chan struct{})
	// The refresher outlives ctx's cancellation on purpose: a run that is
	// interrupted still rolls back under its lock until it calls Release.
	go ls.refresh(context.WithoutCancel(ctx))
	return ls, lockCtx, nil
}

// acquireOne takes one host's lock. A race with another run (the lock came
// or went between two commands) is retried a few times.
func acquireOne(ctx context.Context, t LockTarget, runID string, body []byte, opts LockOptions) (got bool, took, holder *HostLockState, err error) {
	const attempts = 4
	for range attempts {
		res, err := t.Conn.Run(ctx, acquireScript(t.Layout, runID), transport.RunOptions{Stdin: strings.NewReader(string(body)), Label: "lock"})
		if err != nil {
			return false, nil, nil, err
		}
		word, rest := firstLine(res.Stdout)
		switch word {
		case "acquired":
			return true, nil, nil, nil
		case "retry":
			continue
		case "held":
		default:
			return false, nil, nil, fmt.Errorf("unexpected output from the lock script: %q", truncate(string(res.Stdout), 200))
		}
		st := judge(t.Host, rest, opts)
		if !st.Stale || !opts.TakeOverStale {
			return false, nil, &st, nil
		}
		sum := sha256.Sum256(rest)
		res, err = t.Conn.Run(ctx, takeOverScript(t.Layout, runID, hex.EncodeToString(sum[:])), transport.RunOptions{Stdin: strings.NewReader(string(body)), Label: "lock takeover"})
		if err != nil {
			return false, nil, nil, err
		}
		switch word, _ := firstLine(res.Stdout); word {
		case "took-over":
			return true, &st, nil, nil
		case "acquired":
			return true, nil, nil, nil
		case "retry":
			continue
		default:
			return false, nil, nil, fmt.Errorf("unexpected output from the lock takeover script: %q", truncate(string(res.Stdout), 200))
		}
	}
	return false, nil, nil, errors.New("the lock kept changing hands; try again")
}

// refresh rewrites the heartbeat on every host each tick until Release.
func (l *LockSet) refresh(ctx context.Context) {
	defer close(l.done)
	log := zerolog.Ctx(ctx)
	tick := time.NewTicker(l.opts.Refresh)
	defer tick.Stop()
	failures := make([]int, len(l.targets))
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		o := l.owner
		o.Heartbeat = l.opts.Now().UTC()
		body, _ := json.Marshal(o) // a LockOwner always marshals
		var mu sync.Mutex
		var lost []string
		var wg sync.WaitGroup
		for i := range l.targets {
			t := &l.targets[i]
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Bounded so that a hung connection cannot stall the other hosts' heartbeats.
				rctx, cancel := context.WithTimeout(ctx, l.opts.TTL/2)
				defer cancel()
				res, err := t.run(rctx, refreshScript(t.Layout, l.owner.RunID), transport.RunOptions{Stdin: strings.NewReader(string(body)), Label: "lock heartbeat"})
				word := ""
				if err == nil {
					word, _ = firstLine(res.Stdout)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case word == "ok":
					failures[i] = 0
				case word == "gone" || word == "other":
					lost = append(lost, fmt.Sprintf("%s: %s", t.Host, map[string]string{"gone": "the lock directory is gone", "other": "another run holds the lock"}[word]))
				default:
					failures[i]++
					if err == nil {
						err = fmt.Errorf("unexpected output %q", truncate(string(res.Stdout), 200))
					}
					// An unreachable host keeps our lock until its heartbeat is
					// older than the TTL; only then may another run take it over,
					// which the next heartbeat that gets through reports as lost.
					if failures[i] >= refreshFailuresWarn {
						log.Warn().Err(err).Str("host", t.Host).Int("failures", failures[i]).Msg("lock heartbeat failed")
					}
				}
			}()
		}
		wg.Wait()
		if len(lost) > 0 {
			// Keep the heartbeat going on the other hosts: the run still holds
			// them while it stops (and maybe rolls back).
			sort.Strings(lost)
			cause := fmt.Errorf("%w: %s", ErrLockLost, strings.Join(lost, "; "))
			log.Error().Str("run", l.owner.RunID).Msg(cause.Error())
			l.cancel(cause)
		}
	}
}

// TookOver lists the stale locks this set replaced.
func (l *LockSet) TookOver() []HostLockState {
	if l == nil {
		return nil
	}
	return append([]HostLockState(nil), l.took...)
}

// Release stops the heartbeat and removes each host's lock if it still names
// this run. It is idempotent; later calls return the first call's result.
func (l *LockSet) Release(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.releaseOnce.Do(func() {
		if l.stop != nil {
			close(l.stop)
			<-l.done
		}
		l.releaseErr = l.releaseAll(ctx)
		if l.cancel != nil {
			l.cancel(errLockReleased)
		}
	})
	return l.releaseErr
}

func (l *LockSet) releaseAll(ctx context.Context) error {
	log := zerolog.Ctx(ctx)
	errs := make([]error, len(l.targets))
	var wg sync.WaitGroup
	for i := range l.targets {
		t := &l.targets[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := t.run(ctx, releaseScript(t.Layout, l.owner.RunID), transport.RunOptions{Label: "unlock"})
			if err != nil {
				errs[i] = fmt.Errorf("%s: releasing the lock: %w", t.Host, err)
				return
			}
			switch word, _ := firstLine(res.Stdout); word {
			case "released", "gone":
			case "other":
				// Not ours any more: someone took it over; leave theirs alone.
				log.Warn().Str("host", t.Host).Str("run", l.owner.RunID).Msg("lock is held by another run now; not removed")
			default:
				errs[i] = fmt.Errorf("%s: releasing the lock: unexpected output %q", t.Host, truncate(string(res.Stdout), 200))
			}
		}()
	}
	wg.Wait()
	var merr *multierror.Error
	for _, e := range errs {
		if e != nil {
			merr = multierror.Append(merr, e)
		}
	}
	return merr.ErrorOrNil()
}

// InspectLocks reads every target's lock without changing anything. Hosts
// that cannot be asked have Err set; the error collects them.
func InspectLocks(ctx context.Context, targets []LockTarget, opts LockOptions) ([]HostLockState, error) {
	opts = opts.withDefaults()
	out := make([]HostLockState, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = HostLockState{Host: t.Host}
			res, err := t.Conn.Run(ctx, inspectScript(t.Layout), transport.RunOptions{Label: "lock status"})
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			switch word, rest := firstLine(res.Stdout); word {
			case "none":
			case "held":
				out[i] = judge(t.Host, rest, opts)
			default:
				out[i].Err = fmt.Sprintf("unexpected output %q", truncate(string(res.Stdout), 200))
			}
		}()
	}
	wg.Wait()
	var merr *multierror.Error
	for _, s := range out {
		if s.Err != "" {
			merr = multierror.Append(merr, fmt.Errorf("%s: reading the lock: %s", s.Host, s.Err))
		}
	}
	return out, merr.ErrorOrNil()
}

// ForceUnlock removes any lock on the targets, whoever holds it, and records
// an "unlock" event with the reason and the removed owner in each such host's
// history.json. It returns the locks it removed.
func ForceUnlock(ctx context.Context, targets []LockTarget, by LockOwner, reason string) ([]HostLockState, error) {
	if err := checkRunID(by.RunID); err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, errors.New("a reason is required to remove a lock")
	}
	removed := make([]*HostLockState, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := t.Conn.Run(ctx, forceRemoveScript(t.Layout, by.RunID), transport.RunOptions{Label: "force unlock"})
			if err != nil {
				errs[i] = fmt.Errorf("%s: removing the lock: %w", t.Host, err)
				return
			}
			word, rest := firstLine(res.Stdout)
			switch word {
			case "none":
				return
			case "removed":
			default:
				errs[i] = fmt.Errorf("%s: removing the lock: unexpected output %q", t.Host, truncate(string(res.Stdout), 200))
				return
			}
			st := HostLockState{Host: t.Host, Held: true}
			ev := HistoryEvent{Kind: "unlock", Operator: by.Operator, Controller: by.Controller, RunID: by.RunID, Reason: reason,
				Detail: map[string]string{}}
			var o LockOwner
			if json.Unmarshal(rest, &o) == nil && o.RunID != "" {
				st.Owner = &o
				ev.Detail["removed_run_id"] = o.RunID
				ev.Detail["removed_command"] = o.Command
				ev.Detail["removed_release"] = o.Release
				ev.Detail["removed_operator"] = o.Operator
				ev.Detail["removed_controller"] = o.Controller
				ev.Detail["removed_pid"] = fmt.Sprint(o.PID)
				ev.Detail["removed_heartbeat"] = o.Heartbeat.UTC().Format(time.RFC3339)
			} else {
				ev.Detail["removed_owner"] = "unreadable"
			}
			removed[i] = &st
			if err := AppendHistoryEvent(ctx, t.Conn, t.Layout, ev); err != nil {
				errs[i] = fmt.Errorf("%s: lock removed, but recording it in history failed: %w", t.Host, err)
			}
		}()
	}
	wg.Wait()
	var out []HostLockState
	for _, r := range removed {
		if r != nil {
			out = append(out, *r)
		}
	}
	var merr *multierror.Error
	for _, e := range errs {
		if e != nil {
			merr = multierror.Append(merr, e)
		}
	}
	return out, merr.ErrorOrNil()
}
