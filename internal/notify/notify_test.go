package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relctl/relctl/playbooks"
)

// received is one request a receiver got.
type received struct {
	method, path, contentType, userAgent string
	body                                 []byte
}

// receiver is a real HTTP server on 127.0.0.1 that records every request
// and answers with handle (200 when nil).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	handle   func(w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{handle: handle}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, received{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), body})
		rc.mu.Unlock()
		if rc.handle != nil {
			rc.handle(w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.requests...)
}

// secretsOf is Options.Secret and Options.Redact over fixed values.
func secretsOf(values map[string]string) Options {
	return Options{
		Secret: func(_ context.Context, name string) (string, error) {
			if v, ok := values[name]; ok {
				return v, nil
			}
			return "", fmt.Errorf("secret %q is not defined", name)
		},
		Redact: func(s string) string {
			for _, v := range values {
				s = strings.ReplaceAll(s, v, playbooks.SecretMask)
			}
			return s
		},
		UserAgent: "relctl/1.2.3",
	}
}

func webhook(name, secret string, on ...string) *playbooks.NotifyConfig {
	return &playbooks.NotifyConfig{Name: name, On: on, Webhook: "{{.Secrets." + secret + "}}"}
}

func failedEvent() Event {
	return Event{
		Type: playbooks.NotifyFailure, Also: []string{playbooks.NotifyRollback},
		Run: "20260102T030405Z-abcd", Kind: "deploy", Project: "search", Env: "production", Playbook: "search",
		Release: "9.4.1", From: "9.4.0", Result: ResultRolledBack, ExitCode: IntPtr(3),
		Hosts:    map[string][]string{HostRolledBack: {"web-1"}, HostUnchanged: {"web-2", "web-3"}},
		Operator: "alice", Controller: "laptop", Detail: "every touched host healthy",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

// TestWebhookBody: a real local receiver gets one POST per entry with
// Slack's text and the structured event, JSON, relctl's user agent.
func TestWebhookBody(t *testing.T) {
	rc := newReceiver(t, nil)
	hook := rc.URL + "/services/T0/B0/secret-token-Xy7"
	n := New([]*playbooks.NotifyConfig{webhook("chat", "hook", "failure", "rollback", "gate-refused")}, secretsOf(map[string]string{"hook": hook}))
	if errs := n.Fire(context.Background(), failedEvent()); len(errs) > 0 {
		t.Fatalf("Fire: %v", errs)
	}
	reqs := rc.got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1 (an entry told about failure and rollback gets one message)", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != "/services/T0/B0/secret-token-Xy7" || r.contentType != "application/json" || r.userAgent != "relctl/1.2.3" {
		t.Errorf("request %s %s content-type %q user-agent %q", r.method, r.path, r.contentType, r.userAgent)
	}
	var body struct {
		Text   string         `json:"text"`
		Relctl map[string]any `json:"relctl"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	wantText := ":x: relctl deploy of search 9.4.1 to production FAILED and was rolled back: every touched host healthy (run 20260102T030405Z-abcd; web-[1-3])"
	if body.Text != wantText {
		t.Errorf("text\n%s\nwant\n%s", body.Text, wantText)
	}
	want := map[string]any{
		"schema": 1.0, "type": "failure", "run": "20260102T030405Z-abcd", "kind": "deploy", "project": "search",
		"environment": "production", "playbook": "search", "release": "9.4.1", "from": "9.4.0", "result": "rolled-back",
		"exit_code": 3.0, "operator": "alice", "controller": "laptop", "time": "2026-01-02T03:04:05Z",
		"detail": "every touched host healthy", "summary": wantText,
		"hosts": map[string]any{"rolled-back": []any{"web-1"}, "unchanged": []any{"web-2", "web-3"}},
	}
	if fmt.Sprint(body.Relctl) != fmt.Sprint(want) {
		t.Errorf("relctl\n%v\nwant\n%v", body.Relctl, want)
	}
}

// TestWhoIsTold: on and environments choose the entries; an entry gets the
// first type it asked for; nothing is sent to the others.
func TestWhoIsTold(t *testing.T) {
	rc := newReceiver(t, nil)
	values := map[string]string{"hook": rc.URL + "/hook"}
	entries := []*playbooks.NotifyConfig{
		webhook("failures", "hook", "failure"),
		webhook("rollbacks", "hook", "rollback"),
		webhook("successes", "hook", "success"),
		{Name: "staging-only", On: []string{"failure"}, Webhook: "{{.Secrets.hook}}", Environments: []string{"staging"}},
		{Name: "local", On: []string{"failure"}, Webhook: rc.URL + "/literal", Environments: []string{"production"}},
	}
	n := New(entries, secretsOf(values))
	if errs := n.Fire(context.Background(), failedEvent()); len(errs) > 0 {
		t.Fatalf("Fire: %v", errs)
	}
	var types []string
	for _, r := range rc.got() {
		var b webhookBody
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		types = append(types, r.path+":"+b.Relctl.Type)
	}
	slices.Sort(types)
	if got, want := strings.Join(types, " "), "/hook:failure /hook:rollback /literal:failure"; got != want {
		t.Errorf("delivered %s, want %s", got, want)
	}
	if !n.Wants("success", "staging") || n.Wants("start", "production") {
		t.Error("Wants")
	}
}

// TestWebhookErrors: non-2xx, a timeout, a refused connection and a
// redirect elsewhere are each the entry's error, naming it, never holding
// the URL (a secret), and the response body is cut and masked.
func TestWebhookErrors(t *testing.T) {
	elsewhere := newReceiver(t, nil)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var hook string
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/s/500":
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "upstream said: your URL %s is wrong\nsecond line%s", hook, strings.Repeat("x", 500))
		case "/s/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/s/away":
			http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusTemporaryRedirect)
		case "/s/get":
			http.Redirect(w, r, "/s/ok", http.StatusFound)
		case "/s/same":
			http.Redirect(w, r, "/s/ok", http.StatusPermanentRedirect)
		}
	})
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/s/closed-token-Qw3"
	closed.Close()
	tests := []struct {
		path, want string
		timeout    time.Duration
	}{
		{path: "/s/500", want: "notify chat: HTTP 500: upstream said: your URL ******** is wrong"},
		{path: "/s/slow", timeout: 300 * time.Millisecond, want: "notify chat: no answer within 300ms"},
		{path: "/s/away", want: "notify chat: POST: HTTP 307 redirect to another host (********:" + portOf(elsewhere.URL) + "), not followed"},
		{path: "/s/get", want: "notify chat: POST: HTTP 302 redirect would turn the POST into a GET, not followed"},
		{path: "/s/same"},
		{path: "closed", want: "notify chat: POST: dial tcp ********: connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			hook = rc.URL + tt.path
			if tt.path == "closed" {
				hook = closedURL
			}
			c := webhook("chat", "hook", "failure")
			c.Timeout.Duration = tt.timeout
			n := New([]*playbooks.NotifyConfig{c}, secretsOf(map[string]string{"hook": hook}))
			start := time.Now()
			errs := n.Fire(context.Background(), failedEvent())
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Fire took %v", took)
			}
			if tt.want == "" {
				if len(errs) > 0 {
					t.Fatalf("Fire: %v", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			msg := errs[0].Error()
			if !strings.HasPrefix(msg, tt.want) {
				t.Errorf("error\n%s\nwant it to start with\n%s", msg, tt.want)
			}
			var ne *Error
			if !errors.As(errs[0], &ne) || ne.Name != "chat" {
				t.Errorf("error is not the entry's *Error: %#v", errs[0])
			}
			for _, secret := range []string{hook, strings.TrimPrefix(hook, "http://"), "closed-token-Qw3", tt.path + "\""} {
				if strings.Contains(msg, secret) {
					t.Errorf("the error holds the URL (%q): %s", secret, msg)
				}
			}
			if strings.Contains(msg, "second line") || len(msg) > 300 {
				t.Errorf("the body is not cut to its first line and %d bytes: %s", bodyShown, msg)
			}
		})
	}
	if got := elsewhere.got(); len(got) > 0 {
		t.Errorf("the redirect to another host was followed: %v", got)
	}
}

func portOf(u string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
	return port
}

// TestWebhookSecretProblems: an unresolvable secret or a URL that is not
// https is the entry's error, sent nowhere.
func TestWebhookSecretProblems(t *testing.T) {
	n := New([]*playbooks.NotifyConfig{webhook("a", "missing", "failure"), webhook("b", "plain", "failure")},
		secretsOf(map[string]string{"plain": "http://example.com/hook-secret-Zz9"}))
	errs := n.Fire(context.Background(), failedEvent())
	var msgs []string
	for _, err := range errs {
		msgs = append(msgs, err.Error())
	}
	slices.Sort(msgs)
	want := `notify a: secret "missing" is not defined` + "\n" + `notify b: the webhook is http:// to a host other than the loopback interface: use https://`
	if got := strings.Join(msgs, "\n"); got != want {
		t.Errorf("errors\n%s\nwant\n%s", got, want)
	}
}

// TestParallel: deliveries run at most DefaultParallel at once, and Fire
// waits for every one.
func TestParallel(t *testing.T) {
	var now, peak atomic.Int32
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(150 * time.Millisecond)
		now.Add(-1)
	})
	var entries []*playbooks.NotifyConfig
	for i := range 9 {
		entries = append(entries, webhook("e"+strconv.Itoa(i), "hook", "start"))
	}
	n := New(entries, secretsOf(map[string]string{"hook": rc.URL + "/x"}))
	if errs := n.Fire(context.Background(), Event{Type: "start", Result: ResultStarted, Env: "staging"}); len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := len(rc.got()); got != 9 {
		t.Errorf("%d delivered, want 9", got)
	}
	if p := peak.Load(); p > DefaultParallel || p < 2 {
		t.Errorf("at most %d at once, want 2..%d", p, DefaultParallel)
	}
}

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCommand: the program gets the event as JSON on stdin and its main
// fields in the environment, runs in Dir, without the variables secrets
// come from; a failure says how it exited and what it said last.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("NOTIFY_TEST_SECRET_VAR", "s3cret-value")
	t.Setenv("NOTIFY_TEST_KEPT", "kept")
	writeScript(t, dir, "page", `cat > stdin.json
env | grep -E '^(RELCTL_|NOTIFY_TEST_)' | sort > env.txt
echo "$@" > args.txt
`)
	writeScript(t, dir, "fail", "echo working; echo 'no route to pager' >&2; exit 3\n")
	entries := []*playbooks.NotifyConfig{
		{Name: "pager", On: []string{"failure"}, Command: []string{"./page", "--team", "search"}},
		{Name: "broken", On: []string{"failure"}, Command: []string{"./fail"}},
	}
	opts := secretsOf(nil)
	opts.Dir, opts.DropEnv = dir, []string{"NOTIFY_TEST_SECRET_VAR"}
	errs := New(entries, opts).Fire(context.Background(), failedEvent())
	if len(errs) != 1 || errs[0].Error() != "notify broken: ./fail: exit status 3: no route to pager" {
		t.Errorf("errors %v", errs)
	}
	var ev Event
	stdin, _ := os.ReadFile(filepath.Join(dir, "stdin.json"))
	if err := json.Unmarshal(stdin, &ev); err != nil || ev.Type != "failure" || ev.Run != "20260102T030405Z-abcd" || ev.Result != ResultRolledBack || *ev.ExitCode != 3 || ev.Schema != SchemaVersion || !strings.HasPrefix(ev.Summary, ":x: relctl deploy") {
		t.Errorf("stdin %s: %+v %v", stdin, ev, err)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "env.txt"))
	want := "NOTIFY_TEST_KEPT=kept\nRELCTL_ENV=production\nRELCTL_EVENT=failure\nRELCTL_RELEASE=9.4.1\nRELCTL_RESULT=rolled-back\nRELCTL_RUN=20260102T030405Z-abcd\n"
	if got := strings.ReplaceAll(string(env), "RELCTL_OPERATOR=tester\n", ""); got != want {
		t.Errorf("environment\n%s\nwant\n%s", env, want)
	}
	if args, _ := os.ReadFile(filepath.Join(dir, "args.txt")); string(args) != "--team search\n" {
		t.Errorf("args %q", args)
	}
}

// TestCommandTimeout: at its timeout the command's whole process group is
// killed (a child it started too), and Fire returns soon after.
func TestCommandTimeout(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "hang", "sleep 60 & echo $! > child.pid\nwait\n")
	c := &playbooks.NotifyConfig{Name: "pager", On: []string{"failure"}, Command: []string{"./hang"}}
	c.Timeout.Duration = 500 * time.Millisecond
	opts := secretsOf(nil)
	opts.Dir = dir
	start := time.Now()
	errs := New([]*playbooks.NotifyConfig{c}, opts).Fire(context.Background(), failedEvent())
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Fire took %v", took)
	}
	if len(errs) != 1 || errs[0].Error() != "notify pager: no answer within 500ms" {
		t.Fatalf("errors %v", errs)
	}
	b, err := os.ReadFile(filepath.Join(dir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(3 * time.Second)
	for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the command's child %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isZombie: the process has exited and waits for its parent to reap it.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

func TestText(t *testing.T) {
	tests := []struct {
		ev   Event
		want string
	}{
		{Event{Type: "start", Kind: "deploy", Project: "search", Release: "1.2.0", Env: "staging", Result: ResultStarted, Operator: "bob", Run: "r1",
			Hosts: map[string][]string{HostOK: {"staging-1", "staging-2"}}},
			":rocket: relctl deploy of search 1.2.0 to staging started by bob (run r1; staging-[1-2])"},
		{Event{Type: "failure", Kind: "deploy", Project: "search", Release: "1.2.0", Env: "staging", Result: ResultRollbackFailed, Run: "r1",
			Detail: "verify/health failed", Hosts: map[string][]string{HostUnresolved: {"staging-1"}, HostUnchanged: {"staging-2"}}},
			":rotating_light: relctl deploy of search 1.2.0 to staging FAILED and its rollback did not restore every host: verify/health failed; unresolved: staging-1 (run r1; staging-[1-2])"},
		{Event{Type: "rollback", Kind: "rollback", Project: "search", Release: "1.1.0", Env: "production", Result: ResultSucceeded},
			":rewind: relctl rollback of search in production to 1.1.0 succeeded"},
		{Event{Type: "gate-refused", Kind: "deploy", Project: "search", Release: "1.1.0", Env: "production", Result: ResultRefused, Detail: "no rehearsal record"},
			":no_entry: relctl deploy of search 1.1.0 to production was refused by the rehearsal gate: no rehearsal record"},
		{Event{Type: "rehearsal-recorded", Kind: "rehearse", Project: "search", Release: "1.1.0", Env: "staging", Result: ResultPassed},
			":white_check_mark: relctl rehearsal of search 1.1.0 in staging passed"},
	}
	for _, tt := range tests {
		if got := tt.ev.Text(); got != tt.want {
			t.Errorf("Text\n%s\nwant\n%s", got, tt.want)
		}
	}
	if got := OneLine("  first\tline \nsecond", 100); got != "first line" {
		t.Errorf("OneLine = %q", got)
	}
	if got := OneLine(strings.Repeat("é", 10), 5); got != "éé…" {
		t.Errorf("OneLine cut = %q", got)
	}
}
