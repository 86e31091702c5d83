package signing

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// AllowedSigner is one line of an OpenSSH allowed_signers file (ssh-keygen(1),
// "ALLOWED SIGNERS"):
//
//	principals [options] keytype base64-key [comment]
//
// Principals and namespaces are OpenSSH pattern lists: comma-separated, with *
// and ? wildcards and a leading ! negating an entry.
type AllowedSigner struct {
	Path          string // the allowed_signers file, for messages
	Line          int
	Principals    []string
	Namespaces    []string  // nil: any namespace
	ValidAfter    time.Time // zero: unbounded
	ValidBefore   time.Time // zero: unbounded
	CertAuthority bool
	Key           ssh.PublicKey
	Comment       string
}

// AllowsPrincipal reports whether name matches the line's principal patterns
// the way ssh-keygen -Y verify -I name decides it.
func (s AllowedSigner) AllowsPrincipal(name string) bool {
	return matchPatternList(name, s.Principals)
}

// AllowsNamespace reports whether signatures in namespace may use this line.
func (s AllowedSigner) AllowsNamespace(namespace string) bool {
	return s.Namespaces == nil || matchPatternList(namespace, s.Namespaces)
}

// keyTypes are the plain public key types an allowed_signers line may hold.
var keyTypes = map[string]bool{
	ssh.KeyAlgoRSA:        true,
	ssh.KeyAlgoDSA:        true,
	ssh.KeyAlgoECDSA256:   true,
	ssh.KeyAlgoECDSA384:   true,
	ssh.KeyAlgoECDSA521:   true,
	ssh.KeyAlgoSKECDSA256: true,
	ssh.KeyAlgoED25519:    true,
	ssh.KeyAlgoSKED25519:  true,
}

// ParseAllowedSigners parses an allowed_signers file; path only names it in
// errors, which read "path:line: what is wrong". Blank lines and # comments
// are skipped. It accepts what OpenSSH 9.x accepts, and rejects a few lines
// OpenSSH would take but that could never allow anything.
func ParseAllowedSigners(path string, data []byte) ([]AllowedSigner, error) {
	var signers []AllowedSigner
	for i, text := range strings.Split(string(data), "\n") {
		text = strings.TrimRight(text, "\r")
		trimmed := strings.TrimLeft(text, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		signer, err := parseAllowedSignerLine(trimmed)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		signer.Path = path
		signer.Line = i + 1
		signers = append(signers, signer)
	}
	return signers, nil
}

func parseAllowedSignerLine(text string) (AllowedSigner, error) {
	var signer AllowedSigner
	principals, rest, err := cutPrincipals(text)
	if err != nil {
		return signer, err
	}
	if principals == "" {
		return signer, errors.New("empty principals")
	}
	signer.Principals = strings.Split(principals, ",")

	rest = strings.TrimLeft(rest, " \t")
	if rest == "" {
		return signer, errors.New("missing key after the principals")
	}
	// Like OpenSSH: what follows the principals is the key when it starts with
	// a key type, otherwise options.
	if first, _ := cutField(rest); !keyTypes[first] && !isCertificateType(first) {
		options, afterOptions, err := cutOptions(rest)
		if err != nil {
			return signer, err
		}
		if err := signer.parseOptions(options); err != nil {
			return signer, err
		}
		rest = strings.TrimLeft(afterOptions, " \t")
		if rest == "" {
			return signer, errors.New("missing key after the options")
		}
	}

	keyType, rest := cutField(rest)
	if isCertificateType(keyType) {
		return signer, fmt.Errorf("%s is a certificate: list the CA's key with cert-authority instead", keyType)
	}
	if !keyTypes[keyType] {
		return signer, fmt.Errorf("unknown key type %q", keyType)
	}
	encoded, rest := cutField(strings.TrimLeft(rest, " \t"))
	if encoded == "" {
		return signer, fmt.Errorf("missing base64 key data after %s", keyType)
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return signer, fmt.Errorf("%s key is not valid base64: %w", keyType, err)
	}
	key, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return signer, fmt.Errorf("%s key data is corrupt: %w", keyType, err)
	}
	if key.Type() != keyType {
		return signer, fmt.Errorf("key data is a %s key, but the line says %s", key.Type(), keyType)
	}
	signer.Key = key
	signer.Comment = strings.TrimSpace(rest)
	return signer, nil
}

func isCertificateType(keyType string) bool {
	return strings.HasSuffix(keyType, "-cert-v01@openssh.com")
}

// cutField splits at the first space or tab.
func cutField(s string) (field, rest string) {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// cutPrincipals reads the principals field; as in OpenSSH a double-quoted part
// may hold spaces.
func cutPrincipals(s string) (field, rest string, err error) {
	i := strings.IndexAny(s, " \t\"")
	if i < 0 {
		return s, "", nil
	}
	if s[i] != '"' {
		return s[:i], s[i:], nil
	}
	closing := strings.IndexByte(s[i+1:], '"')
	if closing < 0 {
		return "", "", errors.New("unterminated quote in the principals")
	}
	end := i + 1 + closing
	return s[:i] + s[i+1:end], s[end+1:], nil
}

// cutOptions reads the options field, which ends at the first space or tab
// outside double quotes (\" does not end a quote).
func cutOptions(s string) (options, rest string, err error) {
	quoted := false
	i := 0
	for ; i < len(s) && (quoted || (s[i] != ' ' && s[i] != '\t')); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '"':
			i++
		case s[i] == '"':
			quoted = !quoted
		}
	}
	if quoted {
		return "", "", errors.New("unterminated quote in the options")
	}
	return s[:i], s[i:], nil
}

func (s *AllowedSigner) parseOptions(options string) error {
	seen := map[string]bool{}
	for options != "" {
		name := options
		if end := strings.IndexAny(options, "=,"); end >= 0 {
			name = options[:end]
		}
		options = options[len(name):]
		option := strings.ToLower(name) // OpenSSH matches option names case-insensitively
		if seen[option] {
			return fmt.Errorf("option %s is given twice", option)
		}
		seen[option] = true

		switch option {
		case "cert-authority":
			if strings.HasPrefix(options, "=") {
				return errors.New("option cert-authority takes no value")
			}
			s.CertAuthority = true
		case "namespaces", "valid-after", "valid-before":
			if !strings.HasPrefix(options, "=") {
				return fmt.Errorf("option %s needs a value in double quotes", option)
			}
			value, rest, err := dequote(option, options[1:])
			if err != nil {
				return err
			}
			options = rest
			if err := s.setOption(option, value); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown option %q (known: cert-authority, namespaces, valid-after, valid-before)", name)
		}

		if options == "" {
			break
		}
		if options[0] != ',' {
			return fmt.Errorf("unexpected %q after option %s", options, option)
		}
		options = options[1:]
		if options == "" {
			return errors.New("the options end with a comma")
		}
	}
	if !s.ValidAfter.IsZero() && !s.ValidBefore.IsZero() && !s.ValidBefore.After(s.ValidAfter) {
		return errors.New("valid-before is not after valid-after")
	}
	return nil
}

func (s *AllowedSigner) setOption(option, value string) error {
	switch option {
	case "namespaces":
		if value == "" {
			return errors.New(`namespaces="" would allow no namespace`)
		}
		s.Namespaces = strings.Split(value, ",")
	case "valid-after":
		t, err := parseSignerTime(option, value)
		if err != nil {
			return err
		}
		s.ValidAfter = t
	case "valid-before":
		t, err := parseSignerTime(option, value)
		if err != nil {
			return err
		}
		s.ValidBefore = t
	}
	return nil
}

// dequote reads a double-quoted option value at the start of s, where \"
// stands for a quote.
func dequote(option, s string) (value, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", fmt.Errorf("option %s needs a value in double quotes", option)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '"':
			return b.String(), s[i+1:], nil
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '"':
			i++
		}
		b.WriteByte(s[i])
	}
	return "", "", fmt.Errorf("unterminated quote in the value of option %s", option)
}

// parseSignerTime reads YYYYMMDD[HHMM[SS]] with an optional Z or UTC suffix;
// without one the time is local, as in ssh-keygen.
func parseSignerTime(option, value string) (time.Time, error) {
	digits, loc := value, time.Local
	upper := strings.ToUpper(value)
	switch {
	case len(value) > 1 && strings.HasSuffix(upper, "Z"):
		digits, loc = value[:len(value)-1], time.UTC
	case len(value) > 3 && strings.HasSuffix(upper, "UTC"):
		digits, loc = value[:len(value)-3], time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(digits)]
	if ok && strings.Trim(digits, "0123456789") == "" {
		if t, err := time.ParseInLocation(layout, digits, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid %s time %q: want YYYYMMDD[HHMM[SS]], optionally followed by Z for UTC", option, value)
}

// matchPatternList is OpenSSH's match_pattern_list: a negated entry that
// matches refuses outright, otherwise any matching entry accepts.
func matchPatternList(s string, patterns []string) bool {
	matched := false
	for _, pattern := range patterns {
		negated := strings.HasPrefix(pattern, "!")
		if negated {
			pattern = pattern[1:]
		}
		if matchPattern(s, pattern) {
			if negated {
				return false
			}
			matched = true
		}
	}
	return matched
}

// matchPattern matches s against a pattern where * is any run of bytes and ?
// one byte; backtracking to the last * keeps it linear in practice.
func matchPattern(s, pattern string) bool {
	si, pi := 0, 0
	star, starS := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, starS = pi, si
			pi++
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			si++
			pi++
		case star >= 0:
			starS++
			si, pi = starS, star+1
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// AllowedSignersLine renders one allowed_signers line:
// `principal namespaces="ns" keytype base64`. A principal with spaces is
// quoted. OpenSSH has no way to write a principal containing a double quote,
// and commas separate principals, so callers should not pass those.
func AllowedSignersLine(principal string, namespaces []string, key ssh.PublicKey) string {
	var b strings.Builder
	if strings.ContainsAny(principal, " \t") {
		b.WriteString(`"` + principal + `"`)
	} else {
		b.WriteString(principal)
	}
	if len(namespaces) > 0 {
		b.WriteString(` namespaces="`)
		b.WriteString(strings.ReplaceAll(strings.Join(namespaces, ","), `"`, `\"`))
		b.WriteString(`"`)
	}
	b.WriteString(" ")
	b.WriteString(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
	return b.String()
}
