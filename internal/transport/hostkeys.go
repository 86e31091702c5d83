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

// knownHostsFile is one known_hosts file, parsed once per version of it
// and shared by every checker of the pool that reads it.
type knownHostsFile struct {
	path string

	mu      sync.Mutex // held while the file is parsed, so it is parsed once
	parsed  ssh.HostKeyCallback
	markers hostMarkers // its @cert-authority and @revoked lines
	stat    os.FileInfo // the file parsed was this one
}

// hostKeyChecker verifies host keys against known_hosts files under a
// policy. The pool has one per distinct (files, policy).
type hostKeyChecker struct {
	files []*knownHostsFile // every one is read; accept-new appends to the first
	// userFiles is how many of files (the first ones) are the user's; the
	// others are global files, never written. None: accept-new refuses.
	userFiles int
	hashNames bool // accept-new writes hashed host names
	policy    string
}

// sameVersion says whether a and b are the same version of a file: an
// append, a rewrite, a replacement (another inode) or a touch tells them
// apart.
func sameVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// checkPolicy returns policy with its default filled in.
func checkPolicy(policy string) (string, error) {
	switch policy {
	case "", PolicyStrict:
		return PolicyStrict, nil
	case PolicyAcceptNew:
		return policy, nil
	}
	return "", fmt.Errorf("host key policy %q: want %q or %q", policy, PolicyStrict, PolicyAcceptNew)
}

// defaultKnownHosts is ~/.ssh/known_hosts.
func defaultKnownHosts() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("known_hosts: %w", err)
	}
	return filepath.Join(home, ".ssh", "known_hosts"), nil
}

// hostKeyChecker returns the pool's checker for files under policy (a
// valid one), making it on first use; files already read by another
// checker are shared with it.
func (p *Pool) hostKeyChecker(files, global []string, policy string, hashNames bool) *hostKeyChecker {
	key := fmt.Sprint(policy, "\x00", hashNames, "\x00", strings.Join(files, "\x00"), "\x00\x00", strings.Join(global, "\x00"))
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	if h := p.checkers[key]; h != nil {
		return h
	}
	h := &hostKeyChecker{policy: policy, userFiles: len(files), hashNames: hashNames}
	for _, path := range append(slices.Clip(files), global...) {
		f := p.knownHosts[path]
		if f == nil {
			f = &knownHostsFile{path: path}
			p.knownHosts[path] = f
		}
		h.files = append(h.files, f)
	}
	p.checkers[key] = h
	return h
}

// paths are the checker's files.
func (h *hostKeyChecker) paths() []string {
	out := make([]string, len(h.files))
	for i, f := range h.files {
		out[i] = f.path
	}
	return out
}

// firstFile is the file accept-new writes to; "" when there is none.
func (h *hostKeyChecker) firstFile() string {
	if h.userFiles == 0 {
		return ""
	}
	return h.files[0].path
}

// load returns the file's keys and marker lines as they are now, so keys
// accepted by earlier dials (or written by another process) are seen. The
// file is parsed again only when it changed: every dial checks twice
// (algorithms, callback), and parsing a 1,000-line file for each of 1,000
// hosts was two thirds of all relctl allocated (1.2 GB) and seconds of
// CPU. A missing file is an empty one: a nil callback.
func (f *knownHostsFile) load() (ssh.HostKeyCallback, hostMarkers, error) {
	fi, err := os.Stat(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && sameVersion(fi, f.stat) {
		return f.parsed, f.markers, nil
	}
	// Stat'ed before it is read: a change meanwhile is parsed next time.
	cb, perr := knownhosts.New(f.path)
	if perr != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", perr)
	}
	content, rerr := os.ReadFile(f.path)
	if rerr != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", rerr)
	}
	f.parsed, f.markers, f.stat = cb, parseMarkers(f.path, content), nil
	if err == nil {
		f.stat = fi
	}
	return cb, f.markers, nil
}

// knownHostsView is what a checker's files say now.
type knownHostsView struct {
	callbacks []ssh.HostKeyCallback // of the files that exist
	markers   []hostMarkers
}

// load reads every file of the checker (each parsed only when it changed).
func (h *hostKeyChecker) load() (knownHostsView, error) {
	var v knownHostsView
	for _, f := range h.files {
		cb, m, err := f.load()
		if err != nil {
			return knownHostsView{}, err
		}
		if cb != nil {
			v.callbacks = append(v.callbacks, cb)
		}
		if len(m) > 0 {
			v.markers = append(v.markers, m)
		}
	}
	return v, nil
}

// check is knownhosts' check over every file, as OpenSSH reads several:
// a key revoked in any file is revoked; else a key any file lists for
// address is accepted; else the keys all files list for it are the
// KeyError's Want (none: an unknown host).
func (v knownHostsView) check(address string, remote net.Addr, key ssh.PublicKey) error {
	accepted := false
	var want []knownhosts.KnownKey
	for _, cb := range v.callbacks {
		err := cb(address, remote, key)
		var re *knownhosts.RevokedError
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			accepted = true
		case errors.As(err, &re):
			return err
		case errors.As(err, &ke):
			want = append(want, ke.Want...)
		default:
			return err
		}
	}
	if accepted {
		return nil
	}
	return &knownhosts.KeyError{Want: want}
}

// authority returns the @cert-authority line of any file for address
// (host:port) whose key is ca; ca nil: any CA line for address.
func (v knownHostsView) authority(address string, ca ssh.PublicKey) *markerLine {
	for _, m := range v.markers {
		if l := m.authority(address, ca); l != nil {
			return l
		}
	}
	return nil
}

// revoked returns the @revoked line of any file for key.
func (v knownHostsView) revoked(key ssh.PublicKey) *markerLine {
	for _, m := range v.markers {
		if l := m.revoked(key); l != nil {
			return l
		}
	}
	return nil
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
	v, err := h.load()
	if err != nil {
		return nil, err
	}
	withCerts := v.authority(address, nil) != nil
	var algos []string
	if withCerts {
		algos = certAlgorithms()
	}
	var ke *knownhosts.KeyError
	if err := v.check(address, probeAddr, probeKey); !errors.As(err, &ke) {
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

// hostKeyDial is one dial's host key question: which server, and the
// name known_hosts knows it by.
type hostKeyDial struct {
	host    string // the name in errors: a host's, or a bastion's
	address string // as dialled, host:port
	lookup  string // searched and written under: address, or HostKeyAlias (port 22)
	alias   string // HostKeyAlias, for errors
}

func (l *login) hostKeyDial(name string) hostKeyDial {
	return hostKeyDial{host: name, address: l.address, lookup: l.lookup, alias: l.alias}
}

// callback returns the ssh.HostKeyCallback for one dial.
func (h *hostKeyChecker) callback(d hostKeyDial) ssh.HostKeyCallback {
	return func(_ string, remote net.Addr, key ssh.PublicKey) error {
		v, err := h.load()
		if err != nil {
			return err
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			if done, err := h.checkCert(d, v, cert); done {
				return err
			}
			key = cert.Key // no CA for it: the plain key, as OpenSSH
		}
		err = h.classify(d, key, v.check(d.lookup, remote, key))
		var hke *HostKeyError
		if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown || h.policy != PolicyAcceptNew || h.userFiles == 0 {
			return err
		}
		return h.appendKey(d, remote, key)
	}
}

// classify turns knownhosts' errors into *HostKeyError.
func (h *hostKeyChecker) classify(d hostKeyDial, key ssh.PublicKey, err error) error {
	if err == nil {
		return nil
	}
	e := &HostKeyError{
		Host: d.host, Address: d.address, HostKeyAlias: d.alias,
		KnownHostsFile: h.firstFile(), KnownHostsFiles: h.paths(),
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

// appendKey records an unknown host's key in the first file
// (accept-new). It re-checks under the lock: a parallel dial may have
// recorded this host meanwhile, and a different key recorded meanwhile
// (in any of the files) is a changed key.
func (h *hostKeyChecker) appendKey(d hostKeyDial, remote net.Addr, key ssh.PublicKey) error {
	file := h.firstFile()
	mu, _ := knownHostsLocks.LoadOrStore(file, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("known_hosts: lock %s: %w", file, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file unlocks anyway

	v, err := h.load()
	if err != nil {
		return err
	}
	err = h.classify(d, key, v.check(d.lookup, remote, key))
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Kind != HostKeyUnknown {
		return err // known now (nil), or changed/revoked meanwhile
	}

	content, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	name := knownhosts.Normalize(d.lookup)
	if h.hashNames {
		name = knownhosts.HashHostname(name)
	}
	line := knownhosts.Line([]string{name}, key) + "\n"
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
