package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestArtifactServer(t *testing.T) {
	dir := t.TempDir()
	if err := writeArtifacts(dir); err != nil {
		t.Fatal(err)
	}
	s, err := ServeArtifacts(dir, ArtifactServerOptions{Token: "tok3n"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	name := ArtifactName("1.1.0")
	body, _ := os.ReadFile(filepath.Join(dir, "artifacts", name))
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])

	get := func(p, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL+p, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ok := "Bearer tok3n"
	if code, b := get("/artifacts/"+name, ok); code != 200 || b != string(body) {
		t.Errorf("artifact: %d, %d bytes", code, len(b))
	}
	if code, b := get("/artifacts/"+name+".sha256", ok); code != 200 || b != want+"  "+name+"\n" {
		t.Errorf(".sha256: %d %q", code, b)
	}
	if code, b := get("/hang/"+name+".sha256", ok); code != 200 || !strings.HasPrefix(b, want) {
		t.Errorf("a fault's .sha256 is the true one: %d %q", code, b)
	}
	if code, b := get("/artifacts/SHA256SUMS", ok); code != 200 || !strings.Contains(b, want+"  "+name+"\n") || strings.Count(b, "\n") != 4 {
		t.Errorf("SHA256SUMS: %d %q", code, b)
	}
	if code, b := get("/corrupt/"+name, ok); code != 200 || len(b) != len(body) || b == string(body) {
		t.Errorf("corrupt: %d, same bytes %v", code, b == string(body))
	}
	if code, _ := get("/missing/"+name, ok); code != 404 {
		t.Errorf("missing: %d", code)
	}
	if code, _ := get("/artifacts/"+name, ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := get("/artifacts/"+name, "Bearer nope"); code != 401 {
		t.Errorf("bad token: %d", code)
	}
	if code, b := get("/hang/"+name, ok); code != 0 || !strings.Contains(b, "Timeout") {
		t.Errorf("hang: %d %q", code, b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(s.Log)
	if strings.Contains(string(log), "tok3n") || !strings.Contains(string(log), "GET /artifacts/"+name+" 200 auth=ok ua=Go-http-client/1.1\n") ||
		!strings.Contains(string(log), "GET /artifacts/"+name+" 401 auth=bad") {
		t.Errorf("log:\n%s", log)
	}
}
