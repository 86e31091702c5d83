// Package signing owns relctl's signatures: it signs messages (rehearsal
// records) in OpenSSH's SSHSIG format, parses OpenSSH allowed_signers files and
// verifies signatures against them, so that `ssh-keygen -Y verify` and relctl
// accept exactly the same signatures.
package signing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// RehearsalNamespace is the SSHSIG namespace of rehearsal records; a signature
// made for another purpose (git commits, files) never passes for one.
const RehearsalNamespace = "relctl-rehearsal"

// signatureHash is what ssh-keygen -Y sign uses by default.
const signatureHash = sshsig.HashSHA512

// LoadSigner reads an OpenSSH private key file (ed25519, ecdsa or rsa). A
// passphrase-protected key is used through the ssh-agent at $SSH_AUTH_SOCK,
// which must hold the matching key; relctl never asks for passphrases. RSA
// keys sign with rsa-sha2-512 because SSHSIG refuses SHA-1 signatures.
func LoadSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	var encrypted *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &encrypted):
		signer, err = agentSignerFor(path, encrypted.PublicKey)
		if err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if signer.PublicKey().Type() == ssh.KeyAlgoRSA {
		algorithmSigner, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return nil, fmt.Errorf("signing key %s: this RSA signer cannot choose rsa-sha2-512", path)
		}
		rsaSigner, err := ssh.NewSignerWithAlgorithms(algorithmSigner, []string{ssh.KeyAlgoRSASHA512})
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		return rsaSigner, nil
	}
	return signer, nil
}

// agentSignerFor finds the agent key matching an encrypted key file. Old PEM
// formats hide the public half, so then path.pub tells which key it is.
func agentSignerFor(path string, pub ssh.PublicKey) (ssh.Signer, error) {
	socket := os.Getenv("SSH_AUTH_SOCK")
	if socket == "" {
		return nil, fmt.Errorf("signing key %s is passphrase-protected and no ssh-agent is available "+
			"(SSH_AUTH_SOCK is not set): start ssh-agent and run ssh-add %s", path, path)
	}
	if pub == nil {
		pubData, err := os.ReadFile(path + ".pub")
		if err != nil {
			return nil, fmt.Errorf("signing key %s is passphrase-protected and its public key is needed "+
				"to find it in the ssh-agent: %w", path, err)
		}
		pub, _, _, _, err = ssh.ParseAuthorizedKey(pubData)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: public key %s.pub: %w", path, path, err)
		}
	}
	signer := &agentSigner{socket: socket, pub: pub}
	keys, err := signer.listKeys()
	if err != nil {
		return nil, fmt.Errorf("signing key %s is passphrase-protected: %w", path, err)
	}
	for _, key := range keys {
		if bytes.Equal(key.Marshal(), pub.Marshal()) {
			return signer, nil
		}
	}
	return nil, fmt.Errorf("signing key %s is passphrase-protected and the ssh-agent does not hold it (%s): run ssh-add %s",
		path, ssh.FingerprintSHA256(pub), path)
}

// agentSigner signs through the ssh-agent, connecting for each signature so a
// long-lived signer holds no socket open.
type agentSigner struct {
	socket string
	pub    ssh.PublicKey
}

var _ ssh.AlgorithmSigner = (*agentSigner)(nil)

func (s *agentSigner) PublicKey() ssh.PublicKey { return s.pub }

func (s *agentSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return s.SignWithAlgorithm(rand, data, "")
}

// SignWithAlgorithm ignores rand: the agent has its own entropy.
func (s *agentSigner) SignWithAlgorithm(_ io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	var flags agent.SignatureFlags
	switch algorithm {
	case "", s.pub.Type():
	case ssh.KeyAlgoRSASHA256:
		flags = agent.SignatureFlagRsaSha256
	case ssh.KeyAlgoRSASHA512:
		flags = agent.SignatureFlagRsaSha512
	default:
		return nil, fmt.Errorf("ssh-agent: cannot sign with algorithm %q for a %s key", algorithm, s.pub.Type())
	}
	var sig *ssh.Signature
	err := s.withAgent(func(client agent.ExtendedAgent) error {
		var err error
		sig, err = client.SignWithFlags(s.pub, data, flags)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ssh-agent sign with %s: %w", ssh.FingerprintSHA256(s.pub), err)
	}
	return sig, nil
}

func (s *agentSigner) listKeys() ([]*agent.Key, error) {
	var keys []*agent.Key
	err := s.withAgent(func(client agent.ExtendedAgent) error {
		var err error
		keys, err = client.List()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ssh-agent list keys: %w", err)
	}
	return keys, nil
}

func (s *agentSigner) withAgent(use func(agent.ExtendedAgent) error) error {
	conn, err := net.Dial("unix", s.socket)
	if err != nil {
		return fmt.Errorf("ssh-agent at SSH_AUTH_SOCK: %w", err)
	}
	defer conn.Close()
	return use(agent.NewClient(conn))
}

// Sign returns the armored SSHSIG signature ("-----BEGIN SSH SIGNATURE-----")
// of message under namespace, hashed with SHA-512 like ssh-keygen -Y sign.
func Sign(signer ssh.Signer, namespace string, message []byte) ([]byte, error) {
	if namespace == "" {
		return nil, errors.New("sign: the namespace must not be empty")
	}
	if _, isCert := signer.PublicKey().(*ssh.Certificate); isCert {
		return nil, fmt.Errorf("sign: %w", ErrCertificateSigner)
	}
	sig, err := sshsig.Sign(bytes.NewReader(message), signer, signatureHash, namespace)
	if err != nil {
		return nil, fmt.Errorf("sign with %s key %s: %w",
			signer.PublicKey().Type(), ssh.FingerprintSHA256(signer.PublicKey()), err)
	}
	return sshsig.Armor(sig), nil
}
