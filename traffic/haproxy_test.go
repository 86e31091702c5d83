package traffic

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func appBackend() testBackend {
	return testBackend{name: "app", servers: []testServer{
		{name: "web-1", weight: 10},
		{name: "web-2", weight: 20},
		{name: "web_3.a:b", weight: 30}, // every character HAProxy allows besides letters and digits
	}}
}

func TestServersAndSetters(t *testing.T) {
	l := startHAProxy(t, appBackend())
	ctx := testCtx(t)

	servers, err := l.rt.Servers(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	want := []Server{
		{Backend: "app", Name: "web-1", Addr: "127.0.0.1", Port: l.addrs["web-1"].Port, Admin: AdminReady, Operational: 2, Weight: 10, Check: "no check"},
		{Backend: "app", Name: "web-2", Addr: "127.0.0.1", Port: l.addrs["web-2"].Port, Admin: AdminReady, Operational: 2, Weight: 20, Check: "no check"},
		{Backend: "app", Name: "web_3.a:b", Addr: "127.0.0.1", Port: l.addrs["web_3.a:b"].Port, Admin: AdminReady, Operational: 2, Weight: 30, Check: "no check"},
	}
	if len(servers) != len(want) {
		t.Fatalf("Servers = %+v, want %d servers", servers, len(want))
	}
	for i := range want {
		if servers[i] != want[i] {
			t.Errorf("server %d = %+v, want %+v", i, servers[i], want[i])
		}
	}

	steps := []struct {
		state     string
		wantAdmin string
		wantCheck string
	}{
		{AdminDrain, AdminDrain, "DRAIN"},
		{AdminMaint, AdminMaint, "MAINT"},
		{AdminReady, AdminReady, "no check"},
	}
	for _, st := range steps {
		if err := l.rt.SetAdmin(ctx, "app", "web-2", st.state); err != nil {
			t.Fatalf("SetAdmin %s: %v", st.state, err)
		}
		s, err := l.rt.Server(ctx, "app", "web-2")
		if err != nil {
			t.Fatal(err)
		}
		if s.Admin != st.wantAdmin || s.Check != st.wantCheck {
			t.Errorf("after SetAdmin(%s): admin %q check %q, want %q %q", st.state, s.Admin, s.Check, st.wantAdmin, st.wantCheck)
		}
	}

	if err := l.rt.SetWeight(ctx, "app", "web_3.a:b", 7); err != nil {
		t.Fatal(err)
	}
	s, err := l.rt.Server(ctx, "app", "web_3.a:b")
	if err != nil {
		t.Fatal(err)
	}
	if s.Weight != 7 {
		t.Errorf("after SetWeight(7): weight %d", s.Weight)
	}
	// The other servers are untouched.
	s, err = l.rt.Server(ctx, "app", "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if *s != want[0] {
		t.Errorf("web-1 = %+v, want %+v", *s, want[0])
	}
}

// heldRequest is a request through haproxy whose backend handler blocks
// until released, so its session stays open on the server.
type heldRequest struct {
	started chan struct{} // closed when the handler has the request
	release chan struct{} // close to let the handler answer
	once    sync.Once
	result  chan error // the client's outcome
}

func newHeldRequest() *heldRequest {
	return &heldRequest{started: make(chan struct{}), release: make(chan struct{}), result: make(chan error, 1)}
}

func (h *heldRequest) handler() http.Handler {
	var startOnce sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startOnce.Do(func() { close(h.started) })
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "done")
	})
}

func (h *heldRequest) releaseNow() { h.once.Do(func() { close(h.release) }) }

// send starts the request and waits until the backend server holds it.
func (h *heldRequest) send(t *testing.T, frontend string) {
	t.Helper()
	go func() {
		resp, err := http.Get("http://" + frontend + "/")
		if err != nil {
			h.result <- err
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && (resp.StatusCode != http.StatusOK || string(body) != "done") {
			err = errors.New("answer " + resp.Status + ": " + string(body))
		}
		h.result <- err
	}()
	select {
	case <-h.started:
	case err := <-h.result:
		t.Fatalf("request through haproxy: %v", err)
	case <-t.Context().Done():
		t.Fatal("the request never reached the backend server")
	}
}

func holdBackend(h *heldRequest) testBackend {
	return testBackend{name: "hold", servers: []testServer{{name: "hold-1", weight: 10, handler: h.handler()}}}
}

func TestDrainWaitsForSessions(t *testing.T) {
	held := newHeldRequest()
	l := startHAProxy(t, holdBackend(held))
	t.Cleanup(held.releaseNow) // runs before the backend server closes
	ctx := testCtx(t)
	held.send(t, l.frontends["hold"])

	// Release the request only once Drain has seen it open on the draining
	// server: Drain must then wait for it to finish.
	var sawDrainingSession bool
	l.conn.setAfterRun(func(command string, stdout []byte) {
		if !strings.HasPrefix(command, "show servers state hold") {
			return
		}
		_, stat, _ := strings.Cut(string(stdout), "\n\n")
		rows, _ := parseStat(stat)
		for _, r := range rows {
			if r.Server == "hold-1" && r.Status == "DRAIN" && r.Sessions == 1 {
				sawDrainingSession = true
				held.releaseNow()
			}
		}
	})

	if err := l.rt.Drain(ctx, "hold", "hold-1", time.Minute, 20*time.Millisecond); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	l.conn.setAfterRun(nil)
	if !sawDrainingSession {
		t.Error("Drain never saw the open session on the draining server")
	}
	if err := <-held.result; err != nil {
		t.Errorf("the request held during the drain failed: %v", err)
	}
	s, err := l.rt.Server(ctx, "hold", "hold-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Admin != AdminMaint || s.Sessions != 0 {
		t.Errorf("after Drain: admin %q, %d sessions; want maint, 0", s.Admin, s.Sessions)
	}
}

func TestDrainTimeoutStillSetsMaint(t *testing.T) {
	held := newHeldRequest()
	l := startHAProxy(t, holdBackend(held))
	t.Cleanup(held.releaseNow)
	ctx := testCtx(t)
	held.send(t, l.frontends["hold"])

	err := l.rt.Drain(ctx, "hold", "hold-1", 200*time.Millisecond, 20*time.Millisecond)
	var timeout *DrainTimeoutError
	if !errors.As(err, &timeout) {
		t.Fatalf("Drain = %v, want a *DrainTimeoutError", err)
	}
	if timeout.Sessions != 1 {
		t.Errorf("sessions left = %d, want 1", timeout.Sessions)
	}
	for _, part := range []string{"hold/hold-1", "1 session left", "set to maint anyway"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	s, err := l.rt.Server(ctx, "hold", "hold-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Admin != AdminMaint || s.Check != "MAINT" {
		t.Errorf("after the timed-out drain: admin %q check %q, want maint MAINT", s.Admin, s.Check)
	}
	// The open session was not cut: it still finishes.
	held.releaseNow()
	if err := <-held.result; err != nil {
		t.Errorf("the request held during the drain failed: %v", err)
	}
}

// stateLines is the raw `show servers state` of backend, one line per
// server, cut to the columns that say where the server is and what traffic
// it takes. The rest are clocks and health-check counters HAProxy keeps for
// itself (maint resets srv_check_health even of a server without checks).
func stateLines(t *testing.T, l *lb, backend string) map[string]string {
	t.Helper()
	answer, err := l.rt.send(testCtx(t), "show servers state "+backend, true)
	if err != nil {
		t.Fatal(err)
	}
	lines := nonEmptyLines(answer)
	if len(lines) < 2 {
		t.Fatalf("show servers state %s: %q", backend, answer)
	}
	keep := []string{"be_id", "be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state",
		"srv_uweight", "srv_iweight", "srv_fqdn", "srv_port", "srv_use_ssl"}
	cols, err := columns(strings.Fields(strings.TrimPrefix(lines[1], "# ")), keep...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		var kept []string
		for _, c := range keep {
			kept = append(kept, c+"="+f[cols.index[c]])
		}
		out[f[cols.index["srv_name"]]] = strings.Join(kept, " ")
	}
	return out
}

func TestRestoreGivesBackTheSavedState(t *testing.T) {
	l := startHAProxy(t, testBackend{name: "app", servers: []testServer{
		{name: "web-1", weight: 10},
		{name: "web-2", weight: 20},
		{name: "web-3", weight: 30},
		{name: "web-4", weight: 40, disabled: true},
		{name: "web-5", weight: 50},
	}})
	ctx := testCtx(t)
	// Saved states other than ready: web-3 drained by hand with its weight
	// lowered, web-4 `disabled` in the configuration (CMAINT|FMAINT), web-5
	// drained then put in maint (as Drain leaves a server).
	if err := l.rt.SetAdmin(ctx, "app", "web-3", AdminDrain); err != nil {
		t.Fatal(err)
	}
	if err := l.rt.SetWeight(ctx, "app", "web-3", 5); err != nil {
		t.Fatal(err)
	}
	if err := l.rt.Drain(ctx, "app", "web-5", time.Minute, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	saved, err := l.rt.Servers(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	savedLines := stateLines(t, l, "app")
	wantAdmin := map[string]string{"web-1": AdminReady, "web-2": AdminReady, "web-3": AdminDrain, "web-4": AdminMaint, "web-5": AdminMaint}
	for _, s := range saved {
		if s.Admin != wantAdmin[s.Name] {
			t.Fatalf("saved %s: admin %q, want %q", s.Name, s.Admin, wantAdmin[s.Name])
		}
	}

	// What a deploy and its failure might leave behind.
	changes := []struct {
		name string
		do   func() error
	}{
		{"drain web-1", func() error { return l.rt.Drain(ctx, "app", "web-1", time.Minute, 20*time.Millisecond) }},
		{"maint web-2", func() error { return l.rt.SetAdmin(ctx, "app", "web-2", AdminMaint) }},
		{"weight web-2", func() error { return l.rt.SetWeight(ctx, "app", "web-2", 3) }},
		{"ready web-3", func() error { return l.rt.Ready(ctx, "app", "web-3", 33) }},
		{"ready web-4", func() error { return l.rt.Ready(ctx, "app", "web-4", 44) }},
		{"ready web-5", func() error { return l.rt.Ready(ctx, "app", "web-5", 1) }},
	}
	for _, c := range changes {
		if err := c.do(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	changed, err := l.rt.Servers(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	for i := range changed {
		if changed[i] == saved[i] {
			t.Fatalf("%s unchanged before the restore: the test proves nothing", changed[i].Name)
		}
	}

	for _, s := range saved {
		if err := l.rt.Restore(ctx, s); err != nil {
			t.Fatalf("Restore %s: %v", s.Name, err)
		}
	}
	restored, err := l.rt.Servers(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	for i := range saved {
		if restored[i] != saved[i] {
			t.Errorf("restored %+v\n want    %+v", restored[i], saved[i])
		}
	}
	for name, line := range stateLines(t, l, "app") {
		if line != savedLines[name] {
			t.Errorf("show servers state, %s:\n got  %s\n want %s", name, line, savedLines[name])
		}
	}

	// A second Restore changes nothing and sends no state or weight command.
	before := len(l.conn.sent())
	if err := l.rt.Restore(ctx, saved[0]); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range l.conn.sent()[before:] {
		if strings.HasPrefix(cmd, "set ") {
			t.Errorf("Restore of an unchanged server sent %q", cmd)
		}
	}
}

func TestRestoreSetsWeightBeforeReady(t *testing.T) {
	l := startHAProxy(t, appBackend())
	ctx := testCtx(t)
	saved, err := l.rt.Server(ctx, "app", "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.rt.Drain(ctx, "app", "web-1", time.Minute, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := l.rt.SetWeight(ctx, "app", "web-1", 1); err != nil {
		t.Fatal(err)
	}
	before := len(l.conn.sent())
	if err := l.rt.Restore(ctx, *saved); err != nil {
		t.Fatal(err)
	}
	var sets []string
	for _, cmd := range l.conn.sent()[before:] {
		if strings.HasPrefix(cmd, "set ") {
			sets = append(sets, cmd)
		}
	}
	want := []string{"set weight app/web-1 10", "set server app/web-1 state ready"}
	if strings.Join(sets, "\n") != strings.Join(want, "\n") {
		t.Errorf("Restore sent %q, want %q", sets, want)
	}
}

func TestErrorAnswersAreErrors(t *testing.T) {
	l := startHAProxy(t, appBackend())
	ctx := testCtx(t)

	unknownServer := []struct {
		name string
		call func() error
	}{
		{"SetAdmin", func() error { return l.rt.SetAdmin(ctx, "app", "nope", AdminDrain) }},
		{"SetWeight", func() error { return l.rt.SetWeight(ctx, "app", "nope", 5) }},
		{"Ready", func() error { return l.rt.Ready(ctx, "app", "nope", 5) }},
		{"Server", func() error { _, err := l.rt.Server(ctx, "app", "nope"); return err }},
		{"Drain", func() error { return l.rt.Drain(ctx, "app", "nope", time.Second, time.Millisecond) }},
		{"Restore", func() error {
			return l.rt.Restore(ctx, Server{Backend: "app", Name: "nope", Admin: AdminReady, Weight: 1})
		}},
	}
	for _, c := range unknownServer {
		err := c.call()
		if !errors.Is(err, ErrUnknownServer) || !strings.Contains(err.Error(), "app/nope") {
			t.Errorf("%s of an unknown server: %v; want ErrUnknownServer naming app/nope", c.name, err)
		}
	}
	err := l.rt.SetAdmin(ctx, "app", "nope", AdminDrain)
	if !strings.Contains(err.Error(), "No such server.") {
		t.Errorf("error %q does not quote HAProxy's answer", err)
	}

	unknownBackend := []struct {
		name string
		call func() error
	}{
		{"Servers", func() error { _, err := l.rt.Servers(ctx, "nob"); return err }},
		{"SetAdmin", func() error { return l.rt.SetAdmin(ctx, "nob", "web-1", AdminMaint) }},
		{"SetWeight", func() error { return l.rt.SetWeight(ctx, "nob", "web-1", 5) }},
	}
	for _, c := range unknownBackend {
		err := c.call()
		if !errors.Is(err, ErrUnknownBackend) || !strings.Contains(err.Error(), "nob") {
			t.Errorf("%s of an unknown backend: %v; want ErrUnknownBackend naming nob", c.name, err)
		}
	}

	// HAProxy's own range check answers in the body too; relctl checks
	// first, so reach it through the raw command.
	if err := l.rt.set(ctx, "app", "web-1", "set weight app/web-1 300"); err == nil || !strings.Contains(err.Error(), "between 0 and 256") {
		t.Errorf("set weight 300 = %v, want HAProxy's refusal", err)
	}
	if err := l.rt.set(ctx, "app", "", "no such command"); err == nil || !strings.Contains(err.Error(), "Unknown command") {
		t.Errorf("unknown command = %v, want HAProxy's refusal", err)
	}
}

func TestRefusedBeforeSending(t *testing.T) {
	l := startHAProxy(t, appBackend())
	ctx := testCtx(t)
	bad := []string{"", "web 1", "web'1", `web"1`, "a;b", "a/b", "$(id)", "web-1\nshow info", "wéb"}
	for _, name := range bad {
		calls := map[string]error{
			"SetAdmin server":  l.rt.SetAdmin(ctx, "app", name, AdminDrain),
			"SetAdmin backend": l.rt.SetAdmin(ctx, name, "web-1", AdminDrain),
			"SetWeight":        l.rt.SetWeight(ctx, "app", name, 1),
			"Ready":            l.rt.Ready(ctx, name, "web-1", 1),
			"Drain":            l.rt.Drain(ctx, "app", name, time.Second, time.Millisecond),
			"Restore":          l.rt.Restore(ctx, Server{Backend: "app", Name: name, Weight: 1}),
		}
		_, err := l.rt.Servers(ctx, name)
		calls["Servers"] = err
		_, err = l.rt.Server(ctx, "app", name)
		calls["Server"] = err
		for call, err := range calls {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("%s(%q) = %v, want ErrInvalidName", call, name, err)
			}
		}
	}
	others := map[string]error{
		"unknown state":    l.rt.SetAdmin(ctx, "app", "web-1", "up"),
		"weight 257":       l.rt.SetWeight(ctx, "app", "web-1", 257),
		"weight -1":        l.rt.SetWeight(ctx, "app", "web-1", -1),
		"ready weight 0":   l.rt.Ready(ctx, "app", "web-1", 0),
		"saved weight 300": l.rt.Restore(ctx, Server{Backend: "app", Name: "web-1", Admin: AdminReady, Weight: 300}),
	}
	for call, err := range others {
		if err == nil {
			t.Errorf("%s: no error", call)
		}
	}
	for _, sock := range []string{"relative.sock", "/tmp/a b.sock", "/tmp/a,b.sock", "/tmp/a:b", "/tmp/'x"} {
		rt := &Runtime{Conn: l.conn, Host: l.rt.Host, Socket: sock}
		if _, err := rt.Servers(ctx, "app"); err == nil || !strings.Contains(err.Error(), "socket") {
			t.Errorf("socket %q: %v, want a refusal naming the socket", sock, err)
		}
	}
	if sent := l.conn.sent(); len(sent) > 0 {
		t.Errorf("commands reached the host: %q", sent)
	}
}

func TestSocketAndSocatProblems(t *testing.T) {
	l := startHAProxy(t, appBackend())
	ctx := testCtx(t)

	missing := filepath.Join(filepath.Dir(l.socket), "missing.sock")
	rt := &Runtime{Conn: l.conn, Host: l.rt.Host, Socket: missing}
	_, err := rt.Servers(ctx, "app")
	if !errors.Is(err, ErrSocketUnreachable) {
		t.Fatalf("Servers on a missing socket = %v, want ErrSocketUnreachable", err)
	}
	for _, part := range []string{l.rt.Host, missing, "No such file or directory"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}

	rt = &Runtime{Conn: l.conn, Host: l.rt.Host, Socket: l.socket, Socat: "/nonexistent/socat"}
	err = rt.SetAdmin(ctx, "app", "web-1", AdminDrain)
	if !errors.Is(err, ErrSocatMissing) {
		t.Fatalf("SetAdmin without socat = %v, want ErrSocatMissing", err)
	}
	want := "socat not found on " + l.rt.Host
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "apt-get install socat") {
		t.Errorf("error %q, want it to start with %q and say apt-get install socat", err, want)
	}
}

func TestDrainInterrupted(t *testing.T) {
	held := newHeldRequest()
	l := startHAProxy(t, holdBackend(held))
	t.Cleanup(held.releaseNow)
	held.send(t, l.frontends["hold"])

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	// Cancel once Drain has seen the session on the draining server.
	l.conn.setAfterRun(func(command string, stdout []byte) {
		_, stat, _ := strings.Cut(string(stdout), "\n\n")
		rows, _ := parseStat(stat)
		for _, r := range rows {
			if r.Status == "DRAIN" && r.Sessions == 1 {
				cancel()
			}
		}
	})
	err := l.rt.Drain(ctx, "hold", "hold-1", time.Hour, 20*time.Millisecond)
	l.conn.setAfterRun(nil)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "left in drain") {
		t.Fatalf("interrupted Drain = %v, want context.Canceled saying the server is left in drain", err)
	}
	s, err := l.rt.Server(testCtx(t), "hold", "hold-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Admin != AdminDrain {
		t.Errorf("after the interrupted drain: admin %q, want drain", s.Admin)
	}
}
