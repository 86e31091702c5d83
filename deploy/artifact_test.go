package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

type tarEntry struct {
	name string
	mode int64
	body []byte
	kind byte // tar.TypeReg when 0
	link string
}

func writeTestArtifact(t *testing.T, entries []tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.kind, Linkname: e.link}
		if hdr.Typeflag == 0 {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "app.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The index keeps names, modes and the snippet, never other files' bodies:
// 32 files of 1 MiB leave the heap about where it was, and the pidfile is
// found in the middle of a big file, across a read boundary, by streaming.
func TestArtifactIndexKeepsNoBodies(t *testing.T) {
	const files = 32
	big := bytes.Repeat([]byte("x"), 1<<20)
	// The needle straddles a 64 KiB window boundary.
	withPid := bytes.Clone(big)
	copy(withPid[searchWindow*3-4:], "search.pid")
	entries := []tarEntry{{name: "./", kind: tar.TypeDir, mode: 0o755}}
	for i := range files {
		entries = append(entries, tarEntry{name: "./data/" + strings.Repeat("d", i+1), mode: 0o644, body: big})
	}
	entries = append(entries,
		tarEntry{name: "./bin/start", mode: 0o755, body: withPid},
		tarEntry{name: "./monit/search.monitrc", mode: 0o644, body: []byte("check process search with pidfile /run/search.pid\n")},
	)
	local := writeTestArtifact(t, entries)
	ctx := context.Background()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ix := newArtifactIndex(local, "monit/search.monitrc")
	snippet, ok, err := ix.keptFile(ctx)
	if err != nil || !ok || !bytes.HasPrefix(snippet, []byte("check process")) {
		t.Fatalf("keptFile = %q, %v, %v", snippet, ok, err)
	}
	found, err := ix.mentions(ctx, "search.pid", "monit/search.monitrc")
	if err != nil || !found {
		t.Fatalf("mentions(search.pid) = %v, %v; want true (bin/start names it across a window boundary)", found, err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
		t.Errorf("the index holds %d KiB of heap after reading %d MiB of files; want no file bodies kept", grew>>10, files)
	}
	if len(ix.kept) != len(snippet) || len(ix.entries) != files+6 { // "", data, bin, bin/start, monit, the snippet
		t.Errorf("index: %d entries, %d kept bytes", len(ix.entries), len(ix.kept))
	}
	for name, want := range map[string]artifactEntry{"data": {mode: 0o755, dir: true}, "bin/start": {mode: 0o755}, "bin": {mode: 0o755, dir: true}} {
		if got, ok := ix.entries[name]; !ok || got != want {
			t.Errorf("entry %s = %+v (present %v), want %+v", name, got, ok, want)
		}
	}
	runtime.KeepAlive(ix)
}

// Fifty hosts asking at once cost one pass for the index and one per
// distinct search: the work does not grow with the hosts.
func TestArtifactIndexOnePassPerQuestion(t *testing.T) {
	local := writeTestArtifact(t, []tarEntry{
		{name: "bin/start", mode: 0o755, body: []byte("echo $$ > /run/search.pid\n")},
		{name: "monit/search.monitrc", mode: 0o644, body: []byte("check process search with pidfile /run/search.pid\n")},
		{name: "current-link", kind: tar.TypeSymlink, link: "bin/other.pid"},
	})
	ix := newArtifactIndex(local, "monit/search.monitrc")
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			fsys := &artifactFS{index: ix, root: "/srv/r/1.1.0", current: "/srv/current"}
			if fi, err := fsys.Stat(ctx, "/srv/current/bin/start"); err != nil || !fi.Executable() {
				t.Errorf("Stat(bin/start) = %+v, %v", fi, err)
			}
			if found, err := fsys.releaseMentions(ctx, "search.pid", "monit/search.monitrc"); err != nil || !found {
				t.Errorf("releaseMentions(search.pid) = %v, %v", found, err)
			}
			if found, err := fsys.releaseMentions(ctx, "other.pid", "monit/search.monitrc"); err != nil || found {
				t.Errorf("releaseMentions(other.pid) = %v, %v; a symlink's target names no file's contents", found, err)
			}
		})
	}
	wg.Wait()
	if ix.passes != 3 {
		t.Errorf("%d passes over the archive for 50 hosts; want 3 (index, two searches)", ix.passes)
	}
}

func TestArtifactIndexSkipsTheSnippetAndRefusesAHugeOne(t *testing.T) {
	ctx := context.Background()
	local := writeTestArtifact(t, []tarEntry{
		{name: "monit/search.monitrc", mode: 0o644, body: []byte("check process search with pidfile /run/search.pid\n")},
		{name: "bin/start", mode: 0o755, body: []byte("exec server\n")},
	})
	if found, err := newArtifactIndex(local, "monit/search.monitrc").mentions(ctx, "search.pid", "./monit/search.monitrc"); err != nil || found {
		t.Errorf("mentions = %v, %v; only the snippet names the pidfile", found, err)
	}
	huge := writeTestArtifact(t, []tarEntry{{name: "monit/search.monitrc", mode: 0o644, body: make([]byte, maxKeptFile+1)}})
	_, _, err := newArtifactIndex(huge, "monit/search.monitrc").keptFile(ctx)
	if err == nil || !strings.Contains(err.Error(), "monit/search.monitrc: 1048577 bytes; relctl reads at most 1048576") {
		t.Errorf("keptFile of a 1 MiB+1 snippet: %v", err)
	}
	notGz := filepath.Join(t.TempDir(), "x.tar.gz")
	if err := os.WriteFile(notGz, []byte("plain"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := newArtifactIndex(notGz, "s").entry(ctx, "a"); err == nil || !strings.Contains(err.Error(), "not a .tar.gz artifact") {
		t.Errorf("entry of a plain file: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ix := newArtifactIndex(local, "monit/search.monitrc")
	if _, _, err := ix.keptFile(cancelled); err == nil {
		t.Error("keptFile with a cancelled context succeeded")
	}
	if _, ok, err := ix.keptFile(ctx); err != nil || !ok {
		t.Errorf("after a cancelled pass, keptFile = %v, %v; a cancelled pass must not be remembered", ok, err)
	}
}

func TestReaderContains(t *testing.T) {
	needle := []byte("search.pid")
	window := make([]byte, 2*len(needle))
	for _, tt := range []struct {
		text string
		want bool
	}{
		{"search.pid", true},
		{"xxxxxxxxxxxxxxxxxxsearch.pid", true},
		{"xxxxxxxxxxxxxxsearch.pidxxxxxxxxxxxxxx", true},
		{"xxxxxxxxxxxxxxsearch.pixxxxxxxxxxxxxxd", false},
		{"", false},
		{"search.pi", false},
	} {
		for name, r := range map[string]io.Reader{
			"whole":      strings.NewReader(tt.text),
			"byte-wise":  iotest.OneByteReader(strings.NewReader(tt.text)),
			"half-reads": iotest.HalfReader(strings.NewReader(tt.text)),
		} {
			got, err := readerContains(r, needle, window)
			if err != nil || got != tt.want {
				t.Errorf("%s %q: %v, %v; want %v", name, tt.text, got, err, tt.want)
			}
		}
	}
}
