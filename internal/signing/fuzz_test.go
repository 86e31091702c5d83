package signing

import (
	"strings"
	"testing"
)

// FuzzParseAllowedSigners: any allowed_signers file gives signers or an
// error that names the file, never a panic; every signer it accepts has a
// key and at least one principal.
func FuzzParseAllowedSigners(f *testing.F) {
	for _, seed := range []string{
		"relctl-testenv namespaces=\"relctl-rehearsal\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKOzusuCC4uPE7NkCA4ptpgV4x6OkZD32V8aeZNPGrgS\n",
		"# comment\n\nalice@example.com,bob@example.com cert-authority,valid-after=\"20260101\",valid-before=\"20270101\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKOzusuCC4uPE7NkCA4ptpgV4x6OkZD32V8aeZNPGrgS comment\n",
		"\"quoted principal\" ssh-ed25519 AAAA\n",
		"a namespaces=\"unterminated ssh-ed25519 AAAA\n",
		"a ssh-rsa !!!notbase64\n",
		"a\n",
		"\x00\xff",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		signers, err := ParseAllowedSigners("allowed_signers", data)
		if err != nil {
			if !strings.Contains(err.Error(), "allowed_signers") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, s := range signers {
			if s.Key == nil || len(s.Principals) == 0 {
				t.Fatalf("accepted a signer without a key or principal: %+v", s)
			}
		}
	})
}
