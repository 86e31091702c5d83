package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ArtifactServer serves a cluster's artifacts (DIR/artifacts) over a real
// HTTP server on 127.0.0.1, for artifact.url: the hosts fetch from it.
//
//	/artifacts/NAME           the file
//	/artifacts/NAME.sha256    "HEX  NAME" (sha256sum's format)
//	/artifacts/SHA256SUMS     every artifact's line
//
// and the same names under fault prefixes, whose checksums are the true ones:
//
//	/corrupt/NAME   the file with its last byte changed (a sha256 mismatch)
//	/missing/NAME   404 Not Found
//	/hang/NAME      never answers (until the client or the server gives up)
//
// With a Token, every request needs "Authorization: Bearer TOKEN" (else 401).
// Each request is appended to Log as "METHOD PATH STATUS auth=ok|none|bad
// ua=USER-AGENT": the token itself is never written.
type ArtifactServer struct {
	URL string // http://127.0.0.1:PORT, no trailing slash
	Log string // the request log's path

	dir   string
	token string
	srv   *http.Server
	done  chan struct{}

	mu   sync.Mutex
	log  *os.File
	sums map[string]string // name -> sha256, computed once per file version
	mods map[string]time.Time
}

// ArtifactServerOptions configure ServeArtifacts.
type ArtifactServerOptions struct {
	// Token, when set, is required as "Authorization: Bearer TOKEN".
	Token string
	// Log is the request log; default DIR/artifact-server.log.
	Log string
}

// ServeArtifacts starts an ArtifactServer for the cluster directory dir on
// 127.0.0.1 and a free port; Close stops it.
func ServeArtifacts(dir string, opts ArtifactServerOptions) (*ArtifactServer, error) {
	if opts.Log == "" {
		opts.Log = filepath.Join(dir, "artifact-server.log")
	}
	logf, err := os.OpenFile(opts.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logf.Close()
		return nil, err
	}
	s := &ArtifactServer{URL: "http://" + ln.Addr().String(), Log: opts.Log, dir: filepath.Join(dir, "artifacts"),
		token: opts.Token, done: make(chan struct{}), log: logf, sums: map[string]string{}, mods: map[string]time.Time{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close stops the server (hanging requests end) and closes its log.
func (s *ArtifactServer) Close() error {
	err := s.srv.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if cerr := s.log.Close(); err == nil {
		err = cerr
	}
	return err
}

// ServeHTTP implements http.Handler.
func (s *ArtifactServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	auth := s.authState(r)
	defer func() { s.record(r, rec.status, auth) }()
	if auth == "bad" || (auth == "none" && s.token != "") {
		rec.Header().Set("WWW-Authenticate", `Bearer realm="testenv"`)
		http.Error(rec, "401 unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(rec, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	mode, name, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || strings.Contains(name, "/") || name == "" || name[0] == '.' {
		http.NotFound(rec, r)
		return
	}
	switch mode {
	case "artifacts", "corrupt", "missing", "hang":
	default:
		http.NotFound(rec, r)
		return
	}
	if name == "SHA256SUMS" {
		s.serveManifest(rec)
		return
	}
	if base, isSum := strings.CutSuffix(name, ".sha256"); isSum {
		sum, err := s.sha256(base)
		if err != nil {
			http.NotFound(rec, r)
			return
		}
		fmt.Fprintf(rec, "%s  %s\n", sum, base)
		return
	}
	s.serveArtifact(rec, r, mode, name)
}

func (s *ArtifactServer) serveArtifact(w http.ResponseWriter, r *http.Request, mode, name string) {
	if mode == "missing" {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	var body io.ReadSeeker = f // streamed: a bench serves 50 MiB to many hosts at once
	switch mode {
	case "hang":
		// Headers never come: a client's timeout is what ends this.
		<-r.Context().Done()
		return
	case "corrupt":
		b, err := io.ReadAll(f)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if len(b) > 0 {
			b[len(b)-1] ^= 0xff
		}
		body = bytes.NewReader(b)
	}
	w.Header().Set("Content-Type", "application/gzip")
	http.ServeContent(w, r, name, time.Time{}, body)
}

func (s *ArtifactServer) serveManifest(w http.ResponseWriter) {
	files, _ := filepath.Glob(filepath.Join(s.dir, "*"))
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		name := filepath.Base(f)
		if sum, err := s.sha256(name); err == nil {
			fmt.Fprintf(&b, "%s  %s\n", sum, name)
		}
	}
	_, _ = w.Write([]byte(b.String()))
}

// sha256 is the artifact's sha256, recomputed when the file changed.
func (s *ArtifactServer) sha256(name string) (string, error) {
	p := filepath.Join(s.dir, path.Base(name))
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return "", errors.New("no such artifact")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sum, ok := s.sums[name]; ok && s.mods[name].Equal(st.ModTime()) {
		return sum, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.sums[name], s.mods[name] = sum, st.ModTime()
	return sum, nil
}

// authState compares the request's Authorization header with the token.
func (s *ArtifactServer) authState(r *http.Request) string {
	got := r.Header.Get("Authorization")
	switch {
	case got == "":
		return "none"
	case s.token != "" && subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+s.token)) == 1:
		return "ok"
	}
	return "bad"
}

func (s *ArtifactServer) record(r *http.Request, status int, auth string) {
	ua := strings.Fields(r.UserAgent() + " -")[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.log, "%s %s %d auth=%s ua=%s\n", r.Method, r.URL.Path, status, auth, ua)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Wait blocks until ctx ends, then closes the server: for a daemon.
func (s *ArtifactServer) Wait(ctx context.Context) error {
	<-ctx.Done()
	return s.Close()
}
