package transport

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// markerLine is a known_hosts line with a marker: "@cert-authority
// PATTERNS CA-KEY" or "@revoked PATTERNS KEY". Plain lines are
// knownhosts' business.
type markerLine struct {
	file     string
	line     int
	marker   string // "cert-authority" or "revoked"
	patterns []string
	key      ssh.PublicKey
}

// hostMarkers are the marker lines of one version of a known_hosts file.
type hostMarkers []markerLine

// parseMarkers reads the marker lines of file. A missing file has none;
// a malformed line is knownhosts' to report (it parses the same file).
func parseMarkers(file string, content []byte) hostMarkers {
	var out hostMarkers
	for i, raw := range bytes.Split(content, []byte("\n")) {
		line := bytes.TrimSpace(raw)
		if !bytes.HasPrefix(line, []byte("@")) {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(line)
		if err != nil || (marker != "cert-authority" && marker != "revoked") {
			continue
		}
		out = append(out, markerLine{file: file, line: i + 1, marker: marker, patterns: hosts, key: key})
	}
	return out
}

// authority returns the @cert-authority line for address (host:port)
// whose key is ca; ca nil: any CA line for address.
func (m hostMarkers) authority(address string, ca ssh.PublicKey) *markerLine {
	name := knownhosts.Normalize(address)
	for i := range m {
		l := &m[i]
		if l.marker != "cert-authority" || !matchHostPatterns(l.patterns, name) {
			continue
		}
		if ca == nil || bytes.Equal(l.key.Marshal(), ca.Marshal()) {
			return l
		}
	}
	return nil
}

// revoked returns the @revoked line for key. As knownhosts does for plain
// keys, a revocation holds whatever host it names.
func (m hostMarkers) revoked(key ssh.PublicKey) *markerLine {
	for i := range m {
		if m[i].marker == "revoked" && bytes.Equal(plainKey(m[i].key).Marshal(), plainKey(key).Marshal()) {
			return &m[i]
		}
	}
	return nil
}

func plainKey(k ssh.PublicKey) ssh.PublicKey {
	if c, ok := k.(*ssh.Certificate); ok {
		return c.Key
	}
	return k
}

// matchHostPatterns is OpenSSH's known_hosts host matching: a
// comma-separated list (already split) of patterns with * and ?, hashed
// names (|1|salt|hash), and negations (!pattern) that veto a match.
func matchHostPatterns(patterns []string, name string) bool {
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		var ok bool
		if strings.HasPrefix(p, "|1|") {
			ok = matchHashed(p, name)
		} else {
			ok = wildcardMatch(strings.ToLower(p), strings.ToLower(name))
		}
		if ok && neg {
			return false
		}
		matched = matched || ok
	}
	return matched
}

func matchHashed(p, name string) bool {
	parts := strings.Split(p, "|") // "", "1", salt, hash
	if len(parts) != 4 {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	want, err2 := base64.StdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(name))
	return hmac.Equal(mac.Sum(nil), want)
}

// wildcardMatch is OpenSSH's match_pattern: * any run, ? any one byte.
func wildcardMatch(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := 0; i <= len(s); i++ {
				if wildcardMatch(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}

func isCertAlgo(a string) bool { return strings.HasSuffix(a, "-cert-v01@openssh.com") }

// certAlgorithms are the host certificate algorithms x/crypto supports,
// in its order of preference.
func certAlgorithms() []string {
	return slices.DeleteFunc(slices.Clone(ssh.SupportedAlgorithms().HostKeys), func(a string) bool { return !isCertAlgo(a) })
}

// HostCertError is a host that presented a certificate signed by a CA
// known_hosts trusts for it (@cert-authority), which was refused: wrong
// type or principal, outside its validity, a bad signature, or a revoked
// CA or key.
type HostCertError struct {
	Host    string
	Address string // as dialled, host:port
	// KnownHostsFile is the first file consulted.
	KnownHostsFile string
	// KeyType and Fingerprint describe the certified host key; CA is the
	// signing key's fingerprint.
	KeyType     string
	Fingerprint string
	CA          string
	// Reason says what is wrong, e.g. "ssh: cert has expired".
	Reason string
	// Revoked: the CA or the host key is revoked at OffendingFile:OffendingLine.
	Revoked       bool
	OffendingFile string
	OffendingLine int
}

func (e *HostCertError) Error() string {
	where := ""
	if e.OffendingFile != "" {
		where = fmt.Sprintf(" (%s:%d)", e.OffendingFile, e.OffendingLine)
	}
	return fmt.Sprintf("%s (%s): host certificate verification failed: %s%s; "+
		"the host offered a certificate for %s key %s signed by CA %s",
		e.Host, e.Address, e.Reason, where, e.KeyType, e.Fingerprint, e.CA)
}

// hostKeyRefusal returns the *HostKeyError or *HostCertError in a failed
// handshake's err, else nil.
func hostKeyRefusal(err error) error {
	var hke *HostKeyError
	if errors.As(err, &hke) {
		return hke
	}
	var hce *HostCertError
	if errors.As(err, &hce) {
		return hce
	}
	return nil
}

// checkCert verifies a host certificate as OpenSSH does. done: the
// certificate was judged (err says how); !done: no @cert-authority line
// trusts its CA for this host, and its plain key is to be checked against
// the plain lines instead (OpenSSH: "No matching CA found. Retry with plain key").
func (h *hostKeyChecker) checkCert(d hostKeyDial, m knownHostsView, cert *ssh.Certificate) (done bool, err error) {
	e := &HostCertError{
		Host: d.host, Address: d.address, KnownHostsFile: h.firstFile(),
		KeyType: keyTypeName(cert.Key), Fingerprint: ssh.FingerprintSHA256(cert.Key),
		CA: ssh.FingerprintSHA256(cert.SignatureKey),
	}
	for _, k := range []struct {
		what string
		key  ssh.PublicKey
	}{{"the CA key " + e.CA, cert.SignatureKey}, {"the host key " + e.Fingerprint, cert.Key}} {
		if r := m.revoked(k.key); r != nil {
			e.Reason = k.what + " is revoked"
			e.Revoked, e.OffendingFile, e.OffendingLine = true, r.file, r.line
			return true, e
		}
	}
	ca := m.authority(d.lookup, cert.SignatureKey)
	if ca == nil {
		return false, nil
	}
	e.OffendingFile, e.OffendingLine = ca.file, ca.line
	if cert.CertType != ssh.HostCert {
		e.Reason = "the certificate is a user certificate, not a host certificate"
		return true, e
	}
	// The principal is the name known_hosts knows the host by (OpenSSH:
	// HostKeyAlias when set).
	hostname, _, err := net.SplitHostPort(d.lookup)
	if err != nil {
		return true, err
	}
	checker := ssh.CertChecker{}
	if err := checker.CheckCert(hostname, cert); err != nil {
		e.Reason = err.Error()
		return true, e
	}
	return true, nil
}

// loadIdentityCert reads "<identity>-cert.pub" when it exists: a user
// certificate for pub (nil: the key's public half is not known, as in
// old encrypted formats). A certificate that is for another key, not a
// user certificate, or outside its validity is an error naming the file.
func loadIdentityCert(identity string, pub ssh.PublicKey, now func() int64) (*ssh.Certificate, error) {
	file := identity + "-cert.pub"
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", file, err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", file, err)
	}
	cert, ok := k.(*ssh.Certificate)
	switch {
	case !ok:
		return nil, fmt.Errorf("certificate %s: not a certificate but a plain %s key", file, k.Type())
	case cert.CertType != ssh.UserCert:
		return nil, fmt.Errorf("certificate %s: a host certificate, not a user certificate", file)
	case pub != nil && !bytes.Equal(cert.Key.Marshal(), pub.Marshal()):
		return nil, fmt.Errorf("certificate %s is for key %s, not for %s's key %s",
			file, ssh.FingerprintSHA256(cert.Key), identity, ssh.FingerprintSHA256(pub))
	}
	t := now()
	if cert.ValidBefore != ssh.CertTimeInfinity && (t >= int64(cert.ValidBefore) || int64(cert.ValidBefore) < 0) {
		return nil, fmt.Errorf("certificate %s has expired (valid before %s): sign the key again",
			file, certTime(cert.ValidBefore))
	}
	if int64(cert.ValidAfter) < 0 || t < int64(cert.ValidAfter) {
		return nil, fmt.Errorf("certificate %s is not valid yet (valid after %s)", file, certTime(cert.ValidAfter))
	}
	return cert, nil
}

func certTime(t uint64) string {
	if int64(t) < 0 {
		return "forever"
	}
	return time.Unix(int64(t), 0).UTC().Format("2006-01-02 15:04:05 UTC")
}

// withCert puts a certificate signer for cert before each signer whose key
// it certifies (OpenSSH offers the certificate, then the plain key).
func withCert(signers []ssh.Signer, cert *ssh.Certificate) ([]ssh.Signer, error) {
	if cert == nil {
		return signers, nil
	}
	out := make([]ssh.Signer, 0, len(signers)+1)
	for _, s := range signers {
		if bytes.Equal(s.PublicKey().Marshal(), cert.Key.Marshal()) {
			cs, err := ssh.NewCertSigner(cert, s)
			if err != nil {
				return nil, err
			}
			out = append(out, cs)
		}
		out = append(out, s)
	}
	return out, nil
}
