package playbooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SecretConfig is one [secrets.NAME] table: where the value comes from.
// Exactly one of Env, File and Command is set.
type SecretConfig struct {
	// Env names an environment variable of relctl.
	Env string `toml:"env"`
	// File is a file (relative to relctl.toml's directory, "~/" expanded);
	// it must not be readable by group or others. One trailing newline is dropped.
	File string `toml:"file"`
	// Command is an argv run without a shell (e.g. ["pass", "show", "db"]);
	// its stdout, less one trailing newline, is the value.
	Command []string `toml:"command"`
	// Timeout bounds Command (default 30s).
	Timeout Duration `toml:"timeout"`
}

// DefaultSecretTimeout bounds a secret's command when it sets no timeout.
const DefaultSecretTimeout = 30 * time.Second

// SecretMask replaces every secret value in what relctl prints or writes.
const SecretMask = "********"

// MinSecretLen is the shortest value relctl accepts: a shorter one would be
// masked wherever those few bytes happen to appear in output, and is no secret.
const MinSecretLen = 4

var secretNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,62}$`)

// secretVar is the shell variable a secret is read into on the host.
func secretVar(name string) string { return "relctl_secret_" + name }

// Secret is what a template sees as .Secrets.NAME: a reference, never the
// value. A run step's command refers to a shell variable the value is read
// into from the session's stdin (SecretPrelude).
type Secret struct{ name string }

// String is the mask: a secret printed anywhere else than a run step's
// command shows the mask, never the value.
func (s Secret) String() string { return SecretMask }

func secretRefs(cfg *Config) map[string]Secret {
	if len(cfg.Secrets) == 0 {
		return nil
	}
	out := make(map[string]Secret, len(cfg.Secrets))
	for name := range cfg.Secrets {
		out[name] = Secret{name: name}
	}
	return out
}

// secretsProblems checks [secrets]: names, exactly one source, timeouts.
func (c *Config) secretsProblems() Problems {
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, c.pos.problem(key, format, args...)) }
	for _, name := range slices.Sorted(mapKeys(c.Secrets)) {
		s, key := c.Secrets[name], "secrets."+name
		if !secretNameRE.MatchString(name) {
			add(key, "secret name %q is not valid: a letter, then letters, digits or _ (at most 63), so that templates can write {{.Secrets.%s}}", name, name)
		}
		if s == nil {
			add(key, "secrets.%s: give one of env, file or command", name)
			continue
		}
		n := 0
		for _, set := range []bool{s.Env != "", s.File != "", len(s.Command) > 0} {
			if set {
				n++
			}
		}
		switch {
		case n == 0:
			add(key, "secrets.%s: give one of env = \"VAR\", file = \"path\" or command = [\"pass\", \"show\", \"...\"]", name)
		case n > 1:
			add(key, "secrets.%s: give only one of env, file and command", name)
		}
		if len(s.Command) > 0 && s.Command[0] == "" {
			add(key+".command", "secrets.%s.command: the program (first element) is empty", name)
		}
		if s.Timeout.Duration < 0 || (s.Timeout.Duration > 0 && len(s.Command) == 0) {
			add(key+".timeout", "secrets.%s.timeout: only a command takes a timeout, and it must be more than 0s", name)
		}
	}
	return ps
}

// SecretError is a secret that could not be resolved: a configuration
// error (exit 2), reported before any host changes.
type SecretError struct {
	Name   string
	Where  string // file:line:col of [secrets.NAME]
	Reason string
}

func (e *SecretError) Error() string {
	return fmt.Sprintf("%s: secret %q: %s", e.Where, e.Name, e.Reason)
}

// Secrets are the values one run resolved, each once, and the redactor that
// masks them. A nil *Secrets has no values and masks nothing.
type Secrets struct {
	cfg    *Config
	mu     sync.Mutex
	values map[string]string
	// lookupEnv is os.LookupEnv (tests replace it).
	lookupEnv func(string) (string, bool)
}

// NewSecrets is an empty set for cfg's [secrets]: nothing is resolved
// until Resolve names it.
func NewSecrets(cfg *Config) *Secrets {
	return &Secrets{cfg: cfg, values: map[string]string{}, lookupEnv: os.LookupEnv}
}

// Resolve resolves the named secrets not resolved yet (each once per run).
// The first that fails is a *SecretError.
func (s *Secrets) Resolve(ctx context.Context, names []string) error {
	for _, name := range names {
		s.mu.Lock()
		_, done := s.values[name]
		s.mu.Unlock()
		if done {
			continue
		}
		v, err := s.resolve(ctx, name)
		if err != nil {
			return &SecretError{Name: name, Where: s.cfg.Where("secrets." + name), Reason: err.Error()}
		}
		s.mu.Lock()
		s.values[name] = v
		s.mu.Unlock()
	}
	return nil
}

func (s *Secrets) resolve(ctx context.Context, name string) (string, error) {
	sc := s.cfg.Secrets[name]
	if sc == nil {
		return "", errors.New("not defined in [secrets]")
	}
	var v string
	switch {
	case sc.Env != "":
		val, ok := s.lookupEnv(sc.Env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", sc.Env)
		}
		v = val
	case sc.File != "":
		val, err := readSecretFile(s.cfg.ResolvePath(sc.File))
		if err != nil {
			return "", err
		}
		v = val
	default:
		val, err := runSecretCommand(ctx, s.cfg.Dir, sc)
		if err != nil {
			return "", err
		}
		v = val
	}
	switch {
	case strings.IndexByte(v, 0) >= 0:
		return "", errors.New("the value holds a NUL byte, which no shell variable can carry")
	case len(v) < MinSecretLen:
		return "", fmt.Errorf("the value is shorter than %d bytes: relctl masks every occurrence of a secret in its output, and so short a value is no secret", MinSecretLen)
	}
	return v, nil
}

func readSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("file %s is readable or writable by group or others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("file: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

// runSecretCommand runs argv without a shell. Its stderr is not shown (it
// could echo the value); the message says how it ended.
func runSecretCommand(ctx context.Context, dir string, sc *SecretConfig) (string, error) {
	timeout := sc.Timeout.Duration
	if timeout <= 0 {
		timeout = DefaultSecretTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sc.Command[0], sc.Command[1:]...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("command %s did not finish within %v", sc.Command[0], timeout)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("command %s failed (%s; its output is not shown, it may hold the value)", sc.Command[0], ee.ProcessState)
		}
		return "", fmt.Errorf("command %s: %v", sc.Command[0], err)
	}
	v := strings.TrimSuffix(out.String(), "\n")
	return strings.TrimSuffix(v, "\r"), nil
}

// Value is a resolved secret's value.
func (s *Secrets) Value(name string) (string, bool) {
	if s == nil {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[name]
	return v, ok
}

// Redact replaces every resolved secret value in text with SecretMask.
// Longer values first, so a value that contains another is masked whole.
func (s *Secrets) Redact(text string) string {
	if s == nil {
		return text
	}
	s.mu.Lock()
	vals := make([]string, 0, len(s.values))
	for _, v := range s.values {
		vals = append(vals, v)
		if strings.ContainsAny(v, "\r\n") {
			// Output is often handled a line at a time (the run log, an
			// error's tail): mask each line of a multi-line value too.
			for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
				if len(strings.TrimSpace(line)) >= MinSecretLen {
					vals = append(vals, line)
				}
			}
		}
	}
	s.mu.Unlock()
	slices.SortFunc(vals, func(a, b string) int { return len(b) - len(a) })
	for _, v := range vals {
		if v != "" && strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, SecretMask)
		}
	}
	return text
}

// RedactError is err with its message redacted (err itself when nothing
// needed masking, so errors.As still sees its type).
func (s *Secrets) RedactError(err error) error {
	if err == nil || s == nil {
		return err
	}
	msg := err.Error()
	if red := s.Redact(msg); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// SecretPrelude is what goes before a command that uses names: it reads
// each secret, one line of octal escapes per secret, from the session's
// stdin into the shell variable the command refers to, so the value is never
// on a command line (builtins only: read and printf, in dash and bash).
// SecretInput is what to send on stdin.
func SecretPrelude(names []string) string {
	var b strings.Builder
	for _, name := range names {
		v := secretVar(name)
		fmt.Fprintf(&b, "IFS= read -r %[1]s && %[1]s=$(printf '%%b' \"$%[1]s\" && echo x) && %[1]s=${%[1]s%%x} || { echo 'relctl: secret %[2]s not received on stdin' >&2; exit 125; }\n", v, name)
	}
	return b.String()
}

// SecretInput is the stdin SecretPrelude reads: each value on one line,
// every byte other than printable ASCII (and the backslash) written as a
// \0ooo escape for printf %b.
func (s *Secrets) SecretInput(names []string) (string, error) {
	var b strings.Builder
	for _, name := range names {
		v, ok := s.Value(name)
		if !ok {
			return "", fmt.Errorf("secret %q was not resolved", name)
		}
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c >= 0x20 && c < 0x7f && c != '\\' {
				b.WriteByte(c)
				continue
			}
			b.WriteString(`\0`)
			o := strconv.FormatInt(int64(c), 8)
			b.WriteString(strings.Repeat("0", 3-len(o)) + o)
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// isStepCommandKey: the playbook key is a run step's run or undo, or a
// [[rollback.steps]] run, the commands that may use secrets.
func isStepCommandKey(key string) bool {
	parts := strings.Split(key, ".")
	switch {
	case len(parts) == 3 && parts[0] == "steps":
		return parts[2] == "run" || parts[2] == "undo"
	case len(parts) == 4 && parts[0] == "rollback" && parts[1] == "steps":
		return parts[3] == "run"
	}
	return false
}

// SecretNames lists the secrets the playbook's commands refer to (the run
// and undo of [[steps]], the run of [[rollback.steps]]), sorted: what a run
// of it resolves. A template that reaches .Secrets other than as
// .Secrets.NAME (index, with, range) uses every secret.
func (pb *Playbook) SecretNames(cfg *Config) []string {
	used := map[string]bool{}
	all := false
	scan := func(text string) {
		if !strings.Contains(text, "Secrets") {
			return
		}
		t, err := parseTemplate("secrets", text)
		if err != nil {
			all = true
			return
		}
		for _, tt := range t.Templates() {
			if tt.Tree != nil {
				walkSecretRefs(tt.Root, used, &all)
			}
		}
	}
	for _, s := range pb.Steps {
		scan(s.Run)
		scan(s.Undo)
	}
	for _, s := range pb.Rollback.Steps {
		scan(s.Run)
	}
	if all {
		for name := range cfg.Secrets {
			used[name] = true
		}
	}
	return slices.Sorted(mapKeys(used))
}
