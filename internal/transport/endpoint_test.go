package transport

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/relctl/relctl/internal/sshdtest"
)

// newKey writes a fresh client key (id_ed25519) in a directory of its own.
func newKey(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	return sshdtest.NewClientKey(t, t.TempDir())
}

func localUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// newTestPool is NewPool(opts), closed at cleanup.
func newTestPool(t *testing.T, opts Options) *Pool {
	t.Helper()
	p, err := NewPool(opts)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// runsAt checks that a command on c runs on s (the session's HOME is s's).
func runsAt(t *testing.T, c Conn, s *sshdtest.Server) {
	t.Helper()
	res, err := c.Run(testContext(t), `printf %s "$HOME"`, RunOptions{Label: "where"})
	if err != nil {
		t.Fatalf("%s: Run: %v", c.Host(), err)
	}
	if got := string(res.Stdout); got != s.Home {
		t.Fatalf("%s: the command ran where HOME=%s, want %s", c.Host(), got, s.Home)
	}
}

func TestPerTargetIdentityFiles(t *testing.T) {
	keyA, pubA := newKey(t)
	keyB, pubB := newKey(t)
	a := sshdtest.Start(t, 1, pubA)[0]
	b := sshdtest.Start(t, 1, pubB)[0]
	kh := filepath.Join(t.TempDir(), "known_hosts")
	sshdtest.WriteKnownHosts(t, kh, []*sshdtest.Server{a, b})
	ctx := testContext(t)
	opts := Options{User: localUser(t), KnownHostsFile: kh, ConnectTimeout: 30 * time.Second}
	p := newTestPool(t, opts)
	at := func(name string, s *sshdtest.Server, keys ...string) Target {
		return Target{Name: name, Endpoint: Endpoint{Address: s.Addr, IdentityFiles: keys}}
	}

	// One pool, each host with its own key (tried in order: B's fails at a).
	for _, tt := range []struct {
		t Target
		s *sshdtest.Server
	}{{at("web-a", a, keyA), a}, {at("web-b", b, keyB), b}, {at("web-ab", a, keyB, keyA), a}} {
		c, err := p.Get(ctx, tt.t)
		if err != nil {
			t.Fatalf("Get %s: %v", tt.t.Name, err)
		}
		runsAt(t, c, tt.s)
	}

	// A key the server does not accept: the auth error, as a DialError.
	_, err := p.Get(ctx, at("wrong-key", a, keyB))
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "wrong-key ("+a.Addr+"): ssh: handshake failed: ssh: unable to authenticate") {
		t.Errorf("Get with a key a does not accept: %v, want a DialError (unable to authenticate)", err)
	}

	// A missing file is the host's error, naming it, before any dial.
	missing := filepath.Join(t.TempDir(), "id_missing")
	_, err = p.Get(ctx, at("web-c", a, keyA, missing))
	if err == nil || err.Error() != "web-c: identity file: open "+missing+": no such file or directory" || errors.As(err, &de) {
		t.Errorf("Get with a missing identity file: %v", err)
	}
	// No identity file and no agent.
	_, err = p.Get(ctx, at("web-d", a, []string{}...))
	if err == nil || err.Error() != "web-d: "+errNoIdentity.Error() {
		t.Errorf("Get with no identity: %v, want %q", err, "web-d: "+errNoIdentity.Error())
	}
	want := map[string]int{"web-a": 1, "web-b": 1, "web-ab": 1}
	if got := p.Handshakes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Handshakes() = %v, want %v", got, want)
	}

	// Each file is read once per pool: hosts still log in with a key
	// whose file is gone since.
	if err := os.Remove(keyB); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Get(ctx, at(fmt.Sprintf("again-%d", i), b, keyB)); err != nil {
				t.Errorf("Get with a key file read before it was removed: %v", err)
			}
		}()
	}
	wg.Wait()

	// Options.IdentityFile is the default; a target's files replace it.
	opts.IdentityFile = keyA
	p2 := newTestPool(t, opts)
	if _, err := p2.Get(ctx, Target{Name: "default", Endpoint: Endpoint{Address: a.Addr}}); err != nil {
		t.Errorf("Get with Options.IdentityFile: %v", err)
	}
	other, _ := newKey(t)
	if _, err := p2.Get(ctx, at("replaced", a, other)); !errors.As(err, &de) {
		t.Errorf("Get with IdentityFiles replacing Options.IdentityFile: %v, want a DialError", err)
	}
}

func TestCheckTargets(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	good, _ := newKey(t)
	missing := filepath.Join(dir, "id_missing")
	garbage := filepath.Join(dir, "id_garbage")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	encrypted := writeEncryptedKey(t, dir)
	badKH := filepath.Join(dir, "known_hosts_bad")
	if err := os.WriteFile(badKH, []byte("[127.0.0.1]:22 ssh-ed25519 !!!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	p := newTestPool(t, Options{User: "deploy", KnownHostsFile: kh})
	ep := func(addr string, keys ...string) Endpoint { return Endpoint{Address: addr, IdentityFiles: keys} }

	fine := []Target{
		{Name: "web-1", Endpoint: ep("10.0.0.1", good)},
		{Name: "web-2", Endpoint: ep("10.0.0.2", good), Jumps: []Endpoint{ep("bastion", good)}},
	}
	if err := p.CheckTargets(fine); err != nil {
		t.Fatalf("CheckTargets of good targets: %v", err)
	}

	withPolicy := ep("10.0.0.6", good)
	withPolicy.HostKeyPolicy = "yes"
	withKH := ep("10.0.0.7", good)
	withKH.KnownHostsFiles = []string{kh, badKH}
	withKH2 := withKH
	withKH2.Address = "10.0.0.77"
	ts := append(fine,
		Target{Name: "web-3", Endpoint: ep("10.0.0.3", good, missing)},
		Target{Name: "web-4", Endpoint: ep("10.0.0.4", missing, garbage)},
		Target{Name: "web-5", Endpoint: ep("10.0.0.5", encrypted)},
		Target{Name: "web-6", Endpoint: withPolicy},
		Target{Name: "web-7", Endpoint: withKH},
		Target{Name: "web-77", Endpoint: withKH2},
		Target{Name: "web-8", Endpoint: ep("10.0.0.8", []string{}...)},
		Target{Name: "web-9", Endpoint: ep("10.0.0.9", good), ForwardAgent: true},
		Target{Name: "web-10", Endpoint: ep("10.0.0.10", good), Jumps: []Endpoint{ep("bastion", good), {Address: "b2:2222", User: "ops", IdentityFiles: []string{missing}}}},
	)
	err := p.CheckTargets(ts)
	if err == nil {
		t.Fatal("CheckTargets found no problem")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{
		"web-3, web-4, bastion deploy@bastion:22>ops@b2:2222: identity file: open " + missing + ": no such file or directory",
		"web-4: identity file " + garbage + ": ssh: no key found",
		"web-5: identity file " + encrypted + " is encrypted and no ssh-agent is available",
		`web-6: host key policy "yes": want "strict" or "accept-new"`,
		"web-7, web-77: known_hosts: knownhosts: " + badKH + ":1:",
		"web-8: " + errNoIdentity.Error(),
		"web-9: ForwardAgent: cannot forward the ssh-agent: no ssh-agent: SSH_AUTH_SOCK is not set",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("CheckTargets does not say %q", want)
		}
	}
	if n := strings.Count(msg, "\n  - "); n != 7 || !strings.HasPrefix(msg, "7 problems:\n") {
		t.Errorf("CheckTargets reported %d problems, want 7 (one per distinct problem)", n)
	}
	if strings.Contains(msg, "web-1") || strings.Contains(msg, "web-2") {
		t.Errorf("CheckTargets names a target without problems")
	}
	// Get reports the same, naming the bastion it is about.
	_, err = p.Get(testContext(t), ts[len(ts)-1])
	if want := "web-10: bastion deploy@bastion:22>ops@b2:2222: identity file: open " + missing; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Get: %v, want %q", err, want)
	}
	if got := p.Handshakes(); len(got) != 0 {
		t.Errorf("Handshakes() = %v: a host was dialled", got)
	}
}

// IdentitiesOnly: only the identity files' keys are offered, not the
// agent's others. The server accepts only the agent's extra key.
func TestIdentitiesOnly(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ssh-agent"); err != nil {
		t.Skip("ssh-agent not installed (apt-get install -y openssh-client)")
	}
	fileKey, filePub := newKey(t)
	extraKey, extraPub := newKey(t)
	s := sshdtest.StartWith(t, 1, extraPub, sshdtest.Options{LogLevel: "VERBOSE"})[0]
	kh := filepath.Join(t.TempDir(), "known_hosts")
	sshdtest.WriteKnownHosts(t, kh, []*sshdtest.Server{s})
	t.Setenv("SSH_AUTH_SOCK", startAgent(t))
	// The agent holds the file's key too (in OpenSSH's IdentitiesOnly
	// its copy may be used) and the extra key.
	for _, k := range []string{fileKey, extraKey} {
		if out, err := runLocal("ssh-add", k); err != nil {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
	}
	p := newTestPool(t, Options{User: localUser(t), KnownHostsFile: kh, UseAgent: true, ConnectTimeout: 30 * time.Second})
	ctx := testContext(t)
	offers := func(pub ssh.PublicKey) int {
		return count(s.Log(t), `(?m)^(Failed|Accepted) publickey for .* `+regexp.QuoteMeta(ssh.FingerprintSHA256(pub))+`\r?$`)
	}

	only := Target{Name: "only", Endpoint: Endpoint{Address: s.Addr, IdentityFiles: []string{fileKey}, IdentitiesOnly: true}}
	_, err := p.Get(ctx, only)
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("Get with IdentitiesOnly: %v, want the auth error", err)
	}
	if n := offers(filePub); n != 1 {
		t.Errorf("the file's key was offered %d times, want once (the agent's copy is the same key)", n)
	}
	if n := offers(extraPub); n != 0 {
		t.Errorf("with IdentitiesOnly the agent's other key was offered %d times:\n%s", n, s.Log(t))
	}

	// Without it, the agent's keys follow the file's, and the extra one logs in.
	all := only
	all.Name, all.IdentitiesOnly = "all", false
	c, err := p.Get(ctx, all)
	if err != nil {
		t.Fatalf("Get without IdentitiesOnly: %v", err)
	}
	runsAt(t, c, s)
	if n := offers(extraPub); n != 1 {
		t.Errorf("without IdentitiesOnly the agent's key was offered %d times, want once", n)
	}

	// An encrypted identity file with IdentitiesOnly: its key, through
	// the agent, and nothing else.
	encrypted := writeEncryptedKeyOf(t, t.TempDir(), extraKey)
	enc := Target{Name: "encrypted", Endpoint: Endpoint{Address: s.Addr, IdentityFiles: []string{encrypted}, IdentitiesOnly: true}}
	if _, err := p.Get(ctx, enc); err != nil {
		t.Fatalf("Get with an encrypted identity file and IdentitiesOnly: %v", err)
	}
	if n := offers(filePub); n != 2 {
		t.Errorf("the file key was offered %d times in all, want 2 (not for the encrypted identity)", n)
	}
}

func TestKnownHostsFilesPerTarget(t *testing.T) {
	f := newFixture(t, 2)
	s1, s2 := f.servers[0], f.servers[1]
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	unrelated := knownhosts.Line([]string{"other.example"}, s2.HostPubKey) + "\n"
	if err := os.WriteFile(first, []byte(unrelated), 0o600); err != nil {
		t.Fatal(err)
	}
	sshdtest.WriteKnownHosts(t, second, []*sshdtest.Server{s1})
	// The pool's own file knows nothing.
	p := f.pool(t, func(o *Options) { o.KnownHostsFile = filepath.Join(dir, "none") })
	ctx := testContext(t)
	files := []string{first, second}

	// The key is in the second file.
	c, err := p.Get(ctx, Target{Name: "s1", Endpoint: Endpoint{Address: s1.Addr, KnownHostsFiles: files}})
	if err != nil {
		t.Fatalf("Get with the key in the second file: %v", err)
	}
	runsAt(t, c, s1)
	// Without them, the pool's (empty) file.
	_, err = p.Get(ctx, Target{Name: "s1-default", Endpoint: Endpoint{Address: s1.Addr}})
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown {
		t.Fatalf("Get with Options.KnownHostsFile: %v, want an unknown host key", err)
	}

	// s2 is unknown to both: strict refuses naming both files;
	// accept-new appends to the first.
	_, err = p.Get(ctx, Target{Name: "s2", Endpoint: Endpoint{Address: s2.Addr, KnownHostsFiles: files}})
	if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown || !strings.Contains(err.Error(), " in "+first+", "+second+" ") {
		t.Fatalf("strict Get of an unknown host: %v, want an unknown host key naming both files", err)
	}
	_, err = p.Get(ctx, Target{Name: "s2-new", Endpoint: Endpoint{Address: s2.Addr, KnownHostsFiles: files, HostKeyPolicy: PolicyAcceptNew}})
	if err != nil {
		t.Fatalf("accept-new Get: %v", err)
	}
	got, _ := os.ReadFile(first)
	if added, ok := strings.CutPrefix(string(got), unrelated); !ok || !recorded(added, knownhosts.Normalize(s2.Addr), s2) {
		t.Errorf("the first file after accept-new:\n%s\nwant the line for s2 appended", got)
	}
	if got, _ := os.ReadFile(second); strings.Contains(string(got), knownhosts.Normalize(s2.Addr)) {
		t.Errorf("accept-new wrote to the second file too")
	}
	// Under strict, now that the first file knows it.
	if _, err := p.Get(ctx, Target{Name: "s2-strict", Endpoint: Endpoint{Address: s2.Addr, KnownHostsFiles: files}}); err != nil {
		t.Errorf("strict Get after accept-new: %v", err)
	}

	// A changed key in one file and the right one in another: accepted,
	// as OpenSSH; a revocation in any file holds.
	changed := filepath.Join(dir, "changed")
	if err := os.WriteFile(changed, []byte(knownhosts.Line([]string{knownhosts.Normalize(s1.Addr)}, s2.HostPubKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, Target{Name: "s1-both", Endpoint: Endpoint{Address: s1.Addr, KnownHostsFiles: []string{changed, second}}}); err != nil {
		t.Errorf("Get with a stale key in one file and the right one in another: %v", err)
	}
	revoked := filepath.Join(dir, "revoked")
	if err := os.WriteFile(revoked, []byte("@revoked * "+authorizedKey(s1.HostPubKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = p.Get(ctx, Target{Name: "s1-revoked", Endpoint: Endpoint{Address: s1.Addr, KnownHostsFiles: []string{second, revoked}}})
	if !errors.As(err, &hke) || hke.Kind != HostKeyRevoked || hke.OffendingFile != revoked {
		t.Errorf("Get with the key revoked in the second file: %v, want a revoked host key", err)
	}

	// One checker per (files, policy), one parse cache per file.
	p.loadMu.Lock()
	nCheckers, nFiles := len(p.checkers), len(p.knownHosts)
	p.loadMu.Unlock()
	if nCheckers != 5 || nFiles != 5 {
		t.Errorf("the pool has %d checkers and %d known_hosts files, want 5 and 5", nCheckers, nFiles)
	}
}

func TestHostKeyAlias(t *testing.T) {
	f := newFixture(t, 1)
	s := f.servers[0]
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{"web.internal"}, s.HostPubKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, func(o *Options) { o.KnownHostsFile = kh })
	ctx := testContext(t)
	ep := Endpoint{Address: s.Addr, HostKeyAlias: "web.internal"}
	if _, err := p.Get(ctx, Target{Name: "aliased", Endpoint: ep}); err != nil {
		t.Fatalf("Get with HostKeyAlias: %v", err)
	}
	// Under its address it is unknown; under another alias too, named so.
	_, err := p.Get(ctx, Target{Name: "plain", Endpoint: Endpoint{Address: s.Addr}})
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown {
		t.Fatalf("Get without the alias: %v, want an unknown host key", err)
	}
	ep.HostKeyAlias = "other.internal"
	_, err = p.Get(ctx, Target{Name: "other", Endpoint: ep})
	if !errors.As(err, &hke) || !strings.Contains(err.Error(), "no key for other.internal in "+kh) || hke.Address != s.Addr {
		t.Fatalf("Get with an unknown alias: %v, want an unknown host key naming the alias", err)
	}
	// accept-new records the alias, without a port, as OpenSSH.
	ep.HostKeyPolicy = PolicyAcceptNew
	if _, err := p.Get(ctx, Target{Name: "other-new", Endpoint: ep}); err != nil {
		t.Fatalf("accept-new Get with an alias: %v", err)
	}
	got, _ := os.ReadFile(kh)
	if _, added, _ := strings.Cut(string(got), "\n"); !recorded(added, "other.internal", s) {
		t.Errorf("known_hosts after accept-new:\n%s\nwant a line for other.internal appended", got)
	}
}

// recorded says whether lines is one known_hosts line for name with one
// of s's host keys (accept-new records the one the server presents).
func recorded(lines, name string, s *sshdtest.Server) bool {
	return lines == knownhosts.Line([]string{name}, s.HostPubKey)+"\n" ||
		lines == knownhosts.Line([]string{name}, s.ECDSAHostPubKey)+"\n"
}
