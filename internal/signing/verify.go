package signing

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// Reasons a signature is refused; match them with errors.Is. The *VerifyError
// that carries one has the complete message for the user.
var (
	ErrMalformedSignature = errors.New("malformed signature")
	ErrCertificateSigner  = errors.New("certificate signers are not supported")
	ErrWrongNamespace     = errors.New("signature is for another namespace")
	ErrSignatureMismatch  = errors.New("signature does not verify")
	ErrSignerNotAllowed   = errors.New("signer is not allowed")
)

// VerifyError is a refused signature. Its message is complete and can be
// shown as is; Reason is one of the Err* sentinels above.
type VerifyError struct {
	Reason  error
	Message string
}

func (e *VerifyError) Error() string { return e.Message }
func (e *VerifyError) Unwrap() error { return e.Reason }

func refuse(reason error, format string, args ...any) *VerifyError {
	return &VerifyError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Verification is who signed, when verification succeeds.
type Verification struct {
	Principals  []string // the matching allowed_signers line's principals
	Fingerprint string   // SHA256:... of the signing key
	Path        string   // the allowed_signers file that allowed it
	Line        int      // line in that file
}

// Verify checks the armored signature sig over message: it must parse, be
// made for namespace, verify cryptographically, and its key must be listed in
// signers on a line that allows namespace and is valid at now. Like ssh-keygen,
// a cert-authority line only admits certificates, which relctl does not
// support, so a plain key on such a line is refused. Refusals are *VerifyError.
func Verify(message, sig []byte, signers []AllowedSigner, namespace string, now time.Time) (*Verification, error) {
	if namespace == "" {
		return nil, errors.New("verify: the namespace must not be empty")
	}
	parsed, err := sshsig.Unarmor(sig)
	if err != nil {
		return nil, refuse(ErrMalformedSignature, "not a valid SSH signature: %v", err)
	}
	if _, isCert := parsed.PublicKey.(*ssh.Certificate); isCert {
		return nil, refuse(ErrCertificateSigner, "signed with a certificate: %v", ErrCertificateSigner)
	}
	if parsed.Namespace != namespace {
		return nil, refuse(ErrWrongNamespace, "signature namespace %q is not %s", parsed.Namespace, namespace)
	}
	if err := sshsig.Verify(bytes.NewReader(message), parsed, parsed.PublicKey, parsed.HashAlgorithm, namespace); err != nil {
		return nil, refuse(ErrSignatureMismatch, "signature does not verify: the record was changed after it was signed")
	}
	return allowedSigner(parsed.PublicKey, signers, namespace, now)
}

// allowedSigner finds a line that allows key; when none does, it explains
// every line that lists the key, or that no line does.
func allowedSigner(key ssh.PublicKey, signers []AllowedSigner, namespace string, now time.Time) (*Verification, error) {
	fingerprint := ssh.FingerprintSHA256(key)
	// ssh-keygen compares whole seconds.
	now = now.Truncate(time.Second)
	var reasons []string
	for _, signer := range signers {
		if signer.Key == nil || !bytes.Equal(signer.Key.Marshal(), key.Marshal()) {
			continue
		}
		where := fmt.Sprintf("allowed_signers %s line %d", displayPath(signer.Path), signer.Line)
		switch {
		case signer.CertAuthority:
			reasons = append(reasons, fmt.Sprintf("%s lists key %s as cert-authority, which admits only certificates it signed",
				where, fingerprint))
		case !signer.AllowsNamespace(namespace):
			reasons = append(reasons, fmt.Sprintf("%s allows key %s only for namespaces %s, not %s",
				where, fingerprint, strings.Join(signer.Namespaces, ","), namespace))
		case !signer.ValidAfter.IsZero() && now.Before(signer.ValidAfter):
			reasons = append(reasons, fmt.Sprintf("%s allows key %s only from %s (valid-after); it is now %s",
				where, fingerprint, formatTime(signer.ValidAfter), formatTime(now)))
		case !signer.ValidBefore.IsZero() && now.After(signer.ValidBefore):
			reasons = append(reasons, fmt.Sprintf("%s allowed key %s only until %s (valid-before); it is now %s",
				where, fingerprint, formatTime(signer.ValidBefore), formatTime(now)))
		default:
			return &Verification{
				Principals:  signer.Principals,
				Fingerprint: fingerprint,
				Path:        signer.Path,
				Line:        signer.Line,
			}, nil
		}
	}
	if len(reasons) > 0 {
		return nil, refuse(ErrSignerNotAllowed, "%s", strings.Join(reasons, "; "))
	}
	return nil, refuse(ErrSignerNotAllowed, "key %s is not in allowed_signers %s", fingerprint, signerFiles(signers))
}

func formatTime(t time.Time) string {
	return t.Format("2006-01-02 15:04:05 MST")
}

func displayPath(path string) string {
	if path == "" {
		return "(unnamed)"
	}
	return path
}

// signerFiles names the files the signers came from, for "not in" messages.
func signerFiles(signers []AllowedSigner) string {
	if len(signers) == 0 {
		return "(no signers listed)"
	}
	var paths []string
	for _, signer := range signers {
		if path := displayPath(signer.Path); !slices.Contains(paths, path) {
			paths = append(paths, path)
		}
	}
	return strings.Join(paths, ", ")
}
