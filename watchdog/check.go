package watchdog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// FileInfo is what Check needs to know about one path on a host.
type FileInfo struct {
	Exists bool
	IsDir  bool
	Mode   fs.FileMode // permission bits only
	UID    int
	GID    int
}

// Executable reports a regular file with an execute bit: monit runs start
// and stop programs directly, without a shell to fall back on.
func (fi FileInfo) Executable() bool {
	return fi.Exists && !fi.IsDir && fi.Mode&0o111 != 0
}

// FS is a read-only view of a host's files. Stat follows symlinks (a
// release's "current" link must resolve) and reports a missing path as
// Exists == false with a nil error; an error means the answer is unknown.
type FS interface {
	Stat(ctx context.Context, path string) (FileInfo, error)
}

// LocalFS is the local file system seen from Root: the snippet's absolute
// path /srv/x is looked up as Root/srv/x, so tests can lay out a host in a
// temp dir. Root "" is "/". Symlinks with absolute targets resolve against
// the real root, not Root.
type LocalFS struct {
	Root string
}

var _ FS = LocalFS{}

// Stat implements FS.
func (l LocalFS) Stat(_ context.Context, p string) (FileInfo, error) {
	fi, err := os.Stat(filepath.Join(l.Root, filepath.FromSlash(p)))
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return FileInfo{}, nil
	case err != nil:
		return FileInfo{}, err
	}
	info := FileInfo{Exists: true, IsDir: fi.IsDir(), Mode: fi.Mode().Perm()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.UID, info.GID = int(st.Uid), int(st.Gid)
	}
	return info, nil
}

// CheckOptions are the facts from outside the snippet that Check compares it with.
type CheckOptions struct {
	// HealthPorts are the ports the release's health checks probe on the
	// host. When nil, ports are not compared.
	HealthPorts []int
	// ControlFile, when set, is the monit control file whose mode and owner
	// monit itself will demand at start-up (at most 0700, owned by MonitUID).
	ControlFile string
	MonitUID    int
	// BaseDir is where the release lives on the host: a pidfile directory
	// under it that does not exist yet is the release's to create (its start
	// program makes it on a first deploy), not a problem. Whether anything
	// in the release writes the pidfile is checked apart (the caller greps
	// the release); a directory elsewhere must exist.
	BaseDir string
}

// Problem codes, for callers that branch on the kind of problem.
const (
	ProblemPidfileDir       = "pidfile-dir"
	ProblemPidfileRelative  = "pidfile-relative"
	ProblemNoStartProgram   = "no-start-program"
	ProblemProgramRelative  = "program-relative"
	ProblemProgramMissing   = "program-missing"
	ProblemProgramNotExec   = "program-not-executable"
	ProblemPortNotChecked   = "port-not-health-checked"
	ProblemHealthPortUntest = "health-port-not-monitored"
	ProblemControlFileMode  = "control-file-mode"
	ProblemControlFileOwner = "control-file-owner"
	ProblemStatFailed       = "stat-failed"
)

// Problem is one thing wrong with a snippet that monit -t lets pass. The
// message never names the host: the caller adds it.
type Problem struct {
	Pos     Pos
	Service string // "check process search", or "" for the control file
	Code    string
	Message string
}

// Error makes a Problem usable as an error (e.g. with multierror).
func (p Problem) Error() string { return p.String() }

func (p Problem) String() string {
	if p.Service == "" {
		return fmt.Sprintf("%s: %s", p.Pos, p.Message)
	}
	return fmt.Sprintf("%s: %s: %s", p.Pos, p.Service, p.Message)
}

// Check finds what monit -t does not: for each "check process ... with
// pidfile P", that P's directory exists; that start (required), stop and
// restart programs are absolute, exist and are executable; that port tests
// and health-check ports agree; and, when asked, the control file's mode and
// owner. The order of problems follows the snippet.
func Check(ctx context.Context, cfg *MonitConfig, fsys FS, opts CheckOptions) []Problem {
	c := &checker{ctx: ctx, fs: fsys}
	if opts.ControlFile != "" {
		c.controlFile(opts.ControlFile, opts.MonitUID)
	}
	for _, s := range cfg.Services {
		if s.Kind != KindProcess {
			continue
		}
		if s.Pidfile != "" {
			c.pidfile(s, opts.BaseDir)
		}
		if s.Start == nil {
			c.add(s.Pos, s, ProblemNoStartProgram, "has no start program: monit could not restart it")
		}
		for _, pr := range []struct {
			name string
			p    *Program
		}{{"start", s.Start}, {"stop", s.Stop}, {"restart", s.Restart}} {
			if pr.p != nil {
				c.program(s, pr.name, pr.p)
			}
		}
	}
	if opts.HealthPorts != nil {
		c.ports(cfg, opts.HealthPorts)
	}
	return c.problems
}

type checker struct {
	ctx      context.Context
	fs       FS
	problems []Problem
}

func (c *checker) add(pos Pos, s *Service, code, format string, args ...any) {
	p := Problem{Pos: pos, Code: code, Message: fmt.Sprintf(format, args...)}
	if s != nil {
		p.Service = s.String()
	}
	c.problems = append(c.problems, p)
}

// stat reports a failed stat as a problem and returns ok == false.
func (c *checker) stat(pos Pos, s *Service, p string) (FileInfo, bool) {
	fi, err := c.fs.Stat(c.ctx, p)
	if err != nil {
		c.add(pos, s, ProblemStatFailed, "cannot check %q: %v", p, err)
		return fi, false
	}
	return fi, true
}

func (c *checker) controlFile(file string, uid int) {
	pos := Pos{File: file}
	fi, ok := c.stat(pos, nil, file)
	if !ok {
		return
	}
	switch {
	case !fi.Exists || fi.IsDir:
		c.add(pos, nil, ProblemControlFileMode, "monit control file does not exist or is not a file")
		return
	case fi.Mode&0o077 != 0:
		c.add(pos, nil, ProblemControlFileMode, "monit control file has mode %04o; monit refuses more than 0700", fi.Mode)
	}
	if fi.UID != uid {
		c.add(pos, nil, ProblemControlFileOwner, "monit control file is owned by uid %d; monit runs as uid %d and refuses a file it does not own", fi.UID, uid)
	}
}

func (c *checker) pidfile(s *Service, baseDir string) {
	if !path.IsAbs(s.Pidfile) {
		c.add(s.Pos, s, ProblemPidfileRelative, "pidfile %q is not an absolute path", s.Pidfile)
		return
	}
	dir := path.Dir(s.Pidfile)
	fi, ok := c.stat(s.Pos, s, dir)
	if !ok {
		return
	}
	switch {
	case fi.Exists && !fi.IsDir:
		c.add(s.Pos, s, ProblemPidfileDir, "pidfile %q: %q is not a directory", s.Pidfile, dir)
	case !fi.Exists && underDir(dir, baseDir):
		// The release's start program creates it (a first deploy).
	case !fi.Exists:
		c.add(s.Pos, s, ProblemPidfileDir, "pidfile %q: directory %q does not exist (only a directory under the release's base_dir may be left for its start program to create)", s.Pidfile, dir)
	}
}

// underDir says whether p is base or inside it (both absolute).
func underDir(p, base string) bool {
	if base == "" || !path.IsAbs(base) {
		return false
	}
	p, base = path.Clean(p), path.Clean(base)
	return p == base || strings.HasPrefix(p, strings.TrimSuffix(base, "/")+"/")
}

func (c *checker) program(s *Service, name string, p *Program) {
	exe := CommandPath(p.Command)
	switch {
	case exe == "":
		c.add(p.Pos, s, ProblemProgramRelative, "%s program is empty", name)
		return
	case !path.IsAbs(exe):
		c.add(p.Pos, s, ProblemProgramRelative, "%s program %q is not an absolute path (monit does not search PATH)", name, exe)
		return
	}
	fi, ok := c.stat(p.Pos, s, exe)
	switch {
	case !ok:
	case !fi.Exists:
		c.add(p.Pos, s, ProblemProgramMissing, "%s program %q does not exist", name, exe)
	case !fi.Executable():
		c.add(p.Pos, s, ProblemProgramNotExec, "%s program %q is not executable (mode %04o)", name, exe, fi.Mode)
	}
}

// ports compares port tests on the local host with the health-check ports.
// Tests against another host (check host db.internal, or "host H" in a
// process check) are not the release's health checks and are left alone.
func (c *checker) ports(cfg *MonitConfig, health []int) {
	tested := map[int]bool{}
	var first *Service
	for _, s := range cfg.Services {
		if first == nil && (s.Kind == KindProcess || s.Kind == KindHost) {
			first = s
		}
		for _, pt := range s.Ports {
			host := pt.Host
			if host == "" && s.Kind == KindHost {
				host = s.Address
			}
			if !isLocalHost(host) {
				continue
			}
			tested[pt.Port] = true
			if !slices.Contains(health, pt.Port) {
				c.add(pt.Pos, s, ProblemPortNotChecked, "monit tests port %d, which no health check covers", pt.Port)
			}
		}
	}
	pos := Pos{}
	if first != nil {
		pos = first.Pos
	} else if len(cfg.Services) > 0 {
		pos = cfg.Services[0].Pos
	}
	for _, hp := range health {
		if !tested[hp] {
			c.add(pos, first, ProblemHealthPortUntest, "health checks probe port %d, which no 'if failed port' test in this snippet watches", hp)
		}
	}
}

func isLocalHost(h string) bool {
	switch strings.ToLower(h) {
	case "", "localhost", "127.0.0.1", "::1", "[::1]":
		return true
	}
	return false
}

// CommandPath is the program a monit command runs: its first word, with
// the quotes monit's own argument splitting removes.
func CommandPath(cmd string) string {
	cmd = strings.TrimSpace(cmd)
	if cmd == "" {
		return ""
	}
	if q := cmd[0]; q == '"' || q == '\'' {
		if end := strings.IndexByte(cmd[1:], q); end >= 0 {
			return cmd[1 : end+1]
		}
		return cmd[1:]
	}
	if i := strings.IndexAny(cmd, " \t\n"); i >= 0 {
		return cmd[:i]
	}
	return cmd
}

// StartScriptMentionsPidfile is a static hint, not proof, that a start
// script writes pidfile: it names the pidfile's full path, or its directory
// and base name separately (PIDDIR=/run/x; echo $$ > "$PIDDIR/x.pid"). Only
// starting the service proves it; a false here means "look closer".
func StartScriptMentionsPidfile(script []byte, pidfile string) bool {
	if pidfile == "" {
		return false
	}
	if bytes.Contains(script, []byte(pidfile)) {
		return true
	}
	dir, base := path.Split(pidfile)
	return bytes.Contains(script, []byte(strings.TrimSuffix(dir, "/"))) && bytes.Contains(script, []byte(base))
}
