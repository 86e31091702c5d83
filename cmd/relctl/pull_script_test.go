package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/relctl/relctl/testenv"
)

// TestScriptsPull runs the artifact.url scripts: the cluster, plus a real
// HTTP server on 127.0.0.1 serving its artifacts (testenv.ServeArtifacts)
// behind a bearer token. The hosts fetch with the machine's curl or wget.
// The scripts see ARTIFACTS_URL, ARTIFACT_AUTH ("Bearer TOKEN", read by
// relctl through artifact.auth_header_env), ARTIFACT_TOKEN and
// ARTIFACT_SIG (secrets that must appear nowhere: a fresh random value
// each) and ARTIFACT_LOG (the server's request log).
func TestScriptsPull(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if _, err := exec.LookPath("wget"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("neither curl nor wget installed: `make test` installs curl")
			}
			t.Skip("neither curl nor wget installed (apt-get install -y curl wget)")
		}
	}
	testscript.Run(t, scriptParams("testdata/script-pull", func(env *testscript.Env) error {
		if err := setupCluster(env); err != nil {
			return err
		}
		token, sig := randomSecret(), randomSecret()
		srv, err := testenv.ServeArtifacts(filepath.Join(env.WorkDir, "cluster"), testenv.ArtifactServerOptions{Token: token})
		if err != nil {
			return err
		}
		env.Defer(func() { _ = srv.Close() })
		env.Setenv("ARTIFACTS_URL", srv.URL)
		env.Setenv("ARTIFACT_LOG", srv.Log)
		env.Setenv("ARTIFACT_AUTH", "Bearer "+token)
		env.Setenv("ARTIFACT_TOKEN", token)
		env.Setenv("ARTIFACT_SIG", sig)
		return nil
	}))
}

func randomSecret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "s3cret" + hex.EncodeToString(b)
}
