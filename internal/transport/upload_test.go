package transport

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sshd servers run on this machine, so a remote path is a local path.
func TestUpload(t *testing.T) {
	f := newFixture(t, 1)
	c := f.conn(t, nil)
	mib := make([]byte, 1<<20)
	if _, err := rand.Read(mib); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	// Created only if a command substitution in the path ran.
	pwned := filepath.Join(t.TempDir(), "pwned")

	tests := []struct {
		name    string
		rel     string // under a fresh temp dir
		data    []byte
		mode    uint32
		sha     string
		wantErr string
	}{
		{name: "1 MiB random into new dirs", rel: "releases/v1/app.tar.gz", data: mib, mode: 0o640, sha: sum(mib)},
		{name: "spaces and quotes", rel: `it's a "dir"/my file $(touch ` + pwned + `).txt`, data: []byte("hi\n"), mode: 0o755, sha: sum([]byte("hi\n"))},
		{name: "upper-case sha accepted", rel: "a", data: []byte("x"), mode: 0o600, sha: strings.ToUpper(sum([]byte("x")))},
		{name: "empty file", rel: "empty", data: nil, mode: 0o644, sha: sum(nil)},
		{
			name: "wrong sha refused", rel: "bad/app.bin", data: mib, mode: 0o644, sha: sum([]byte("other")),
			wantErr: "host-1: upload {path}: sha256 mismatch: the host computed " + sum(mib) + ", want " + sum([]byte("other")),
		},
		{name: "malformed sha", rel: "m", data: []byte("x"), mode: 0o644, sha: "abc", wantErr: `host-1: upload {path}: want sha256 "abc" is not 64 hex digits`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dest := filepath.Join(root, tt.rel)
			err := c.Upload(testContext(t), bytes.NewReader(tt.data), dest, tt.mode, tt.sha)
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "{path}", dest)
				if err == nil || err.Error() != want {
					t.Fatalf("Upload error = %v\nwant %s", err, want)
				}
				// Nothing left behind: neither the file nor a temp file.
				var left []string
				_ = filepath.Walk(root, func(p string, fi os.FileInfo, _ error) error {
					if fi != nil && !fi.IsDir() {
						left = append(left, p)
					}
					return nil
				})
				if len(left) > 0 {
					t.Errorf("files left after a refused upload: %v", left)
				}
				return
			}
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			got, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("content differs: %d bytes, want %d", len(got), len(tt.data))
			}
			fi, _ := os.Stat(dest)
			if fi.Mode().Perm() != os.FileMode(tt.mode) {
				t.Errorf("mode = %v, want %v", fi.Mode().Perm(), os.FileMode(tt.mode))
			}
			entries, _ := os.ReadDir(filepath.Dir(dest))
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the file (no temp files)", len(entries))
			}
			if _, err := os.Stat(pwned); err == nil {
				t.Error("a command substitution in the path was executed")
			}
		})
	}
}

func TestUploadReplacesExistingFile(t *testing.T) {
	f := newFixture(t, 1)
	c := f.conn(t, nil)
	dest := filepath.Join(t.TempDir(), "current.txt")
	for _, content := range []string{"one\n", "two\n"} {
		h := sha256.Sum256([]byte(content))
		if err := c.Upload(testContext(t), strings.NewReader(content), dest, 0o644, hex.EncodeToString(h[:])); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(dest); string(got) != "two\n" {
		t.Errorf("content = %q, want %q", got, "two\n")
	}
}

// An upload is one session: the host writes, hashes and compares the sum
// with the one wanted, and renames only when they match. On a mismatch it
// removes the temp file and the file already there stays as it was; the
// error names both sums.
func TestUploadMismatchOneSession(t *testing.T) {
	f := newFixture(t, 1)
	logPath := filepath.Join(t.TempDir(), "run.log")
	log, err := OpenRunLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c := f.conn(t, func(o *Options) { o.Output = log })
	dir := t.TempDir()
	dest := filepath.Join(dir, "app.bin")
	if err := os.WriteFile(dest, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("new content\n"), 10000) // several SSH packets
	h := sha256.Sum256(data)
	got := hex.EncodeToString(h[:])
	other := sha256.Sum256([]byte("other"))
	want := hex.EncodeToString(other[:])

	err = c.Upload(testContext(t), bytes.NewReader(data), dest, 0o600, want)
	wantErr := "host-1: upload " + dest + ": sha256 mismatch: the host computed " + got + ", want " + want
	if err == nil || err.Error() != wantErr {
		t.Fatalf("Upload error = %v\nwant %s", err, wantErr)
	}
	if b, _ := os.ReadFile(dest); string(b) != "old\n" {
		t.Errorf("the file already there became %q, want it unchanged", b)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o644 {
		t.Errorf("its mode became %v, want it unchanged", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only app.bin (the temp file removed)", names)
	}

	// The same upload with the right sum: one session too.
	if err := c.Upload(testContext(t), bytes.NewReader(data), dest, 0o600, got); err != nil {
		t.Fatalf("Upload with the right sum: %v", err)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, data) {
		t.Errorf("content differs after the second upload: %d bytes, want %d", len(b), len(data))
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(text), " [upload "+dest+"] $ "); n != 2 {
		t.Errorf("the run log shows %d upload sessions, want 2 (one per upload):\n%s", n, text)
	}
}
