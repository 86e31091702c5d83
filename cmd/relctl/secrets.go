package main

import (
	"io"
	"sync"

	"github.com/relctl/relctl/playbooks"
)

// secretsHolder is the process's one set of resolved secrets (a command
// resolves each secret once, whatever runs it makes), and the redactor every
// output stream goes through.
type secretsHolder struct {
	mu      sync.Mutex
	secrets *playbooks.Secrets
}

// forConfig is the secrets of cfg, made on first use.
func (h *secretsHolder) forConfig(cfg *playbooks.Config) *playbooks.Secrets {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.secrets == nil {
		h.secrets = playbooks.NewSecrets(cfg)
	}
	return h.secrets
}

func (h *secretsHolder) redact(s string) string {
	h.mu.Lock()
	sec := h.secrets
	h.mu.Unlock()
	return sec.Redact(s)
}

// writer masks every resolved secret in what is written to w: the
// terminal's stdout and stderr (reports, progress, logs, error messages).
func (h *secretsHolder) writer(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &redactingWriter{w: w, h: h}
}

type redactingWriter struct {
	w io.Writer
	h *secretsHolder
}

func (r *redactingWriter) Write(p []byte) (int, error) {
	s := string(p)
	red := r.h.redact(s)
	if red == s {
		return r.w.Write(p)
	}
	if _, err := io.WriteString(r.w, red); err != nil {
		return 0, err
	}
	return len(p), nil
}
