package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"
)

// ErrMonitNotInstalled: Options.Monit is set but no monit binary is on the
// hosts' PATH.
var ErrMonitNotInstalled = errors.New("monit is not installed (apt-get install -y monit)")

// Files of a host's monit daemon, under DIR/hosts/<host>/monit/.
const (
	monitDirName     = "monit"
	MonitControlFile = "monitrc" // the control file, mode 0600 as monit demands
	MonitConfDirName = "conf.d"  // snippets: conf.d/*.monitrc are included
	MonitLogFile     = "monit.log"
	monitPIDFile     = "monit.pid"
)

// monitSearchPath is where Start looks for monit: the PATH of the hosts'
// commands, so relctl's `monit` over SSH is the same binary. Tests point it
// elsewhere to play a machine without monit.
var monitSearchPath = hostPATH

// findMonit returns the absolute path of monit on monitSearchPath.
func findMonit() (string, error) {
	for _, d := range filepath.SplitList(monitSearchPath) {
		p := filepath.Join(d, "monit")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrMonitNotInstalled
}

func monitDir(root string) string { return filepath.Join(root, monitDirName) }

// monitQuotable rejects paths monit cannot take inside a double-quoted
// string (it has no escapes).
func monitQuotable(p string) error {
	if strings.ContainsAny(p, "\"\n\r\x00") {
		return fmt.Errorf("testenv: monit cannot use a path containing a double quote or a line break: %q", p)
	}
	return nil
}

// monitControl is the control file of one host's monit daemon. The httpd
// password is fresh on every start and lives only in this 0600 file: monit's
// own client (`monit -c FILE summary`) reads it from there.
func monitControl(info HostInfo, password string) string {
	dir := monitDir(info.Root)
	q := func(name string) string { return `"` + filepath.Join(dir, name) + `"` }
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by relctl testenv: the monit daemon of host %s.\n", info.Name)
	b.WriteString("set daemon 1\n")
	b.WriteString("set pidfile " + q(monitPIDFile) + "\n")
	b.WriteString("set idfile " + q("monit.id") + "\n")
	b.WriteString("set statefile " + q("monit.state") + "\n")
	b.WriteString("set logfile " + q(MonitLogFile) + "\n")
	fmt.Fprintf(&b, "set httpd port %d and use address 127.0.0.1 allow admin:%s\n", info.MonitPort, password)
	b.WriteString("include " + `"` + filepath.Join(info.MonitConfDir, "*.monitrc") + `"` + "\n")
	return b.String()
}

// monitPassword is random hex: never the reserved word "secret", and no
// character monit would need quoted.
func monitPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "p" + hex.EncodeToString(b), nil
}

// startMonit writes the host's monit files and starts its daemon, marked
// like the hosts' commands so Close and Down find it and whatever it starts
// (monit passes its environment on to start programs). It returns the
// daemon's pid once `monit summary` answers. conf.d keeps what an earlier
// run of the same DIR installed, as a real host's disk would.
func startMonit(ctx context.Context, monitBin, marker string, info HostInfo, log zerolog.Logger) (int, error) {
	dir := monitDir(info.Root)
	for _, p := range []string{dir, info.MonitConfDir} {
		if err := monitQuotable(p); err != nil {
			return 0, err
		}
	}
	if err := os.MkdirAll(info.MonitConfDir, 0o755); err != nil {
		return 0, err
	}
	pidPath := filepath.Join(dir, monitPIDFile)
	// A daemon left by an earlier run of this DIR that was killed before
	// it could clean up: monit would refuse to start next to it.
	if pid := readPID(pidPath); pid > 0 && isMarked(pid, marker) {
		stopPID(pid)
	}
	os.Remove(pidPath)

	password, err := monitPassword()
	if err != nil {
		return 0, err
	}
	if err := writeFileAtomic(info.MonitControl, []byte(monitControl(info, password)), 0o600); err != nil {
		return 0, err
	}
	env := []string{"HOME=" + info.Root, "PATH=" + hostPATH, "LANG=C", MarkerEnv + "=" + marker}
	monit := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, monitBin, append([]string{"-c", info.MonitControl}, args...)...)
		cmd.Dir, cmd.Env = info.Root, env
		cmd.WaitDelay = 5 * time.Second // should the daemon keep our output pipe open
		return cmd
	}
	// monit daemonizes: this returns once the daemon is forked.
	if out, err := monit().CombinedOutput(); err != nil {
		return 0, fmt.Errorf("monit -c %s: %v: %s\nlast lines of %s:\n%s", info.MonitControl, err, strings.TrimSpace(string(out)),
			filepath.Join(dir, MonitLogFile), logTail(filepath.Join(dir, MonitLogFile), 10))
	}

	deadline := time.Now().Add(30 * time.Second) // only against a hang
	var lastErr error
	for {
		pid := readPID(pidPath)
		if pid > 0 && processAlive(pid) {
			out, err := monit("summary").CombinedOutput()
			if err == nil {
				log.Debug().Str("host", info.Name).Int("pid", pid).Int("port", info.MonitPort).Msg("monit started")
				return pid, nil
			}
			lastErr = fmt.Errorf("monit summary: %v: %s", err, strings.TrimSpace(string(out)))
		} else {
			lastErr = fmt.Errorf("no live monit daemon in %s", pidPath)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if pid > 0 && isMarked(pid, marker) {
				stopPID(pid)
			}
			return 0, fmt.Errorf("monit did not answer: %w; last lines of %s:\n%s", lastErr,
				filepath.Join(dir, MonitLogFile), logTail(filepath.Join(dir, MonitLogFile), 10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readPID reads a pid file; 0 when it is missing or unreadable.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// isMarked is true when pid is alive and carries MarkerEnv=marker: only
// then is it ours to kill (pids get reused).
func isMarked(pid int, marker string) bool {
	if !processAlive(pid) {
		return false
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if kv == MarkerEnv+"="+marker {
			return true
		}
	}
	return false
}

// stopPID sends TERM, then KILL if pid outlives a generous wait.
func stopPID(pid int) {
	syscall.Kill(pid, syscall.SIGTERM)
	if left := waitGone([]int{pid}, 10*time.Second); len(left) > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(left, 5*time.Second)
	}
}

// stopMonits stops the cluster's monit daemons before anything else, so
// none restarts a service the sweep is stopping.
func (c *Cluster) stopMonits() {
	for _, pid := range c.monitPIDs {
		if isMarked(pid, c.dir) {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	left := waitGone(c.monitPIDs, 10*time.Second)
	for _, pid := range left {
		if isMarked(pid, c.dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	waitGone(left, 5*time.Second)
}

// startMonits starts every host's monit daemon, a few at a time. The pids
// of those that started are kept even on error, for Close.
func (c *Cluster) startMonits(ctx context.Context, monitBin string, infos []HostInfo) error {
	pids := make([]int, len(infos))
	errs := make([]error, len(infos))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, info := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			pid, err := startMonit(ctx, monitBin, c.dir, info, c.log)
			pids[i] = pid
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", info.Name, err)
			}
		}()
	}
	wg.Wait()
	var merr *multierror.Error
	for i := range infos {
		if pids[i] > 0 {
			c.monitPIDs = append(c.monitPIDs, pids[i])
		}
		if errs[i] != nil {
			merr = multierror.Append(merr, errs[i])
		}
	}
	return merr.ErrorOrNil()
}
