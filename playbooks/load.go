package playbooks

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Project is a loaded, validated relctl.toml with the playbooks it applies.
type Project struct {
	Config    *Config
	Playbooks map[string]*Playbook // by name (the file stem under playbooks/)
}

// Load reads relctl.toml at path and every playbook it applies
// (playbooks/<name>.toml next to it). An invalid configuration is reported
// as Problems, every problem of every file at once where possible.
func Load(path string) (*Project, error) {
	cfg := &Config{}
	ps, err := decodeFile(path, cfg, configDurationKey)
	if err != nil {
		return nil, err
	}
	cfg.pos = ps.ix
	if ps.fatal {
		return nil, ps.problems.sorted()
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	cfg.Path, cfg.Dir = path, abs
	cfg.applyDefaults()

	ssh, sshProblems := cfg.loadSSHConfig()
	problems := append(ps.problems, cfg.validate()...)
	problems = append(problems, sshProblems...)
	if len(problems) == 0 {
		problems = append(problems, cfg.resolveHosts(ssh)...)
	}
	proj := &Project{Config: cfg, Playbooks: map[string]*Playbook{}}
	problems = append(problems, proj.loadPlaybooks()...)
	if len(problems) == 0 {
		problems = append(problems, proj.validateTargets()...)
	}
	if len(problems) > 0 {
		return nil, problems.sorted()
	}
	return proj, nil
}

type decoded struct {
	ix       *positions
	problems Problems
	// fatal: the value could not be decoded (a type error); only unknown
	// keys leave it usable, so validation can go on and report more.
	fatal bool
}

// decodeFile strictly decodes one TOML file into v. A read failure is a
// plain error (callers may test fs.ErrNotExist); anything wrong inside the
// file is a Problem.
func decodeFile(file string, v any, isDuration func(string) bool) (decoded, error) {
	doc, err := os.ReadFile(file)
	if err != nil {
		return decoded{}, err
	}
	ix := indexPositions(file, doc)
	// go-toml reports a non-string duration without a position; catch it first.
	var ps Problems
	typeErr := false
	for key, kind := range ix.kinds {
		if !isDuration(key) {
			continue
		}
		if kind != unstable.String {
			typeErr = true
			ps = append(ps, ix.problem(key, "%s: expected a duration string like \"30s\", got %s", displayKey(key), tomlKindWords(strings.ToLower(kindName(kind)))))
			continue
		}
		// Duration.UnmarshalText accepts anything so that one bad duration does
		// not hide the file's other problems; it is reported here, with its position.
		var d Duration
		if err := d.parse(ix.strings[key]); err != nil {
			ps = append(ps, ix.problem(key, "%s: %v", displayKey(key), err))
		}
	}
	dec := toml.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var strict *toml.StrictMissingError
		var de *toml.DecodeError
		if len(ps) == 0 || errors.As(err, &strict) || errors.As(err, &de) {
			ps = append(ps, ix.decodeProblems(err, reflect.TypeOf(v))...)
		}
		return decoded{ix: ix, problems: ps, fatal: typeErr || !errors.As(err, &strict)}, nil
	}
	return decoded{ix: ix, problems: ps, fatal: typeErr}, nil
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.Array:
		return "array"
	case unstable.InlineTable:
		return "inline table"
	case unstable.Integer:
		return "integer"
	case unstable.Float:
		return "float"
	case unstable.Bool:
		return "boolean"
	default:
		return "date or time"
	}
}

func configDurationKey(key string) bool {
	switch key {
	case "lock_ttl", "ssh.connect_timeout", "ssh.command_timeout", "ssh.control_timeout", "ssh.keepalive", "ssh.reconnect_backoff":
		return true
	}
	parts := strings.Split(key, ".")
	return len(parts) == 3 && (parts[0] == "environments" && parts[2] == "rehearsal_max_age" || parts[0] == "secrets" && parts[2] == "timeout")
}

func playbookDurationKey(key string) bool {
	parts := strings.Split(key, ".")
	switch {
	case key == "strategy.pause", key == "watchdog.timeout", key == "artifact.connect_timeout", key == "artifact.timeout":
		return true
	case len(parts) == 3 && parts[0] == "checks":
		return parts[2] == "timeout" || parts[2] == "interval"
	case len(parts) == 3 && parts[0] == "steps":
		return parts[2] == "timeout"
	case len(parts) == 4 && parts[0] == "rollback" && parts[1] == "steps":
		return parts[3] == "timeout"
	}
	return false
}

func (ps Problems) sorted() Problems {
	// One mistake seen from several hosts is reported once.
	out := slices.Clone(ps)
	out.sort()
	return slices.Compact(out)
}

// applyDefaults fills what relctl.toml left out; types.go documents each default.
func (c *Config) applyDefaults() {
	if c.StateDir == "" {
		c.StateDir = ".relctl"
	}
	s := &c.SSH
	if s.User == "" {
		if u, err := user.Current(); err == nil {
			s.User = u.Username
		}
	}
	if s.KnownHosts == "" {
		s.KnownHosts = "~/.ssh/known_hosts"
	}
	if s.HostKeyPolicy == "" {
		s.HostKeyPolicy = HostKeyStrict
	}
	defaultDuration(&c.LockTTL, c.pos.has("lock_ttl"), 2*time.Minute)
	defaultDuration(&s.ConnectTimeout, c.pos.has("ssh.connect_timeout"), 10*time.Second)
	defaultDuration(&s.CommandTimeout, c.pos.has("ssh.command_timeout"), 10*time.Minute)
	defaultDuration(&s.ControlTimeout, c.pos.has("ssh.control_timeout"), DefaultControlTimeout)
	defaultDuration(&s.Keepalive, c.pos.has("ssh.keepalive"), 15*time.Second)
	if s.MaxParallel == 0 {
		s.MaxParallel = 20
	}
	defaultDuration(&s.ReconnectBackoff, c.pos.has("ssh.reconnect_backoff"), time.Second)
	if !c.pos.has("ssh.reconnect_attempts") {
		s.ReconnectAttempts = 5
	}
	for name, env := range c.Environments {
		if env == nil {
			env = &Environment{}
			c.Environments[name] = env
		}
		env.Name = name
		defaultDuration(&env.RehearsalMaxAge, c.pos.has("environments."+name+".rehearsal_max_age"), 7*24*time.Hour)
	}
}

// defaultDuration applies def only when the key is absent, so an explicit
// "0s" (e.g. keepalive = "0s" to disable) is kept.
func defaultDuration(d *Duration, set bool, def time.Duration) {
	if !set {
		d.Duration = def
	}
}

// ResolvePath turns a path from the configuration into a local one:
// "~/" is the user's home, relative paths are relative to relctl.toml's directory.
func (c *Config) ResolvePath(p string) string {
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.Dir, p)
}

// Where returns "file:line:col" of a key path such as
// "environments.staging.hosts.1.address" (array entries are 0-based), falling
// back to the nearest enclosing key, then to the file name alone.
func (c *Config) Where(keyPath string) string {
	if c.pos == nil {
		return c.Path
	}
	return c.pos.where(keyPath)
}

// Where returns "file:line:col" of a key path such as "steps.2.run" or
// "checks.health.url" (array entries are 0-based), falling back to the
// nearest enclosing key, then to the file name alone.
func (pb *Playbook) Where(keyPath string) string {
	if pb.pos == nil {
		return pb.Path
	}
	return pb.pos.where(keyPath)
}

// Environment returns the named environment.
func (p *Project) Environment(name string) (*Environment, error) {
	if env, ok := p.Config.Environments[name]; ok {
		return env, nil
	}
	known := slices.Sorted(mapKeys(p.Config.Environments))
	return nil, fmt.Errorf("unknown environment %q (known: %s)", name, strings.Join(known, ", "))
}

// PlaybooksFor lists the playbooks applied to env: the environment's own
// list, else relctl.toml's, in the order written; else every playbook, sorted by name.
func (p *Project) PlaybooksFor(env string) ([]*Playbook, error) {
	e, err := p.Environment(env)
	if err != nil {
		return nil, err
	}
	names := p.playbookNames(e)
	out := make([]*Playbook, 0, len(names))
	for _, n := range names {
		pb, ok := p.Playbooks[n]
		if !ok {
			return nil, fmt.Errorf("environment %q: unknown playbook %q", env, n)
		}
		out = append(out, pb)
	}
	return out, nil
}

func (p *Project) playbookNames(e *Environment) []string {
	switch {
	case len(e.Playbooks) > 0:
		return e.Playbooks
	case len(p.Config.Playbooks) > 0:
		return p.Config.Playbooks
	}
	return slices.Sorted(mapKeys(p.Playbooks))
}

// TargetHosts lists env's hosts having any of the playbook's roles, in config order.
func (pb *Playbook) TargetHosts(env *Environment) []*Host {
	var out []*Host
	for _, h := range env.Hosts {
		if slices.ContainsFunc(h.Roles, func(r string) bool { return slices.Contains(pb.Roles, r) }) {
			out = append(out, h)
		}
	}
	return out
}

// StepsIn lists the playbook's steps of one phase, in the order written.
func (pb *Playbook) StepsIn(phase string) []*Step {
	var out []*Step
	for _, s := range pb.Steps {
		if s.Phase == phase {
			out = append(out, s)
		}
	}
	return out
}

// ArtifactPath renders artifact.path for data and resolves it against
// relctl.toml's directory: the local file to ship.
func (pb *Playbook) ArtifactPath(cfg *Config, data *TemplateData) (string, error) {
	p, err := RenderText("artifact.path", pb.Artifact.Path, data)
	if err != nil {
		return "", fmt.Errorf("playbook %q: artifact.path: %w", pb.Name, err)
	}
	if strings.TrimSpace(p) == "" {
		return "", fmt.Errorf("playbook %q: artifact.path renders empty", pb.Name)
	}
	return cfg.ResolvePath(p), nil
}

// Data builds what pb's templates see on host h of env for one release.
// Vars merge playbook < environment < host; base_dir must be absolute.
func (p *Project) Data(pb *Playbook, env *Environment, h *Host, version, runID string) (*TemplateData, error) {
	if err := ValidateVersion(version); err != nil {
		return nil, err
	}
	d, err := p.HostData(pb, env, h)
	if err != nil {
		return nil, err
	}
	base, ok := d.Vars["base_dir"]
	switch {
	case !ok || base == "":
		return nil, fmt.Errorf("host %q in environment %q: var base_dir is not set (set it in the playbook's, the environment's or the host's vars)", h.Name, env.Name)
	case !path.IsAbs(base):
		return nil, fmt.Errorf("host %q in environment %q: base_dir %q is not an absolute path", h.Name, env.Name, base)
	}
	base = path.Clean(base)
	d.Version, d.RunID = version, runID
	d.BaseDir, d.ReleasesDir = base, path.Join(base, "releases")
	d.ReleaseDir, d.CurrentDir = path.Join(base, "releases", version), path.Join(base, "current")
	if d.ArtifactName, err = pb.ArtifactName(p.Config, d); err != nil {
		return nil, err
	}
	d.Artifact = path.Join(d.ReleaseDir, d.ArtifactName)
	return d, nil
}

// varString turns a TOML scalar into the string templates see.
func varString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case int:
		return strconv.Itoa(v), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// loadPlaybooks reads every playbook some environment applies.
func (p *Project) loadPlaybooks() Problems {
	cfg := p.Config
	dir := filepath.Join(filepath.Dir(cfg.Path), "playbooks")
	type ref struct{ name, key string }
	var refs []ref
	all := false
	for i, n := range cfg.Playbooks {
		refs = append(refs, ref{n, "playbooks." + strconv.Itoa(i)})
	}
	for _, envName := range slices.Sorted(mapKeys(cfg.Environments)) {
		env := cfg.Environments[envName]
		for i, n := range env.Playbooks {
			refs = append(refs, ref{n, "environments." + envName + ".playbooks." + strconv.Itoa(i)})
		}
		if len(env.Playbooks) == 0 && len(cfg.Playbooks) == 0 {
			all = true
		}
	}
	if all {
		files, _ := filepath.Glob(filepath.Join(dir, "*.toml"))
		sort.Strings(files)
		for _, f := range files {
			refs = append(refs, ref{name: strings.TrimSuffix(filepath.Base(f), ".toml")})
		}
		if len(files) == 0 {
			return Problems{{File: cfg.Path, Message: fmt.Sprintf("no playbooks: %s has no *.toml files", dir)}}
		}
	}
	var problems Problems
	seen := map[string]bool{}
	for _, r := range refs {
		if seen[r.name] {
			continue
		}
		if err := checkName("playbook name", r.name, hostNameRE, 63, "letters, digits, '.', '_' and '-'"); err != nil {
			problems = append(problems, cfg.pos.problem(r.key, "%v", err))
			seen[r.name] = true
			continue
		}
		seen[r.name] = true
		file := filepath.Join(dir, r.name+".toml")
		pb, ps, err := loadPlaybook(cfg, r.name, file)
		switch {
		case errors.Is(err, fs.ErrNotExist) && r.key != "":
			problems = append(problems, cfg.pos.problem(r.key, "playbook %q not found (no file %s)", r.name, file))
		case err != nil:
			problems = append(problems, Problem{File: file, Message: err.Error()})
		default:
			problems = append(problems, ps...)
			if pb != nil {
				p.Playbooks[r.name] = pb
			}
		}
	}
	return problems
}

func loadPlaybook(cfg *Config, name, file string) (*Playbook, Problems, error) {
	pb := &Playbook{}
	d, err := decodeFile(file, pb, playbookDurationKey)
	if err != nil {
		return nil, nil, err
	}
	pb.pos, pb.Path = d.ix, file
	if d.fatal {
		return nil, d.problems, nil
	}
	pb.applyDefaults(cfg)
	return pb, append(d.problems, pb.validate(name)...), nil
}

func (pb *Playbook) applyDefaults(cfg *Config) {
	if pb.KeepReleases == 0 {
		pb.KeepReleases = 5
	}
	if w := pb.Watchdog; w != nil {
		defaultDuration(&w.Timeout, pb.pos.has("watchdog.timeout"), time.Minute)
	}
	pb.applyArtifactDefaults()
	st := &pb.Strategy
	if !pb.pos.has("strategy.canary") {
		st.Canary = 1
	}
	switch v := st.BatchSize.(type) {
	case nil:
		st.BatchSize = 1
	case int64:
		st.BatchSize = int(v) // callers switch on int, not int64
	}
	for name, c := range pb.Checks {
		if c == nil {
			c = &Check{}
			pb.Checks[name] = c
		}
		c.Name = name
		key := "checks." + name + "."
		if c.ExpectStatus == 0 && c.Type == CheckHTTP {
			c.ExpectStatus = 200
		}
		if c.Via == "" && c.Type != CheckCommand {
			c.Via = "host"
		}
		defaultDuration(&c.Timeout, pb.pos.has(key+"timeout"), 5*time.Second)
		defaultDuration(&c.Interval, pb.pos.has(key+"interval"), time.Second)
		if !pb.pos.has(key + "retries") {
			c.Retries = 10
		}
		if !pb.pos.has(key + "healthy_for") {
			c.HealthyFor = 1
		}
	}
	used := map[string]bool{}
	for _, s := range pb.Steps {
		if s != nil && s.Name != "" {
			used[s.Name] = true
		}
	}
	for i, s := range pb.Steps {
		if s.Kind == "" && s.Run != "" {
			s.Kind = StepRun
		}
		if s.Phase == "" {
			s.Phase = defaultPhase[s.Kind]
		}
		if !pb.pos.has(fmt.Sprintf("steps.%d.timeout", i)) {
			s.Timeout = cfg.SSH.CommandTimeout
		}
		if s.Name == "" && s.Kind != "" {
			// "run-3" is the third step; other kinds are named after the kind
			// unless that name is taken.
			name := s.Kind
			if s.Kind == StepRun || used[name] {
				name = s.Kind + "-" + strconv.Itoa(i+1)
			}
			s.Name = name
			used[name] = true
		}
	}
	pb.applyRollbackDefaults(cfg)
}

// defaultPhase places the built-in step kinds where they belong; run steps
// must say their phase.
var defaultPhase = map[string]string{
	StepUpload:   PhaseStage,
	StepActivate: PhaseActivate,
	StepCheck:    PhaseVerify,
}
