// Package checkspec owns the form of a health check's target that can be
// checked without a host: an http check's URL and a tcp check's address. It
// imports nothing of relctl, so the config loader (relctl validate, on the
// value rendered for every host) and the prober refuse with one function.
package checkspec

import (
	"errors"
	"fmt"
	"net"
	"net/url"
)

// URL refuses what an http check cannot GET: anything but an absolute
// http(s) URL with a host. The URL itself is not echoed: it may carry
// credentials.
func URL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("url must be an absolute http(s) URL")
	}
	return nil
}

// Address refuses what a tcp check cannot dial: anything but host:port.
func Address(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("address must be host:port: %v", err)
	}
	return nil
}
