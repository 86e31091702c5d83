package transport

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// JumpHost is one bastion of a ProxyJump chain, as OpenSSH's
// `[user@]host[:port]`.
type JumpHost struct {
	User    string // empty: Options.User, else the local user
	Address string // host:port; ParseProxyJump fills in port 22
}

// String is the jump host as ProxyJump writes it: "user@host:port"
// ("[::1]:22" for IPv6), without the user when it has none.
func (j JumpHost) String() string {
	if j.User == "" {
		return j.Address
	}
	return j.User + "@" + j.Address
}

// ParseProxyJump parses OpenSSH's ProxyJump value: comma-separated
// `[user@]host[:port]` (or `ssh://[user@]host[:port]`), first bastion
// first. IPv6 addresses are written in brackets, `[::1]:22`; a bare IPv6
// address without a port is accepted too. "" and "none" are no chain.
func ParseProxyJump(s string) ([]JumpHost, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var chain []JumpHost
	for i, part := range strings.Split(s, ",") {
		j, err := parseJumpHost(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("proxy_jump %q: bastion %d: %w", s, i+1, err)
		}
		chain = append(chain, j)
	}
	return chain, nil
}

func parseJumpHost(s string) (JumpHost, error) {
	if s == "" {
		return JumpHost{}, fmt.Errorf("empty (a comma too many?)")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return JumpHost{}, fmt.Errorf("%q holds a space or control character", s)
		}
	}
	s = strings.TrimPrefix(s, "ssh://")
	var j JumpHost
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		j.User, s = s[:at], s[at+1:]
		if j.User == "" {
			return JumpHost{}, fmt.Errorf("empty user before @")
		}
	}
	host, port, err := splitJumpAddress(s)
	if err != nil {
		return JumpHost{}, err
	}
	j.Address = net.JoinHostPort(host, port)
	return j, nil
}

// splitJumpAddress splits "host", "host:port", "[v6]", "[v6]:port" or a
// bare IPv6 address; the port defaults to 22.
func splitJumpAddress(s string) (host, port string, err error) {
	switch {
	case s == "":
		return "", "", fmt.Errorf("no host")
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("%q: missing ]", s)
		}
		host, rest := s[1:end], s[end+1:]
		if net.ParseIP(host) == nil || !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("%q: [%s] is not an IPv6 address", s, host)
		}
		if rest == "" {
			return host, "22", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", fmt.Errorf("%q: unexpected %q after ]", s, rest)
		}
		return host, rest[1:], checkPort(s, rest[1:])
	case strings.Count(s, ":") > 1:
		if ip := net.ParseIP(s); ip != nil {
			return s, "22", nil
		}
		return "", "", fmt.Errorf("%q: an IPv6 address with a port is written [addr]:port", s)
	}
	host, port, found := strings.Cut(s, ":")
	if host == "" {
		return "", "", fmt.Errorf("%q: no host", s)
	}
	if strings.ContainsAny(host, "[]/") {
		return "", "", fmt.Errorf("%q: bad host name", s)
	}
	if !found {
		return host, "22", nil
	}
	return host, port, checkPort(s, port)
}

func checkPort(s, port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
	}
	return nil
}

// bastionName is the name a bastion goes by in errors, logs and
// Handshakes: "bastion user@host:port", and for the second of a chain
// "bastion first>second".
func bastionName(key string) string { return "bastion " + key }

// chainKeys returns the pool key of each bastion of the chain: its own
// "user@host:port" after those it is reached through, joined by ">".
// The users and ports are filled in, in resolved.
func (p *Pool) chainKeys(chain []JumpHost) (resolved []JumpHost, keys []string, err error) {
	keys = make([]string, len(chain))
	resolved = make([]JumpHost, len(chain))
	prefix := ""
	for i, j := range chain {
		j.Address = withDefaultPort(j.Address)
		if j.User == "" {
			if j.User, err = p.user(Target{Name: bastionName(j.Address)}); err != nil {
				return nil, nil, err
			}
		}
		resolved[i] = j
		keys[i] = prefix + j.String()
		prefix = keys[i] + ">"
	}
	return resolved, keys, nil
}

// bastion returns the connection to the last bastion of chain, dialling
// the chain's bastions that are not connected (each through the one
// before it). A bastion is dialled once for all the hosts behind it.
func (p *Pool) bastion(ctx context.Context, forHost string, chain []JumpHost) (*sshConn, error) {
	resolved, keys, err := p.chainKeys(chain)
	if err != nil {
		return nil, err
	}
	var via *sshConn
	for i, j := range resolved {
		h := hop{
			key:     "\x00" + keys[i], // never an inventory name
			name:    bastionName(keys[i]),
			address: j.Address,
			user:    j.User,
			via:     via,
			bastion: true,
			logFor:  forHost,
		}
		c, err := p.getHop(ctx, h)
		if err != nil {
			return nil, err
		}
		via = c
	}
	return via, nil
}

// viaGrace is how long a connection through a bastion that ended waits to
// learn whether the bastion's connection ended too (the usual cause).
const viaGrace = 200 * time.Millisecond
