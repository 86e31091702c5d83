package healthcheck_test

import (
	"testing"

	"github.com/relctl/relctl/healthcheck"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://127.0.0.1:8080/healthz", "http://127.0.0.1:8080/healthz"},
		{"http://deployer:s3cret@127.0.0.1:8080/healthz?x=1", "http://127.0.0.1:8080/healthz?x=1"},
		{"https://token@example.com/", "https://example.com/"},
		{"/relative/path", "/relative/path"},
		{"http://u:p@[::1\n", "http://[::1"}, // unparseable: still scrubbed, one line
	}
	for _, tt := range tests {
		if got := healthcheck.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
