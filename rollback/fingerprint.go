package rollback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// Fingerprint is what an environment looks like to a release: read from its hosts.
type Fingerprint struct {
	Env      string            `json:"environment"`
	Playbook string            `json:"playbook"`
	Roles    map[string]int    `json:"roles"` // role -> number of hosts in the env with it
	Hosts    []HostFingerprint `json:"hosts"`
}

// HostFingerprint is one host as ReadFingerprint saw it.
type HostFingerprint struct {
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	OS       string   `json:"os,omitempty"`       // PRETTY_NAME from /etc/os-release, else `uname -sr`
	Watchdog string   `json:"watchdog,omitempty"` // "monit 5.33.0", "systemd 252", "none" (no [watchdog])
	Current  string   `json:"current,omitempty"`  // current release ("" none)
	// Files: sha256 (hex) of the files the playbook names, relative to the
	// current release directory: the watchdog snippet template and every
	// [rollback].requires entry. "missing" when absent, "unreadable" when
	// present but not readable.
	Files map[string]string `json:"files,omitempty"`
	Error string            `json:"error,omitempty"` // could not be read
}

// File digest values that are not a sha256.
const (
	FileMissing    = "missing"
	FileUnreadable = "unreadable"
)

// SummaryItem is one comparable key of a fingerprint and its value.
type SummaryItem struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Difference is one key whose summaries differ (A from the first env, B from
// the second; "-" when absent).
type Difference struct {
	Key string `json:"key"`
	A   string `json:"a"`
	B   string `json:"b"`
}

// Same says whether both sides agree (SideBySide returns equal rows too).
func (d Difference) Same() bool { return d.A == d.B }

// ReadFingerprint reads every host the playbook targets in env (in parallel,
// at most maxParallel at once, one SSH command per host after the
// connection). An unreachable or unreadable host does not fail the read: it
// gets Error. playbook "" is the only playbook of env.
func ReadFingerprint(ctx context.Context, conn deploy.Connector, proj *playbooks.Project, env, playbook string, maxParallel int) (*Fingerprint, error) {
	e, err := proj.Environment(env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrBadInput, err)
	}
	pb, err := fingerprintPlaybook(proj, env, playbook)
	if err != nil {
		return nil, err
	}
	f := &Fingerprint{Env: env, Playbook: pb.Name, Roles: map[string]int{}}
	for _, h := range e.Hosts {
		for _, r := range uniqueSorted(h.Roles) {
			f.Roles[r]++
		}
	}
	files := fingerprintFiles(pb)
	kind := ""
	if pb.Watchdog != nil {
		kind = pb.Watchdog.Kind
	}
	hosts := fleet.Hosts(proj, pb, e)
	read, errs := fleet.Read(ctx, conn, hosts, max(maxParallel, 1), func(ctx context.Context, h fleet.Host, c transport.Conn) (*HostFingerprint, error) {
		return readHostFingerprint(ctx, c, h.Layout, kind, files)
	})
	f.Hosts = make([]HostFingerprint, len(hosts))
	for i, h := range hosts {
		if read[i] != nil {
			f.Hosts[i] = *read[i]
		}
		f.Hosts[i].Name, f.Hosts[i].Roles = h.Name, slices.Clone(h.Spec.Roles)
		if errs[i] != nil { // unreadable, unreachable, not started, or a panic
			f.Hosts[i].Error = errs[i].Error()
		}
	}
	return f, nil
}

// fingerprintPlaybook picks the playbook to fingerprint env with.
func fingerprintPlaybook(proj *playbooks.Project, env, name string) (*playbooks.Playbook, error) {
	pbs, err := proj.PlaybooksFor(env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrBadInput, err)
	}
	names := make([]string, len(pbs))
	for i, pb := range pbs {
		if pb.Name == name || (name == "" && len(pbs) == 1) {
			return pb, nil
		}
		names[i] = pb.Name
	}
	switch {
	case name != "":
		return nil, fmt.Errorf("%w: playbook %q does not apply to environment %s (it has: %s)", deploy.ErrBadInput, name, env, strings.Join(names, ", "))
	case len(pbs) == 0:
		return nil, fmt.Errorf("%w: no playbook applies to environment %s", deploy.ErrBadInput, env)
	}
	return nil, fmt.Errorf("%w: environment %s has several playbooks (%s): choose one with --playbook", deploy.ErrBadInput, env, strings.Join(names, ", "))
}

// fingerprintFiles are the release files whose content a release depends on
// beyond its artifact: the watchdog snippet and the rollback requirements.
func fingerprintFiles(pb *playbooks.Playbook) []string {
	var files []string
	if pb.Watchdog != nil && pb.Watchdog.Snippet != "" {
		files = append(files, pb.Watchdog.Snippet)
	}
	files = append(files, pb.Rollback.Requires...)
	return uniqueSorted(files)
}

// readHostFingerprint runs fingerprintScript on one host: its OS,
// watchdog, current release and file digests.
func readHostFingerprint(ctx context.Context, conn transport.Conn, layout state.Layout, kind string, files []string) (*HostFingerprint, error) {
	script := fingerprintScript(layout.Current(), kind, files)
	res, err := conn.Run(ctx, "sh -c "+shellquote.Quote(script), transport.RunOptions{Label: "parity/fingerprint"})
	if err != nil {
		return nil, fmt.Errorf("reading fingerprint: %w", err)
	}
	got, err := parseHostFingerprint(string(res.Stdout), kind, files)
	if err != nil {
		return nil, err
	}
	return &HostFingerprint{OS: got.OS, Watchdog: got.Watchdog, Current: got.Current, Files: got.Files}, nil
}

const fingerprintHeader = "relctl-fingerprint 1"

// fingerprintScript prints one line per fact, each "<key> <value>", between
// a header and "end" so that a cut-off output is an error, not a fingerprint.
// Files are named by their index in files: no host-side name is echoed back.
func fingerprintScript(currentDir, watchdogKind string, files []string) string {
	var b strings.Builder
	b.WriteString("echo " + shellquote.Quote(fingerprintHeader) + "\n")
	b.WriteString(`if [ -r /etc/os-release ]; then printf 'os-release %s\n' "$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | head -n 1)"; fi` + "\n")
	b.WriteString(`printf 'uname %s\n' "$(uname -sr 2>/dev/null)"` + "\n")
	switch watchdogKind {
	case playbooks.WatchdogMonit:
		b.WriteString(`if command -v monit >/dev/null 2>&1; then printf 'watchdog %s\n' "$(monit -V 2>&1 | head -n 1)"; else echo watchdog; fi` + "\n")
	case playbooks.WatchdogSystemd:
		b.WriteString(`if command -v systemctl >/dev/null 2>&1; then printf 'watchdog %s\n' "$(systemctl --version 2>&1 | head -n 1)"; else echo watchdog; fi` + "\n")
	}
	// sha256sum is coreutils; shasum and openssl cover hosts without it.
	// Reading stdin keeps file names out of the tools' output.
	b.WriteString(`relctl_sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; elif command -v shasum >/dev/null 2>&1; then shasum -a 256; else openssl dgst -sha256 -r; fi; }` + "\n")
	// cd -P resolves current once, so every file is read from the same
	// release even if current is switched meanwhile.
	fmt.Fprintf(&b, "if cd -P -- %s 2>/dev/null; then\n", shellquote.Quote(currentDir))
	b.WriteString(`printf 'current %s\n' "$(pwd -P)"` + "\n")
	for i, f := range files {
		fmt.Fprintf(&b, `f=%s; if [ ! -e "$f" ]; then echo 'file %[2]d %[3]s'; elif h=$(relctl_sha256 < "$f" 2>/dev/null); then printf 'file %[2]d %%s\n' "$h"; else echo 'file %[2]d %[4]s'; fi`+"\n",
			shellquote.Quote("./"+f), i, FileMissing, FileUnreadable)
	}
	b.WriteString("else echo current; fi\necho end\n")
	return b.String()
}

var (
	sha256Hex    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	monitVersion = regexp.MustCompile(`[Vv]ersion ([0-9][0-9A-Za-z.+~-]*)`)
	// "systemd 252 (252.38-1~deb12u1)"
	systemdVersion = regexp.MustCompile(`^systemd ([0-9]+)\b`)
)

// parseHostFingerprint reads fingerprintScript's output. It is strict: an
// unknown or repeated line, a missing file, a cut-off output are errors.
func parseHostFingerprint(out, watchdogKind string, files []string) (*HostFingerprint, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("unexpected fingerprint output (%s): %q", fmt.Sprintf(format, args...), truncate(out, 300))
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 2 || lines[0] != fingerprintHeader {
		return nil, bad("no %q header", fingerprintHeader)
	}
	if lines[len(lines)-1] != "end" {
		return nil, bad("cut off before its end")
	}
	facts := &fingerprintFacts{files: files, digests: map[int]string{}, seen: map[string]bool{}}
	for _, line := range lines[1 : len(lines)-1] {
		if reason := facts.add(line); reason != "" {
			return nil, bad("%s", reason)
		}
	}
	hf, reason := facts.fingerprint(watchdogKind)
	if reason != "" {
		return nil, bad("%s", reason)
	}
	return hf, nil
}

// fingerprintFacts are the lines of fingerprintScript's output, read one
// at a time and checked against each other only at the end.
type fingerprintFacts struct {
	files                      []string
	seen                       map[string]bool // keys other than file, each allowed once
	osRelease, uname, watchdog string
	current                    string // the current release ("" none)
	sawCurrent, sawWatchdog    bool
	digests                    map[int]string // by index in files
}

// add takes one "<key> <value>" line; a non-empty result says what is
// wrong with it.
func (f *fingerprintFacts) add(line string) (problem string) {
	key, value, _ := strings.Cut(line, " ")
	if key != "file" {
		if f.seen[key] {
			return key + " twice"
		}
		f.seen[key] = true
	}
	switch key {
	case "os-release":
		f.osRelease = unquoteOSRelease(value)
	case "uname":
		f.uname = value
	case "watchdog":
		f.watchdog, f.sawWatchdog = value, true
	case "current":
		f.sawCurrent = true
		if value != "" {
			f.current = path.Base(value)
		}
	case "file":
		return f.addFile(line, value)
	default:
		return fmt.Sprintf("unknown line %q", line)
	}
	return ""
}

// addFile takes a "file <index> <digest>" line: digest is sha256sum's or
// shasum's "<hex>  -", openssl -r's "<hex> *stdin", or FileMissing or
// FileUnreadable.
func (f *fingerprintFacts) addFile(line, value string) (problem string) {
	idx, digest, ok := strings.Cut(value, " ")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || i < 0 || i >= len(f.files) {
		return fmt.Sprintf("file line %q", line)
	}
	if _, dup := f.digests[i]; dup {
		return fmt.Sprintf("file %s twice", f.files[i])
	}
	if fields := strings.Fields(digest); len(fields) > 0 && sha256Hex.MatchString(fields[0]) {
		digest = fields[0]
	} else if digest != FileMissing && digest != FileUnreadable {
		return fmt.Sprintf("file %s: %q is not a sha256", f.files[i], digest)
	}
	f.digests[i] = digest
	return ""
}

// fingerprint is the host's fingerprint once every line is in: a current
// line, a watchdog line when the playbook has a watchdog, and a digest for
// each file exactly when there is a current release.
func (f *fingerprintFacts) fingerprint(watchdogKind string) (hf *HostFingerprint, problem string) {
	if !f.sawCurrent {
		return nil, "no current line"
	}
	hf = &HostFingerprint{Current: f.current, OS: firstNonEmpty(f.osRelease, f.uname, "unknown")}
	switch {
	case watchdogKind == "":
		hf.Watchdog = "none"
	case !f.sawWatchdog:
		return nil, "no watchdog line"
	default:
		hf.Watchdog = watchdogVersion(watchdogKind, f.watchdog)
	}
	if len(f.files) > 0 {
		hf.Files = make(map[string]string, len(f.files))
	}
	for i, name := range f.files {
		d, ok := f.digests[i]
		switch {
		case hf.Current == "" && ok:
			return nil, "a file digest without a current release"
		case hf.Current == "":
			d = FileMissing
		case !ok:
			return nil, "no line for file " + name
		}
		hf.Files[name] = d
	}
	return hf, ""
}

// unquoteOSRelease undoes os-release's shell-style quoting of one value.
func unquoteOSRelease(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
		if v != "" && v[0] != '\'' {
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, "\\`", "`", `\$`, `$`).Replace(v)
		}
	}
	return v
}

// watchdogVersion turns the supervisor's version banner into "monit 5.33.0"
// or "systemd 252"; a host without it says so.
func watchdogVersion(kind, banner string) string {
	banner = strings.TrimSpace(banner)
	if banner == "" {
		return kind + " not installed"
	}
	re := monitVersion
	if kind == playbooks.WatchdogSystemd {
		re = systemdVersion
	}
	if m := re.FindStringSubmatch(banner); m != nil {
		return kind + " " + m[1]
	}
	return kind + " (unknown version: " + truncate(banner, 60) + ")"
}

// Summary is one value per comparable key, in a stable key order: per-role
// host counts, then the distinct values the readable hosts have for OS,
// watchdog, current release and each file's digest (shortened), then how
// many hosts could not be read (only when some could not). Distinct values,
// not per-host counts, so 3 vs 5 hosts on the same OS compare equal.
func (f *Fingerprint) Summary() []SummaryItem { return f.summary(true) }

// Digest is "sha256:<hex>" over a canonical JSON encoding of the summary,
// with full file digests rather than Summary's shortened ones. Two
// environments that compare equal have the same digest.
func (f *Fingerprint) Digest() string {
	b, err := json.Marshal(f.summary(false))
	if err != nil {
		panic(fmt.Sprintf("fingerprint digest: %v", err)) // a slice of string pairs always marshals
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (f *Fingerprint) summary(short bool) []SummaryItem {
	var items []SummaryItem
	roles := make([]string, 0, len(f.Roles))
	for r := range f.Roles {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		items = append(items, SummaryItem{"hosts with role " + r, strconv.Itoa(f.Roles[r])})
	}
	var readable []HostFingerprint
	unreadable := 0
	fileSet := map[string]bool{}
	for _, h := range f.Hosts {
		if h.Error != "" {
			unreadable++
			continue
		}
		readable = append(readable, h)
		for name := range h.Files {
			fileSet[name] = true
		}
	}
	distinct := func(value func(HostFingerprint) string) string {
		var vs []string
		for _, h := range readable {
			vs = append(vs, value(h))
		}
		vs = uniqueSorted(vs)
		if len(vs) == 0 {
			return "unknown"
		}
		return strings.Join(vs, ", ")
	}
	items = append(items,
		SummaryItem{"os", distinct(func(h HostFingerprint) string { return h.OS })},
		SummaryItem{"watchdog", distinct(func(h HostFingerprint) string { return h.Watchdog })},
		SummaryItem{"current release", distinct(func(h HostFingerprint) string { return firstNonEmpty(h.Current, "none") })},
	)
	files := make([]string, 0, len(fileSet))
	for name := range fileSet {
		files = append(files, name)
	}
	slices.Sort(files)
	for _, name := range files {
		items = append(items, SummaryItem{"file " + name, distinct(func(h HostFingerprint) string {
			d, ok := h.Files[name]
			switch {
			case !ok:
				return FileMissing
			case sha256Hex.MatchString(d) && short:
				return "sha256:" + d[:12]
			case sha256Hex.MatchString(d):
				return "sha256:" + d
			}
			return d
		})})
	}
	if unreadable > 0 {
		items = append(items, SummaryItem{"unreadable hosts", strconv.Itoa(unreadable)})
	}
	return items
}

// SideBySide is every key of either summary, with both values ("-" where a
// side has no such key): a's keys in order, then those only b has.
func SideBySide(a, b *Fingerprint) []Difference {
	as, bs := a.Summary(), b.Summary()
	bValue := make(map[string]string, len(bs))
	for _, it := range bs {
		bValue[it.Key] = it.Value
	}
	var out []Difference
	inA := make(map[string]bool, len(as))
	for _, it := range as {
		inA[it.Key] = true
		bv, ok := bValue[it.Key]
		if !ok {
			bv = "-"
		}
		out = append(out, Difference{Key: it.Key, A: it.Value, B: bv})
	}
	for _, it := range bs {
		if !inA[it.Key] {
			out = append(out, Difference{Key: it.Key, A: "-", B: it.Value})
		}
	}
	return out
}

// CompareFingerprints lists the keys whose summaries differ, in SideBySide's order.
func CompareFingerprints(a, b *Fingerprint) []Difference {
	var out []Difference
	for _, d := range SideBySide(a, b) {
		if !d.Same() {
			out = append(out, d)
		}
	}
	return out
}

func uniqueSorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
