package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// known_hosts is parsed once per version of the file: what another process
// (or an accept-new dial) writes, and a rewrite of the same size, are seen
// by the next check.
func TestKnownHostsReadAgainWhenChanged(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	newKey := func() ssh.PublicKey {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b, c := newKey(), newKey(), newKey()
	const addrA, addrB = "127.0.0.1:2201", "127.0.0.1:2202"
	line := func(addr string, k ssh.PublicKey) string {
		return knownhosts.Line([]string{knownhosts.Normalize(addr)}, k) + "\n"
	}
	if err := os.WriteFile(file, []byte(line(addrA, a)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := testChecker(PolicyStrict, file)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	check := func(addr string, k ssh.PublicKey) error {
		v, err := h.load()
		if err != nil {
			t.Fatal(err)
		}
		return v.check(addr, remote, k)
	}
	if err := check(addrA, a); err != nil {
		t.Fatalf("A's key: %v", err)
	}
	var ke *knownhosts.KeyError
	if err := check(addrB, b); !errors.As(err, &ke) || len(ke.Want) != 0 {
		t.Fatalf("B before it is written: %v, want an unknown host", err)
	}

	// Appended by another process.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(line(addrB, b)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := check(addrB, b); err != nil {
		t.Fatalf("B after the append: %v", err)
	}

	// Rewritten in place, same size: B's key replaced by C's.
	if err := os.WriteFile(file, []byte(line(addrA, a)+line(addrB, c)), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	if err := check(addrB, c); err != nil {
		t.Fatalf("B's new key after the rewrite: %v", err)
	}
	if err := check(addrB, b); !errors.As(err, &ke) || len(ke.Want) == 0 {
		t.Errorf("B's old key after the rewrite: %v, want a changed key", err)
	}
}

// testChecker is a checker of files of its own, outside any pool.
func testChecker(policy string, files ...string) *hostKeyChecker {
	h := &hostKeyChecker{policy: policy}
	for _, f := range files {
		h.files = append(h.files, &knownHostsFile{path: f})
	}
	return h
}
