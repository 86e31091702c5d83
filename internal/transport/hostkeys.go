package transport

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key policies, named after OpenSSH's StrictHostKeyChecking.
const (
	PolicyStrict    = "strict"
	PolicyAcceptNew = "accept-new"
)

// knownHostsLocks serialises appends within this process; flock covers
// other relctl processes sharing the file.
var knownHostsLocks sync.Map // path -> *sync.Mutex

// hostKeyChecker verifies host keys against one known_hosts file.
type hostKeyChecker struct {
	file   string
	policy string

	mu      sync.Mutex // held while the file is parsed, so it is parsed once
	parsed  ssh.HostKeyCallback
	markers hostMarkers // its @cert-authority and @revoked lines
	stat    os.FileInfo // the file parsed was this one
}

// sameVersion says whether a and b are the same version of a file: an
// append, a rewrite, a replacement (another inode) or a touch tells them
// apart.
func sameVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func newHostKeyChecker(file, policy string) (*hostKeyChecker, error) {
	switch policy {
	case "", PolicyStrict:
		policy = PolicyStrict
	case PolicyAcceptNew:
	default:
		return nil, fmt.Errorf("host key policy %q: want %q or %q", policy, PolicyStrict, PolicyAcceptNew)
	}
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	return &hostKeyChecker{file: file, policy: policy}, nil
}

// load returns the file's keys as they are now, so keys accepted by
// earlier dials (or written by another process) are seen. The file is
// parsed again only when it changed: every dial checks twice (algorithms,
// callback), and parsing a 1,000-line file for each of 1,000 hosts was two
// thirds of all relctl allocated (1.2 GB) and seconds of CPU. A missing
// file is an empty one.
func (h *hostKeyChecker) load() (ssh.HostKeyCallback, error) {
	cb, _, err := h.loadAll()
	return cb, err
}

// loadAll is load with the file's marker lines.
func (h *hostKeyChecker) loadAll() (ssh.HostKeyCallback, hostMarkers, error) {
	fi, err := os.Stat(h.file)
	if errors.Is(err, os.ErrNotExist) {
		cb, err := knownhosts.New()
		return cb, nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil && sameVersion(fi, h.stat) {
		return h.parsed, h.markers, nil
	}
	// Stat'ed before it is read: a change meanwhile is parsed next time.
	cb, perr := knownhosts.New(h.file)
	if perr != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", perr)
	}
	content, rerr := os.ReadFile(h.file)
	if rerr != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", rerr)
	}
	h.parsed, h.markers, h.stat = cb, parseMarkers(h.file, content), nil
	if err == nil {
		h.stat = fi
	}
	return cb, h.markers, nil
}

// probeKey is never a real host key; offering it makes knownhosts list
// the keys it knows for an address.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return k
}()

// algorithms returns the host key algorithms to offer for address: host
// certificates first when a @cert-authority line names the host (as
// OpenSSH does), and only then; the types known_hosts holds for it next,
// so a server with several host keys presents the one we can verify; then
// the rest, so a server that lost its known key type is reported as
// changed rather than as a handshake failure.
func (h *hostKeyChecker) algorithms(address string) ([]string, error) {
	cb, markers, err := h.loadAll()
	if err != nil {
		return nil, err
	}
	withCerts := markers.authority(address, nil) != nil
	var algos []string
	if withCerts {
		algos = certAlgorithms()
	}
	var ke *knownhosts.KeyError
	if err := cb(address, probeAddr, probeKey); !errors.As(err, &ke) {
		ke = &knownhosts.KeyError{}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		if (withCerts || !isCertAlgo(a)) && !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return slices.Compact(algos), nil
}

// callback returns the ssh.HostKeyCallback for one dial to host at address.
func (h *hostKeyChecker) callback(host, address string) ssh.HostKeyCallback {
	return func(_ string, remote net.Addr, key ssh.PublicKey) error {
		cb, markers, err := h.loadAll()
		if err != nil {
			return err
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			if done, err := h.checkCert(host, address, markers, cert); done {
				return err
			}
			key = cert.Key // no CA for it: the plain key, as OpenSSH
		}
		err = h.classify(host, address, key, cb(address, remote, key))
		var hke *HostKeyError
		if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown || h.policy != PolicyAcceptNew {
			return err
		}
		return h.appendKey(host, address, remote, key)
	}
}

// classify turns knownhosts' errors into *HostKeyError.
func (h *hostKeyChecker) classify(host, address string, key ssh.PublicKey, err error) error {
	if err == nil {
		return nil
	}
	e := &HostKeyError{
		Host: host, Address: address, KnownHostsFile: h.file,
		KeyType: keyTypeName(key), Fingerprint: ssh.FingerprintSHA256(key),
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		e.Kind = HostKeyRevoked
		e.OffendingFile, e.OffendingLine = re.Revoked.Filename, re.Revoked.Line
	case errors.As(err, &ke) && len(ke.Want) == 0:
		e.Kind = HostKeyUnknown
	case errors.As(err, &ke):
		e.Kind = HostKeyChanged
		off := ke.Want[0]
		for _, k := range ke.Want {
			if k.Key.Type() == key.Type() {
				off = k
				break
			}
		}
		e.OffendingFile, e.OffendingLine = off.Filename, off.Line
	default:
		return err
	}
	return e
}

// appendKey records an unknown host's key (accept-new). It re-checks under
// the lock: a parallel dial may have recorded this host meanwhile, and a
// different key recorded meanwhile is a changed key.
func (h *hostKeyChecker) appendKey(host, address string, remote net.Addr, key ssh.PublicKey) error {
	mu, _ := knownHostsLocks.LoadOrStore(h.file, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	if err := os.MkdirAll(filepath.Dir(h.file), 0o700); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	f, err := os.OpenFile(h.file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("known_hosts: lock %s: %w", h.file, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file unlocks anyway

	cb, err := h.load()
	if err != nil {
		return err
	}
	err = h.classify(host, address, key, cb(address, remote, key))
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown {
		return err // known now (nil), or changed/revoked meanwhile
	}

	content, err := os.ReadFile(h.file)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(address)}, key) + "\n"
	if len(content) > 0 && !bytes.HasSuffix(content, []byte("\n")) {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	return f.Sync()
}

// keyTypeName is OpenSSH's name for a key type in messages ("ED25519").
func keyTypeName(k ssh.PublicKey) string {
	t := k.Type()
	switch {
	case t == ssh.KeyAlgoED25519:
		return "ED25519"
	case t == ssh.KeyAlgoRSA:
		return "RSA"
	case strings.HasPrefix(t, "ecdsa-"):
		return "ECDSA"
	}
	return strings.ToUpper(strings.TrimPrefix(t, "ssh-"))
}

// knownHostsName is how an address appears in known_hosts: "[127.0.0.1]:22001".
func knownHostsName(address string) string { return knownhosts.Normalize(address) }

// probeAddr stands in for the remote address when probing without a
// connection; knownhosts prefers the dialled address anyway.
var probeAddr net.Addr = &net.TCPAddr{IP: net.IPv4zero}
