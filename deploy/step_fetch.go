package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// fetchAction has the host fetch the artifact itself (artifact.url), in one
// session: skipped when an intact copy is already there; else curl or wget,
// whichever the host has, writes a temp file beside the target (umask 077),
// whose sha256 is checked on the host before it is renamed into place. The
// URL and the auth header reach the host on stdin, never on a command line.
type fetchAction struct {
	pull   *artifactPull
	Remote string
	SHA256 string
	From   string // where the sha256 came from, for messages
}

// buildFetchStep fetches the host's own rendered URL (HostPlan.artifact),
// else the plan's.
func buildFetchStep(p *Plan, hp *HostPlan) (Action, string, error) {
	info := &p.Artifact
	if hp.artifact != nil {
		info = hp.artifact
	}
	a := &fetchAction{pull: info.pull, Remote: hp.Data.Artifact, SHA256: info.SHA256, From: info.SHA256From}
	return a, fmt.Sprintf("fetch %s (sha256 %s, from %s) on the host to %s", a.pull.shown, a.SHA256[:12], a.From, a.Remote), nil
}

// fetchRetryDelay is the wait between a host's attempts (curl --retry-delay,
// wget --waitretry).
const fetchRetryDelay = time.Second

// limit bounds the fetch's session: every attempt with its connect and its
// wait, plus two minutes to hash and move the file.
func (p *artifactPull) limit() time.Duration {
	n := time.Duration(p.retries + 1)
	return n*(p.connectTimeout+p.timeout) + n*fetchRetryDelay + 2*time.Minute
}

func (a *fetchAction) Do(ctx context.Context, h *hostRun) (string, error) {
	tmp := path.Join(path.Dir(a.Remote), "."+path.Base(a.Remote)+".relctl-"+randomSuffix())
	res, err := h.conn.Run(ctx, a.script(tmp), transport.RunOptions{
		Stdin: strings.NewReader(a.pull.stdin()), Label: "stage/fetch", Timeout: a.pull.limit(),
		// The tools' messages may repeat the URL: they are scrubbed here,
		// not written to the run log as they are.
		QuietStdout: true,
	})
	msg, ferr, tempLeft := a.outcome(res, err)
	if tempLeft {
		a.removeTemp(ctx, h, tmp)
	}
	return msg, ferr
}

// outcome reads how the fetch script ended; tempLeft: it was killed (a
// timeout, an interrupt) or its connection lost, so its temp file may be
// left behind.
func (a *fetchAction) outcome(res *transport.Result, err error) (msg string, ferr error, tempLeft bool) {
	var out fetchOutput
	if res != nil {
		out = parseFetchOutput(a.pull.scrub(string(res.Stdout)))
	}
	var cmdErr *transport.CommandError
	switch {
	case err == nil && out.status == "present":
		return "already present, sha256 ok", nil, false
	case err == nil && out.status == "fetched":
		return fmt.Sprintf("fetched by the host with %s (%s), sha256 ok", out.tool, out.size), nil, false
	case err == nil:
		return "", fmt.Errorf("fetch %s: the host's fetch ended without saying how (output %q)", a.pull.shown, transport.Printable(out.lastLines(), 200)), false
	case errors.As(err, &cmdErr) && cmdErr.ExitCode >= 0:
		return "", fmt.Errorf("fetch %s: %s", a.pull.shown, a.failure(out)), false
	case errors.As(err, &cmdErr):
		// Never cmdErr itself: its tail is the unscrubbed output.
		return "", fmt.Errorf("fetch %s: killed by signal %s", a.pull.shown, cmdErr.Signal), true
	}
	return "", fmt.Errorf("fetch %s: %w", a.pull.shown, err), true
}

func (a *fetchAction) removeTemp(ctx context.Context, h *hostRun, tmp string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, _ = h.conn.Run(cctx, "rm -f -- "+shellquote.Quote(tmp)+" "+shellquote.Quote(tmp+".wgetrc"), transport.RunOptions{Label: "stage/fetch:cleanup"})
}

// failure says why the host's fetch failed, from what the script reported.
func (a *fetchAction) failure(out fetchOutput) string {
	p := a.pull
	detail := ""
	if l := out.lastLines(); l != "" {
		detail = " (" + transport.Printable(l, 300) + ")"
	}
	switch out.status {
	case "mismatch":
		if strings.HasPrefix(out.http, "3") {
			return fmt.Sprintf("the server redirected (HTTP %s) and the host's curl did not follow: with an auth header curl follows a redirect only when the header is Authorization and curl is 7.58 or later (older curl sends it on to the redirect's host); the download was removed", out.http)
		}
		return fmt.Sprintf("sha256 mismatch: the host downloaded a file with sha256 %s, want %s (from %s); the download was removed", out.got, a.SHA256, a.From)
	case "no-tool":
		return "the host has neither curl nor wget (install one, or ship the artifact with artifact.path)"
	case "no-sha256":
		return "the host has neither sha256sum nor shasum to check the download"
	case "tool-exit":
		why := toolExitReason(out.tool, out.code, out.http)
		if out.tool == "curl" && out.code == 28 || out.tool == "wget" && out.code == 4 && strings.Contains(strings.ToLower(detail), "timed out") {
			why = fmt.Sprintf("timed out (artifact.timeout %s, connect_timeout %s, %d retries)", p.timeout, p.connectTimeout, p.retries)
		}
		return fmt.Sprintf("%s: %s exited %d%s", why, out.tool, out.code, detail)
	}
	return "the host's fetch failed" + detail
}

// toolExitReason reads curl's and wget's exit codes.
func toolExitReason(tool string, code int, http string) string {
	if tool == "curl" && code == 1 && strings.HasPrefix(http, "3") {
		return fmt.Sprintf("redirected (HTTP %s) to a protocol not allowed (with credentials, an https URL is redirected only to https)", http)
	}
	if http != "" {
		return "HTTP " + http
	}
	reasons := map[string]map[int]string{
		"curl": {1: "unsupported protocol", 6: "could not resolve the host",
			7: "could not connect", 22: "HTTP error", 28: "timed out", 35: "TLS handshake failed", 47: "too many redirects",
			52: "empty reply from the server", 56: "connection broken while receiving", 60: "the server's TLS certificate is not trusted"},
		"wget": {3: "could not write the file", 4: "network failure", 5: "the server's TLS certificate is not trusted",
			6: "authentication failed", 7: "protocol error", 8: "the server answered with an error"},
	}
	if r, ok := reasons[tool][code]; ok {
		return r
	}
	return "download failed"
}

// stdin is what the fetch script reads: curl's config lines (url, header),
// then the URL and wget's header line; each line without a line break
// (plan time refuses control characters in both).
func (p *artifactPull) stdin() string {
	curlHeader, wgetHeader := "", ""
	if p.header != "" {
		curlHeader = "header = " + curlQuote(p.headerName+": "+p.header)
		wgetHeader = "header = " + p.headerName + ": " + p.header
	}
	return "url = " + curlQuote(p.url) + "\n" + curlHeader + "\n" + p.url + "\n" + wgetHeader + "\n"
}

// curlQuote is s as a double-quoted curl config parameter.
func curlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Versions of the tools (as vnum in the script computes them: major *
// 1000000 + minor * 1000 + patch) from which the script uses an option or
// a behaviour. Older tools fetch without the option.
const (
	curlRetryConnRefused = 7052000 // --retry-connrefused
	// curlKeepsAuthorization: curl 7.58 sends a custom Authorization header
	// to the first host only; older curl sends it along on a redirect.
	curlKeepsAuthorization = 7058000
	wgetRetryOnHTTPError   = 1019001 // --retry-on-http-error
)

// hasCredentials: the request carries a secret (the auth header, or user
// information in the URL).
func (p *artifactPull) hasCredentials() bool {
	if p.header != "" {
		return true
	}
	u, err := url.Parse(p.url)
	return err == nil && u.User != nil
}

// curlFollowFrom is the curl version from which redirects are followed: 0
// always, -1 never. With an auth header they are followed only when it
// stays with the first host: an Authorization header with curl 7.58 or
// later (URL user information never goes along).
func (p *artifactPull) curlFollowFrom() int {
	switch {
	case p.header == "":
		return 0
	case strings.EqualFold(p.headerName, "Authorization"):
		return curlKeepsAuthorization
	}
	return -1
}

// redirectProtocols are the protocols curl may be redirected to: with
// credentials, an https URL is never redirected to http (curl before 7.83
// kept them for the same host on another protocol).
func (p *artifactPull) redirectProtocols() string {
	if u, err := url.Parse(p.url); err == nil && u.Scheme == "https" && p.hasCredentials() {
		return "=https"
	}
	return "=http,https"
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// curlOptions are curl's options; the script adds $copt, the ones its curl
// version has (toolOptions).
func (p *artifactPull) curlOptions() []string {
	return []string{"-q", "--config", "-", "--globoff", "--silent", "--show-error", "--fail",
		"--proto", "=http,https", "--proto-redir", p.redirectProtocols(),
		"--retry", strconv.Itoa(p.retries), "--retry-delay", seconds(fetchRetryDelay),
		"--connect-timeout", seconds(p.connectTimeout), "--max-time", seconds(p.timeout),
		"--output", `"$tmp"`, "--write-out", shellquote.Quote(`relctl-fetch: http %{http_code}\n`), `$copt`}
}

// wgetOptions are wget's; the script adds $wopt. With credentials wget
// follows no redirect: wget 1.21 sends an auth header on to another host.
func (p *artifactPull) wgetOptions() []string {
	opts := []string{`--config="$tmp.wgetrc"`, "--input-file=-", "--no-verbose",
		"--tries=" + strconv.Itoa(p.retries+1), "--waitretry=" + seconds(fetchRetryDelay), "--retry-connrefused",
		"--dns-timeout=" + seconds(p.connectTimeout), "--connect-timeout=" + seconds(p.connectTimeout),
		"--read-timeout=" + seconds(p.timeout), `--output-document="$tmp"`}
	if p.hasCredentials() {
		opts = append(opts, "--max-redirect=0")
	}
	if u, err := url.Parse(p.url); err == nil && u.User != nil {
		// Like curl: the URL's user and password go with the first request.
		opts = append(opts, "--auth-no-challenge")
	}
	return append(opts, `$wopt`)
}

// toolOptions are the script's lines that read the tool's version (vnum)
// and set $copt or $wopt to the options that version has.
func (p *artifactPull) toolOptions(tool string) []string {
	if tool == "wget" {
		return []string{`  set -- $(wget --version 2>/dev/null); v=$(vnum "$3"); wopt=`,
			`  [ "$v" -lt ` + strconv.Itoa(wgetRetryOnHTTPError) + ` ] || wopt='--retry-on-http-error=408,429,500,502,503,504'`}
	}
	lines := []string{`  set -- $(curl --version 2>/dev/null); v=$(vnum "$2"); copt=`,
		`  [ "$v" -lt ` + strconv.Itoa(curlRetryConnRefused) + ` ] || copt='--retry-connrefused'`}
	if from := p.curlFollowFrom(); from >= 0 {
		lines = append(lines, `  [ "$v" -lt `+strconv.Itoa(from)+` ] || copt="$copt --location --max-redirs 10"`)
	}
	return lines
}

// vnum is a shell function: a version "7.88.1" (or "8.5.0-DEV") as one
// number, 7088001; 0 for what is not a version.
const vnum = `vnum() { v=$1; a=${v%%.*}; v=${v#"$a"}; v=${v#.}; b=${v%%.*}; v=${v#"$b"}; v=${v#.}; c=${v%%[!0-9]*}; ` +
	`case "$a.$b" in *[!0-9.]*|.*|*.) echo 0; return;; esac; echo $((a * 1000000 + b * 1000 + ${c:-0})); }`

// script is the fetch, for sh (dash or bash). Its own messages start with
// "relctl-fetch:"; the tool's messages go to stdout as well, to be scrubbed.
func (a *fetchAction) script(tmp string) string {
	p := a.pull
	q := shellquote.Quote
	return strings.Join([]string{
		"dst=" + q(a.Remote) + " dir=" + q(path.Dir(a.Remote)) + " tmp=" + q(tmp) + " want=" + q(a.SHA256) + " url=" + q(p.shown),
		`if command -v sha256sum >/dev/null 2>&1; then sum() { sha256sum <"$1"; }`,
		`elif command -v shasum >/dev/null 2>&1; then sum() { shasum -a 256 <"$1"; }`,
		`else echo 'relctl-fetch: no-sha256'; exit 69; fi`,
		`if [ -f "$dst" ] && s=$(sum "$dst") && [ "${s%% *}" = "$want" ]; then echo 'relctl-fetch: present'; exit 0; fi`,
		`IFS= read -r curl_url; IFS= read -r curl_hdr; IFS= read -r wget_url; IFS= read -r wget_hdr`,
		`mkdir -p -- "$dir" 2>&1 || exit 73`,
		`umask 077`,
		vnum,
		`if command -v curl >/dev/null 2>&1; then tool=curl`,
		strings.Join(p.toolOptions("curl"), "\n"),
		`  { printf '%s\n' "$curl_url"; [ -z "$curl_hdr" ] || printf '%s\n' "$curl_hdr"; } | curl ` + strings.Join(p.curlOptions(), " ") + ` 2>&1`,
		`  rc=$?`,
		`elif command -v wget >/dev/null 2>&1; then tool=wget`,
		strings.Join(p.toolOptions("wget"), "\n"),
		// wget reads its configuration only from a regular file: 0600
		// (umask 077), removed as soon as wget ends (or by the cleanup
		// after a kill).
		`  { [ -z "$wget_hdr" ] || printf '%s\n' "$wget_hdr"; } >"$tmp.wgetrc" || exit 73`,
		`  printf '%s\n' "$wget_url" | wget ` + strings.Join(p.wgetOptions(), " ") + ` 2>&1`,
		`  rc=$?; rm -f -- "$tmp.wgetrc"`,
		`else echo 'relctl-fetch: no-tool'; exit 69; fi`,
		`if [ "$rc" -ne 0 ]; then rm -f -- "$tmp"; echo "relctl-fetch: tool-exit $tool $rc"; exit 75; fi`,
		`if ! s=$(sum "$tmp"); then rm -f -- "$tmp"; echo 'relctl-fetch: no-sha256'; exit 69; fi`,
		`if [ "${s%% *}" != "$want" ]; then rm -f -- "$tmp"; echo "relctl-fetch: mismatch ${s%% *}"; exit 65; fi`,
		`{ chmod 0644 "$tmp" && mv -f -- "$tmp" "$dst"; } 2>&1 || { rm -f -- "$tmp"; exit 73; }`,
		`echo "relctl-fetch: fetched $tool $(wc -c <"$dst")"`,
	}, "\n")
}

// fetchOutput is what the fetch script reported.
type fetchOutput struct {
	status    string // present, fetched, mismatch, tool-exit, no-tool, no-sha256
	tool      string
	code      int
	http      string // curl's last HTTP status, when there was one
	got, size string
	other     []string // the tool's own lines, scrubbed
}

var (
	wgetHTTPError = regexp.MustCompile(`\bERROR ([0-9]{3}): `)
	// anyURL is a URL in a tool's message (wget prints "URL:http://...").
	anyURL = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>]+`)
)

// redactURLs redacts every URL in text: the tools print URLs the pull never
// knew of (a redirect's target, often presigned), so scrub is not enough.
func redactURLs(text string) string {
	return anyURL.ReplaceAllStringFunc(text, playbooks.RedactURL)
}

// parseFetchOutput reads the script's output; every line of the tool's own
// is kept with its URLs redacted.
func parseFetchOutput(s string) fetchOutput {
	var o fetchOutput
	for _, line := range strings.Split(s, "\n") {
		rest, ours := strings.CutPrefix(strings.TrimSpace(line), "relctl-fetch: ")
		if !ours {
			line = redactURLs(line)
			if l := strings.TrimSpace(line); l != "" {
				o.other = append(o.other, l)
				if m := wgetHTTPError.FindStringSubmatch(l); m != nil {
					o.http = m[1] // wget -nv: "... ERROR 404: Not Found."
				}
			}
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		switch arg := func(i int) string {
			if i < len(f) {
				return f[i]
			}
			return ""
		}; f[0] {
		case "http":
			if c := arg(1); c != "000" && c != "" {
				o.http = c
			}
		case "present", "no-tool", "no-sha256":
			o.status = f[0]
		case "mismatch":
			o.status, o.got = f[0], transport.Printable(arg(1), 64)
		case "tool-exit":
			o.status, o.tool = f[0], arg(1)
			o.code, _ = strconv.Atoi(arg(2))
		case "fetched":
			o.status, o.tool = f[0], arg(1)
			if n, err := strconv.ParseInt(arg(2), 10, 64); err == nil {
				o.size = humanBytes(n)
			}
		}
	}
	return o
}

// lastLines is the tool's last three lines of output, on one line.
func (o fetchOutput) lastLines() string {
	l := o.other
	if len(l) > 3 {
		l = l[len(l)-3:]
	}
	return strings.Join(l, " | ")
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
