package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/shellquote"
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
	// Optional: the run goes on without this host's lock when its lock
	// command fails (LockSet.NotLocked lists it). A lock held by another
	// run still refuses the run.
	Optional bool
	// Then, when set, is a script run in the lock's own session right
	// after this run's lock was put in place (reading the host under the
	// lock costs no session of its own). Its output goes to Got, called
	// from the acquiring goroutine; a lock taken any other way (a takeover,
	// a retry that finds the lock already ours) does not run it, and the
	// caller reads the host itself.
	Then string
	Got  func(stdout []byte)
	// ThenLabel names what Then does: the session is labelled
	// "lock+"+ThenLabel in the run log (and for testenv's step faults).
	ThenLabel string
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
	// ReleaseTimeout bounds the release of each host's lock (reconnecting
	// included), counted from when the heartbeat has stopped; default 30s.
	ReleaseTimeout time.Duration
	// MaxParallel bounds how many hosts taking, giving back, inspecting or
	// removing the lock work at once (ssh.max_parallel); 0: all at once.
	// The heartbeat is never bounded: a healthy host must not wait behind
	// hung ones until its lock looks stale.
	MaxParallel int
}

// DefaultLockTTL is the heartbeat age after which a lock is stale.
const DefaultLockTTL = 2 * time.Minute

// DefaultReleaseTimeout is how long relctl tries to remove one host's lock.
const DefaultReleaseTimeout = 30 * time.Second

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
	if o.ReleaseTimeout <= 0 {
		o.ReleaseTimeout = DefaultReleaseTimeout
	}
	return o
}

// HostLockState is what one host's lock looks like.
type HostLockState struct {
	Host        string
	Path        string // the lock on the host: <base_dir>/.relctl/lock
	Held        bool
	Owner       *LockOwner // nil when not held, and for most broken locks
	Stale       bool
	StaleReason string // e.g. "pid 1234 is not running on this controller", "heartbeat 5m old (ttl 2m)"
	// Broken says what is wrong with a lock that no run of relctl holds the
	// way relctl makes locks (a plain file, a directory without owner.json,
	// garbage in owner.json, ...). Such a lock is held (nobody else may run)
	// but never stale: relctl does not take over what it does not understand.
	Broken string
	Err    string // the host could not be asked
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
	groups, broken := e.holderGroups()
	var b strings.Builder
	fmt.Fprintf(&b, "environment %s is locked", e.Env)
	stale, live := false, false
	var elsewhere []string // the environments of live runs that are not e.Env's
	for i, g := range groups {
		if i > 0 {
			b.WriteString(";")
		}
		switch kind, env := e.writeHolder(&b, g, now); kind {
		case holderStale:
			stale = true
		case holderForeign:
			if !slices.Contains(elsewhere, env) {
				elsewhere = append(elsewhere, env)
			}
		case holderLive:
			live = true
		}
	}
	e.writeAdvice(&b, stale, live, elsewhere, broken)
	return b.String()
}

// holderGroup is one clause of a LockedError: the hosts one run holds (st
// is the first of them), or one host's broken lock.
type holderGroup struct {
	st    HostLockState
	hosts []string
}

// holderGroups puts the holders in clauses, one per holding run (usually a
// single run holds every host) and one per broken lock (it has no run), in
// the order they were read; broken lists the hosts with a broken lock.
func (e *LockedError) holderGroups() (groups []*holderGroup, broken []string) {
	byRun := map[string]*holderGroup{}
	for _, h := range e.Holders {
		key := "?"
		switch {
		case h.Broken != "":
			key = "broken\x00" + h.Host
			broken = append(broken, h.Host)
		case h.Owner != nil:
			key = h.Owner.RunID
		}
		g := byRun[key]
		if g == nil {
			g = &holderGroup{st: h}
			byRun[key] = g
			groups = append(groups, g)
		}
		g.hosts = append(g.hosts, h.Host)
	}
	return groups, broken
}

// What a holder's clause says about what the operator can do about it.
const (
	holderBroken  = iota // a broken lock: see writeAdvice
	holderStale          // a stale lock: rollback takes it over
	holderForeign        // another environment's live run: wait for it there
	holderLive           // a live run in this environment: wait for it
)

// writeHolder writes g's clause: who holds the lock on which hosts, and
// whether it is stale or another environment's (env: that environment).
func (e *LockedError) writeHolder(b *strings.Builder, g *holderGroup, now time.Time) (kind int, env string) {
	if g.st.Broken != "" {
		fmt.Fprintf(b, " by a broken lock on %s (%s: %s)", g.st.Host, g.st.Path, g.st.Broken)
		return holderBroken, ""
	}
	o := g.st.Owner
	if o != nil {
		fmt.Fprintf(b, " by run %s (%s", o.RunID, o.Command)
		if o.Release != "" {
			fmt.Fprintf(b, " %s", o.Release)
		}
		fmt.Fprintf(b, " in %s by %s@%s, pid %d, heartbeat %s ago)", o.Env, o.Operator, o.Controller, o.PID, age(now, o.Heartbeat))
	} else {
		b.WriteString(" by an unknown holder")
	}
	fmt.Fprintf(b, " on %s", strings.Join(g.hosts, ", "))
	foreign := o != nil && o.Env != e.Env && e.Env != ""
	if foreign {
		// One lock path serves both environments on these hosts (a
		// shared load balancer, a host without base_dir).
		fmt.Fprintf(b, ", a run in environment %s, which locks these hosts at the same place", o.Env)
	}
	switch {
	case g.st.Stale:
		fmt.Fprintf(b, "; the lock is stale: %s", g.st.StaleReason)
		return holderStale, ""
	case foreign:
		return holderForeign, o.Env
	}
	return holderLive, ""
}

// writeAdvice writes what the operator does next: take over or remove a
// stale lock, wait for a live run (in its own environment when it is
// another's), remove a broken lock after looking at it.
func (e *LockedError) writeAdvice(b *strings.Builder, stale, live bool, elsewhere, broken []string) {
	switch {
	case stale:
		fmt.Fprintf(b, "\n`relctl rollback --env %[1]s --to prev` takes over a stale lock; `relctl unlock --env %[1]s --force --reason TEXT` removes it", e.Env)
	case live:
		fmt.Fprintf(b, "\nwait for that run to finish; if it is gone, `relctl unlock --env %s --force --reason TEXT` removes the lock", e.Env)
	}
	for _, env := range elsewhere {
		fmt.Fprintf(b, "\nthe lock is %[1]s's: wait for that run to finish (`relctl status --env %[1]s` shows it) rather than unlocking %[2]s, which would remove a live run's lock; if it is gone, `relctl unlock --env %[1]s --force --reason TEXT` removes the lock",
			env, e.Env)
	}
	if len(broken) > 0 {
		fmt.Fprintf(b, "\nno run refreshes a broken lock and relctl never takes one over: look at it on the host, then remove it with\n  %s", UnlockCommand(e.Env, broken))
	}
}

// UnlockCommand is the command that removes the environment's lock from
// hosts (all of the environment's when hosts is empty).
func UnlockCommand(env string, hosts []string) string {
	cmd := "relctl unlock --env " + shellquote.Quote(env)
	if len(hosts) > 0 {
		hs := slices.Clone(hosts)
		sort.Strings(hs)
		cmd += " --hosts " + shellquote.Quote(strings.Join(slices.Compact(hs), ","))
	}
	return cmd + " --force --reason " + shellquote.Quote("removing a broken lock")
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
	skipped []HostLockState // Optional targets left out: their lock command failed

	cancel context.CancelCauseFunc
	stop   chan struct{}
	// stopHeartbeat ends a heartbeat in flight (Release does not wait for
	// a hung host's TTL/2).
	stopHeartbeat context.CancelFunc
	done          chan struct{}

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
	return fmt.Sprintf("{ [ -d %[1]s ] || mkdir -p %[1]s; } && cd %[1]s || exit 1\n", shellquote.Quote(l.StateDir()))
}

// ownsLock defines relctl_owns FILE: whether the owner.json FILE names the
// run (ownedBy) on its first line, which is all relctl writes there; read by
// the shell itself, as lock scripts start as few processes as they can.
func ownsLock(runID string) string {
	return fmt.Sprintf(`relctl_owns() {
  relctl_o=
  IFS= read -r relctl_o < "$1" 2>/dev/null
  case $relctl_o in *%s*) return 0;; esac
  return 1
}
`, ownedBy(runID))
}

// rmIfThere removes the shell word p (a file or directory) only if there is
// something to remove: no process otherwise.
func rmIfThere(p string) string {
	return fmt.Sprintf("{ ! [ -e %[1]s ] && ! [ -L %[1]s ] || rm -rf %[1]s; }", p)
}

// probeLock defines probe_lock PATH: what is at a lock path, without
// following a symbolic link and without reading anything but a regular
// owner.json (at most maxOwnerSize+1 bytes of it). It prints one of
//
//	none                       nothing there
//	held\n<owner.json>         a lock directory with a regular owner.json
//	gone                       it vanished while being read (a race: a
//	                           release moves the lock away whole)
//	broken <what>\n<fact>      anything else: see brokenForms
const probeLock = `probe_lock() {
  if [ -L "$1" ]; then echo "broken symlink"; readlink "$1" 2>/dev/null | head -c 300; return 0; fi
  if [ ! -e "$1" ]; then echo none; return 0; fi
  if [ ! -d "$1" ]; then
    if [ -f "$1" ]; then echo "broken file"; wc -c < "$1" 2>/dev/null
    elif [ -p "$1" ]; then echo "broken fifo"
    elif [ -S "$1" ]; then echo "broken socket"
    elif [ -b "$1" ] || [ -c "$1" ]; then echo "broken device"
    else echo "broken special"; fi
    return 0
  fi
  if [ ! -r "$1" ] || [ ! -x "$1" ]; then if [ -d "$1" ]; then echo "broken unreadable"; else echo gone; fi; return 0; fi
  if [ -L "$1/owner.json" ]; then echo "broken owner-symlink"; readlink "$1/owner.json" 2>/dev/null | head -c 300; return 0; fi
  if [ ! -e "$1/owner.json" ]; then
    if [ -z "$(ls -A "$1" 2>/dev/null | head -n 1)" ]; then echo "broken empty"; else echo "broken no-owner"; ls -A "$1" 2>/dev/null | head -n 5; fi
    return 0
  fi
  if [ -d "$1/owner.json" ]; then echo "broken owner-dir"; return 0; fi
  if [ ! -f "$1/owner.json" ]; then if [ -e "$1/owner.json" ]; then echo "broken owner-special"; else echo gone; fi; return 0; fi
  if [ ! -r "$1/owner.json" ]; then if [ -e "$1/owner.json" ]; then echo "broken owner-unreadable"; else echo gone; fi; return 0; fi
  echo held
  head -c ` + maxOwnerSizeText + ` "$1/owner.json" 2>/dev/null || return 0
}
`

// maxOwnerSize bounds what is read of an owner.json: relctl's own are a
// few hundred bytes.
const (
	maxOwnerSize     = 64 << 10
	maxOwnerSizeText = "65537" // maxOwnerSize+1: enough to tell "too large"
)

// brokenForms says in words what probe_lock found (fact: what it printed
// after the word).
func brokenForm(what, fact string) string {
	fact = printable(strings.TrimSpace(fact), 300)
	switch what {
	case "symlink":
		return fmt.Sprintf("the lock is a symbolic link (to %s), not a directory", orQ(fact))
	case "file":
		unit := "bytes"
		if fact == "1" {
			unit = "byte"
		}
		return fmt.Sprintf("the lock is a plain file (%s %s), not a directory", orQ(fact), unit)
	case "fifo", "socket", "device", "special":
		return fmt.Sprintf("the lock is a %s, not a directory", map[string]string{"fifo": "named pipe", "socket": "socket", "device": "device file", "special": "special file"}[what])
	case "unreadable":
		return "the lock directory cannot be read by the SSH user"
	case "empty":
		return "the lock directory is empty (no owner.json)"
	case "no-owner":
		return fmt.Sprintf("the lock directory has no owner.json (it holds %s)", strings.Join(strings.Fields(fact), ", "))
	case "owner-symlink":
		return fmt.Sprintf("owner.json is a symbolic link (to %s)", orQ(fact))
	case "owner-dir":
		return "owner.json is a directory"
	case "owner-special":
		return "owner.json is not a regular file"
	case "owner-unreadable":
		return "owner.json cannot be read by the SSH user"
	}
	return fmt.Sprintf("an unknown form (%s)", printable(what, 60))
}

func orQ(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// lockProbe is probe_lock's output, parsed.
type lockProbe struct {
	word string // none, held, gone, broken
	what string // broken: the form
	rest []byte // held: owner.json; broken: the fact
}

func parseProbe(out []byte) (lockProbe, error) {
	line, rest := firstLine(out)
	word, what, _ := strings.Cut(line, " ")
	switch word {
	case "none", "gone":
		return lockProbe{word: word}, nil
	case "held", "broken":
		return lockProbe{word: word, what: what, rest: rest}, nil
	}
	return lockProbe{}, fmt.Errorf("unexpected output %q", truncate(string(out), 200))
}

// transient is a broken form that a run of relctl shows for an instant (an
// older relctl's release between removing owner.json and the directory; a
// lock that vanished while it was read): looked at again before it counts.
func (p lockProbe) transient() bool {
	return p.word == "gone" || (p.word == "broken" && p.what == "empty") || (p.word == "held" && len(p.rest) == 0)
}

// acquireScript installs the lock: owner.json (stdin) is written into a
// private directory which is then renamed to "lock", if nothing is there.
// (rename(2) would also replace an empty directory: the check before it
// leaves that to the probe.) A lock directory never exists without its
// owner.json, so a reader never sees a half-made lock. When the lock is not
// taken, the probe says what is there.
func acquireScript(l Layout, runID, then string) string {
	n := shellquote.Quote("lock.new." + runID)
	after := "exit 0"
	if then != "" {
		// In a subshell: whatever it does, the lock's answer stands.
		after = "(\n" + then + "\n)\nexit 0"
	}
	return lockCommon(l) + probeLock + fmt.Sprintf(`%[3]s && mkdir %[1]s && cat > %[1]s/owner.json || exit 1
if [ ! -e lock ] && [ ! -L lock ] && mv -T %[1]s lock 2>/dev/null; then echo acquired; %[2]s; fi
rm -rf %[1]s
probe_lock lock`, n, after, rmIfThere(n))
}

// takeOverScript replaces a stale lock, but only the very one judged stale:
// it moves "lock" aside (atomic), compares its owner.json with the digest read
// before, and puts it back when it changed (its holder refreshed it, or
// another run got there first).
func takeOverScript(l Layout, runID, wantSHA string) string {
	n, s := shellquote.Quote("lock.new."+runID), shellquote.Quote("lock.stale."+runID)
	return lockCommon(l) + fmt.Sprintf(`rm -rf %[1]s %[2]s && mkdir %[1]s && cat > %[1]s/owner.json || exit 1
if ! mv -T lock %[2]s 2>/dev/null; then
  if [ ! -e lock ] && [ ! -L lock ] && mv -T %[1]s lock 2>/dev/null; then echo acquired; exit 0; fi
  rm -rf %[1]s; echo retry; exit 0
fi
set -- $(sha256sum < %[2]s/owner.json 2>/dev/null)
if [ "${1:-}" = %[3]s ]; then
  if mv -T %[1]s lock 2>/dev/null; then rm -rf %[2]s; echo took-over; exit 0; fi
  rm -rf %[1]s %[2]s; echo retry; exit 0
fi
mv -T %[2]s lock 2>/dev/null || rm -rf %[2]s
rm -rf %[1]s; echo retry`, n, s, shellquote.Quote(wantSHA))
}

// ownedBy matches our run in owner.json as encoding/json writes it (run ids
// are validated, so they need no JSON escaping).
func ownedBy(runID string) string { return shellquote.Quote(`"run_id":"` + runID + `"`) }

// refreshScript rewrites owner.json with a new heartbeat (stdin). It works
// from inside the lock directory: if the lock is moved aside by a takeover
// meanwhile, the write lands in the moved directory, never in the new lock.
func refreshScript(l Layout, runID string) string {
	t := shellquote.Quote("owner.json.tmp." + runID)
	return ownsLock(runID) + fmt.Sprintf(`[ -L %[1]s ] && { echo other; exit 0; }
cd %[1]s 2>/dev/null || { echo gone; exit 0; }
relctl_owns owner.json || { echo other; exit 0; }
cat > %[2]s || exit 1
# Check again right before the rename: another run may have taken the lock
# while the new owner.json was arriving on stdin.
relctl_owns owner.json || { rm -f %[2]s; echo other; exit 0; }
mv -f %[2]s owner.json && echo ok`, shellquote.Quote(l.LockDir()), t)
}

// releaseScript removes the lock if it is ours: moved aside whole (so no
// reader ever sees a lock directory without owner.json), checked again
// there, then deleted. Another run's lock that got in between is put back.
func releaseScript(l Layout, runID string) string {
	r := shellquote.Quote("lock.released." + runID)
	return ownsLock(runID) + fmt.Sprintf(`cd %[1]s 2>/dev/null || { echo gone; exit 0; }
[ -d lock ] && [ ! -L lock ] || { echo gone; exit 0; }
relctl_owns lock/owner.json || { echo other; exit 0; }
%[3]s
mv -T lock %[2]s 2>/dev/null || { echo gone; exit 0; }
if relctl_owns %[2]s/owner.json; then rm -rf %[2]s; echo released; exit 0; fi
if [ ! -e lock ] && [ ! -L lock ]; then mv -T %[2]s lock 2>/dev/null; fi
echo other`, shellquote.Quote(l.StateDir()), r, rmIfThere(r))
}

// inspectScript says what the lock is (probe_lock); it changes nothing.
func inspectScript(l Layout) string {
	return probeLock + "probe_lock " + shellquote.Quote(l.LockDir())
}

// forceRemoveScript moves whatever is at the lock path aside (atomic; a
// symbolic link is moved, never followed), says what it was, and deletes
// it. It prints "none", or "removed" followed by the probe's output; a
// moved-aside copy it could not delete is named on stderr
// ("relctl-kept PATH").
func forceRemoveScript(l Layout, runID string) string {
	r := shellquote.Quote("lock.removed." + runID)
	return lockCommon(l) + probeLock + fmt.Sprintf(`rm -rf %[1]s 2>/dev/null
if [ ! -e lock ] && [ ! -L lock ]; then echo none; exit 0; fi
mv -T lock %[1]s || exit 1
echo removed
probe_lock %[1]s
if [ -d %[1]s ] && [ ! -L %[1]s ]; then chmod -R u+rwX %[1]s 2>/dev/null; fi
rm -rf %[1]s 2>/dev/null
if [ -e %[1]s ] || [ -L %[1]s ]; then echo "relctl-kept $PWD/"%[1]s >&2; fi
exit 0`, r)
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

// ParseLockOwner reads an owner.json. It accepts only what a run of relctl
// writes: a JSON object with a valid run id, the operator, controller, pid,
// environment, command and heartbeat. Unknown fields are allowed (a newer
// relctl may add some); descriptive fields are made printable (no control
// characters, at most 200 characters), so an owner can go to a terminal.
func ParseLockOwner(raw []byte) (*LockOwner, error) {
	if len(raw) > maxOwnerSize {
		return nil, fmt.Errorf("owner.json is larger than %d KiB", maxOwnerSize>>10)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("owner.json is empty")
	}
	if t := bytes.TrimSpace(raw); t[0] != '{' {
		return nil, errors.New("owner.json is not a JSON object")
	}
	var o LockOwner
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("owner.json is not valid: %s", printable(err.Error(), 200))
	}
	var missing []string
	for _, f := range []struct {
		name string
		ok   bool
	}{{"run_id", o.RunID != ""}, {"env", o.Env != ""}, {"command", o.Command != ""}, {"operator", o.Operator != ""},
		{"controller", o.Controller != ""}, {"pid", o.PID != 0}, {"heartbeat", !o.Heartbeat.IsZero()}} {
		if !f.ok {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("owner.json lacks %s", strings.Join(missing, ", "))
	}
	if checkRunID(o.RunID) != nil {
		return nil, fmt.Errorf("owner.json has an invalid run_id %q", printable(o.RunID, 60))
	}
	if o.PID < 0 || o.PID > math.MaxInt32 {
		return nil, fmt.Errorf("owner.json has an invalid pid %d", o.PID)
	}
	for _, f := range []*string{&o.Operator, &o.Controller, &o.Env, &o.Command, &o.Release} {
		*f = printable(*f, 200)
	}
	return &o, nil
}

// printable: what a host wrote, safe for the terminal.
func printable(s string, n int) string { return transport.Printable(s, n) }

// judgeProbe turns what probe_lock found at a held lock into its state:
// held by a live run, stale, or broken.
func judgeProbe(host, lockPath string, p lockProbe, opts LockOptions) HostLockState {
	st := HostLockState{Host: host, Path: lockPath, Held: true}
	if p.word == "broken" {
		st.Broken = brokenForm(p.what, string(p.rest))
		return st
	}
	o, err := ParseLockOwner(p.rest)
	if err != nil {
		st.Broken = err.Error()
		return st
	}
	st.Owner = o
	now := opts.Now()
	switch {
	case o.Heartbeat.Sub(now) > opts.TTL:
		// Never stale by itself: it needs a human (the holder's clock, or
		// the file, is wrong).
		st.Broken = fmt.Sprintf("its heartbeat %s is %s in the future (run %s in %s by %s@%s, pid %d): a clock or the file is wrong, and the lock would never time out",
			o.Heartbeat.UTC().Format(time.RFC3339), o.Heartbeat.Sub(now).Round(time.Second), o.RunID, o.Env, o.Operator, o.Controller, o.PID)
	case o.Controller == Controller() && !pidAlive(o.PID):
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
// host is held by another run (live, or stale while !TakeOverStale), or the
// lock command fails on a target that is not Optional, it gives back every
// lock it may have put in place and returns the error (*LockedError when a
// host is held). An Optional target whose lock command fails is left out
// (NotLocked). The returned context is cancelled when the lock is lost on any
// host; a goroutine refreshes the heartbeat every opts.Refresh until Release,
// which the caller must call.
func AcquireLocks(ctx context.Context, targets []LockTarget, owner LockOwner, opts LockOptions) (*LockSet, context.Context, error) {
	opts = opts.withDefaults()
	if err := checkRunID(owner.RunID); err != nil {
		return nil, nil, err
	}
	owner, body, err := lockOwnerBody(owner, opts)
	if err != nil {
		return nil, nil, err
	}
	// The first host by name is taken alone, first: of two runs racing for
	// the same hosts, the one that gets it goes on and the other stops there,
	// instead of each winning half the hosts and both giving up.
	targets = slices.Clone(targets)
	slices.SortStableFunc(targets, func(a, b LockTarget) int { return strings.Compare(a.Host, b.Host) })
	res := tryLocks(ctx, targets, owner.RunID, body, opts)

	ls := &LockSet{owner: owner, opts: opts}
	holders, refused, unsure := ls.sortOutcomes(ctx, targets, res)
	// Give back what we took (when refused) and whatever a failed lock
	// command may have left: a refused run must leave no lock behind, and
	// a host left out must not keep one.
	var taken []LockTarget
	if refused {
		taken = ls.targets
	}
	notGivenBack := giveBack(ctx, taken, targets, unsure, owner.RunID, opts)
	errs := ls.lockErrors(targets, res, notGivenBack, refused)
	if refused {
		if len(holders) > 0 {
			return nil, nil, &LockedError{Env: owner.Env, Holders: holders, now: opts.Now()}
		}
		return nil, nil, errs.ErrorOrNil()
	}
	log := zerolog.Ctx(ctx)
	for _, t := range ls.took {
		log.Debug().Str("host", t.Host).Interface("owner", t.Owner).Str("reason", t.StaleReason).Msg("took over stale lock")
	}
	return ls, ls.startHeartbeat(ctx), nil
}

// lockOwnerBody stamps owner with its start (now, unless set) and
// heartbeat (now), and encodes it as the lock's owner.json.
func lockOwnerBody(owner LockOwner, opts LockOptions) (LockOwner, []byte, error) {
	now := opts.Now().UTC()
	if owner.Started.IsZero() {
		owner.Started = now
	}
	owner.Started = owner.Started.UTC()
	owner.Heartbeat = now
	body, err := json.Marshal(owner)
	return owner, body, err
}

// lockOutcome is what trying one host's lock came to.
type lockOutcome struct {
	tried  bool // the lock script may have run
	got    bool
	took   *HostLockState // a stale lock taken over
	holder *HostLockState // held by another run
	err    error
}

// tryLocks runs the lock script on targets[0] alone, then, unless another
// run holds it, on the others at once; when targets[0] is refused the
// others are only inspected, to name every holder. Outcomes are by index.
func tryLocks(ctx context.Context, targets []LockTarget, runID string, body []byte, opts LockOptions) []lockOutcome {
	res := make([]lockOutcome, len(targets))
	if len(targets) == 0 {
		return res
	}
	one := func(i int) {
		res[i].tried = true
		got, took, holder, err := acquireOne(ctx, &targets[i], runID, body, opts)
		res[i] = lockOutcome{true, got, took, holder, err}
	}
	if err := fanout.Guard(ctx, targets[0].Host, func() error { one(0); return nil }); err != nil {
		res[0].err = err
	}
	if res[0].holder != nil {
		// Refused: only look at the other hosts, to name every holder.
		states, _ := InspectLocks(ctx, targets[1:], opts)
		for i, st := range states {
			if st.Held && (st.Owner == nil || st.Owner.RunID != runID) {
				res[i+1].holder = &st
			}
		}
		return res
	}
	rest := targets[1:]
	errs := fanout.ForEach(ctx, len(rest), opts.MaxParallel, func(i int) string { return rest[i].Host }, func(ctx context.Context, i int) error {
		one(i + 1)
		return nil
	})
	for i, err := range errs {
		if err != nil {
			res[i+1].err = err
		}
	}
	return res
}

// sortOutcomes keeps in ls the targets locked and the stale locks taken
// over, and returns the other runs' locks found, whether the acquire is
// refused (a host held, or a lock command failed on a target that is not
// Optional, or ctx ended) and the hosts whose lock script may have run
// without its answer arriving (a connection cut after the rename,
// control_timeout): the lock may be there, so they get the release script
// too.
func (ls *LockSet) sortOutcomes(ctx context.Context, targets []LockTarget, res []lockOutcome) (holders []HostLockState, refused bool, unsure []int) {
	for i, r := range res {
		if r.got {
			ls.targets = append(ls.targets, targets[i])
		}
		if r.took != nil {
			ls.took = append(ls.took, *r.took)
		}
		if r.holder != nil {
			holders = append(holders, *r.holder)
			refused = true
		}
		if r.err != nil {
			if r.tried {
				unsure = append(unsure, i)
			}
			if !targets[i].Optional || ctx.Err() != nil {
				refused = true
			}
		}
	}
	return holders, refused, unsure
}

// lockErrors are the failed lock commands, with a note where giving back
// what one may have left failed too. An Optional target's failure, when
// the acquire goes on, is no error: the host is left out (ls.skipped).
func (ls *LockSet) lockErrors(targets []LockTarget, res []lockOutcome, notGivenBack map[int]error, refused bool) *multierror.Error {
	var errs *multierror.Error
	for i, r := range res {
		if r.err == nil {
			continue
		}
		note := ""
		if rerr := notGivenBack[i]; rerr != nil {
			note = fmt.Sprintf("; removing the lock it may have put in place failed too (%v): if it is there, it is stale %s after it was taken, and `relctl unlock` removes it", rerr, ls.opts.TTL)
		}
		if targets[i].Optional && !refused {
			ls.skipped = append(ls.skipped, HostLockState{Host: targets[i].Host, Path: targets[i].Layout.LockDir(), Err: "the lock command failed: " + r.err.Error() + note})
			continue
		}
		errs = multierror.Append(errs, fmt.Errorf("%s: taking the lock: %w%s", targets[i].Host, r.err, note))
	}
	return errs
}

// startHeartbeat starts the goroutine that refreshes the locks' heartbeat
// and returns the context that is cancelled when a lock is lost.
func (ls *LockSet) startHeartbeat(ctx context.Context) context.Context {
	lockCtx, cancel := context.WithCancelCause(ctx)
	ls.cancel = cancel
	ls.stop = make(chan struct{})
	ls.done = make(chan struct{})
	// The refresher outlives ctx's cancellation on purpose: a run that is
	// interrupted still rolls back under its lock until it calls Release,
	// which ends a heartbeat in flight through hbCtx.
	hbCtx, stopHeartbeat := context.WithCancel(context.WithoutCancel(ctx))
	ls.stopHeartbeat = stopHeartbeat
	fanout.Go(ctx, "lock heartbeat", func() { ls.refresh(hbCtx) }, func(p *fanout.PanicError) {
		cancel(fmt.Errorf("%w: its heartbeat stopped: %v", ErrLockLost, p))
	})
	return lockCtx
}

// giveBack sends the release script to the hosts whose locks a refused
// acquire took, and to targets[unsure] (their lock command failed after it
// may have renamed the lock into place). It returns, by index in targets,
// the unsure hosts where that failed too.
func giveBack(ctx context.Context, taken, targets []LockTarget, unsure []int, runID string, opts LockOptions) map[int]error {
	log := zerolog.Ctx(ctx)
	var give []*LockTarget
	for i := range taken {
		give = append(give, &taken[i])
	}
	held := len(give)
	for _, i := range unsure {
		give = append(give, &targets[i])
	}
	words, rerrs := releaseEach(ctx, give, runID, opts, nil)
	for _, err := range rerrs[:held] {
		if err != nil {
			log.Warn().Err(err).Str("run", runID).Msg("releasing locks after a refused acquire")
		}
	}
	notGivenBack := map[int]error{}
	for k, i := range unsure {
		switch j := held + k; {
		case rerrs[j] != nil:
			notGivenBack[i] = rerrs[j]
			log.Warn().Err(rerrs[j]).Str("host", targets[i].Host).Str("run", runID).Msg("a lock of this run may remain where its lock command failed")
		case words[j] == "released":
			log.Info().Str("host", targets[i].Host).Str("run", runID).Msg("removed the lock that a failed lock command had put in place")
		}
	}
	return notGivenBack
}

// acquireOne takes one host's lock. A race with another run (the lock came
// or went between two commands) is retried a few times; so is a form that
// is only ever seen for an instant. A lock that stays broken is a holder.
// A connection found lost is dialled again (t.Conn is replaced), and a lock
// that already names this run is ours: an earlier attempt put it there.
func acquireOne(ctx context.Context, t *LockTarget, runID string, body []byte, opts LockOptions) (got bool, took, holder *HostLockState, err error) {
	const attempts = 4
	lockPath := t.Layout.LockDir()
	var last *HostLockState
	for attempt := range attempts {
		if attempt > 0 && last != nil {
			// A transient form: give its maker a moment.
			select {
			case <-ctx.Done():
				return false, nil, nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		last = nil
		label := "lock"
		if t.Then != "" {
			label += "+" + t.ThenLabel
		}
		res, err := t.run(ctx, acquireScript(t.Layout, runID, t.Then), transport.RunOptions{Stdin: strings.NewReader(string(body)), Label: label})
		if err != nil {
			return false, nil, nil, err
		}
		if word, rest := firstLine(res.Stdout); word == "acquired" {
			if t.Then != "" && t.Got != nil {
				t.Got(rest)
			}
			return true, nil, nil, nil
		}
		p, err := parseProbe(res.Stdout)
		if err != nil {
			return false, nil, nil, fmt.Errorf("the lock script: %w", err)
		}
		if p.word == "none" || p.word == "gone" {
			continue // released between the rename and the probe
		}
		st := judgeProbe(t.Host, lockPath, p, opts)
		if st.Owner != nil && st.Owner.RunID == runID {
			return true, nil, nil, nil
		}
		if p.transient() {
			last = &st
			continue
		}
		if st.Broken != "" || !st.Stale || !opts.TakeOverStale {
			return false, nil, &st, nil
		}
		sum := sha256.Sum256(p.rest)
		res, err = t.run(ctx, takeOverScript(t.Layout, runID, hex.EncodeToString(sum[:])), transport.RunOptions{Stdin: strings.NewReader(string(body)), Label: "lock takeover"})
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
	if last != nil {
		return false, nil, last, nil // it stayed that way: broken
	}
	return false, nil, nil, errors.New("the lock kept changing hands; try again")
}

// refresh rewrites the heartbeat on every host each tick until Release,
// which also cancels ctx to end a heartbeat in flight.
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
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o := l.owner
		o.Heartbeat = l.opts.Now().UTC()
		body, _ := json.Marshal(o) // a LockOwner always marshals
		var mu sync.Mutex
		var lost []string
		errs := fanout.ForEach(ctx, len(l.targets), 0, func(i int) string { return l.targets[i].Host }, func(ctx context.Context, i int) error {
			t := &l.targets[i]
			// Bounded so that a hung connection cannot stall the other hosts' heartbeats.
			rctx, cancel := context.WithTimeout(ctx, l.opts.TTL/2)
			defer cancel()
			res, err := t.run(rctx, refreshScript(t.Layout, l.owner.RunID), transport.RunOptions{Stdin: strings.NewReader(string(body)), Label: "lock heartbeat"})
			if ctx.Err() != nil {
				return nil // Release ended it: nothing to report
			}
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
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		for i, err := range errs {
			if err != nil { // a panic: a failed heartbeat on that host
				failures[i]++
				log.Warn().Err(err).Str("host", l.targets[i].Host).Int("failures", failures[i]).Msg("lock heartbeat failed")
			}
		}
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

// NotLocked lists the Optional targets left out because their lock command
// failed; Err says why.
func (l *LockSet) NotLocked() []HostLockState {
	if l == nil {
		return nil
	}
	return append([]HostLockState(nil), l.skipped...)
}

// Release stops the heartbeat (ending one in flight: a hung host must not
// hold up the others) and removes each host's lock if it still names this
// run. Each host gets opts.ReleaseTimeout from then on, whatever ctx's
// deadline: ctx's cancellation does not stop the release either (a run that
// is interrupted still gives its locks back). An error names each host whose
// lock may remain. Release is idempotent; later calls return the first
// call's result.
func (l *LockSet) Release(ctx context.Context) error {
	return l.ReleaseAfter(ctx, nil)
}

// Prelude is a script a host runs in its release session, before its lock
// is given back: a run's last write there (its summary) costs no session of
// its own. It runs whatever became of the lock. Done gets its outcome.
type Prelude struct {
	Script string
	Stdin  []byte
	// Make, when set, gives Script and Stdin as the host's turn comes: at
	// 1,000 hosts they are not all held at once.
	Make func() (script string, stdin []byte, err error)
	Done func(err error)
}

// ReleaseKey names a lock target in ReleaseAfter's preludes.
func ReleaseKey(host string, l Layout) string { return host + "\x00" + l.LockDir() }

// ReleaseAfter is Release with a Prelude per target (by ReleaseKey) run
// first in the same session. Done is called for each, also when the session
// could not run.
func (l *LockSet) ReleaseAfter(ctx context.Context, pre map[string]Prelude) error {
	if l == nil {
		return nil
	}
	l.releaseOnce.Do(func() {
		if l.stop != nil {
			close(l.stop)
			l.stopHeartbeat()
			<-l.done // soon: the transport ends a cancelled command at once
		}
		l.releaseErr = l.releaseAll(ctx, pre)
		if l.cancel != nil {
			l.cancel(errLockReleased)
		}
	})
	return l.releaseErr
}

func (l *LockSet) releaseAll(ctx context.Context, pre map[string]Prelude) error {
	targets := make([]*LockTarget, len(l.targets))
	for i := range l.targets {
		targets[i] = &l.targets[i]
	}
	words, errs := releaseEach(ctx, targets, l.owner.RunID, l.opts, pre)
	var merr *multierror.Error
	for i, e := range errs {
		switch {
		case e != nil:
			merr = multierror.Append(merr, e)
		case words[i] == "other":
			// Not ours any more: someone took it over; leave theirs alone.
			zerolog.Ctx(ctx).Warn().Str("host", targets[i].Host).Str("run", l.owner.RunID).Msg("lock is held by another run now; not removed")
		}
	}
	return merr.ErrorOrNil()
}

// markPrelude ends a Prelude's output with its exit status.
const markPrelude = "--relctl-prelude-exit--"

// releaseEach runs the release script on every target at once (after the
// target's Prelude in pre, if any), each bounded by opts.ReleaseTimeout (a
// reconnect included) and not by ctx's deadline or cancellation, and
// returns by index the script's word (released, gone, other) or the error,
// which names the host.
func releaseEach(ctx context.Context, targets []*LockTarget, runID string, opts LockOptions, pre map[string]Prelude) ([]string, []error) {
	ctx = context.WithoutCancel(ctx)
	words := make([]string, len(targets))
	errs := fanout.ForEach(ctx, len(targets), opts.MaxParallel, func(i int) string { return targets[i].Host }, func(ctx context.Context, i int) error {
		t := targets[i]
		rctx, cancel := context.WithTimeout(ctx, opts.ReleaseTimeout)
		defer cancel()
		p, withPre := pre[ReleaseKey(t.Host, t.Layout)]
		if withPre && p.Make != nil {
			var err error
			if p.Script, p.Stdin, err = p.Make(); err != nil {
				// No prelude then; the lock is given back all the same.
				if p.Done != nil {
					p.Done(err)
				}
				withPre = false
			}
		}
		script, ropts := releaseScript(t.Layout, runID), transport.RunOptions{Label: "unlock"}
		if withPre {
			// In a subshell, with its own status: whatever it does, the lock
			// is given back.
			// Its status on a line of its own, whatever it printed last.
			script = "(\n" + p.Script + "\n)\nprintf '\\n%s %s\\n' " + markPrelude + " \"$?\"\n" + script
			ropts = transport.RunOptions{Label: "write run summary, unlock", Stdin: bytes.NewReader(p.Stdin)}
		}
		res, err := t.run(rctx, script, ropts)
		if err != nil {
			if rctx.Err() != nil && !errors.Is(err, transport.ErrConnectionLost) {
				err = fmt.Errorf("no answer within %s: %w", opts.ReleaseTimeout, err)
			}
			if withPre && p.Done != nil {
				p.Done(err)
			}
			return fmt.Errorf("%s: releasing the lock: %w", t.Host, err)
		}
		out := res.Stdout
		if withPre {
			var perr error
			out, perr = preludeOutcome(res)
			if p.Done != nil {
				p.Done(perr)
			}
		}
		switch word, _ := firstLine(out); word {
		case "released", "gone", "other":
			words[i] = word
		default:
			return fmt.Errorf("%s: releasing the lock: unexpected output %q", t.Host, truncate(string(out), 200))
		}
		return nil
	})
	return words, errs
}

// preludeOutcome splits a release session's output at the prelude's status
// line: what the release script printed after it, and the prelude's error
// (its status and the end of the session's stderr).
func preludeOutcome(res *transport.Result) ([]byte, error) {
	out := string(res.Stdout)
	i := strings.LastIndex(out, markPrelude+" ")
	if i < 0 || (i > 0 && out[i-1] != '\n') {
		return res.Stdout, fmt.Errorf("its status line is missing from the output %q", truncate(out, 200))
	}
	status, rest, _ := strings.Cut(out[i+len(markPrelude)+1:], "\n")
	if status == "0" {
		return []byte(rest), nil
	}
	tail := strings.TrimSpace(string(res.Stderr))
	if len(tail) > 300 {
		tail = tail[len(tail)-300:]
	}
	return []byte(rest), fmt.Errorf("exit status %s: %s", printable(status, 10), printable(tail, 300))
}

// InspectLocks reads every target's lock without changing anything. Hosts
// that cannot be asked have Err set; the error collects them.
func InspectLocks(ctx context.Context, targets []LockTarget, opts LockOptions) ([]HostLockState, error) {
	opts = opts.withDefaults()
	out := make([]HostLockState, len(targets))
	errs := fanout.ForEach(ctx, len(targets), opts.MaxParallel, func(i int) string { return targets[i].Host }, func(ctx context.Context, i int) error {
		out[i] = inspectOne(ctx, targets[i], opts)
		return nil
	})
	for i, err := range errs {
		if err != nil {
			out[i] = HostLockState{Host: targets[i].Host, Path: targets[i].Layout.LockDir(), Err: err.Error()}
		}
	}
	var merr *multierror.Error
	for _, s := range out {
		if s.Err != "" {
			merr = multierror.Append(merr, fmt.Errorf("%s: reading the lock: %s", s.Host, s.Err))
		}
	}
	return out, merr.ErrorOrNil()
}

// inspectOne reads one host's lock; a form seen for an instant only is
// looked at again.
func inspectOne(ctx context.Context, t LockTarget, opts LockOptions) HostLockState {
	st := HostLockState{Host: t.Host, Path: t.Layout.LockDir()}
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				st.Err = ctx.Err().Error()
				return st
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		res, err := t.Conn.Run(ctx, inspectScript(t.Layout), transport.RunOptions{Label: "lock status"})
		if err != nil {
			st.Err = err.Error()
			return st
		}
		p, err := parseProbe(res.Stdout)
		if err != nil {
			st.Err = err.Error()
			return st
		}
		switch {
		case p.word == "none":
			return HostLockState{Host: t.Host, Path: st.Path}
		case p.word == "gone":
			st = HostLockState{Host: t.Host, Path: st.Path}
		default:
			st = judgeProbe(t.Host, st.Path, p, opts)
			if !p.transient() {
				return st
			}
		}
	}
	return st
}

// UnrecordedUnlockError is a lock ForceUnlock removed but could not record
// in the host's history: the lock is gone, only the history entry is missing
// (Err says why; often an unreadable history.json, ErrHostState).
type UnrecordedUnlockError struct {
	Host    string
	Lock    string // the removed lock
	History string // the history.json it was not recorded in
	Err     error
}

func (e *UnrecordedUnlockError) Error() string {
	msg := fmt.Sprintf("%s: the lock (%s) was removed, but the history entry saying so could not be written", e.Host, e.Lock)
	if se := (*StateError)(nil); errors.As(e.Err, &se) && se.Path == e.History {
		return msg + ": " + e.Err.Error() // it names the file
	}
	return fmt.Sprintf("%s to %s: %v", msg, e.History, e.Err)
}

func (e *UnrecordedUnlockError) Unwrap() error { return e.Err }

// ForceUnlock removes any lock on the targets, whoever holds it, and records
// an "unlock" event with the reason and the removed owner in each such host's
// history.json. It returns the locks it removed, also those whose history
// entry could not be written (*UnrecordedUnlockError in the error).
func ForceUnlock(ctx context.Context, targets []LockTarget, by LockOwner, reason string) ([]HostLockState, error) {
	if err := checkRunID(by.RunID); err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, errors.New("a reason is required to remove a lock")
	}
	removed := make([]*HostLockState, len(targets))
	errs := make([]error, len(targets))
	ferrs := fanout.ForEach(ctx, len(targets), 0, func(i int) string { return targets[i].Host }, func(ctx context.Context, i int) error {
		t := targets[i]
		res, err := t.Conn.Run(ctx, forceRemoveScript(t.Layout, by.RunID), transport.RunOptions{Label: "force unlock"})
		if err != nil {
			errs[i] = fmt.Errorf("%s: removing the lock: %w", t.Host, err)
			return nil
		}
		word, rest := firstLine(res.Stdout)
		switch word {
		case "none":
			return nil
		case "removed":
		default:
			errs[i] = fmt.Errorf("%s: removing the lock: unexpected output %q", t.Host, truncate(string(res.Stdout), 200))
			return nil
		}
		st := HostLockState{Host: t.Host, Path: t.Layout.LockDir(), Held: true}
		if p, err := parseProbe(rest); err != nil {
			st.Broken = "an unknown form (" + err.Error() + ")"
		} else if p.word == "held" || p.word == "broken" {
			st = judgeProbe(t.Host, st.Path, p, LockOptions{}.withDefaults())
		} else {
			st.Broken = "it vanished while it was moved aside"
		}
		ev := HistoryEvent{Kind: "unlock", Operator: by.Operator, Controller: by.Controller, RunID: by.RunID, Reason: reason,
			Detail: map[string]string{}}
		if o := st.Owner; o != nil {
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
		if st.Broken != "" {
			ev.Detail["removed_broken"] = st.Broken
		}
		if _, kept, ok := strings.Cut(string(res.Stderr), "relctl-kept "); ok {
			// Out of the way (the lock is gone), but not deleted.
			kept, _, _ = strings.Cut(kept, "\n")
			ev.Detail["removed_kept_at"] = printable(kept, 300)
			zerolog.Ctx(ctx).Warn().Str("host", t.Host).Str("path", kept).Msg("the removed lock was moved aside but could not be deleted")
		}
		removed[i] = &st
		if err := AppendHistoryEvent(ctx, t.Conn, t.Layout, ev); err != nil {
			errs[i] = &UnrecordedUnlockError{Host: t.Host, Lock: st.Path, History: t.Layout.HistoryFile(), Err: err}
		}
		return nil
	})
	for i, err := range ferrs {
		if err != nil {
			errs[i] = err
		}
	}
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
