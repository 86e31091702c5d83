package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// identity is one identity file as loaded: its key (with the certificate
// beside it), or for an encrypted key what finds its copy in the agent.
type identity struct {
	file string
	// signers are the file's key, its certificate first; none when the
	// key is encrypted (the agent signs with its copy).
	signers   []ssh.Signer
	encrypted bool
	pub       ssh.PublicKey // nil: an old encrypted format that hides it
	cert      *ssh.Certificate
}

// identityLoad is one identity file's loading: kept once it succeeded.
type identityLoad struct {
	mu sync.Mutex
	id *identity
}

// identity returns file loaded, loading it on first use: every path is
// read and parsed once per pool (and an encrypted key checked against the
// agent once), however many hosts use it and however many Gets run at once.
// A failure is not kept: a key put back (or added to the agent) while a
// rollback retries a host is used by the next attempt.
func (p *Pool) identity(file string) (*identity, error) {
	p.loadMu.Lock()
	l := p.identities[file]
	if l == nil {
		l = &identityLoad{}
		p.identities[file] = l
	}
	p.loadMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id != nil {
		return l.id, nil
	}
	id, err := p.loadIdentity(file)
	if err != nil {
		return nil, err
	}
	l.id = id
	return id, nil
}

// loadIdentity reads an identity file and the certificate beside it. An
// encrypted key must be in the agent, which signs for it; the certificate
// goes with the key wherever it is.
func (p *Pool) loadIdentity(file string) (*identity, error) {
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	id := &identity{file: file}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	var encrypted *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &encrypted):
		id.encrypted, id.pub = true, encrypted.PublicKey
	case err != nil:
		return nil, fmt.Errorf("identity file %s: %w", file, err)
	default:
		id.signers, id.pub = []ssh.Signer{signer}, signer.PublicKey()
	}
	if id.cert, err = loadIdentityCert(file, id.pub, func() int64 { return time.Now().Unix() }); err != nil {
		return nil, err
	}
	if id.signers, err = withCert(id.signers, id.cert); err != nil {
		return nil, fmt.Errorf("certificate %s-cert.pub: %w", file, err)
	}
	if id.encrypted {
		a, err := p.agent()
		if errors.Is(err, errNoAgent) {
			return nil, fmt.Errorf("identity file %s is encrypted and no ssh-agent is available "+
				"(SSH_AUTH_SOCK is not set): start ssh-agent and run ssh-add %s", file, file)
		}
		if err != nil {
			return nil, fmt.Errorf("identity file %s is encrypted: %w", file, err)
		}
		if err := agentHolds(a, id.pub); err != nil {
			return nil, fmt.Errorf("identity file %s is encrypted: %w", file, err)
		}
	}
	return id, nil
}

// errNoAgent is SSH_AUTH_SOCK unset.
var errNoAgent = errors.New("no ssh-agent: SSH_AUTH_SOCK is not set")

// agent returns the pool's connection to the ssh-agent at SSH_AUTH_SOCK,
// opening it on first use. One connection serves every dial: the client
// serialises requests.
func (p *Pool) agent() (agent.ExtendedAgent, error) {
	p.agentMu.Lock()
	defer p.agentMu.Unlock()
	if p.agentClient != nil {
		return p.agentClient, nil
	}
	if p.agentSock == "" {
		return nil, errNoAgent
	}
	if p.agentClosed {
		return nil, errPoolClosed
	}
	c, err := net.Dial("unix", p.agentSock)
	if err != nil {
		return nil, fmt.Errorf("ssh-agent at SSH_AUTH_SOCK: %w", err)
	}
	p.agentConn, p.agentClient = c, agent.NewClient(c)
	return p.agentClient, nil
}

// agentHolds checks that the agent can sign for an encrypted identity file.
func agentHolds(a agent.Agent, pub ssh.PublicKey) error {
	keys, err := a.List()
	if err != nil {
		return fmt.Errorf("ssh-agent: %w", err)
	}
	if pub == nil { // old key formats hide the public half; any agent key may do
		if len(keys) == 0 {
			return errors.New("ssh-agent holds no keys: run ssh-add")
		}
		return nil
	}
	for _, k := range keys {
		if bytes.Equal(k.Marshal(), pub.Marshal()) {
			return nil
		}
	}
	return fmt.Errorf("ssh-agent does not hold this key (%s): run ssh-add", ssh.FingerprintSHA256(pub))
}

// auth is the public key authentication of one login: its identity files
// in order (an encrypted one through the agent's copy of its key), then,
// with Options.UseAgent and without IdentitiesOnly, every other key of
// the agent. A key is offered once.
func (p *Pool) auth(l *login) ssh.AuthMethod {
	return ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		var out []ssh.Signer
		seen := map[string]bool{}
		add := func(signers []ssh.Signer) {
			for _, s := range signers {
				if k := string(s.PublicKey().Marshal()); !seen[k] {
					seen[k] = true
					out = append(out, s)
				}
			}
		}
		var agentSigners []ssh.Signer
		agentLoaded := false
		fromAgent := func() ([]ssh.Signer, error) {
			if agentLoaded {
				return agentSigners, nil
			}
			a, err := p.agent()
			if err == nil {
				agentSigners, err = a.Signers()
			}
			if err != nil {
				return nil, fmt.Errorf("ssh-agent: %w", err)
			}
			agentLoaded = true
			return agentSigners, nil
		}
		for _, file := range l.identityFiles {
			id, err := p.identity(file)
			if err != nil {
				return nil, err
			}
			add(id.signers)
			if !id.encrypted && !(p.opts.UseAgent && l.identitiesOnly) {
				continue // the agent's keys, if used, all come after
			}
			all, err := fromAgent()
			if err != nil {
				return nil, err
			}
			// The agent's copy of the key (or its certificates of it),
			// with the file's certificate.
			var mine []ssh.Signer
			for _, s := range all {
				if id.pub == nil || bytes.Equal(plainKey(s.PublicKey()).Marshal(), id.pub.Marshal()) {
					mine = append(mine, s)
				}
			}
			if mine, err = withCert(mine, id.cert); err != nil {
				return nil, fmt.Errorf("ssh-agent: %w", err)
			}
			add(mine)
		}
		if p.opts.UseAgent && !l.identitiesOnly {
			all, err := fromAgent()
			if err != nil {
				return nil, err
			}
			add(all)
		}
		return out, nil
	})
}
