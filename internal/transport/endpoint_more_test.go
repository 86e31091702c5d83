package transport

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/relctl/relctl/internal/sshdtest"
)

// TestHostNameLowerCased: ssh looks host names up in lower case, so a host
// written "LocalHost" is the known_hosts line of "localhost": found under
// strict, and a changed key there is refused under accept-new, not added.
func TestHostNameLowerCased(t *testing.T) {
	key, pub := newKey(t)
	s := sshdtest.Start(t, 1, pub)[0]
	dir := t.TempDir()
	addr := "LocalHost:" + strconv.Itoa(s.Port)
	good := filepath.Join(dir, "good")
	writeKnownHosts(t, good, knownhosts.Line([]string{knownhosts.Normalize("localhost:" + strconv.Itoa(s.Port))}, s.HostPubKey))
	p := newTestPool(t, Options{User: localUser(t)})
	c, err := p.Get(testContext(t), Target{Name: "web-1", Endpoint: Endpoint{Address: addr, IdentityFiles: []string{key}, KnownHostsFiles: []string{good}}})
	if err != nil {
		t.Fatalf("Get %s with [localhost] known: %v", addr, err)
	}
	runsAt(t, c, s)

	_, other := newKey(t)
	changed := filepath.Join(dir, "changed")
	writeKnownHosts(t, changed, knownhosts.Line([]string{knownhosts.Normalize("localhost:" + strconv.Itoa(s.Port))}, other))
	_, err = p.Get(testContext(t), Target{Name: "web-2", Endpoint: Endpoint{Address: addr, IdentityFiles: []string{key}, KnownHostsFiles: []string{changed}, HostKeyPolicy: PolicyAcceptNew}})
	if err == nil || !strings.Contains(err.Error(), "HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("Get %s with another key recorded for [localhost] under accept-new: %v, want a changed key refused", addr, err)
	}
	if b, _ := os.ReadFile(changed); strings.Count(string(b), "\n") != 1 {
		t.Errorf("accept-new wrote to known_hosts for a changed key:\n%s", b)
	}
}

// TestAcceptNewWritesOnlyUserFiles: global known_hosts files are read,
// never written; with no user file an unknown host is refused (as ssh
// does), and HashKnownHosts writes a hashed name.
func TestAcceptNewWritesOnlyUserFiles(t *testing.T) {
	key, pub := newKey(t)
	servers := sshdtest.Start(t, 2, pub)
	dir := t.TempDir()
	global := filepath.Join(dir, "ssh_known_hosts")
	p := newTestPool(t, Options{User: localUser(t), HostKeyPolicy: PolicyAcceptNew})
	ep := func(s *sshdtest.Server, user []string, hash bool) Endpoint {
		return Endpoint{Address: s.Addr, IdentityFiles: []string{key}, KnownHostsFiles: user, GlobalKnownHostsFiles: []string{global}, HashKnownHosts: hash}
	}

	_, err := p.Get(testContext(t), Target{Name: "web-1", Endpoint: ep(servers[0], []string{}, false)})
	if err == nil || !strings.Contains(err.Error(), "Host key verification failed") {
		t.Errorf("accept-new with only a global file: %v, want the unknown host refused", err)
	}
	if _, err := os.Stat(global); !os.IsNotExist(err) {
		t.Errorf("the global known_hosts file was written (stat: %v)", err)
	}

	user := filepath.Join(dir, "known_hosts")
	c, err := p.Get(testContext(t), Target{Name: "web-2", Endpoint: ep(servers[1], []string{user}, true)})
	if err != nil {
		t.Fatalf("accept-new with a user file: %v", err)
	}
	runsAt(t, c, servers[1])
	b, err := os.ReadFile(user)
	if err != nil || !strings.HasPrefix(string(b), "|1|") || strings.Contains(string(b), "127.0.0.1") {
		t.Errorf("known_hosts after accept-new with HashKnownHosts: %q (%v), want one hashed line", b, err)
	}
	if _, err := os.Stat(global); !os.IsNotExist(err) {
		t.Errorf("the global known_hosts file was written (stat: %v)", err)
	}
}

// TestUnusableIdentities: identities from ssh's configuration or defaults
// that cannot be used are left out (SkipUnusableIdentities); one named by
// relctl.toml fails the host. A key that was missing is used once it is
// back: a failure to load is not kept.
func TestUnusableIdentities(t *testing.T) {
	key, pub := newKey(t)
	s := sshdtest.Start(t, 1, pub)[0]
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	sshdtest.WriteKnownHosts(t, kh, []*sshdtest.Server{s})
	garbage := filepath.Join(dir, "id_rsa")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newTestPool(t, Options{User: localUser(t)})
	ep := Endpoint{Address: s.Addr, IdentityFiles: []string{garbage, key}, KnownHostsFiles: []string{kh}}

	if _, err := p.Get(testContext(t), Target{Name: "strict", Endpoint: ep}); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Errorf("an unusable identity of relctl.toml: %v, want an error naming %s", err, garbage)
	}
	ep.SkipUnusableIdentities = true
	c, err := p.Get(testContext(t), Target{Name: "skip", Endpoint: ep})
	if err != nil {
		t.Fatalf("an unusable identity of ssh's configuration: %v, want it left out", err)
	}
	runsAt(t, c, s)

	later := filepath.Join(dir, "later")
	ep = Endpoint{Address: s.Addr, IdentityFiles: []string{later}, KnownHostsFiles: []string{kh}}
	if _, err := p.Get(testContext(t), Target{Name: "later", Endpoint: ep}); err == nil {
		t.Fatal("Get with a missing key succeeded")
	}
	b, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(later, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(testContext(t), Target{Name: "later", Endpoint: ep}); err != nil {
		t.Errorf("Get once the key is back: %v", err)
	}
}

// TestSameNameTwoHosts: one host name in two environments may be two hosts;
// the pool does not hand one's connection to the other.
func TestSameNameTwoHosts(t *testing.T) {
	f := newFixture(t, 2)
	p := f.pool(t, nil)
	for _, s := range f.servers {
		c, err := p.Get(testContext(t), Target{Name: "web-1", Endpoint: Endpoint{Address: s.Addr}})
		if err != nil {
			t.Fatalf("Get web-1 at %s: %v", s.Addr, err)
		}
		runsAt(t, c, s)
	}
}

func writeKnownHosts(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
