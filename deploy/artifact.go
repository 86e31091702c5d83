package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/watchdog"
)

// ArtifactInfo is the artifact every host gets, and what identifies it (the
// release digest, rehearsal records and history keep Name and SHA256).
type ArtifactInfo struct {
	// Path is the local file relctl pushes; for an artifact the hosts pull,
	// the URL as it may be shown (credentials redacted).
	Path   string `json:"path"`
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Size is the local file's; 0 when the hosts pull it (the controller
	// never downloads it).
	Size int64 `json:"size"`
	// URL, for an artifact the hosts pull: the URL they fetch (redacted),
	// and SHA256From, where its sha256 came from (redacted).
	URL        string `json:"url,omitempty"`
	SHA256From string `json:"sha256_from,omitempty"`

	pull *artifactPull // what a host's fetch needs, credentials included: never shown
}

// planArtifact gives each host of a plan its artifact. The first host's is
// the plan's (Plan.Artifact, and the release digest from its sha256). A
// pulled artifact's URL is rendered per host (a per-host mirror), so each
// host fetches its own URL; the file name and sha256 must be the same for
// every host, since the release digest, history and rehearsal records name
// one artifact.
type planArtifact struct {
	cfg   *playbooks.Config
	pb    *playbooks.Playbook
	skip  bool // SkipArtifact: nothing read
	first string
	sums  checksumCache
}

// add sets hp's artifact (and, for the first host, the plan's).
func (pa *planArtifact) add(p *Plan, hp *HostPlan) error {
	data := hp.Data
	switch {
	case pa.first == "" && pa.skip:
		p.Artifact = ArtifactInfo{Path: "(not read)", Name: "artifact", SHA256: strings.Repeat("0", 64)}
	case pa.first == "":
		if pa.sums == nil {
			pa.sums = checksumCache{}
		}
		info, err := artifactInfo(pa.cfg, pa.pb, data, pa.sums)
		if err != nil {
			return err
		}
		if p.Digest, err = ReleaseDigest(pa.pb, p.Version, info.SHA256); err != nil {
			return err
		}
		p.Artifact = info
	case !pa.skip && p.Artifact.pull != nil:
		info, err := artifactInfo(pa.cfg, pa.pb, data, pa.sums)
		if err != nil {
			return err
		}
		if info.Name != p.Artifact.Name || info.SHA256 != p.Artifact.SHA256 {
			return badInput("%s: artifact.url renders different artifacts for host %s (%s, sha256 %s from %s) and host %s (%s, sha256 %s from %s): every host of a release gets the same file (the release digest names one sha256); a per-host mirror must serve the same file under the same name",
				pa.pb.Where("artifact.url"), pa.first, p.Artifact.Name, p.Artifact.SHA256, p.Artifact.SHA256From,
				hp.Name, info.Name, info.SHA256, info.SHA256From)
		}
		hp.artifact = &info
	}
	if pa.first == "" {
		pa.first = hp.Name
	}
	data.ArtifactName = p.Artifact.Name
	data.ArtifactSHA256 = p.Artifact.SHA256
	data.Artifact = path.Join(data.ReleaseDir, p.Artifact.Name)
	return nil
}

// artifactInfo identifies the release's artifact: the local file's sha256,
// or for artifact.url the declared sha256 (fetched from its checksum file
// or manifest, remembered in sums) and the URL's file name.
func artifactInfo(cfg *playbooks.Config, pb *playbooks.Playbook, data *playbooks.TemplateData, sums checksumCache) (ArtifactInfo, error) {
	if pb.Artifact.Pulled() {
		return pulledArtifactInfo(pb, data, sums)
	}
	local, err := pb.ArtifactPath(cfg, data)
	if err != nil {
		return ArtifactInfo{}, badInput("%s: artifact.path: %v", pb.Where("artifact.path"), err)
	}
	f, err := os.Open(local)
	if err != nil {
		return ArtifactInfo{}, badInput("artifact for release %s: %v (from %s)", data.Version, err, pb.Where("artifact.path"))
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return ArtifactInfo{}, fmt.Errorf("reading artifact %s: %w", local, err)
	}
	return ArtifactInfo{Path: local, Name: filepath.Base(local), SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// maxKeptFile bounds the one file body an artifact index keeps (the watchdog
// snippet template): a snippet is a few lines, never megabytes.
const maxKeptFile = 1 << 20

// searchWindow is how much of a file a search holds at a time.
const searchWindow = 64 << 10

// artifactEntry is one entry of a release artifact, without its contents.
type artifactEntry struct {
	mode fs.FileMode
	dir  bool
}

// artifactIndex is what inspecting a release artifact (a .tar.gz) before it
// is unpacked needs: every entry's name, type and mode, and the body of the
// one file the inspection reads (the watchdog snippet). It never holds other
// files' contents: a search for a string streams the archive again through a
// bounded window. One index serves every host of a run, read-only; each
// archive pass runs once and its answer is remembered, so memory and work
// do not grow with the number of hosts.
type artifactIndex struct {
	path string // the local .tar.gz
	keep string // the file whose body is kept, cleaned, relative to the release

	mu       sync.Mutex // held for a pass over the archive: one at a time
	indexed  bool
	entries  map[string]artifactEntry
	kept     []byte
	hasKept  bool
	searched map[[2]string]bool // (needle, skip) -> found
	passes   int                // archive passes made, for tests
}

// artifactIndexes shares an index among the hosts of a run and the runs of
// one process (a rehearsal deploys, rolls back and deploys the same
// artifact). Keyed by path, sha256 and kept file, so a changed artifact is a
// new index; the last few are kept.
var artifactIndexes struct {
	sync.Mutex
	byKey map[string]*artifactIndex
	order []string
}

const keptIndexes = 4

// indexFor is the shared index of the artifact a, keeping keep's body.
func indexFor(a ArtifactInfo, keep string) *artifactIndex {
	key := a.Path + "\x00" + a.SHA256 + "\x00" + keep
	c := &artifactIndexes
	c.Lock()
	defer c.Unlock()
	if ix, ok := c.byKey[key]; ok {
		return ix
	}
	if c.byKey == nil {
		c.byKey = map[string]*artifactIndex{}
	}
	if len(c.order) == keptIndexes {
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
	ix := newArtifactIndex(a.Path, keep)
	c.byKey[key] = ix
	c.order = append(c.order, key)
	return ix
}

func newArtifactIndex(local, keep string) *artifactIndex {
	return &artifactIndex{path: local, keep: cleanEntry(keep), searched: map[[2]string]bool{}}
}

// cleanEntry is an archive name as a path relative to the release: no
// leading "/" or "./", no "..", no trailing "/".
func cleanEntry(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// each streams the archive, calling visit for every entry with its cleaned
// name; visit may read the entry's body from r. It stops early, without an
// error, when visit returns errStopPass. ctx is checked between entries.
func (ix *artifactIndex) each(ctx context.Context, visit func(name string, hdr *tar.Header, r io.Reader) error) error {
	ix.passes++
	f, err := os.Open(ix.path)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: not a .tar.gz artifact: %w", ix.path, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ix.path, err)
		}
		if err := visit(cleanEntry(hdr.Name), hdr, tr); err != nil {
			if errors.Is(err, errStopPass) {
				return nil
			}
			return fmt.Errorf("%s: %s: %w", ix.path, hdr.Name, err)
		}
	}
}

var errStopPass = errors.New("stop the pass")

// load makes the first pass: names, modes and the kept body. The caller holds mu.
func (ix *artifactIndex) load(ctx context.Context) error {
	if ix.indexed {
		return nil
	}
	entries := map[string]artifactEntry{}
	var kept []byte
	hasKept := false
	err := ix.each(ctx, func(name string, hdr *tar.Header, r io.Reader) error {
		entries[name] = artifactEntry{mode: fs.FileMode(hdr.Mode) & fs.ModePerm, dir: hdr.Typeflag == tar.TypeDir}
		// Unpacking creates the directories an archive only implies.
		for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; ok {
				break
			}
			entries[dir] = artifactEntry{mode: 0o755, dir: true}
		}
		if name != ix.keep || !isRegular(hdr) {
			return nil
		}
		if hdr.Size > maxKeptFile {
			return fmt.Errorf("%d bytes; relctl reads at most %d", hdr.Size, maxKeptFile)
		}
		body, err := io.ReadAll(io.LimitReader(r, maxKeptFile))
		kept, hasKept = body, err == nil
		return err
	})
	if err != nil {
		return err // not remembered: a cancelled pass is tried again
	}
	ix.entries, ix.kept, ix.hasKept, ix.indexed = entries, kept, hasKept, true
	return nil
}

// isRegular: tar.Reader already reports the old TypeRegA as TypeReg.
func isRegular(hdr *tar.Header) bool { return hdr.Typeflag == tar.TypeReg }

// entry reports the entry at name (relative to the release).
func (ix *artifactIndex) entry(ctx context.Context, name string) (artifactEntry, bool, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if err := ix.load(ctx); err != nil {
		return artifactEntry{}, false, err
	}
	e, ok := ix.entries[cleanEntry(name)]
	return e, ok, nil
}

// keptFile is the body of the file the index keeps, and whether the
// artifact has it as a regular file.
func (ix *artifactIndex) keptFile(ctx context.Context) ([]byte, bool, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if err := ix.load(ctx); err != nil {
		return nil, false, err
	}
	return ix.kept, ix.hasKept, nil
}

// mentions reports whether a regular file of the release other than skip
// contains needle, as `grep -rlF` on the unpacked release would: symlinks
// are not followed. Each (needle, skip) is searched for once.
func (ix *artifactIndex) mentions(ctx context.Context, needle, skip string) (bool, error) {
	key := [2]string{needle, cleanEntry(skip)}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if found, ok := ix.searched[key]; ok {
		return found, nil
	}
	window := make([]byte, max(searchWindow, 2*len(needle)))
	found := false
	err := ix.each(ctx, func(name string, hdr *tar.Header, r io.Reader) error {
		if name == key[1] || !isRegular(hdr) {
			return nil
		}
		ok, err := readerContains(r, []byte(needle), window)
		if ok {
			found = true
			return errStopPass
		}
		return err
	})
	if err != nil {
		return false, err
	}
	ix.searched[key] = found
	return found, nil
}

// readerContains reports whether r's bytes contain needle, holding no more
// than len(window) of them at a time (window must be at least twice the
// needle): the last len(needle)-1 bytes of each read carry over to the next,
// so a match across two reads is found.
func readerContains(r io.Reader, needle, window []byte) (bool, error) {
	if len(needle) == 0 {
		return true, nil
	}
	carry := 0
	for {
		n, err := r.Read(window[carry:])
		filled := carry + n
		if bytes.Contains(window[:filled], needle) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		carry = min(len(needle)-1, filled)
		copy(window, window[filled-carry:filled])
	}
}

// artifactFS answers for paths inside the (not yet unpacked) new release
// from the artifact's index, and for anything else from the host.
type artifactFS struct {
	index         *artifactIndex
	root, current string
	host          watchdog.FS
}

var _ watchdog.FS = (*artifactFS)(nil)

func (a *artifactFS) Stat(ctx context.Context, p string) (watchdog.FileInfo, error) {
	for _, prefix := range []string{a.current, a.root} {
		if rel, ok := strings.CutPrefix(p, prefix+"/"); ok {
			e, found, err := a.index.entry(ctx, rel)
			if err != nil || !found {
				return watchdog.FileInfo{}, err
			}
			return watchdog.FileInfo{Exists: true, IsDir: e.dir, Mode: e.mode}, nil
		}
	}
	return a.host.Stat(ctx, p)
}

// releaseMentions implements releaseSearcher: skip is relative to the release.
func (a *artifactFS) releaseMentions(ctx context.Context, needle, skip string) (bool, error) {
	return a.index.mentions(ctx, needle, skip)
}
