package transport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/relctl/relctl/internal/sshdtest"
)

// A bastion logs in with its own identity and is checked against its own
// known_hosts file, neither of them the host's nor the pool's.
func TestBastionPerHopSettings(t *testing.T) {
	ns := sshdtest.NewNetNS(t)
	hostKey, hostPub := newKey(t)
	bastionKey, bastionPub := newKey(t)
	host := sshdtest.StartWith(t, 1, hostPub, sshdtest.Options{NetNS: ns})[0]
	bastion := sshdtest.StartWith(t, 1, bastionPub, sshdtest.Options{NetNS: ns, LogLevel: "DEBUG1"})[0]
	relay := sshdtest.NewRelay(t, ns, bastion.Addr)
	dir := t.TempDir()
	hostKH, bastionKH := filepath.Join(dir, "hosts_known"), filepath.Join(dir, "bastions_known")
	sshdtest.WriteKnownHosts(t, hostKH, []*sshdtest.Server{host})
	if err := os.WriteFile(bastionKH, []byte(knownhosts.Line([]string{knownhosts.Normalize(relay.Addr)}, bastion.HostPubKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	user := localUser(t)
	// The pool's defaults know neither server and hold no key.
	p := newTestPool(t, Options{User: user, KnownHostsFile: filepath.Join(dir, "empty"), ConnectTimeout: 30 * time.Second})
	ctx := testContext(t)
	jump := Endpoint{Address: relay.Addr, IdentityFiles: []string{bastionKey}, KnownHostsFiles: []string{bastionKH}}
	hostEP := Endpoint{Address: host.Addr, IdentityFiles: []string{hostKey}, KnownHostsFiles: []string{hostKH}}
	bastion1 := bastionName(user + "@" + relay.Addr)

	c, err := p.Get(ctx, Target{Name: "web-1", Endpoint: hostEP, Jumps: []Endpoint{jump}})
	if err != nil {
		t.Fatalf("Get through a bastion with its own identity and known_hosts: %v", err)
	}
	runsAt(t, c, host)

	// The bastion checked against the host's file: its key is unknown there.
	swapped := jump
	swapped.KnownHostsFiles = []string{hostKH}
	_, err = p.Get(ctx, Target{Name: "web-2", Endpoint: hostEP, Jumps: []Endpoint{swapped}})
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Host != bastion1 || hke.Kind != HostKeyUnknown || hke.KnownHostsFile != hostKH {
		t.Errorf("Get through a bastion checked against the host's known_hosts: %v, want an unknown key of %s", err, bastion1)
	}
	// The host with the bastion's key: the host refuses it (the bastion,
	// the same login as web-1's, is not dialled again).
	wrongKey := hostEP
	wrongKey.IdentityFiles = []string{bastionKey}
	_, err = p.Get(ctx, Target{Name: "web-3", Endpoint: wrongKey, Jumps: []Endpoint{jump}})
	var de *DialError
	if !errors.As(err, &de) || de.Host != "web-3" || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("Get of a host with the bastion's key: %v, want a DialError for web-3 (unable to authenticate)", err)
	}
	// The bastion with its own timeout, which is not the host's.
	timed := jump
	timed.ConnectTimeout = 20 * time.Second
	if _, err := p.Get(ctx, Target{Name: "web-4", Endpoint: hostEP, Jumps: []Endpoint{timed}}); err != nil {
		t.Fatalf("Get through the bastion with its own ConnectTimeout: %v", err)
	}
	want := map[string]int{"web-1": 1, "web-4": 1, bastion1: 2}
	if got := p.Handshakes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Handshakes() = %v, want %v (a second bastion login for the other timeout)", got, want)
	}
	if n := count(bastion.Log(t), `Accepted publickey for `); n != 2 {
		t.Errorf("the bastion logged %d logins, want 2", n)
	}
}

// Hosts behind one bastion share its connection when they log in to it
// the same way; another identity for it is another connection.
func TestBastionSharedBySameLogin(t *testing.T) {
	f := newBastionFixture(t, 2, 1)
	otherKey, otherPub := newKey(t)
	f.bastions[0].AuthorizeKey(t, otherPub)
	p := f.pool(t, f.knownHosts)
	ctx := testContext(t)
	bastion := bastionName(f.bastionKey())
	// The pool's default identity, given or left to the default.
	explicit := f.bastionJump()
	explicit.IdentityFiles = []string{f.key}
	other := f.bastionJump()
	other.IdentityFiles = []string{otherKey}

	get := func(name string, h *sshdtest.Server, jump Endpoint) {
		t.Helper()
		c, err := p.Get(ctx, Target{Name: name, Endpoint: Endpoint{Address: h.Addr}, Jumps: []Endpoint{jump}})
		if err != nil {
			t.Fatalf("Get %s: %v", name, err)
		}
		runsAt(t, c, h)
	}
	get("a-1", f.hosts[0], f.bastionJump())
	get("a-2", f.hosts[1], explicit)
	if got := p.Handshakes()[bastion]; got != 1 {
		t.Errorf("%d handshakes with %s for two hosts behind it with the same login, want 1", got, bastion)
	}
	get("b-1", f.hosts[0], other)
	get("b-2", f.hosts[1], other)
	want := map[string]int{"a-1": 1, "a-2": 1, "b-1": 1, "b-2": 1, bastion: 2}
	if got := p.Handshakes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Handshakes() = %v, want %v", got, want)
	}
	blog := f.bastions[0].Log(t)
	for _, pub := range []ssh.PublicKey{mustPub(t, f.key), otherPub} {
		if n := count(blog, `Accepted publickey for .* `+regexp.QuoteMeta(ssh.FingerprintSHA256(pub))); n != 1 {
			t.Errorf("the bastion logged %d logins with %s, want 1:\n%s", n, ssh.FingerprintSHA256(pub), blog)
		}
	}
	p.mu.Lock()
	nBastions := 0
	for k := range p.conns {
		if strings.HasPrefix(k, "\x00") {
			nBastions++
		}
	}
	p.mu.Unlock()
	if nBastions != 2 {
		t.Errorf("the pool holds %d bastion connections, want 2", nBastions)
	}
}

// ForwardAgent: the host's sessions reach the local agent; a host
// without it, and the bastion, never do.
func TestForwardAgent(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ssh-agent"); err != nil {
		t.Skip("ssh-agent not installed (apt-get install -y openssh-client)")
	}
	f := newBastionFixtureWith(t, 3, 1, sshdtest.Options{LogLevel: "DEBUG1"})
	refusing := sshdtest.StartWith(t, 1, mustPub(t, f.key), sshdtest.Options{NetNS: f.ns, Config: []string{"AllowAgentForwarding no"}})[0]
	sshdtest.WriteKnownHosts(t, filepath.Join(f.dir, "refusing_known"), []*sshdtest.Server{refusing})
	agentKey, agentPub := newKey(t)
	t.Setenv("SSH_AUTH_SOCK", startAgent(t))
	if out, err := runLocal("ssh-add", agentKey); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	p := f.pool(t, f.knownHosts)
	ctx := testContext(t)
	jumps := []Endpoint{f.bastionJump()}
	fp := ssh.FingerprintSHA256(agentPub)

	fwd, err := p.Get(ctx, Target{Name: "fwd", Endpoint: Endpoint{Address: f.hosts[0].Addr}, Jumps: jumps, ForwardAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // every session is offered the agent
		res, err := fwd.Run(ctx, "ssh-add -l", RunOptions{Label: "agent"})
		if err != nil || !strings.Contains(string(res.Stdout), fp) {
			t.Fatalf("ssh-add -l #%d on a host with ForwardAgent: %+v, %v; want the agent's key %s", i+1, res, err, fp)
		}
	}
	// A second host behind the same bastion too.
	second, err := p.Get(ctx, Target{Name: "fwd-2", Endpoint: Endpoint{Address: f.hosts[1].Addr}, Jumps: jumps, ForwardAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := second.Run(ctx, "ssh-add -l", RunOptions{Label: "agent"}); err != nil || !strings.Contains(string(res.Stdout), fp) {
		t.Errorf("ssh-add -l on a second host with ForwardAgent: %+v, %v", res, err)
	}

	plain, err := p.Get(ctx, Target{Name: "plain", Endpoint: Endpoint{Address: f.hosts[2].Addr}, Jumps: jumps})
	if err != nil {
		t.Fatal(err)
	}
	_, err = plain.Run(ctx, "ssh-add -l", RunOptions{Label: "agent"})
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 2 {
		t.Errorf("ssh-add -l on a host without ForwardAgent: %v, want exit 2 (no agent)", err)
	}

	// A host that refuses forwarding still runs the command (as OpenSSH),
	// and the run log says why it has no agent.
	kh := filepath.Join(f.dir, "refusing_known")
	ref, err := p.Get(ctx, Target{Name: "refusing", Endpoint: Endpoint{Address: refusing.Addr, KnownHostsFiles: []string{kh}}, Jumps: jumps, ForwardAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ref.Run(ctx, "echo ran", RunOptions{Label: "refused"}); err != nil {
		t.Errorf("a command on a host that refuses agent forwarding: %v", err)
	}
	runLog, _ := os.ReadFile(f.runLog)
	if !strings.Contains(string(runLog), "refusing [refused] ssh: agent forwarding not set up: forwarding request denied") {
		t.Errorf("the run log does not say the host refused agent forwarding:\n%s", runLog)
	}

	// The bastion was never asked; the hosts with ForwardAgent were, the other not.
	if blog := f.bastions[0].Log(t); strings.Contains(blog, "auth-agent") {
		t.Errorf("the bastion was asked for agent forwarding:\n%s", blog)
	}
	if b := bastionConn(t, p, f.bastionKey()); b.forwardsAgent() {
		t.Errorf("the bastion's connection forwards the agent")
	}
	for i, want := range []int{2, 1, 0} {
		if n := count(f.hosts[i].Log(t), `req auth-agent-req@openssh.com`); n != want {
			t.Errorf("%s was asked for agent forwarding %d times, want %d", f.hosts[i].Name, n, want)
		}
	}

	// Without an agent, ForwardAgent is the target's error.
	t.Setenv("SSH_AUTH_SOCK", "")
	noAgent := newTestPool(t, Options{User: f.user, IdentityFile: f.key, KnownHostsFile: f.knownHosts})
	_, err = noAgent.Get(ctx, Target{Name: "fwd", Endpoint: Endpoint{Address: f.hosts[0].Addr}, Jumps: jumps, ForwardAgent: true})
	if want := "fwd: ForwardAgent: cannot forward the ssh-agent: no ssh-agent: SSH_AUTH_SOCK is not set"; err == nil || err.Error() != want {
		t.Errorf("Get with ForwardAgent and no agent: %v, want %q", err, want)
	}
}
