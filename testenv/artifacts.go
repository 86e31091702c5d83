package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

//go:embed demo/server.py demo/bin/start demo/bin/stop demo/bin/restart demo/monit/search.monitrc
var demoFiles embed.FS

// DemoVersions are the releases of the demo service written to DIR/artifacts.
var DemoVersions = []string{"1.0.0", "1.1.0", "1.2.0"}

// BrokenVersion starts but answers /health with 500 ("index not loaded"),
// and its monit snippet names a pidfile the service never writes: with monit
// on the hosts, the watchdog refuses it before its health is ever checked
// (the outage relctl was started for); without, its health check fails.
const BrokenVersion = "1.2.0"

// WatchdogVersions are healthy releases whose monit snippet is wrong; they
// are written to DIR/artifacts too, for the watchdog checks to refuse.
var WatchdogVersions = []string{BadMonitSyntaxVersion}

// MissingPidfileVersion's snippet watches run/search-server.pid, which the
// service never writes (it writes run/search.pid): `monit -t` passes, monit
// could never supervise it.
const MissingPidfileVersion = BrokenVersion

// BadMonitSyntaxVersion's snippet is not valid monit syntax ("check proces"
// on line 1): `monit -t` fails.
const BadMonitSyntaxVersion = "1.3.0"

// MonitSnippetFile is the monit snippet template inside every artifact.
// relctl renders it per host with text/template: {{.BaseDir}},
// {{.CurrentDir}}, {{.ReleaseDir}}, {{.Vars.port}}, {{.Version}}.
const MonitSnippetFile = "monit/search.monitrc"

// monitSnippet returns version's snippet template: the good one, or one of
// the broken variants.
func monitSnippet(version string) ([]byte, error) {
	good, err := demoFiles.ReadFile("demo/" + MonitSnippetFile)
	if err != nil {
		return nil, err
	}
	var from, to string
	switch version {
	case MissingPidfileVersion:
		from, to = `/run/search.pid"`, `/run/search-server.pid"`
	case BadMonitSyntaxVersion:
		from, to = "check process search", "check proces search"
	default:
		return good, nil
	}
	if !bytes.Contains(good, []byte(from)) {
		return nil, fmt.Errorf("monit snippet of %s: %q not found in the template", version, from)
	}
	return bytes.Replace(good, []byte(from), []byte(to), 1), nil
}

// artifactMTime is fixed so every build of an artifact has the same sha256.
var artifactMTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// ArtifactName is the file name of the demo service's artifact for version.
func ArtifactName(version string) string { return "search-" + version + ".tar.gz" }

// BuildArtifact returns the deterministic .tar.gz of the demo service at version.
func BuildArtifact(version string) ([]byte, error) {
	type archiveFile struct {
		mode int64
		data []byte
	}
	files := map[string]archiveFile{}
	server, err := demoFiles.ReadFile("demo/server.py")
	if err != nil {
		return nil, err
	}
	loaded := "True"
	if version == BrokenVersion {
		loaded = "False"
	}
	py := strings.NewReplacer("@VERSION@", version, "@INDEX_LOADED@", loaded).Replace(string(server))
	files["server.py"] = archiveFile{0o644, []byte(py)}
	files["VERSION"] = archiveFile{0o644, []byte(version + "\n")}
	for _, name := range []string{"start", "stop", "restart"} {
		b, err := demoFiles.ReadFile("demo/bin/" + name)
		if err != nil {
			return nil, err
		}
		files["bin/"+name] = archiveFile{0o755, b}
	}
	snippet, err := monitSnippet(version)
	if err != nil {
		return nil, err
	}
	files[MonitSnippetFile] = archiveFile{0o644, snippet}

	names := make([]string, 0, len(files)+2)
	names = append(names, "bin/", "monit/")
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	for _, n := range names {
		hdr := &tar.Header{Name: n, ModTime: artifactMTime, Format: tar.FormatUSTAR, Uname: "root", Gname: "root"}
		if strings.HasSuffix(n, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			f := files[n]
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(files[n].data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArtifacts writes DIR/artifacts/search-<v>.tar.gz for every demo and
// watchdog version.
func writeArtifacts(dir string) error {
	adir := filepath.Join(dir, "artifacts")
	if err := os.MkdirAll(adir, 0o755); err != nil {
		return err
	}
	for _, v := range append(slices.Clone(DemoVersions), WatchdogVersions...) {
		b, err := BuildArtifact(v)
		if err != nil {
			return fmt.Errorf("build artifact %s: %w", v, err)
		}
		if err := writeFileAtomic(filepath.Join(adir, ArtifactName(v)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
