// Package haproxyspec owns what HAProxy's runtime API and socat accept from
// relctl's configuration: backend and server names, and the admin socket's
// path. It imports nothing of relctl, so the config loader (validate) and
// the runtime client (package traffic) refuse a value with the same function.
package haproxyspec

import (
	"fmt"
	"regexp"
)

var (
	// HAProxy's own rule for proxy and server names (invalid_char in tools.c).
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
	// An absolute path socat's address parser takes as one word: no ',' (its
	// option separator), ':' or '!', no blanks or quotes.
	socketRE = regexp.MustCompile(`^/[A-Za-z0-9/_.@%+=~-]*$`)
)

// Name refuses a backend or server name (kind says which) that HAProxy
// could not have.
func Name(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s name %q: HAProxy names are letters, digits, '-', '_', '.' and ':'", kind, name)
	}
	return nil
}

// Socket refuses an admin socket path that socat would not take as one
// UNIX-CONNECT address.
func Socket(path string) error {
	if !socketRE.MatchString(path) {
		return fmt.Errorf("haproxy admin socket %q: want an absolute path of letters, digits and /_.@%%+=~-", path)
	}
	return nil
}
