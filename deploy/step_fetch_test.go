package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// The fetch script runs for real here: dash and bash, with a PATH that has
// curl, or only wget, or neither, against an HTTP server on 127.0.0.1.

const (
	fetchToken    = "s3cr3t-token-value"
	fetchPassword = "hunter2pw"
)

type fetchServer struct {
	*httptest.Server
	body     []byte
	requests atomic.Int32
}

func newFetchServer(t *testing.T) *fetchServer {
	fs := &fetchServer{body: bytes.Repeat([]byte("artifact bytes\n"), 5000)}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.requests.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+fetchToken {
			if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != fetchPassword {
				w.Header().Set("WWW-Authenticate", `Basic realm="store"`)
				http.Error(w, "who are you", http.StatusUnauthorized)
				return
			}
		}
		switch r.URL.Path {
		case "/a/search-1.0.tar.gz":
			_, _ = w.Write(fs.body)
		case "/a/redirect.tar.gz":
			http.Redirect(w, r, "/a/search-1.0.tar.gz", http.StatusFound)
		case "/hang/search-1.0.tar.gz":
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fs.Close)
	return fs
}

// toolPath is a directory of links to the commands the script may use,
// without the fetch tools left out.
func toolPath(t *testing.T, tools ...string) string {
	dir := t.TempDir()
	for _, name := range append([]string{"sha256sum", "mkdir", "chmod", "mv", "rm", "wc", "cat"}, tools...) {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("%s not installed", name)
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runFetchScript(t *testing.T, shell, pathDir string, a *fetchAction, env ...string) (string, error) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(a.Remote), "."+filepath.Base(a.Remote)+".relctl-test")
	cmd := exec.Command(shell, "-c", a.script(tmp))
	cmd.Env = append([]string{"PATH=" + pathDir, "HOME=" + t.TempDir()}, env...)
	cmd.Stdin = strings.NewReader(a.pull.stdin())
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	runErr := cmd.Run()
	res := &transport.Result{Stdout: stdout.Bytes()}
	var err error
	var exit *exec.ExitError
	if errors.As(runErr, &exit) {
		res.ExitCode = exit.ExitCode()
		err = &transport.CommandError{ExitCode: exit.ExitCode(), Tail: stdout.String()}
	} else if runErr != nil {
		t.Fatal(runErr)
	}
	msg, ferr, _ := a.outcome(res, err)
	for _, left := range []string{tmp, tmp + ".wgetrc"} {
		if _, err := os.Stat(left); err == nil {
			t.Errorf("temp file %s left behind", left)
		}
	}
	for _, secret := range []string{fetchToken, fetchPassword} {
		if strings.Contains(msg, secret) || ferr != nil && strings.Contains(ferr.Error(), secret) {
			t.Errorf("the outcome shows %q: %q, %v", secret, msg, ferr)
		}
		if strings.Contains(a.script(tmp), secret) {
			t.Errorf("the command line holds %q", secret)
		}
	}
	return msg, ferr
}

func TestFetchScript(t *testing.T) {
	srv := newFetchServer(t)
	sum := sha256.Sum256(srv.body)
	good := hex.EncodeToString(sum[:])
	withPassword := strings.Replace(srv.URL, "http://", "http://bob:"+fetchPassword+"@", 1)
	tests := []struct {
		name    string
		url     string
		header  string
		sha     string
		timeout time.Duration
		want    string // the message, or the error's text (a regexp-free substring)
		wantErr bool
	}{
		{name: "fetched with the auth header", url: srv.URL + "/a/search-1.0.tar.gz", header: "Bearer " + fetchToken, sha: good, want: "fetched by the host with TOOL (73.2 KiB), sha256 ok"},
		{name: "fetched with a password in the URL", url: withPassword + "/a/search-1.0.tar.gz?sig=abcdefgh", sha: good, want: "fetched by the host with TOOL"},
		{name: "redirect followed", url: srv.URL + "/a/redirect.tar.gz", header: "Bearer " + fetchToken, sha: good, want: "fetched", wantErr: false},
		{name: "sha256 mismatch", url: srv.URL + "/a/search-1.0.tar.gz", header: "Bearer " + fetchToken, sha: strings.Repeat("0", 64),
			wantErr: true, want: "fetch " + srv.URL + "/a/search-1.0.tar.gz: sha256 mismatch: the host downloaded a file with sha256 " + good + ", want " + strings.Repeat("0", 64) + " (from test); the download was removed"},
		{name: "404", url: withPassword + "/a/search-9.tar.gz?sig=abcdefgh", sha: good, wantErr: true,
			want: "fetch " + strings.Replace(srv.URL, "http://", "http://REDACTED@", 1) + "/a/search-9.tar.gz?sig=REDACTED: HTTP 404"},
		{name: "timeout", url: srv.URL + "/hang/search-1.0.tar.gz", header: "Bearer " + fetchToken, sha: good, timeout: time.Second, wantErr: true,
			want: "fetch " + srv.URL + "/hang/search-1.0.tar.gz: timed out (artifact.timeout 1s, connect_timeout 2s, 0 retries)"},
	}
	for _, shell := range []string{"/bin/dash", "/bin/bash"} {
		for _, tool := range []string{"curl", "wget"} {
			bin := toolPath(t, tool)
			for _, tt := range tests {
				if tool == "wget" && tt.name == "redirect followed" {
					continue // wget follows no redirect with an auth header
				}
				t.Run(fmt.Sprintf("%s/%s/%s", filepath.Base(shell), tool, tt.name), func(t *testing.T) {
					timeout := tt.timeout
					if timeout == 0 {
						timeout = 10 * time.Second
					}
					pull := &artifactPull{url: tt.url, shown: playbooks.RedactURL(tt.url), headerName: "Authorization", header: tt.header,
						connectTimeout: 2 * time.Second, timeout: timeout}
					a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "releases", "1.0", "search-1.0.tar.gz"), SHA256: tt.sha, From: "test"}
					msg, err := runFetchScript(t, shell, bin, a)
					want := strings.ReplaceAll(tt.want, "TOOL", tool)
					if tt.wantErr {
						if err == nil || !strings.Contains(err.Error(), want) {
							t.Fatalf("got %q, %v; want an error with %q", msg, err, want)
						}
						if _, err := os.Stat(a.Remote); err == nil {
							t.Errorf("%s exists after a failed fetch", a.Remote)
						}
						return
					}
					if err != nil || !strings.Contains(msg, want) {
						t.Fatalf("got %q, %v; want %q", msg, err, want)
					}
					if b, err := os.ReadFile(a.Remote); err != nil || !bytes.Equal(b, srv.body) {
						t.Fatalf("the fetched file: %v", err)
					}
					// Again: the intact copy is kept, nothing is fetched.
					before := srv.requests.Load()
					if msg, err := runFetchScript(t, shell, bin, a); err != nil || msg != "already present, sha256 ok" {
						t.Errorf("second fetch: %q, %v", msg, err)
					}
					if n := srv.requests.Load() - before; n != 0 {
						t.Errorf("second fetch made %d requests", n)
					}
				})
			}
		}
		t.Run(filepath.Base(shell)+"/no tool", func(t *testing.T) {
			pull := &artifactPull{url: srv.URL + "/a/search-1.0.tar.gz", shown: srv.URL + "/a/search-1.0.tar.gz", headerName: "Authorization", connectTimeout: time.Second, timeout: time.Second}
			a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "search-1.0.tar.gz"), SHA256: good, From: "test"}
			_, err := runFetchScript(t, shell, toolPath(t), a)
			if err == nil || !strings.Contains(err.Error(), "fetch "+srv.URL+"/a/search-1.0.tar.gz: the host has neither curl nor wget") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// While a host's fetch runs, neither the auth header nor the URL's
// credentials are in any process's command line.
func TestFetchSecretsNotOnCommandLines(t *testing.T) {
	srv := newFetchServer(t)
	for _, tool := range []string{"curl", "wget"} {
		t.Run(tool, func(t *testing.T) {
			u := strings.Replace(srv.URL, "http://", "http://bob:"+fetchPassword+"@", 1) + "/hang/search-1.0.tar.gz"
			pull := &artifactPull{url: u, shown: playbooks.RedactURL(u), headerName: "Authorization", header: "Bearer " + fetchToken,
				connectTimeout: time.Second, timeout: 3 * time.Second}
			a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "search-1.0.tar.gz"), SHA256: strings.Repeat("0", 64), From: "test"}
			cmd := exec.Command("/bin/sh", "-c", a.script(a.Remote+".tmp"))
			cmd.Env = []string{"PATH=" + toolPath(t, tool)}
			cmd.Stdin = strings.NewReader(pull.stdin())
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Wait() }()
			time.Sleep(700 * time.Millisecond) // the tool is waiting for the server
			found := false
			procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range procs {
				b, err := os.ReadFile(p)
				if err != nil {
					continue
				}
				line := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
				if strings.Contains(line, "--output") || strings.Contains(line, "--output-document") {
					found = true
				}
				for _, secret := range []string{fetchToken, fetchPassword} {
					if strings.Contains(line, secret) {
						t.Errorf("%s: command line %q holds %q", p, line, secret)
					}
				}
			}
			if !found {
				t.Errorf("no %s process seen", tool)
			}
		})
	}
}

func TestParseChecksums(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("B", 64)
	tests := []struct {
		body     string
		manifest bool
		want     string
		wantErr  string
	}{
		{body: a + "\n", want: a},
		{body: a + "  search-1.0.tar.gz\n", want: a},
		{body: a + " *dist/search-1.0.tar.gz\n", want: a},
		{body: "SHA256 (search-1.0.tar.gz) = " + a + "\n", want: a},
		{body: a + "  other.tar.gz\n", wantErr: "has no sha256 for search-1.0.tar.gz (it lists other.tar.gz)"},
		{body: "<html>login</html>\n", wantErr: `does not hold a sha256 (it starts "<html>login</html>")`},
		{body: "", wantErr: "holds no sha256"},
		{body: "# sums\n" + b + "  search-0.9.tar.gz\n" + a + "  search-1.0.tar.gz\n", manifest: true, want: a},
		{body: a + "  search-1.0.tar.gz\n" + strings.Repeat("c", 128) + "  x\n", manifest: true, want: a},
		{body: a + "\n", manifest: true, wantErr: "has no sha256 for search-1.0.tar.gz (it lists a sha256 without a name)"},
		{body: a + "  search-1.0.tar.gz\n" + b + "  ./search-1.0.tar.gz\n", manifest: true, wantErr: "lists search-1.0.tar.gz with 2 different sha256s"},
		{body: a + "  x1\n" + b + "  x2\n" + a + "  x3\n" + a + "  x4\n", manifest: true, wantErr: "has no sha256 for search-1.0.tar.gz (it lists x1, x2, x3 and 1 more)"},
	}
	for _, tt := range tests {
		got, err := parseChecksums([]byte(tt.body), "search-1.0.tar.gz", tt.manifest)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%q: got %q, %v; want error %q", tt.body, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != strings.ToLower(tt.want) {
			t.Errorf("%q: got %q, %v; want %q", tt.body, got, err, tt.want)
		}
	}
}

func TestScrub(t *testing.T) {
	p := &artifactPull{url: "https://bob:pa55word@s.example/a.tgz?X-Sig=abcd1234&e=1", headerName: "Authorization", header: "Bearer tok-123456"}
	p.shown = playbooks.RedactURL(p.url)
	in := "GET https://bob:pa55word@s.example/a.tgz?X-Sig=abcd1234&e=1 failed; sent Bearer tok-123456; sig abcd1234; token tok-123456; user bob:pa55word@"
	got := p.scrub(in)
	want := "GET https://REDACTED@s.example/a.tgz?X-Sig=REDACTED&e=REDACTED failed; sent REDACTED; sig REDACTED; token REDACTED; user REDACTED@"
	if got != want {
		t.Errorf("scrub:\n got %q\nwant %q", got, want)
	}
}

// A store that redirects to a presigned URL (GitHub releases, Artifactory,
// S3/GCS): when the presigned URL fails (expired, 403), wget -nv prints it,
// signature and all. The step's error (console, journal, report, run log)
// must show none of it: every URL in the tool's output is redacted.
func TestFetchErrorRedactsTheRedirectTarget(t *testing.T) {
	const presigned = "X-Amz-Signature=PRESIGNEDSECRET0123456789"
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Request has expired", http.StatusForbidden)
	}))
	defer cdn.Close()
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, cdn.URL+"/blob/abc?X-Amz-Credential=AKIAEXAMPLE&"+presigned, http.StatusFound)
	}))
	defer store.Close()
	for _, shell := range []string{"/bin/dash", "/bin/bash"} {
		for _, tool := range []string{"curl", "wget"} {
			t.Run(filepath.Base(shell)+"/"+tool, func(t *testing.T) {
				u := store.URL + "/releases/download/v1/search-1.0.tar.gz"
				pull := &artifactPull{url: u, shown: playbooks.RedactURL(u), headerName: "Authorization",
					connectTimeout: 2 * time.Second, timeout: 5 * time.Second}
				a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "search-1.0.tar.gz"), SHA256: strings.Repeat("0", 64), From: "test"}
				_, err := runFetchScript(t, shell, toolPath(t, tool), a)
				if err == nil {
					t.Fatal("fetch succeeded")
				}
				for _, secret := range []string{"PRESIGNEDSECRET", "AKIAEXAMPLE"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the step's error shows the redirect target's %s: %v", secret, err)
					}
				}
				if !strings.Contains(err.Error(), "HTTP 403") {
					t.Errorf("the step's error does not say HTTP 403: %v", err)
				}
			})
		}
	}
}

func TestRedactURLs(t *testing.T) {
	in := "2024-05-01 10:00:00 URL:https://cdn.example/b?X-Amz-Signature=abc&e=1 [9/9] -> \"x\" [1]\nhttps://u:p@h/p:\nno url here"
	want := "2024-05-01 10:00:00 URL:https://cdn.example/b?X-Amz-Signature=REDACTED&e=REDACTED [9/9] -> \"x\" [1]\nhttps://REDACTED@h/p:\nno url here"
	if got := redactURLs(in); got != want {
		t.Errorf("redactURLs:\n got %q\nwant %q", got, want)
	}
}

// curl globs the URL it reads ([1-3], {a,b}) unless told not to: a URL with
// brackets or braces (a query such as filter[name]=x) must make exactly one
// request, as it does with wget and on the controller.
func TestFetchCurlTakesTheURLLiterally(t *testing.T) {
	var requests atomic.Int32
	var lastQuery atomic.Value
	body := []byte("artifact\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		lastQuery.Store(r.URL.RawQuery)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	sum := sha256.Sum256(body)
	for _, shell := range []string{"/bin/dash", "/bin/bash"} {
		t.Run(filepath.Base(shell), func(t *testing.T) {
			requests.Store(0)
			u := srv.URL + "/a/search-1.0.tar.gz?v=[1-40]&f={a,b}"
			pull := &artifactPull{url: u, shown: playbooks.RedactURL(u), headerName: "Authorization",
				connectTimeout: 2 * time.Second, timeout: 5 * time.Second}
			a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "search-1.0.tar.gz"), SHA256: hex.EncodeToString(sum[:]), From: "test"}
			if _, err := runFetchScript(t, shell, toolPath(t, "curl"), a); err != nil {
				t.Fatal(err)
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("one URL configured, the host made %d requests", n)
			}
			if q, _ := lastQuery.Load().(string); q != "v=[1-40]&f={a,b}" && q != "v=%5B1-40%5D&f=%7Ba,b%7D" {
				t.Errorf("the server got the query %q", q)
			}
		})
	}
}

// oldTool puts in dir a tool that says it is version (as --version's first
// line says it) and refuses the options newer than that, like the real one:
// exit 2, "option unknown". Anything else runs the machine's tool.
func oldTool(t *testing.T, dir, tool, versionLine string, newer ...string) {
	real, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed", tool)
	}
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '" + versionLine + "'; exit 0; fi\nfor a; do case $a in\n"
	for _, opt := range newer {
		script += "  " + opt + "|" + opt + "=*) echo \"" + tool + ": option " + opt + ": is unknown\"; exit 2;;\n"
	}
	script += "esac; done\nexec " + shellQuoteForTest(real) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func shellQuoteForTest(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Hosts with curl before 7.52 (no --retry-connrefused) or wget before
// 1.19.1 (no --retry-on-http-error) still fetch; curl before 7.58 sends an
// Authorization header on to a redirect's host, so with the header it
// follows no redirect.
func TestFetchWithOldTools(t *testing.T) {
	srv := newFetchServer(t)
	sum := sha256.Sum256(srv.body)
	good := hex.EncodeToString(sum[:])
	for _, shell := range []string{"/bin/dash", "/bin/bash"} {
		for _, tool := range []string{"curl", "wget"} {
			t.Run(filepath.Base(shell)+"/"+tool, func(t *testing.T) {
				bin := toolPath(t)
				if tool == "curl" {
					oldTool(t, bin, "curl", "curl 7.47.0 (x86_64-pc-linux-gnu) libcurl/7.47.0", "--retry-connrefused")
				} else {
					oldTool(t, bin, "wget", "GNU Wget 1.18 built on linux-gnu.", "--retry-on-http-error")
				}
				u := srv.URL + "/a/search-1.0.tar.gz"
				pull := &artifactPull{url: u, shown: u, headerName: "Authorization", header: "Bearer " + fetchToken,
					connectTimeout: 2 * time.Second, timeout: 10 * time.Second, retries: 1}
				a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "search-1.0.tar.gz"), SHA256: good, From: "test"}
				msg, err := runFetchScript(t, shell, bin, a)
				if err != nil || !strings.HasPrefix(msg, "fetched by the host with "+tool) {
					t.Fatalf("got %q, %v", msg, err)
				}
				if tool == "wget" {
					return
				}
				u = srv.URL + "/a/redirect.tar.gz"
				pull.url, pull.shown = u, u
				a.Remote = filepath.Join(t.TempDir(), "search-1.0.tar.gz")
				_, err = runFetchScript(t, shell, bin, a)
				if err == nil || !strings.Contains(err.Error(), "the server redirected (HTTP 302) and the host's curl did not follow") {
					t.Errorf("a redirect with the auth header on curl 7.47: %v", err)
				}
			})
		}
	}
}

// With credentials (an auth header, or user information in the URL), an
// https URL is never redirected to http (curl), and wget follows no
// redirect: the credentials would go along in the clear or to another host.
func TestFetchWithCredentialsRedirects(t *testing.T) {
	var plain atomic.Int32
	plainSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plain.Add(1)
		_, _ = w.Write([]byte("artifact\n"))
	}))
	defer plainSrv.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plainSrv.URL+"/a/search-1.0.tar.gz", http.StatusFound)
	}))
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	var pemBuf bytes.Buffer
	if err := pem.Encode(&pemBuf, &pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, pemBuf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("artifact\n"))
	withUser := strings.Replace(tlsSrv.URL, "https://", "https://bob:"+fetchPassword+"@", 1)
	for _, shell := range []string{"/bin/dash", "/bin/bash"} {
		for _, tt := range []struct{ name, url, header string }{
			{"header", tlsSrv.URL + "/a/search-1.0.tar.gz", "Bearer " + fetchToken},
			{"user in the URL", withUser + "/a/search-1.0.tar.gz", ""},
		} {
			t.Run(filepath.Base(shell)+"/curl/"+tt.name, func(t *testing.T) {
				plain.Store(0)
				pull := &artifactPull{url: tt.url, shown: playbooks.RedactURL(tt.url), headerName: "Authorization", header: tt.header,
					connectTimeout: 2 * time.Second, timeout: 5 * time.Second}
				a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "search-1.0.tar.gz"), SHA256: hex.EncodeToString(sum[:]), From: "test"}
				_, err := runFetchScript(t, shell, toolPath(t, "curl"), a, "CURL_CA_BUNDLE="+ca)
				if err == nil || !strings.Contains(err.Error(), "redirected (HTTP 302) to a protocol not allowed (with credentials, an https URL is redirected only to https): curl exited 1") {
					t.Errorf("an https to http redirect with credentials: %v", err)
				}
				if n := plain.Load(); n != 0 {
					t.Errorf("the http server got %d requests", n)
				}
			})
		}
		t.Run(filepath.Base(shell)+"/wget/user in the URL", func(t *testing.T) {
			srv := newFetchServer(t)
			u := strings.Replace(srv.URL, "http://", "http://bob:"+fetchPassword+"@", 1) + "/a/redirect.tar.gz"
			pull := &artifactPull{url: u, shown: playbooks.RedactURL(u), headerName: "Authorization",
				connectTimeout: 2 * time.Second, timeout: 5 * time.Second}
			a := &fetchAction{pull: pull, Remote: filepath.Join(t.TempDir(), "search-1.0.tar.gz"), SHA256: strings.Repeat("0", 64), From: "test"}
			before := srv.requests.Load()
			if _, err := runFetchScript(t, shell, toolPath(t, "wget"), a); err == nil {
				t.Fatal("fetch succeeded")
			}
			if n := srv.requests.Load() - before; n != 1 {
				t.Errorf("wget made %d requests; want 1 (the redirect not followed)", n)
			}
		})
	}
}
