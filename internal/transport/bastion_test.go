package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/relctl/relctl/internal/sshdtest"
)

// bastionFixture is hosts that only a bastion reaches: every sshd runs in
// a network namespace of its own (listening on the namespace's
// 127.0.0.1), and the bastion's port is relayed to the test's 127.0.0.1,
// as a bastion's public side. Bastions log at DEBUG1 (logins, forwards).
type bastionFixture struct {
	dir        string
	key        string
	knownHosts string
	user       string
	ns         *sshdtest.NetNS
	hosts      []*sshdtest.Server
	bastions   []*sshdtest.Server // in the namespace, bastions[0] relayed
	relay      *sshdtest.Relay
	runLog     string
}

func newBastionFixture(t *testing.T, nHosts, nBastions int) *bastionFixture {
	t.Helper()
	return newBastionFixtureWith(t, nHosts, nBastions, sshdtest.Options{})
}

// newBastionFixtureWith is newBastionFixture with the hosts' sshd options
// (in the namespace whatever they say).
func newBastionFixtureWith(t *testing.T, nHosts, nBastions int, hostOpts sshdtest.Options) *bastionFixture {
	t.Helper()
	ns := sshdtest.NewNetNS(t)
	dir := t.TempDir()
	key, pub := sshdtest.NewClientKey(t, dir)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	f := &bastionFixture{dir: dir, key: key, knownHosts: filepath.Join(dir, "known_hosts"), user: u.Username, ns: ns,
		runLog: filepath.Join(dir, "run.log")}
	hostOpts.NetNS = ns
	f.hosts = sshdtest.StartWith(t, nHosts, pub, hostOpts)
	f.bastions = sshdtest.StartWith(t, nBastions, pub, sshdtest.Options{NetNS: ns, LogLevel: "DEBUG1"})
	f.relay = sshdtest.NewRelay(t, ns, f.bastions[0].Addr)
	// Every host's and bastion's key, under the address relctl dials it at.
	var b strings.Builder
	line := func(addr string, s *sshdtest.Server) {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(addr)}, s.HostPubKey) + "\n")
	}
	for _, h := range f.hosts {
		line(h.Addr, h)
	}
	line(f.relay.Addr, f.bastions[0])
	for _, s := range f.bastions[1:] {
		line(s.Addr, s)
	}
	if err := os.WriteFile(f.knownHosts, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *bastionFixture) pool(t *testing.T, knownHosts string) *Pool {
	t.Helper()
	log, err := OpenRunLog(f.runLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	p, err := NewPool(Options{User: f.user, IdentityFile: f.key, KnownHostsFile: knownHosts,
		HostKeyPolicy: PolicyStrict, ConnectTimeout: 30 * time.Second, Output: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// bastionJump is the relayed bastion, as relctl dials it.
func (f *bastionFixture) bastionJump() Endpoint { return Endpoint{User: f.user, Address: f.relay.Addr} }

// bastionKey is the relayed bastion's name without "bastion ".
func (f *bastionFixture) bastionKey() string { return f.user + "@" + f.relay.Addr }

// getAll connects to every host at once (the bastion's dial is shared)
// and checks that each command runs on its own host: a session's HOME is
// the host's own directory.
func (f *bastionFixture) getAll(t *testing.T, p *Pool, jumps ...Endpoint) []Conn {
	t.Helper()
	ctx := testContext(t)
	conns := make([]Conn, len(f.hosts))
	var wg sync.WaitGroup
	for i, h := range f.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Get(ctx, Target{Name: h.Name, Endpoint: Endpoint{Address: h.Addr}, Jumps: jumps})
			if err != nil {
				t.Errorf("Get %s through %v: %v", h.Name, jumps, err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, c := range conns {
		res, err := c.Run(ctx, `printf %s "$HOME"`, RunOptions{Label: "where"})
		if err != nil {
			t.Fatalf("%s: Run: %v", c.Host(), err)
		}
		if got := string(res.Stdout); got != f.hosts[i].Home {
			t.Fatalf("%s: the command ran where HOME=%s, want %s", c.Host(), got, f.hosts[i].Home)
		}
	}
	return conns
}

// count is how many lines of log match re.
func count(log, re string) int {
	return len(regexp.MustCompile(re).FindAllString(log, -1))
}

// forwardRE matches the line a bastion's log (LogLevel DEBUG1: VERBOSE
// logs logins but no forwards in OpenSSH 9.2) writes for a direct-tcpip
// forward to addr.
func forwardRE(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return `(?m)^.*server_request_direct_tcpip: originator .* target ` + regexp.QuoteMeta(host) + ` port ` + port + `\b`
}

func TestBastionCarriesEveryHostOnOneLogin(t *testing.T) {
	f := newBastionFixture(t, 3, 1)
	ctx := testContext(t)

	// The hosts cannot be dialled from here: not by TCP, not by the pool.
	for _, h := range f.hosts {
		if c, err := net.DialTimeout("tcp", h.Addr, 2*time.Second); err == nil {
			c.Close()
			t.Fatalf("%s (%s) is reachable directly: the namespace does not isolate it", h.Name, h.Addr)
		}
	}
	direct := f.pool(t, f.knownHosts)
	_, err := direct.Get(ctx, Target{Name: f.hosts[0].Name, Endpoint: Endpoint{Address: f.hosts[0].Addr}})
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Get without the bastion: %v, want a DialError (connection refused)", err)
	}

	p := f.pool(t, f.knownHosts)
	f.getAll(t, p, f.bastionJump())
	bastion := bastionName(f.bastionKey())
	want := map[string]int{bastion: 1}
	for _, h := range f.hosts {
		want[h.Name] = 1
	}
	if got := p.Handshakes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Handshakes() = %v, want %v", got, want)
	}

	blog := f.bastions[0].Log(t)
	if n := count(blog, `Accepted publickey for `); n != 1 {
		t.Errorf("the bastion logged %d logins, want 1:\n%s", n, blog)
	}
	var forwards []string
	for _, h := range f.hosts {
		if n := count(blog, forwardRE(h.Addr)); n != 1 {
			t.Errorf("the bastion's log shows %d forwards to %s (%s), want 1:\n%s", n, h.Name, h.Addr, blog)
		}
		forwards = append(forwards, regexp.MustCompile(forwardRE(h.Addr)).FindString(blog))
	}
	runLog, err := os.ReadFile(f.runLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(string(runLog), `ssh: connected to `+regexp.QuoteMeta(bastion)+` \(handshake 1 with this bastion`); n != 1 {
		t.Errorf("run log: %d bastion connections, want 1:\n%s", n, runLog)
	}
	for _, h := range f.hosts {
		re := `(?m)^\S+ ` + h.Name + ` ssh: connected \(handshake 1 with this host in this command\) through ` + regexp.QuoteMeta(bastion) + `$`
		if count(string(runLog), re) != 1 {
			t.Errorf("run log: no connection line for %s through the bastion:\n%s", h.Name, runLog)
		}
	}
	t.Logf("the bastion's forwards:\n%s", strings.Join(forwards, "\n"))
}

// bastionConn is the pool's one connection to the bastion named
// bastionName(key).
func bastionConn(t *testing.T, p *Pool, key string) *sshConn {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var found []*sshConn
	for k, c := range p.conns {
		if strings.HasPrefix(k, "\x00") && c.host == bastionName(key) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the pool has %d connections to %s, want 1", len(found), bastionName(key))
	}
	return found[0]
}

func TestBastionLostFailsItsHostsAndIsDialledAgain(t *testing.T) {
	f := newBastionFixture(t, 3, 1)
	ctx := testContext(t)
	p := f.pool(t, f.knownHosts)
	conns := f.getAll(t, p, f.bastionJump())
	b := bastionConn(t, p, f.bastionKey())

	// A command running when the bastion's connection dies.
	running := make(chan error, 1)
	go func() {
		_, err := conns[0].Run(ctx, "echo started; sleep 60", RunOptions{Label: "long"})
		running <- err
	}()
	waitFor(t, "the long command to start", func() bool {
		log, _ := os.ReadFile(f.runLog)
		return strings.Contains(string(log), "[long] out| started")
	})

	if n := f.bastions[0].KillConnections(t); n == 0 {
		t.Fatal("the bastion sshd had no connection process to kill")
	}
	select {
	case <-b.gone:
	case <-time.After(30 * time.Second):
		t.Fatal("the bastion's connection was not seen to end")
	}
	if err := <-running; !errors.Is(err, ErrConnectionLost) || !strings.Contains(err.Error(), bastionName(f.bastionKey())) {
		t.Errorf("the running command: %v, want ErrConnectionLost naming the bastion", err)
	}
	for _, c := range conns {
		_, err := c.Run(ctx, "true", RunOptions{Label: "after"})
		if !errors.Is(err, ErrConnectionLost) {
			t.Errorf("%s: Run after the bastion was lost: %v, want ErrConnectionLost", c.Host(), err)
		}
		t.Logf("%s: %v", c.Host(), err)
	}

	// While the bastion is down its hosts are unreachable (a DialError,
	// which the rollback's backoff retries), and Get tries it again.
	f.relay.SetDown(true)
	for _, h := range f.hosts[:2] {
		_, err := p.Get(ctx, Target{Name: h.Name, Endpoint: Endpoint{Address: h.Addr}, Jumps: []Endpoint{f.bastionJump()}})
		var de *DialError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), h.Name) {
			t.Errorf("%s: Get while the bastion is down: %v, want a DialError naming the host", h.Name, err)
		}
		t.Logf("bastion down: %v", err)
	}
	f.relay.SetDown(false)

	// The next Get dials the bastion again, once for all hosts.
	f.getAll(t, p, f.bastionJump())
	bastion := bastionName(f.bastionKey())
	want := map[string]int{bastion: 2}
	for _, h := range f.hosts {
		want[h.Name] = 2
	}
	if got := p.Handshakes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Handshakes() = %v, want %v", got, want)
	}
	if n := count(f.bastions[0].Log(t), `Accepted publickey for `); n != 2 {
		t.Errorf("the bastion logged %d logins, want 2 (one per connection)", n)
	}
	runLog, _ := os.ReadFile(f.runLog)
	if !strings.Contains(string(runLog), "ssh: connected to "+bastion+" (handshake 2 with this bastion in this command)") {
		t.Errorf("run log: no second bastion connection:\n%s", runLog)
	}
}

func TestBastionHostKeyIsVerified(t *testing.T) {
	f := newBastionFixture(t, 1, 1)
	ctx := testContext(t)
	// Known hosts that know the host, but not the bastion.
	noBastion := filepath.Join(f.dir, "known_hosts_without_bastion")
	sshdtest.WriteKnownHosts(t, noBastion, f.hosts)
	p := f.pool(t, noBastion)
	_, err := p.Get(ctx, Target{Name: f.hosts[0].Name, Endpoint: Endpoint{Address: f.hosts[0].Addr}, Jumps: []Endpoint{f.bastionJump()}})
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown || hke.Host != bastionName(f.bastionKey()) || hke.Address != f.relay.Addr {
		t.Fatalf("Get through an unknown bastion: %v, want a HostKeyError (unknown) for %s", err, bastionName(f.bastionKey()))
	}
	var de *DialError
	if errors.As(err, &de) {
		t.Errorf("a refused host key is not a DialError (the host is not merely unreachable): %v", err)
	}
	for _, want := range []string{f.hosts[0].Name, bastionName(f.bastionKey()), knownhosts.Normalize(f.relay.Addr)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	if n := count(f.bastions[0].Log(t), `Accepted publickey for `); n != 0 {
		t.Errorf("relctl logged in to a bastion whose key it did not know")
	}
	t.Log(err)
}

func TestBastionChain(t *testing.T) {
	f := newBastionFixture(t, 2, 2)
	second := f.user + "@" + f.bastions[1].Addr
	p := f.pool(t, f.knownHosts)
	f.getAll(t, p, f.bastionJump(), Endpoint{User: f.user, Address: f.bastions[1].Addr})

	first, chained := bastionName(f.bastionKey()), bastionName(f.bastionKey()+">"+second)
	want := map[string]int{first: 1, chained: 1}
	for _, h := range f.hosts {
		want[h.Name] = 1
	}
	if got := p.Handshakes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Handshakes() = %v, want %v", got, want)
	}
	log0, log1 := f.bastions[0].Log(t), f.bastions[1].Log(t)
	for i, log := range []string{log0, log1} {
		if n := count(log, `Accepted publickey for `); n != 1 {
			t.Errorf("bastion %d logged %d logins, want 1", i+1, n)
		}
	}
	if n := count(log0, forwardRE(f.bastions[1].Addr)); n != 1 {
		t.Errorf("the first bastion forwarded %d times to the second, want 1:\n%s", n, log0)
	}
	for _, h := range f.hosts {
		if n := count(log1, forwardRE(h.Addr)); n != 1 {
			t.Errorf("the second bastion forwarded %d times to %s, want 1", n, h.Name)
		}
		if n := count(log0, forwardRE(h.Addr)); n != 0 {
			t.Errorf("the first bastion forwarded to %s itself", h.Name)
		}
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
