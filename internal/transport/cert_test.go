package transport

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/relctl/relctl/internal/sshdtest"
)

// certWorld is a CA made by ssh-keygen and a client key it signed for the
// local user; no sshd trusts the key itself.
type certWorld struct {
	dir, key, user string
	ca             *sshdtest.CA
}

func newCertWorld(t *testing.T) *certWorld {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	w := &certWorld{dir: t.TempDir(), user: u.Username}
	w.ca = sshdtest.NewCA(t, w.dir, "ca")
	var pub ssh.PublicKey
	w.key, pub = sshdtest.NewClientKey(t, w.dir)
	sshdtest.WritePublicKey(t, w.key+".pub", pub)
	w.ca.Sign(t, w.key+".pub", false, w.user, "-5m:+1h")
	return w
}

// start starts one sshd whose ed25519 host key w.ca signed for principals
// and validity, trusting w.ca for users, with an empty authorized_keys.
func (w *certWorld) start(t *testing.T, principals, validity string) *sshdtest.Server {
	t.Helper()
	return sshdtest.StartWith(t, 1, nil, sshdtest.Options{
		HostCertificate:   sshdtest.SignHostKey(w.ca, principals, validity),
		TrustedUserCAKeys: w.ca.Path + ".pub",
	})[0]
}

func (w *certWorld) get(t *testing.T, s *sshdtest.Server, knownHosts string, edit func(*Options)) (Conn, error) {
	t.Helper()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(knownHosts), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{
		User: w.user, IdentityFile: w.key, KnownHostsFile: kh,
		HostKeyPolicy: PolicyStrict, ConnectTimeout: 30 * time.Second,
	}
	if edit != nil {
		edit(&opts)
	}
	p, err := NewPool(opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.Get(testContext(t), target(s))
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// Host certificates: only @cert-authority lines, no plain line for the host.
func TestHostCertificates(t *testing.T) {
	w := newCertWorld(t)
	ca := authorizedKey(w.ca.PubKey)
	other := sshdtest.NewCA(t, w.dir, "other-ca")

	tests := []struct {
		name       string
		principals string
		validity   string
		knownHosts func(s *sshdtest.Server) string
		policy     string
		wantErr    []string // empty: the login works
		wantKind   string   // a *HostKeyError of this kind instead of *HostCertError
	}{
		{
			name: "CA for the host", principals: "127.0.0.1", validity: "-5m:+1h",
			knownHosts: func(*sshdtest.Server) string { return "@cert-authority 127.0.0.1,[127.0.0.1]:* " + ca + "\n" },
		},
		{
			name: "hashed pattern", principals: "127.0.0.1,web1", validity: "-5m:+1h",
			knownHosts: func(s *sshdtest.Server) string {
				return "@cert-authority " + knownhosts.HashHostname(knownhosts.Normalize(s.Addr)) + " " + ca + "\n"
			},
		},
		{
			name: "wrong principal", principals: "web1.example.com", validity: "-5m:+1h",
			knownHosts: func(*sshdtest.Server) string { return "@cert-authority [127.0.0.1]:* " + ca + "\n" },
			wantErr:    []string{"host certificate verification failed", `principal "127.0.0.1" not in the set`, "signed by CA " + ssh.FingerprintSHA256(w.ca.PubKey)},
		},
		{
			name: "expired", principals: "127.0.0.1", validity: "20200101:20200102",
			knownHosts: func(*sshdtest.Server) string { return "@cert-authority [127.0.0.1]:* " + ca + "\n" },
			wantErr:    []string{"host certificate verification failed", "cert has expired"},
		},
		{
			name: "not yet valid", principals: "127.0.0.1", validity: "+1d:+2d",
			knownHosts: func(*sshdtest.Server) string { return "@cert-authority [127.0.0.1]:* " + ca + "\n" },
			wantErr:    []string{"cert is not yet valid"},
		},
		{
			name: "CA revoked", principals: "127.0.0.1", validity: "-5m:+1h",
			knownHosts: func(*sshdtest.Server) string {
				return "@cert-authority [127.0.0.1]:* " + ca + "\n@revoked * " + ca + "\n"
			},
			wantErr: []string{"the CA key " + ssh.FingerprintSHA256(w.ca.PubKey) + " is revoked", "known_hosts:2)"},
		},
		{
			name: "host key revoked", principals: "127.0.0.1", validity: "-5m:+1h",
			knownHosts: func(s *sshdtest.Server) string {
				return "@cert-authority [127.0.0.1]:* " + ca + "\n@revoked * " + authorizedKey(s.HostPubKey) + "\n"
			},
			wantErr: []string{"the host key " + "SHA256:", "is revoked"},
		},
		{
			// Another CA for the host: the certificate is not trusted and
			// its plain key is unknown, as OpenSSH.
			name: "another CA", principals: "127.0.0.1", validity: "-5m:+1h",
			knownHosts: func(*sshdtest.Server) string {
				return "@cert-authority [127.0.0.1]:* " + authorizedKey(other.PubKey) + "\n"
			},
			wantKind: HostKeyUnknown,
		},
		{
			name: "CA for other hosts", principals: "127.0.0.1", validity: "-5m:+1h",
			knownHosts: func(*sshdtest.Server) string { return "@cert-authority *.example.com,[10.0.0.1]:* " + ca + "\n" },
			wantKind:   HostKeyUnknown,
		},
		{
			name: "negated pattern", principals: "127.0.0.1", validity: "-5m:+1h",
			knownHosts: func(s *sshdtest.Server) string {
				return "@cert-authority [127.0.0.1]:*,!" + knownhosts.Normalize(s.Addr) + " " + ca + "\n"
			},
			wantKind: HostKeyUnknown,
		},
		{
			// accept-new records the plain key of a host whose CA it does
			// not know, never the certificate.
			name: "accept-new without a CA line", principals: "127.0.0.1", validity: "-5m:+1h",
			knownHosts: func(*sshdtest.Server) string { return "" },
			policy:     PolicyAcceptNew,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := w.start(t, tt.principals, tt.validity)
			_, err := w.get(t, s, tt.knownHosts(s), func(o *Options) {
				if tt.policy != "" {
					o.HostKeyPolicy = tt.policy
				}
			})
			switch {
			case tt.wantKind != "":
				var hke *HostKeyError
				if !errors.As(err, &hke) || hke.Kind != tt.wantKind {
					t.Fatalf("Get error = %v, want *HostKeyError %s", err, tt.wantKind)
				}
			case len(tt.wantErr) > 0:
				var hce *HostCertError
				if !errors.As(err, &hce) {
					t.Fatalf("Get error = %v, want *HostCertError", err)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not say %q:\n%s", want, err)
					}
				}
			case err != nil:
				t.Fatalf("Get: %v", err)
			}
		})
	}
}

// The host key algorithms offered: certificates first only when a
// @cert-authority line names the host.
func TestHostKeyAlgorithmsWithCA(t *testing.T) {
	w := newCertWorld(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := "@cert-authority [127.0.0.1]:* " + authorizedKey(w.ca.PubKey) + "\n"
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	h := testChecker(PolicyStrict, kh)
	algos, err := h.algorithms("127.0.0.1:2201")
	if err != nil {
		t.Fatal(err)
	}
	if len(algos) == 0 || !isCertAlgo(algos[0]) {
		t.Errorf("with a CA line: %v, want certificate algorithms first", algos)
	}
	algos, err = h.algorithms("10.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range algos {
		if isCertAlgo(a) {
			t.Errorf("without a CA line for the host: %v offers %s", algos, a)
		}
	}
}

// User certificates: <identity>-cert.pub beside the key, sshd with
// TrustedUserCAKeys and the key in no authorized_keys.
func TestUserCertificates(t *testing.T) {
	w := newCertWorld(t)
	s := w.start(t, "127.0.0.1", "-5m:+1h")
	knownHosts := "@cert-authority [127.0.0.1]:* " + authorizedKey(w.ca.PubKey) + "\n"
	certFile := w.key + "-cert.pub"
	good, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	// Another key's certificate, and an expired one for this key.
	otherKey, otherPub := sshdtest.NewClientKey(t, t.TempDir())
	sshdtest.WritePublicKey(t, otherKey+".pub", otherPub)
	mismatched, err := os.ReadFile(w.ca.Sign(t, otherKey+".pub", false, w.user, "-5m:+1h"))
	if err != nil {
		t.Fatal(err)
	}
	expiredDir := t.TempDir()
	sshdtest.WritePublicKey(t, filepath.Join(expiredDir, "k.pub"), mustPub(t, w.key))
	expired, err := os.ReadFile(w.ca.Sign(t, filepath.Join(expiredDir, "k.pub"), false, w.user, "20200101:20200102"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cert    []byte // nil: no cert file
		wantErr []string
		newPool bool // the error comes from NewPool
	}{
		{name: "certificate beside the key", cert: good},
		{name: "no certificate", wantErr: []string{"unable to authenticate"}},
		{name: "certificate of another key", cert: mismatched, newPool: true,
			wantErr: []string{"certificate " + certFile + " is for key " + ssh.FingerprintSHA256(otherPub)}},
		{name: "expired certificate", cert: expired, newPool: true,
			wantErr: []string{"certificate " + certFile + " has expired (valid before 2020-01-02"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_ = os.Remove(certFile)
			if tt.cert != nil {
				if err := os.WriteFile(certFile, tt.cert, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := w.get(t, s, knownHosts, nil)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				res, err := c.Run(testContext(t), "echo certified", RunOptions{Label: "echo"})
				if err != nil || !strings.Contains(string(res.Stdout), "certified") {
					t.Fatalf("Run = %+v, %v", res, err)
				}
				return
			}
			if err == nil {
				t.Fatal("Get succeeded")
			}
			var de *DialError
			if isDial := errors.As(err, &de); isDial == tt.newPool {
				t.Errorf("error %v: DialError = %v, want it from NewPool = %v", err, isDial, tt.newPool)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%s", want, err)
				}
			}
		})
	}
}

func mustPub(t *testing.T, keyFile string) ssh.PublicKey {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

// A @cert-authority line counts from any of a target's known_hosts files,
// and with HostKeyAlias the certificate's principal is the alias.
func TestHostCertificatesPerTarget(t *testing.T) {
	w := newCertWorld(t)
	s := w.start(t, "web.internal", "-5m:+1h")
	dir := t.TempDir()
	plain, withCA := filepath.Join(dir, "plain"), filepath.Join(dir, "with_ca")
	sshdtest.WriteKnownHosts(t, plain, nil)
	ca := "@cert-authority web.internal,other.internal,[127.0.0.1]:* " + authorizedKey(w.ca.PubKey) + "\n"
	if err := os.WriteFile(withCA, []byte(ca), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newTestPool(t, Options{User: w.user, IdentityFile: w.key, KnownHostsFile: filepath.Join(dir, "none"), ConnectTimeout: 30 * time.Second})
	ctx := testContext(t)
	ep := Endpoint{Address: s.Addr, KnownHostsFiles: []string{plain, withCA}, HostKeyAlias: "web.internal"}
	if _, err := p.Get(ctx, Target{Name: "aliased", Endpoint: ep}); err != nil {
		t.Fatalf("Get with the CA in the second file and the certificate's principal as alias: %v", err)
	}
	// Its address is not a principal of the certificate; nor is another alias.
	for _, alias := range []string{"", "other.internal"} {
		ep.HostKeyAlias = alias
		_, err := p.Get(ctx, Target{Name: "alias-" + alias, Endpoint: ep})
		var hce *HostCertError
		if !errors.As(err, &hce) || !strings.Contains(err.Error(), "not in the set") {
			t.Errorf("Get with HostKeyAlias %q: %v, want a HostCertError (principal)", alias, err)
		}
	}
}
