package metric_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/relctl/relctl/healthcheck/metric"
	"github.com/relctl/relctl/internal/metricstest"
)

// TestExamples keeps the documented examples working: they decode
// strictly, validate once rendered, and read a value from the real servers
// (Prometheus: the server accepts the queries; there is no such traffic
// here, so no series yet).
func TestExamples(t *testing.T) {
	raw, err := os.ReadFile("testdata/examples.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Soak struct {
			Checks map[string]metric.Spec `toml:"checks"`
		} `toml:"soak"`
	}
	dec := toml.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Soak.Checks) != 7 {
		t.Fatalf("%d examples, want 7", len(doc.Soak.Checks))
	}

	p := prometheus(t)
	rds := metricstest.Redis(t, metricstest.RedisOptions{Password: redisPassword, MaxMemory: "64mb"})
	mc := metricstest.Memcached(t, metricstest.MemcachedOptions{})
	ctx := testCtx(t)
	data := map[string]any{"Version": "1.4.0", "Host": map[string]string{"Name": "web-1"}}

	for name, s := range doc.Soak.Checks {
		t.Run(name, func(t *testing.T) {
			s.Query, s.BaselineQuery = render(t, s.Query, data), render(t, s.BaselineQuery, data)
			if p := s.Validate(); p != nil {
				t.Fatalf("invalid: %q", p)
			}
			opts := metric.Options{Dial: direct, Timeout: 10 * time.Second}
			switch s.Type {
			case "prometheus":
				s.Address = p.URL
				if err := metric.PreflightQuery(ctx, s, opts); err != nil {
					t.Fatalf("the server refused the example: %v", err)
				}
				return
			case "redis":
				s.Address, opts.Password = rds.Addr, redisPassword
			case "memcached":
				s.Address = mc.Addr
			}
			r := metric.Check(ctx, s, opts, metric.Sample{})
			t.Logf("%s: %s", r.Verdict, r.Reason)
			if !r.Sample.OK() {
				t.Fatalf("no value read: %v", r.Sample.Err)
			}
			if r.Verdict == metric.Fail && !errors.Is(r.Err, metric.ErrThreshold) {
				t.Fatalf("failed: %v", r.Err)
			}
		})
	}
}

func render(t *testing.T, text string, data any) string {
	t.Helper()
	tmpl, err := template.New("q").Option("missingkey=error").Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
