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
	ns := sshdtest.NewNetNS(t)
	dir := t.TempDir()
	key, pub := sshdtest.NewClientKey(t, dir)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	f := &bastionFixture{dir: dir, key: key, knownHosts: filepath.Join(dir, "known_hosts"), user: u.Username, ns: ns,
		runLog: filepath.Join(dir, "run.log")}
	f.hosts = sshdtest.StartWith(t, nHosts, pub, sshdtest.Options{NetNS: ns})
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

// bastionJump is the ProxyJump of the relayed bastion, as relctl dials it.
func (f *bastionFixture) bastionJump() string { return f.user + "@" + f.relay.Addr }

// getAll connects to every host at once (the bastion's dial is shared)
// and checks that each command runs on its own host: a session's HOME is
// the host's own directory.
func (f *bastionFixture) getAll(t *testing.T, p *Pool, jump string) []Conn {
	t.Helper()
	ctx := testContext(t)
	conns := make([]Conn, len(f.hosts))
	var wg sync.WaitGroup
	for i, h := range f.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Get(ctx, Target{Name: h.Name, Address: h.Addr, ProxyJump: jump})
			if err != nil {
				t.Errorf("Get %s through %s: %v", h.Name, jump, err)
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
	_, err := direct.Get(ctx, Target{Name: f.hosts[0].Name, Address: f.hosts[0].Addr})
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Get without the bastion: %v, want a DialError (connection refused)", err)
	}

	p := f.pool(t, f.knownHosts)
	f.getAll(t, p, f.bastionJump())
	bastion := bastionName(f.bastionJump())
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
