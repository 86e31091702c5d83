package playbooks

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	versionRE  = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$`)
	hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// ValidateVersion checks a release version: it becomes a directory name on
// every host, so it must be one safe path element.
func ValidateVersion(v string) error {
	if err := checkName("version", v, versionRE, 128, "letters, digits, '.', '_', '+' and '-'"); err != nil {
		return err
	}
	if strings.Contains(v, "..") {
		return fmt.Errorf("version %q must not contain \"..\"", v)
	}
	return nil
}

// ValidateHostName checks a host name as written in relctl.toml; it names
// files and log fields, so it is kept to a conservative alphabet.
func ValidateHostName(n string) error {
	return checkName("host name", n, hostNameRE, 63, "letters, digits, '.', '_' and '-'")
}

// checkName explains which rule a name breaks, not just that it does.
func checkName(what, v string, re *regexp.Regexp, max int, allowed string) error {
	if re.MatchString(v) {
		return nil
	}
	switch {
	case v == "":
		return fmt.Errorf("%s is empty", what)
	case len(v) > max:
		return fmt.Errorf("%s %q is too long (%d characters, at most %d)", what, v, len(v), max)
	case !isAlnum(v[0]):
		return fmt.Errorf("%s %q must start with a letter or digit", what, v)
	}
	for _, r := range v {
		if !re.MatchString("a" + string(r)) {
			return fmt.Errorf("%s %q contains %q; use only %s", what, v, r, allowed)
		}
	}
	return fmt.Errorf("%s %q is not valid; use only %s", what, v, allowed)
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
