// Package sshconfig reads OpenSSH client configuration files (ssh_config(5))
// and answers what the effective settings for one Host alias are and where
// each came from (file and line).
//
// It owns reading the files (Include too), choosing the Host and Match
// blocks that apply, first-value-wins, %-token, ${VAR} and ~ expansion as
// ssh does it, validating the values relctl uses, and OpenSSH's ProxyJump
// syntax. It does not dial, read keys or read known_hosts files.
//
// Each file is lexed by github.com/kevinburke/ssh_config; Include, Match,
// argument splitting and pattern matching are done here, the way ssh does
// them, because that library gets them wrong or loses the file a value came
// from (see parse.go).
package sshconfig

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// File is one configuration file to read. System files
// (/etc/ssh/ssh_config) resolve relative Includes against /etc/ssh, user
// files against ~/.ssh.
type File struct {
	Path   string
	System bool
}

// Config is what Load read. A nil *Config stands for "relctl does not read
// ssh's configuration": its Lookup returns only the alias.
type Config struct {
	home   string
	files  []*file  // the files given to Load that exist, in order
	read   []string // every file read, Includes too, without repeats
	getenv func(string) (string, bool)
}

// Error is a problem in a configuration file, or with reading one.
type Error struct {
	File string // the path, with the home directory written as ~
	Line int    // 0 when the problem is the whole file
	Col  int    // 0 when unknown
	Msg  string
}

// Error is "FILE:LINE:COL: MSG", leaving out what is not known.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Col > 0 {
			b.WriteString(":" + strconv.Itoa(e.Col))
		}
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Value is one setting and where it came from. The zero Value is "not set".
type Value struct {
	Value string
	File  string // the path, with the home directory written as ~
	Line  int
}

// Set reports whether a configuration file gave the setting.
func (v Value) Set() bool { return v != Value{} }

// Where is "~/.ssh/config:12", or "" when the value is not set or was
// preset (LookupPreset).
func (v Value) Where() string {
	if v.File == "" {
		return ""
	}
	return v.File + ":" + strconv.Itoa(v.Line)
}

// Files lists every file read, Includes too, in the order they were first
// read, with the home directory written as ~ (for messages).
func (c *Config) Files() []string {
	if c == nil {
		return nil
	}
	return append([]string(nil), c.read...)
}

// Load reads files in order (like ssh: the user's file, then the system's).
// A file that does not exist is skipped; one that exists but cannot be read
// or parsed is an error (an *Error). home is the local user's home
// directory: relative Includes of user files are under home/.ssh, and paths
// under it are shown as ~.
func Load(home string, files ...File) (*Config, error) {
	l := &loader{home: cleanHome(home), systemDir: "/etc/ssh", readFile: readConfigFile, glob: filepath.Glob, getenv: os.LookupEnv}
	return l.load(files)
}

// maxFileSize bounds what is read of one file, so that an Include of
// /dev/zero or of a huge file fails instead of eating memory.
const maxFileSize = 1 << 20

// maxIncludeDepth is OpenSSH's READCONF_MAX_DEPTH: the top file is at depth
// 0, a file it includes at 1, and nothing deeper than 16 is read.
const maxIncludeDepth = 16

var (
	errIsDir    = errors.New("is a directory")
	errTooLarge = fmt.Errorf("larger than %d KiB; is it an ssh configuration file?", maxFileSize>>10)
)

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		return nil, errIsDir
	}
	if err == nil {
		if err := safeOwner(fi); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, errTooLarge
	}
	return b, nil
}

// safeOwner is ssh's check of its configuration files: owned by the user
// or root, and writable by no one else (another local user could otherwise
// point hosts at a machine of theirs).
func safeOwner(fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Getuid(); int(st.Uid) != uid && st.Uid != 0 {
		return fmt.Errorf("bad owner: owned by uid %d, not by you (uid %d) or root, as ssh demands", st.Uid, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("bad permissions: mode %04o lets others write it; ssh refuses it too (chmod go-w)", fi.Mode().Perm())
	}
	return nil
}

// loader reads files; tests replace what touches the machine.
type loader struct {
	home      string
	systemDir string
	readFile  func(string) ([]byte, error)
	glob      func(string) ([]string, error)
	getenv    func(string) (string, bool)

	cfg  *Config
	seen map[string]bool
}

func (l *loader) load(files []File) (*Config, error) {
	l.cfg = &Config{home: l.home, getenv: l.getenv}
	l.seen = map[string]bool{}
	for _, f := range files {
		path := filepath.Clean(f.Path)
		b, err := l.readFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, &Error{File: l.display(path), Msg: readMessage(err)}
		}
		parsed, err := l.parse(path, b, f.System, nil)
		if err != nil {
			return nil, err
		}
		l.cfg.files = append(l.cfg.files, parsed)
	}
	return l.cfg, nil
}

// readMessage is err without the path that *PathError repeats.
func readMessage(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "cannot read: " + pe.Err.Error()
	}
	return "cannot read: " + err.Error()
}

func cleanHome(home string) string {
	if home == "" {
		return ""
	}
	return filepath.Clean(home)
}

// display writes path with the home directory as ~.
func (l *loader) display(path string) string { return displayPath(l.home, path) }

func displayPath(home, path string) string {
	if home == "" || home == "/" {
		return path
	}
	if path == home {
		return "~"
	}
	if rest, ok := strings.CutPrefix(path, home+"/"); ok {
		return "~/" + rest
	}
	return path
}
