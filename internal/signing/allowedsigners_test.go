package signing

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestParseAllowedSignersGoodLines(t *testing.T) {
	signer, key := fixedKey(t, 1)
	keyText := authorizedKey(key)
	dir := t.TempDir()
	sigPath := writeFile(t, filepath.Join(dir, "message.sig"), mustSign(t, signer, RehearsalNamespace, []byte("message")))

	tests := []struct {
		name string
		line string
		want AllowedSigner
		// keygenFinds: `ssh-keygen -Y find-principals` prints the line's
		// principals (it never matches cert-authority lines to a plain key).
		keygenFinds bool
	}{
		{
			name:        "one principal with a comment",
			line:        "alice@example.com " + keyText + " alice's laptop",
			want:        AllowedSigner{Principals: []string{"alice@example.com"}, Comment: "alice's laptop"},
			keygenFinds: true,
		},
		{
			name: "several principals with wildcards and a negation",
			line: "alice@example.com,*@ops.example.com,!mallory@ops.example.com,ci-?? " + keyText,
			want: AllowedSigner{Principals: []string{
				"alice@example.com", "*@ops.example.com", "!mallory@ops.example.com", "ci-??",
			}},
			keygenFinds: true,
		},
		{
			name:        "quoted namespaces with a comma",
			line:        `ci namespaces="relctl-rehearsal,git" ` + keyText,
			want:        AllowedSigner{Principals: []string{"ci"}, Namespaces: []string{"relctl-rehearsal", "git"}},
			keygenFinds: true,
		},
		{
			name:        "quoted namespaces with spaces and an escaped quote",
			line:        `ci namespaces="file, a \"b\" c" ` + keyText,
			want:        AllowedSigner{Principals: []string{"ci"}, Namespaces: []string{"file", ` a "b" c`}},
			keygenFinds: true,
		},
		{
			name: "valid-after local date and valid-before UTC with time",
			line: `ci valid-after="20240101",valid-before="20991231123000Z" ` + keyText,
			want: AllowedSigner{
				Principals:  []string{"ci"},
				ValidAfter:  time.Date(2024, 1, 1, 0, 0, 0, 0, time.Local),
				ValidBefore: time.Date(2099, 12, 31, 12, 30, 0, 0, time.UTC),
			},
			keygenFinds: true,
		},
		{
			name: "valid-after with minutes and a UTC suffix",
			line: `ci valid-after="202401021504UTC" ` + keyText,
			want: AllowedSigner{
				Principals: []string{"ci"},
				ValidAfter: time.Date(2024, 1, 2, 15, 4, 0, 0, time.UTC),
			},
			keygenFinds: true,
		},
		{
			name: "cert-authority",
			line: "*@example.com cert-authority " + keyText + " the CA",
			want: AllowedSigner{Principals: []string{"*@example.com"}, CertAuthority: true, Comment: "the CA"},
		},
		{
			name: "option names in any case, tabs and leading spaces",
			line: "  \tci\tCert-Authority,NAMESPACES=\"x\"\t" + keyText,
			want: AllowedSigner{Principals: []string{"ci"}, CertAuthority: true, Namespaces: []string{"x"}},
		},
		{
			name:        "quoted principal with a space",
			line:        `"release team" ` + keyText,
			want:        AllowedSigner{Principals: []string{"release team"}},
			keygenFinds: true,
		},
		{
			name:        "CRLF line ending",
			line:        "ci " + keyText + "\r",
			want:        AllowedSigner{Principals: []string{"ci"}},
			keygenFinds: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "# relctl signers\n\n" + tt.line + "\n"
			got, err := ParseAllowedSigners("allowed_signers", []byte(data))
			if err != nil {
				t.Fatalf("ParseAllowedSigners: %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("got %d signers, want 1", len(got))
			}
			want := tt.want
			want.Path, want.Line, want.Key = "allowed_signers", 3, key
			assertSigner(t, got[0], want)

			file := writeFile(t, filepath.Join(t.TempDir(), "allowed_signers"), []byte(data))
			found, err := keygenFindPrincipals(t, file, sigPath)
			wantFound := ""
			if tt.keygenFinds {
				wantFound = strings.Join(want.Principals, "\n")
			}
			if found != wantFound {
				t.Errorf("ssh-keygen -Y find-principals = %q (%v), want %q", found, err, wantFound)
			}
		})
	}
}

func assertSigner(t *testing.T, got, want AllowedSigner) {
	t.Helper()
	if got.Key == nil || string(got.Key.Marshal()) != string(want.Key.Marshal()) {
		t.Errorf("Key = %v, want %s", got.Key, ssh.FingerprintSHA256(want.Key))
	}
	got.Key, want.Key = nil, nil
	if !got.ValidAfter.Equal(want.ValidAfter) || !got.ValidBefore.Equal(want.ValidBefore) {
		t.Errorf("valid %v..%v, want %v..%v", got.ValidAfter, got.ValidBefore, want.ValidAfter, want.ValidBefore)
	}
	got.ValidAfter, got.ValidBefore, want.ValidAfter, want.ValidBefore = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseAllowedSignersKeepsLineNumbers(t *testing.T) {
	_, alice := fixedKey(t, 1)
	_, bob := fixedKey(t, 2)
	data := fmt.Sprintf("# signers\nalice %s\n\n   # bob below\nbob namespaces=\"git\" %s bob\n", authorizedKey(alice), authorizedKey(bob))
	got, err := ParseAllowedSigners("/etc/relctl/allowed_signers", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Line != 2 || got[1].Line != 5 {
		t.Fatalf("got %+v, want alice on line 2 and bob on line 5", got)
	}
	if got[1].Path != "/etc/relctl/allowed_signers" || got[1].Principals[0] != "bob" {
		t.Errorf("second signer = %+v", got[1])
	}
	empty, err := ParseAllowedSigners("empty", []byte("# nobody yet\n"))
	if err != nil || len(empty) != 0 {
		t.Errorf("comment-only file = %v, %v; want no signers and no error", empty, err)
	}
}

func TestParseAllowedSignersBadLines(t *testing.T) {
	signer, key := fixedKey(t, 1)
	keyText := authorizedKey(key)
	base64Key := strings.Fields(keyText)[1]
	sigPath := writeFile(t, filepath.Join(t.TempDir(), "message.sig"), mustSign(t, signer, RehearsalNamespace, []byte("message")))
	// ssh-keygen takes this one, but such a line could never allow a signature.
	const keygenAcceptsUselessLine = "empty namespaces"
	tests := []struct {
		name    string
		line    string
		wantErr string
	}{
		{"missing key", "alice", "missing key after the principals"},
		{"missing key after options", `alice namespaces="git"`, "missing key after the options"},
		{"missing base64", "alice ssh-ed25519", "missing base64 key data after ssh-ed25519"},
		{"bad base64", "alice ssh-ed25519 AAAA!!!notbase64", "ssh-ed25519 key is not valid base64: illegal base64 data at input byte 4"},
		{"key type differs from the data", "alice ssh-rsa " + base64Key, "key data is a ssh-ed25519 key, but the line says ssh-rsa"},
		{"truncated key data", "alice ssh-ed25519 " + base64Key[:20], "ssh-ed25519 key data is corrupt: ssh: parse error in message type 0"},
		{"unknown key type", `alice namespaces="git" ssh-foo ` + base64Key, `unknown key type "ssh-foo"`},
		{"certificate", "alice ssh-ed25519-cert-v01@openssh.com " + base64Key, "ssh-ed25519-cert-v01@openssh.com is a certificate: list the CA's key with cert-authority instead"},
		{"unknown option", "alice no-touch-required " + keyText, `unknown option "no-touch-required" (known: cert-authority, namespaces, valid-after, valid-before)`},
		{"unterminated quote in options", `alice namespaces="git ` + keyText, "unterminated quote in the options"},
		{"unterminated quote in principals", `"alice ` + keyText, "unterminated quote in the principals"},
		{"unquoted value", "alice namespaces=git " + keyText, "option namespaces needs a value in double quotes"},
		{"option without value", "alice valid-after " + keyText, "option valid-after needs a value in double quotes"},
		{"value for cert-authority", `alice cert-authority="yes" ` + keyText, "option cert-authority takes no value"},
		{"option given twice", `alice namespaces="a",namespaces="b" ` + keyText, "option namespaces is given twice"},
		{"trailing comma", `alice namespaces="a", ` + keyText, "the options end with a comma"},
		{"junk after a value", `alice namespaces="a"x ` + keyText, `unexpected "x" after option namespaces`},
		{"date with dashes", `alice valid-after="2024-01-01" ` + keyText, `invalid valid-after time "2024-01-01": want YYYYMMDD[HHMM[SS]], optionally followed by Z for UTC`},
		{"month 13", `alice valid-before="20241301" ` + keyText, `invalid valid-before time "20241301": want YYYYMMDD[HHMM[SS]], optionally followed by Z for UTC`},
		{"ten digits", `alice valid-before="2024010112" ` + keyText, `invalid valid-before time "2024010112": want YYYYMMDD[HHMM[SS]], optionally followed by Z for UTC`},
		{"before not after after", `alice valid-after="20250101",valid-before="20240101" ` + keyText, "valid-before is not after valid-after"},
		{"empty namespaces", `alice namespaces="" ` + keyText, `namespaces="" would allow no namespace`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "# header\nbob " + keyText + "\n" + tt.line + "\nbob " + keyText + "\n"
			signers, err := ParseAllowedSigners("conf/allowed_signers", []byte(data))
			want := "conf/allowed_signers:3: " + tt.wantErr
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v\nwant    %s", err, want)
			}
			if signers != nil {
				t.Errorf("signers = %v, want none with an error", signers)
			}

			// ssh-keygen must not take the line either.
			file := writeFile(t, filepath.Join(t.TempDir(), "allowed_signers"), []byte(tt.line+"\n"))
			found, err := keygenFindPrincipals(t, file, sigPath)
			if keygenAccepts := found != ""; keygenAccepts != (tt.name == keygenAcceptsUselessLine) {
				t.Errorf("ssh-keygen -Y find-principals = %q, %v", found, err)
			}
		})
	}
}

func TestPatternLists(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		want     bool
	}{
		{"alice@example.com", []string{"alice@example.com"}, true},
		{"alice@example.com", []string{"bob@example.com"}, false},
		{"alice@example.com", []string{"*@example.com"}, true},
		{"alice@example.org", []string{"*@example.com"}, false},
		{"ci-42", []string{"ci-??"}, true},
		{"ci-420", []string{"ci-??"}, false},
		{"mallory@example.com", []string{"*@example.com", "!mallory@example.com"}, false},
		{"mallory@example.com", []string{"!mallory@example.com", "*"}, false},
		{"anyone", []string{"!mallory"}, false}, // a negation alone allows nobody
		{"a*b", []string{"a**b"}, true},
		{"aXXbYYb", []string{"a*b"}, true},
		{"", []string{"*"}, true},
	}
	for _, tt := range tests {
		signer := AllowedSigner{Principals: tt.patterns}
		if got := signer.AllowsPrincipal(tt.name); got != tt.want {
			t.Errorf("AllowsPrincipal(%q) with %q = %v, want %v", tt.name, tt.patterns, got, tt.want)
		}
	}
	if !(AllowedSigner{}).AllowsNamespace("anything") {
		t.Error("a line without namespaces must allow every namespace")
	}
}

func TestAllowedSignersLine(t *testing.T) {
	_, key := fixedKey(t, 1)
	tests := []struct {
		principal  string
		namespaces []string
		want       string
	}{
		{"alice@example.com", nil, "alice@example.com " + authorizedKey(key)},
		{"ci", []string{RehearsalNamespace}, `ci namespaces="relctl-rehearsal" ` + authorizedKey(key)},
		{"release team", []string{"a", "b"}, `"release team" namespaces="a,b" ` + authorizedKey(key)},
	}
	for _, tt := range tests {
		line := AllowedSignersLine(tt.principal, tt.namespaces, key)
		if line != tt.want {
			t.Errorf("AllowedSignersLine = %q\nwant                 %q", line, tt.want)
		}
		parsed, err := ParseAllowedSigners("f", []byte(line))
		if err != nil {
			t.Fatalf("parsing %q: %v", line, err)
		}
		assertSigner(t, parsed[0], AllowedSigner{
			Path: "f", Line: 1, Principals: []string{tt.principal}, Namespaces: tt.namespaces, Key: key,
		})
	}
}

func mustSign(t *testing.T, signer ssh.Signer, namespace string, message []byte) []byte {
	t.Helper()
	sig, err := Sign(signer, namespace, message)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return sig
}
