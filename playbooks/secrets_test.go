package playbooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretPreludeEveryByte: what SecretInput sends and SecretPrelude reads
// arrives byte for byte in the shell variable, under dash and bash, and the
// rendered command holds a reference to the variable, never the value.
func TestSecretPreludeEveryByte(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []string{"hunter2-x", "a'b\"c$(reboot)`x`\\n\\0101", "trailing\n\n", "\n\nleading", "x\\cy%s%b", "héllo wörld \xff\xfe\x01\x7f-"}
	for range 20 {
		b := make([]byte, 4+r.IntN(60))
		for i := range b {
			b[i] = byte(1 + r.IntN(255))
		}
		values = append(values, string(b))
	}
	for _, shell := range []string{"dash", "bash"} {
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("no %s", shell)
			continue
		}
		for i, v := range values {
			cfg := &Config{Secrets: map[string]*SecretConfig{"tok": {Env: "X"}}}
			s := NewSecrets(cfg)
			s.lookupEnv = func(string) (string, bool) { return v, true }
			if err := s.Resolve(context.Background(), []string{"tok"}); err != nil {
				t.Fatal(err)
			}
			cmd, used, err := RenderStepCommand("t", `printf %s {{.Secrets.tok}} | sha256sum > out; V={{.Secrets.tok}} env | grep -c ^V= >> out`, &TemplateData{Secrets: secretRefs(cfg)})
			if err != nil || len(used) != 1 || used[0] != "tok" {
				t.Fatalf("render: %q %v %v", cmd, used, err)
			}
			if strings.Contains(cmd, v) {
				t.Fatalf("rendered command holds the value: %q", cmd)
			}
			in, err := s.SecretInput(used)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			c := exec.Command(shell, "-c", SecretPrelude(used)+cmd)
			c.Dir, c.Stdin = dir, strings.NewReader(in)
			c.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("%s value %d: %v\n%s", shell, i, err, out)
			}
			got, _ := os.ReadFile(filepath.Join(dir, "out"))
			sum := sha256.Sum256([]byte(v))
			want := hex.EncodeToString(sum[:]) + "  -\n1\n"
			if string(got) != want {
				t.Errorf("%s value %d %q: got %q, want %q", shell, i, v, got, want)
			}
		}
	}
}

func TestSecretsOutsideRunSteps(t *testing.T) {
	cfg := &Config{Secrets: map[string]*SecretConfig{"tok": {Env: "X"}}}
	data := &TemplateData{Secrets: secretRefs(cfg)}
	if _, err := RenderCommand("c", `curl -H {{.Secrets.tok}} x`, data); err == nil || !strings.Contains(err.Error(), "secrets are available only") {
		t.Errorf("RenderCommand with a secret: %v", err)
	}
	if _, err := RenderText("u", `http://x/{{.Secrets.tok}}`, data); err == nil {
		t.Errorf("RenderText with a secret: no error")
	}
	if _, _, err := RenderStepCommand("s", `echo {{.Secrets.nope}}`, data); err == nil {
		t.Errorf("unknown secret: no error")
	}
	if _, _, err := RenderStepCommand("s", `sh {{.Secrets.tok}}`, data); err == nil {
		t.Errorf("a secret where rm reads options: no error")
	}
	if _, _, err := RenderStepCommand("s", `sh -- {{.Secrets.tok}}`, data); err != nil {
		t.Errorf("after --: %v", err)
	}
}

func TestSecretResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("ok", "file-secret\n", 0o600)
	write("open", "file-secret\n", 0o644)
	write("short", "ab\n", 0o600)
	cfg := &Config{Dir: dir, Path: filepath.Join(dir, "relctl.toml"), Secrets: map[string]*SecretConfig{
		"f": {File: "ok"}, "open": {File: "open"}, "short": {File: "short"}, "missing": {Env: "RELCTL_TEST_UNSET_VAR"},
		"cmd": {Command: []string{"sh", "-c", "echo cmd-secret; echo cmd-secret >&2"}}, "fails": {Command: []string{"sh", "-c", "echo leaked-value; exit 3"}},
	}}
	s := NewSecrets(cfg)
	if err := s.Resolve(context.Background(), []string{"f", "cmd"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Value("f"); v != "file-secret" {
		t.Errorf("file: %q", v)
	}
	if v, _ := s.Value("cmd"); v != "cmd-secret" {
		t.Errorf("command: %q", v)
	}
	if got := s.Redact("a file-secret and cmd-secret"); got != "a "+SecretMask+" and "+SecretMask {
		t.Errorf("redact: %q", got)
	}
	for _, name := range []string{"open", "short", "missing", "fails"} {
		err := s.Resolve(context.Background(), []string{name})
		if err == nil {
			t.Errorf("%s: resolved", name)
			continue
		}
		if strings.Contains(err.Error(), "leaked-value") {
			t.Errorf("%s: error shows the output: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestSecretsConfigProblems(t *testing.T) {
	writeProject(t, map[string]string{
		"relctl.toml": goodConfig + `
[secrets.db]
env = "DB"
pass = "x"
[secrets.both]
env = "A"
file = "b"
[secrets.none]
[secrets.api]
file = "api"
timeout = "5s"
`,
		"playbooks/web.toml": goodPlaybook,
	})
	_, err := Load("relctl.toml")
	if err == nil {
		t.Fatal("loaded")
	}
	got := err.Error()
	for _, want := range []string{
		`relctl.toml:13:1: unknown key "pass" in [secrets.db]`,
		`relctl.toml:14:2: secrets.both: give only one of env, file and command`,
		`relctl.toml:17:2: secrets.none: give one of env`,
		`relctl.toml:20:1: secrets.api.timeout: only a command takes a timeout`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	// Templates: an unknown secret, a secret outside a run step.
	writeProject(t, map[string]string{
		"relctl.toml": goodConfig + "\n[secrets.db]\nenv = \"DB\"\n",
		"playbooks/web.toml": goodPlaybook + `
[[steps]]
phase = "post"
name = "uses"
run = "printf %s {{.Secrets.db}} {{.Secrets.nope}} > f"

[checks.c]
type = "command"
command = "check {{.Secrets.db}}"
`,
	})
	_, err = Load("relctl.toml")
	if err == nil {
		t.Fatal("loaded")
	}
	got = err.Error()
	for _, want := range []string{
		`playbooks/web.toml:21:1: steps.run:`,
		`map has no entry for key "nope"`,
		`checks.c.command:`,
		`secrets are available only in the run and undo of [[steps]] and in [[rollback.steps]]`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	t.Log(got)
}
