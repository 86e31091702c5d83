package deploy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// artifactPull is what a host's fetch of artifact.url needs. url and header
// may hold credentials: they reach the host on the session's stdin, and
// anything shown goes through shown (the URL redacted) or scrub.
type artifactPull struct {
	url        string // as rendered: may hold user information or a signed query
	shown      string // playbooks.RedactURL(url)
	headerName string
	header     string // the auth header's value; "" for none
	// connectTimeout bounds connecting, timeout each attempt, retries the
	// attempts after the first for a transient failure.
	connectTimeout, timeout time.Duration
	retries                 int
}

// secretSource is where artifact.auth_header_env's value comes from: the
// controller's environment today; issue 13's [secrets] can be another.
type secretSource interface {
	Lookup(name string) (value string, ok bool)
	// Describe names the secret for messages (never its value).
	Describe(name string) string
}

type envSecrets struct{}

func (envSecrets) Lookup(name string) (string, bool) { return os.LookupEnv(name) }
func (envSecrets) Describe(name string) string       { return "environment variable " + name }

// artifactSecrets is the secret source plans read.
var artifactSecrets secretSource = envSecrets{}

// Size limits of the checksum files the controller reads.
const (
	maxChecksumFile = 64 << 10
	maxManifest     = 4 << 20
	// maxChecksumTime bounds one attempt at a checksum file, whatever
	// artifact.timeout (which is sized for the artifact) says.
	maxChecksumTime    = 30 * time.Second
	checksumRetryDelay = time.Second
)

// pulledArtifactInfo identifies an artifact the hosts pull, for one host
// (artifact.url and its checksum settings are templates, rendered per
// host): its file name from the URL, its sha256 as declared
// (artifact.sha256) or read from a checksum file or manifest, which is the
// only thing the controller fetches, once per rendered checksum URL (sums).
// Every problem is bad input (exit 2), reported before any host changes.
func pulledArtifactInfo(pb *playbooks.Playbook, data *playbooks.TemplateData, sums checksumCache) (ArtifactInfo, error) {
	a := &pb.Artifact
	raw, name, err := pb.ArtifactURL(data)
	if err != nil {
		return ArtifactInfo{}, badInput("%s: %v", pb.Where("artifact.url"), err)
	}
	pull := &artifactPull{url: raw, shown: playbooks.RedactURL(raw), headerName: a.AuthHeaderName,
		connectTimeout: a.ConnectTimeout.Duration, timeout: a.Timeout.Duration, retries: a.Retries}
	if a.AuthHeaderEnv != "" {
		v, ok := artifactSecrets.Lookup(a.AuthHeaderEnv)
		v = strings.TrimSpace(v)
		switch {
		case !ok || v == "":
			return ArtifactInfo{}, badInput("%s: artifact.auth_header_env: %s is not set (it holds the value of the %s header sent for the artifact)",
				pb.Where("artifact.auth_header_env"), artifactSecrets.Describe(a.AuthHeaderEnv), a.AuthHeaderName)
		case strings.ContainsFunc(v, isControl):
			return ArtifactInfo{}, badInput("%s: artifact.auth_header_env: the value of %s has a control character (a line break?); not printed",
				pb.Where("artifact.auth_header_env"), artifactSecrets.Describe(a.AuthHeaderEnv))
		}
		pull.header = v
	}
	src, err := pb.ArtifactChecksum(data, raw)
	if err != nil {
		return ArtifactInfo{}, badInput("%s: %v", pb.Where(src.Key), err)
	}
	info := ArtifactInfo{Path: pull.shown, URL: pull.shown, Name: name, pull: pull}
	if src.Kind == playbooks.ChecksumValue {
		info.SHA256, info.SHA256From = src.Value, src.Key
		return info, nil
	}
	key := src.Kind + "\x00" + src.Value + "\x00" + name
	got, ok := sums[key]
	if !ok {
		got.sum, got.err = pull.fetchChecksum(src, name)
		if got.err != nil {
			got.err = badInput("%s: %s", pb.Where(src.Key), pull.scrub(got.err.Error()))
		}
		sums[key] = got
	}
	if got.err != nil {
		return ArtifactInfo{}, got.err
	}
	info.SHA256, info.SHA256From = got.sum, playbooks.RedactURL(src.Value)
	return info, nil
}

// checksumCache is what each checksum file or manifest gave during one
// plan, by kind, rendered URL and file name: hosts that share a checksum
// URL share one fetch.
type checksumCache map[string]checksumAnswer

type checksumAnswer struct {
	sum string
	err error
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// fetchChecksum reads the checksum file or manifest src names and returns
// the sha256 it gives for the file name. A transient failure (a timeout, a
// refused connection, HTTP 408, 429 or 5xx) is tried again, retries times.
func (p *artifactPull) fetchChecksum(src playbooks.ChecksumSource, name string) (string, error) {
	what := "checksum file"
	limit := int64(maxChecksumFile)
	if src.Kind == playbooks.ChecksumManifest {
		what, limit = "manifest", maxManifest
	}
	shown := playbooks.RedactURL(src.Value)
	client := p.checksumClient()
	var body []byte
	var err error
	for attempt := 0; ; attempt++ {
		var transient bool
		body, transient, err = p.get(client, src.Value, limit)
		if err == nil || !transient || attempt >= p.retries {
			break
		}
		time.Sleep(checksumRetryDelay)
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %v", what, shown, err)
	}
	sum, err := parseChecksums(body, name, src.Kind == playbooks.ChecksumManifest)
	if err != nil {
		return "", fmt.Errorf("%s %s: %v", what, shown, err)
	}
	return sum, nil
}

var errRedirectRefused = errors.New("redirect refused")

func (p *artifactPull) checksumClient() *http.Client {
	dialer := &net.Dialer{Timeout: p.connectTimeout}
	return &http.Client{
		Timeout: p.connectTimeout + min(p.timeout, maxChecksumTime),
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         dialer.DialContext,
			TLSHandshakeTimeout: p.connectTimeout,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			switch {
			case len(via) >= 10:
				return fmt.Errorf("%w: more than 10", errRedirectRefused)
			case req.URL.Scheme != "http" && req.URL.Scheme != "https":
				return fmt.Errorf("%w: to a %s: URL", errRedirectRefused, req.URL.Scheme)
			case req.URL.Host != via[0].URL.Host && p.header != "":
				// The header is for the store it was configured for.
				req.Header.Del(p.headerName)
			}
			return nil
		},
	}
}

// get fetches u, at most limit bytes; transient says whether trying again
// may help.
func (p *artifactPull) get(client *http.Client, u string, limit int64) (body []byte, transient bool, err error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, false, errors.New("not a valid URL")
	}
	req.Header.Set("User-Agent", "relctl")
	if p.header != "" {
		req.Header.Set(p.headerName, p.header)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL, query string included
		}
		// A refused redirect stays refused; network trouble may pass.
		return nil, !errors.Is(err, errRedirectRefused), err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		transient := resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		return nil, transient, fmt.Errorf("HTTP %s", resp.Status)
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, true, fmt.Errorf("reading the response: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, false, fmt.Errorf("larger than %d KiB: not a checksum list", limit>>10)
	}
	return body, false, nil
}

var (
	gnuSumLine = regexp.MustCompile(`^([0-9a-fA-F]{64})(?:[ \t]+\*?(.*))?$`)
	bsdSumLine = regexp.MustCompile(`^SHA256 ?\((.*)\) ?= ?([0-9a-fA-F]{64})$`)
)

// parseChecksums finds name's sha256 in a checksum file: sha256sum's
// "HEX  name" (or "HEX *name") lines, BSD's "SHA256 (name) = HEX", or one
// bare HEX. A name is matched by its base name. A checksum file (not a
// manifest) of one entry without a name is that entry; a manifest must
// name the file.
func parseChecksums(body []byte, name string, manifest bool) (string, error) {
	type entry struct{ sum, name string }
	var entries []entry
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := gnuSumLine.FindStringSubmatch(line); m != nil {
			entries = append(entries, entry{strings.ToLower(m[1]), strings.TrimSpace(m[2])})
		} else if m := bsdSumLine.FindStringSubmatch(line); m != nil {
			entries = append(entries, entry{strings.ToLower(m[2]), m[1]})
		} else if !manifest {
			return "", fmt.Errorf("does not hold a sha256 (it starts %q)", transport.Printable(line, 40))
		}
	}
	if len(entries) == 0 {
		return "", errors.New("holds no sha256")
	}
	if !manifest && len(entries) == 1 && entries[0].name == "" {
		return entries[0].sum, nil
	}
	var sums, names []string
	for _, e := range entries {
		if e.name != "" && path.Base(strings.ReplaceAll(e.name, "\\", "/")) == name {
			sums = append(sums, e.sum)
		}
		names = append(names, e.name)
	}
	slices.Sort(sums)
	switch sums = slices.Compact(sums); len(sums) {
	case 1:
		return sums[0], nil
	case 0:
		return "", fmt.Errorf("has no sha256 for %s (it lists %s)", name, listNames(names))
	}
	return "", fmt.Errorf("lists %s with %d different sha256s", name, len(sums))
}

func listNames(names []string) string {
	for i, n := range names {
		if n == "" {
			n = "a sha256 without a name"
		}
		names[i] = transport.Printable(n, 60)
	}
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return strings.Join(names, ", ")
}

// scrub replaces in text every credential the pull knows of: the URL by
// its redacted form, its user information, query values and fragment, and
// the auth header's value (and its token, after a scheme like "Bearer").
func (p *artifactPull) scrub(text string) string {
	type repl struct{ old, new string }
	rs := []repl{{p.url, p.shown}}
	secret := func(s string, minLen int) {
		if len(s) >= minLen {
			rs = append(rs, repl{s, playbooks.Redacted})
		}
	}
	if u, err := url.Parse(p.url); err == nil {
		if u.User != nil {
			secret(u.User.String(), 1)
			pw, _ := u.User.Password()
			secret(pw, 3)
			secret(u.User.Username(), 3)
		}
		secret(u.RawQuery, 1)
		if q, err := url.ParseQuery(u.RawQuery); err == nil {
			for _, vs := range q {
				for _, v := range vs {
					secret(v, 4)
					secret(url.QueryEscape(v), 4)
				}
			}
		}
		secret(u.Fragment, 4)
	}
	if p.header != "" {
		secret(p.header, 1)
		if _, token, ok := strings.Cut(p.header, " "); ok {
			secret(strings.TrimSpace(token), 4)
		}
	}
	slices.SortStableFunc(rs, func(a, b repl) int { return len(b.old) - len(a.old) })
	for _, r := range rs {
		if r.old != "" {
			text = strings.ReplaceAll(text, r.old, r.new)
		}
	}
	return text
}
