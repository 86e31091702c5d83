package sshconfig

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Jump is one bastion of a ProxyJump chain, OpenSSH's `[user@]host[:port]`.
type Jump struct {
	User string // empty: not given
	Host string // a name or an address; an IPv6 address without brackets
	Port int    // 0: not given
}

// String is the bastion as ProxyJump writes it, leaving out what was not
// given: "user@host:port", "host", "[::1]:2200", "[::1]".
func (j Jump) String() string {
	h := j.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if j.Port != 0 {
		h += ":" + strconv.Itoa(j.Port)
	}
	if j.User != "" {
		h = j.User + "@" + h
	}
	return h
}

// ParseProxyJump parses OpenSSH's ProxyJump value: comma-separated
// `[user@]host[:port]` or `ssh://[user@]host[:port]`, first bastion first.
// An IPv6 address is written in brackets, `[::1]:22`, or bare without a
// port. "" and "none" (in any case) are no chain. Ports are not defaulted (0: not given).
//
// It refuses what ssh would refuse or run into trouble with: blanks and
// control characters, empty parts, an empty user, ports outside 1-65535, a
// host starting with '-' (it would be taken for an option) or holding '/',
// '[', ']' or a shell metacharacter.
func ParseProxyJump(s string) ([]Jump, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return nil, nil
	}
	var chain []Jump
	for i, part := range strings.Split(s, ",") {
		j, err := parseJump(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %q: bastion %d: %w", s, i+1, err)
		}
		chain = append(chain, j)
	}
	return chain, nil
}

func parseJump(s string) (Jump, error) {
	if s == "" {
		return Jump{}, errors.New("empty (a comma too many?)")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return Jump{}, fmt.Errorf("%q holds a blank or control character", s)
		}
	}
	s = strings.TrimPrefix(s, "ssh://")
	var j Jump
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		j.User, s = s[:at], s[at+1:]
		if err := checkUser(j.User); err != nil {
			return Jump{}, err
		}
	}
	host, port, err := splitJumpAddress(s)
	if err != nil {
		return Jump{}, err
	}
	j.Host, j.Port = host, port
	return j, nil
}

// checkUser refuses what ssh's ssh_valid_ruser refuses, and an empty user.
func checkUser(u string) error {
	switch {
	case u == "":
		return errors.New("empty user before @")
	case strings.HasPrefix(u, "-"):
		return fmt.Errorf("user %q starts with '-'", u)
	case strings.ContainsAny(u, "'`\";&<>|(){}"), strings.HasSuffix(u, `\`):
		return fmt.Errorf("user %q holds a shell metacharacter", u)
	case strings.Contains(u, "/"):
		return fmt.Errorf("user %q holds a '/'", u) // "ssh://u@h" would not read back
	}
	return nil
}

// hostMeta are the characters a bastion's host name may not hold: ssh's
// ssh_valid_hostname's, those of shell globs and history, and '/'.
const hostMeta = "'`\"$\\;&<>|(){}*?!#~/"

// splitJumpAddress splits "host", "host:port", "[v6]", "[v6]:port" or a bare
// IPv6 address; port is 0 when not given.
func splitJumpAddress(s string) (host string, port int, err error) {
	switch {
	case s == "":
		return "", 0, errors.New("no host")
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("%q: missing ]", s)
		}
		host, rest := s[1:end], s[end+1:]
		if net.ParseIP(host) == nil || !strings.Contains(host, ":") {
			return "", 0, fmt.Errorf("%q: [%s] is not an IPv6 address", s, host)
		}
		if rest == "" {
			return host, 0, nil
		}
		p, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return "", 0, fmt.Errorf("%q: unexpected %q after ]", s, rest)
		}
		port, err := checkPort(s, p)
		return host, port, err
	case strings.Count(s, ":") > 1:
		if net.ParseIP(s) != nil {
			return s, 0, nil
		}
		return "", 0, fmt.Errorf("%q: an IPv6 address with a port is written [addr]:port", s)
	}
	host, p, found := strings.Cut(s, ":")
	switch {
	case host == "":
		return "", 0, fmt.Errorf("%q: no host", s)
	case strings.HasPrefix(host, "-"):
		return "", 0, fmt.Errorf("%q: a host starting with '-' would be taken for an option", s)
	case strings.ContainsAny(host, "[]"+hostMeta):
		return "", 0, fmt.Errorf("%q: bad host name", s)
	}
	if !found {
		return host, 0, nil
	}
	port, err = checkPort(s, p)
	return host, port, err
}

func checkPort(s, p string) (int, error) {
	n, ok := parsePort(p)
	if !ok || p != strconv.Itoa(n) {
		return 0, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, p)
	}
	return n, nil
}
