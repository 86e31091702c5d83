package playbooks

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Defaults of a pulled artifact's [artifact] settings.
const (
	DefaultArtifactConnectTimeout = 10 * time.Second
	DefaultArtifactTimeout        = 10 * time.Minute
	DefaultArtifactRetries        = 3
	DefaultAuthHeaderName         = "Authorization"
	// MaxArtifactRetries keeps a typo (retries = 300) from turning a dead
	// store into an hour-long stage step.
	MaxArtifactRetries = 20
)

// Where a pulled artifact's sha256 comes from (ChecksumSource.Kind).
const (
	ChecksumValue    = "sha256"
	ChecksumFile     = "sha256_url"
	ChecksumManifest = "manifest"
)

// Pulled reports whether the hosts fetch the artifact from a URL (else
// relctl pushes the local file at Path).
func (a *Artifact) Pulled() bool { return a.URL != "" }

// artifactKey is the key a problem with the artifact's location points at.
func (pb *Playbook) artifactKey() string {
	if pb.Artifact.Pulled() {
		return "artifact.url"
	}
	return "artifact.path"
}

func (pb *Playbook) applyArtifactDefaults() {
	a := &pb.Artifact
	if !a.Pulled() {
		return
	}
	defaultDuration(&a.ConnectTimeout, pb.pos.has("artifact.connect_timeout"), DefaultArtifactConnectTimeout)
	defaultDuration(&a.Timeout, pb.pos.has("artifact.timeout"), DefaultArtifactTimeout)
	if !pb.pos.has("artifact.retries") {
		a.Retries = DefaultArtifactRetries
	}
	if a.AuthHeaderName == "" {
		a.AuthHeaderName = DefaultAuthHeaderName
	}
}

var (
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
	sha256RE     = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	// artifactNameRE is a pulled artifact's file name on the host: no
	// control characters, quotes, spaces or bytes that are not UTF-8.
	artifactNameRE = regexp.MustCompile(`^[A-Za-z0-9._+~-]+$`)
)

// validateArtifact checks [artifact] on its own: exactly one of path and
// url, and the pull settings only with url.
func (pb *Playbook) validateArtifact() Problems {
	ix, a := pb.pos, &pb.Artifact
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }
	switch {
	case a.Path == "" && a.URL == "":
		add("artifact", "missing required key artifact.path (the file shipped to every host)")
		return ps
	case a.Path != "" && a.URL != "":
		add("artifact.url", "artifact.path and artifact.url exclude each other: relctl pushes the file at path, or the hosts fetch url")
		return ps
	case a.Path != "":
		ps = append(ps, templateSyntax(ix, "artifact.path", a.Path, false)...)
		for _, k := range []string{"sha256", "sha256_url", "manifest", "auth_header_env", "auth_header_name", "connect_timeout", "timeout", "retries"} {
			if ix.has("artifact." + k) {
				add("artifact."+k, "artifact.%s goes with artifact.url (the hosts fetch the artifact); with artifact.path relctl computes the sha256 itself", k)
			}
		}
		return ps
	}
	ps = append(ps, templateSyntax(ix, "artifact.url", a.URL, false)...)
	var sources []string
	for _, k := range []string{"sha256", "sha256_url", "manifest"} {
		if ix.has("artifact." + k) {
			sources = append(sources, k)
		}
	}
	if len(sources) > 1 {
		add("artifact."+sources[1], "artifact.%s and artifact.%s exclude each other: give the sha256 one way", sources[0], sources[1])
	}
	for _, k := range sources {
		v := map[string]string{"sha256": a.SHA256, "sha256_url": a.SHA256URL, "manifest": a.Manifest}[k]
		switch {
		case v == "":
			add("artifact."+k, "artifact.%s is empty", k)
		case k == "sha256" && !strings.Contains(v, "{{") && !sha256RE.MatchString(v):
			add("artifact.sha256", "artifact.sha256 %q is not a sha256 (64 hex digits)", v)
		default:
			ps = append(ps, templateSyntax(ix, "artifact."+k, v, false)...)
		}
	}
	if a.AuthHeaderEnv != "" && !envNameRE.MatchString(a.AuthHeaderEnv) {
		add("artifact.auth_header_env", "artifact.auth_header_env %q is not an environment variable name", a.AuthHeaderEnv)
	}
	if ix.has("artifact.auth_header_name") && !headerNameRE.MatchString(a.AuthHeaderName) {
		add("artifact.auth_header_name", "artifact.auth_header_name %q is not an HTTP header name", a.AuthHeaderName)
	}
	if ix.has("artifact.auth_header_name") && a.AuthHeaderEnv == "" {
		add("artifact.auth_header_name", "artifact.auth_header_name needs artifact.auth_header_env (where the header's value comes from)")
	}
	for _, k := range []string{"connect_timeout", "timeout"} {
		d := map[string]Duration{"connect_timeout": a.ConnectTimeout, "timeout": a.Timeout}[k]
		if ix.has("artifact."+k) && d.Duration == 0 {
			add("artifact."+k, "artifact.%s must be more than 0s", k)
		}
	}
	if a.Retries < 0 || a.Retries > MaxArtifactRetries {
		add("artifact.retries", "artifact.retries must be between 0 and %d (got %d)", MaxArtifactRetries, a.Retries)
	}
	if pb.Watchdog != nil {
		add("artifact.url", "[watchdog] needs artifact.path for now: the watchdog snippet is checked from the artifact on the controller before any host changes, and with artifact.url the controller never has the artifact")
	}
	return ps
}

// tryArtifact renders a pulled artifact's checksum settings for one host
// (validateHost's try; the URL itself is rendered by Data).
func (pb *Playbook) tryArtifact(try func(key, text string, shell bool, check func(string) error)) {
	a := &pb.Artifact
	if !a.Pulled() {
		return
	}
	try("artifact.sha256", a.SHA256, false, nil)
	try("artifact.sha256_url", a.SHA256URL, false, checkChecksumURL)
	try("artifact.manifest", a.Manifest, false, checkChecksumURL)
}

func checkChecksumURL(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s is not an http:// or https:// URL", RedactURL(raw))
	}
	return nil
}

// ArtifactName is the artifact's file name on the host: the local file's
// base name, or the URL path's last segment.
func (pb *Playbook) ArtifactName(cfg *Config, data *TemplateData) (string, error) {
	if pb.Artifact.Pulled() {
		_, name, err := pb.ArtifactURL(data)
		return name, err
	}
	local, err := pb.ArtifactPath(cfg, data)
	if err != nil {
		return "", err
	}
	return filepath.Base(local), nil
}

// ArtifactURL renders artifact.url for data: the URL the hosts fetch (it
// may hold credentials: show it through RedactURL) and the artifact's file
// name, the last segment of its path.
func (pb *Playbook) ArtifactURL(data *TemplateData) (raw, name string, err error) {
	raw, err = RenderText("artifact.url", pb.Artifact.URL, data)
	if err != nil {
		return "", "", fmt.Errorf("playbook %q: artifact.url: %w", pb.Name, err)
	}
	raw = strings.TrimSpace(raw)
	if name, err = checkFetchURL(raw); err != nil {
		return "", "", fmt.Errorf("playbook %q: artifact.url %s: %w", pb.Name, RedactURL(raw), err)
	}
	return raw, name, nil
}

// checkFetchURL accepts an absolute http(s) URL naming a file, and returns
// that file's name.
func checkFetchURL(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("renders empty")
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("contains a control character")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("must be an http:// or https:// URL")
	}
	if u.Host == "" {
		return "", fmt.Errorf("has no host")
	}
	name := path.Base(u.Path)
	if strings.HasSuffix(u.Path, "/") || name == "." || name == ".." || name == "/" || strings.ContainsAny(name, "/\\") {
		return "", fmt.Errorf("does not name a file (its path's last segment is the file's name on the host)")
	}
	if !artifactNameRE.MatchString(name) {
		return "", fmt.Errorf("names the file %q (its path's last segment, decoded, is the file's name on the host): a name may hold only letters, digits and . _ + ~ -", name)
	}
	return name, nil
}

// ChecksumSource is where a pulled artifact's sha256 comes from, rendered:
// Kind is ChecksumValue (Value is the sha256), ChecksumFile or
// ChecksumManifest (Value is the URL to fetch; it may hold credentials).
// Key is the playbook key it came from, for messages.
type ChecksumSource struct {
	Kind, Value, Key string
}

// ArtifactChecksum renders where the sha256 of the artifact at artifactURL
// comes from; without sha256, sha256_url or manifest it is artifactURL +
// ".sha256" (before any query string).
func (pb *Playbook) ArtifactChecksum(data *TemplateData, artifactURL string) (ChecksumSource, error) {
	a := &pb.Artifact
	src := ChecksumSource{Kind: ChecksumFile, Key: "artifact.url"}
	text := ""
	switch {
	case a.SHA256 != "":
		src.Kind, src.Key, text = ChecksumValue, "artifact.sha256", a.SHA256
	case a.SHA256URL != "":
		src.Key, text = "artifact.sha256_url", a.SHA256URL
	case a.Manifest != "":
		src.Kind, src.Key, text = ChecksumManifest, "artifact.manifest", a.Manifest
	default:
		u, err := url.Parse(artifactURL)
		if err != nil {
			return src, fmt.Errorf("artifact.url %s: is not a URL", RedactURL(artifactURL))
		}
		rawPath := u.RawPath
		u.Path += ".sha256"
		if rawPath != "" {
			u.RawPath = rawPath + ".sha256"
		}
		src.Value = u.String()
		return src, nil
	}
	v, err := RenderText(src.Key, text, data)
	if err != nil {
		return src, fmt.Errorf("%s: %w", src.Key, err)
	}
	src.Value = strings.TrimSpace(v)
	if src.Kind == ChecksumValue {
		if !sha256RE.MatchString(src.Value) {
			return src, fmt.Errorf("%s renders %q, not a sha256 (64 hex digits)", src.Key, src.Value)
		}
		src.Value = strings.ToLower(src.Value)
		return src, nil
	}
	if err := checkChecksumURL(src.Value); err != nil {
		return src, fmt.Errorf("%s: %w", src.Key, err)
	}
	return src, nil
}

// Redacted is what RedactURL writes in place of a credential.
const Redacted = "REDACTED"

// RedactURL is raw fit to print: user information (a user name may be a
// token too) and every query value and fragment are replaced by REDACTED;
// scheme, host, path and query keys stay. What does not parse keeps only
// what precedes any '?' or '#', and loses any user information.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redactUnparsed(raw)
	}
	if u.User != nil {
		u.User = url.User(Redacted)
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok {
				parts[i] = k + "=" + Redacted
			} else if p != "" {
				parts[i] = Redacted
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	u.ForceQuery = false
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = Redacted, ""
	}
	return u.String()
}

func redactUnparsed(raw string) string {
	s := raw
	suffix := ""
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s, suffix = s[:i], s[i:i+1]+Redacted
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		auth, p, _ := strings.Cut(rest, "/")
		if at := strings.LastIndex(auth, "@"); at >= 0 {
			auth = Redacted + "@" + auth[at+1:]
		}
		s = scheme + "://" + auth
		if p != "" || strings.Contains(rest, "/") {
			s += "/" + p
		}
	} else if at := strings.LastIndex(s, "@"); at >= 0 {
		s = Redacted + "@" + s[at+1:]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s+suffix)
}
