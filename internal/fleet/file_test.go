package fleet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/testenv"
	"github.com/rs/zerolog"
)

func TestParseFile(t *testing.T) {
	const p = "/etc/monit/conf.d/search"
	tests := []struct {
		name     string
		out      string
		want     *File
		wantErr  string
		wantKind error
	}{
		{name: "present", out: "--relctl-file-- present 4 640\nabc\n\n--relctl-end--\n", want: &File{Present: true, Body: []byte("abc\n"), Mode: 0o640}},
		{name: "present, no newline at its end", out: "--relctl-file-- present 3 644\nabc\n--relctl-end--\n", want: &File{Present: true, Body: []byte("abc"), Mode: 0o644}},
		{name: "mode unknown is 0600", out: "--relctl-file-- present 0 -\n\n--relctl-end--\n", want: &File{Present: true, Body: []byte{}, Mode: 0o600}},
		{name: "setuid bits are dropped", out: "--relctl-file-- present 0 4755\n\n--relctl-end--\n", want: &File{Present: true, Body: []byte{}, Mode: 0o755}},
		{name: "absent", out: "--relctl-file-- absent\n--relctl-end--\n", want: &File{Mode: 0o600}},
		{name: "a directory", out: "--relctl-file-- unreadable directory\n--relctl-end--\n", wantErr: p + " is a directory; move it aside (mv", wantKind: ErrUnreadable},
		{name: "parent not searchable", out: "--relctl-file-- unreadable cannot-search 1\n--relctl-end--\n", wantErr: "/etc/monit cannot be searched by the SSH user, so " + p + " cannot be read", wantKind: ErrUnreadable},
		{name: "a malformed header is not a file", out: "present 644\ncheck process x\n", wantErr: "expected the --relctl-file-- line", wantKind: ErrBadAnswer},
		{name: "empty output", out: "", wantErr: "ends early", wantKind: ErrBadAnswer},
		{name: "cut short", out: "--relctl-file-- present 40 644\nabc", wantErr: "40 bytes announced", wantKind: ErrBadAnswer},
		{name: "output after the end", out: "--relctl-file-- absent\n--relctl-end--\nmore\n", wantErr: "after the end marker", wantKind: ErrBadAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile(p, []byte(tt.out))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, tt.wantKind) {
					t.Fatalf("err = %v, want %q (%v)", err, tt.wantErr, tt.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != p || got.Present != tt.want.Present || string(got.Body) != string(tt.want.Body) || got.Mode != tt.want.Mode {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestFilesOverSSH writes and reads files of a real testenv host: what
// WriteFile put there ReadFile gives back with its mode, and a missing file,
// a directory and an unreadable file are told apart.
func TestFilesOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an SSH host")
	}
	ctx := zerolog.Nop().WithContext(t.Context())
	dir := t.TempDir()
	env, err := testenv.Start(ctx, testenv.Options{Dir: dir, Hosts: 1, Envs: []string{"staging"}})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	pool, err := transport.NewPool(transport.Options{
		User: "relctl", IdentityFile: filepath.Join(dir, "id_ed25519"), KnownHostsFile: filepath.Join(dir, "known_hosts"),
		HostKeyPolicy: "strict", ConnectTimeout: 5 * time.Second, CommandTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	h := env.Hosts()[0]
	conn, err := pool.Get(ctx, transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(h.Root, "etc", "it's a snippet")
	body := []byte("check process search\n  with pidfile /run/x.pid\n\x00\xff no newline")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(ctx, conn, p, "")
	if err != nil || got.Present {
		t.Fatalf("before writing: %+v, %v; want absent", got, err)
	}
	if err := WriteFile(ctx, conn, body, p, 0o640); err != nil {
		t.Fatal(err)
	}
	got, err = ReadFile(ctx, conn, p, "test/read")
	if err != nil || !got.Present || string(got.Body) != string(body) || got.Mode != 0o640 {
		t.Fatalf("after writing: %+v, %v", got, err)
	}
	if err := os.Mkdir(p+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(ctx, conn, p+".d", ""); !errors.Is(err, ErrUnreadable) {
		t.Errorf("a directory: %v, want ErrUnreadable", err)
	}
	if os.Geteuid() != 0 { // root reads any file
		if err := os.WriteFile(p+".secret", []byte("x"), 0o000); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFile(ctx, conn, p+".secret", ""); !errors.Is(err, ErrUnreadable) {
			t.Errorf("no permission: %v, want ErrUnreadable", err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ReadFile(cctx, conn, p, ""); err == nil || errors.Is(err, ErrUnreadable) || errors.Is(err, ErrBadAnswer) {
		t.Errorf("cancelled: %v, want the transport's error", err)
	}
}
