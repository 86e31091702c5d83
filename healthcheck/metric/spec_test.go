package metric_test

import (
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/relctl/relctl/healthcheck/metric"
)

func f(v float64) *float64 { return &v }

func TestValidate(t *testing.T) {
	prom := func(m func(*metric.Spec)) metric.Spec {
		s := metric.Spec{Type: "prometheus", Address: "http://127.0.0.1:9090", Query: "sum(rate(http_errors_total[1m]))", Max: f(0.05)}
		m(&s)
		return s
	}
	redis := func(m func(*metric.Spec)) metric.Spec {
		s := metric.Spec{Type: "redis", Address: "127.0.0.1:6379", Key: "jobs", Command: "llen", Max: f(1000)}
		m(&s)
		return s
	}
	mc := func(m func(*metric.Spec)) metric.Spec {
		s := metric.Spec{Type: "memcached", Address: "127.0.0.1:11211", Field: "evictions", MaxIncrease: f(0)}
		m(&s)
		return s
	}
	tests := []struct {
		name string
		spec metric.Spec
		want []string // substrings, one per problem, in order
	}{
		{"prometheus ok", prom(func(*metric.Spec) {}), nil},
		{"prometheus baseline ok", prom(func(s *metric.Spec) {
			s.Compare, s.BaselineQuery, s.MaxRatio, s.Max, s.Direction = "baseline", `sum(rate(x[1m]))`, f(1.5), nil, "higher_is_better"
		}), nil},
		{"redis key ok", redis(func(*metric.Spec) {}), nil},
		{"redis field ok", redis(func(s *metric.Spec) { s.Key, s.Command, s.Field = "", "", "used_memory/maxmemory" }), nil},
		{"redis field with command info", redis(func(s *metric.Spec) { s.Key, s.Command, s.Field = "", "info", "evicted_keys" }), nil},
		{"memcached ok", mc(func(*metric.Spec) {}), nil},

		{"no type", metric.Spec{}, []string{"type is missing"}},
		{"unknown type", metric.Spec{Type: "statsd"}, []string{`type must be "prometheus", "redis" or "memcached", not "statsd"`}},
		{"bad via", redis(func(s *metric.Spec) { s.Via = "bastion" }), []string{`via must be "host" or "controller", not "bastion"`}},
		{"prometheus without query", prom(func(s *metric.Spec) { s.Query = " " }), []string{"query is missing"}},
		{"prometheus query unbalanced", prom(func(s *metric.Spec) { s.Query = "sum(rate(x[1m])" }), []string{`query: 1:4: '(' is not closed`}},
		{"prometheus address not a URL", prom(func(s *metric.Spec) { s.Address = "127.0.0.1:9090" }), []string{"address: url must be an absolute http(s) URL"}},
		{"prometheus baseline without its keys", prom(func(s *metric.Spec) { s.Compare = "baseline" }), []string{"baseline_query is missing", "max_ratio is missing"}},
		{"prometheus max_ratio below 1", prom(func(s *metric.Spec) { s.Compare, s.BaselineQuery, s.MaxRatio = "baseline", "x", f(0.5) }), []string{"max_ratio must be a number of at least 1"}},
		{"prometheus baseline keys without baseline", prom(func(s *metric.Spec) { s.BaselineQuery, s.MaxRatio = "x", f(2) }), []string{`baseline_query only applies with compare = "baseline"`, `max_ratio only applies`}},
		{"prometheus unknown compare", prom(func(s *metric.Spec) { s.Compare = "kayenta" }), []string{`compare must be "threshold" or "baseline", not "kayenta"`}},
		{"prometheus with redis keys", prom(func(s *metric.Spec) { s.Key, s.PasswordSecret = "jobs", "redis_pw" }), []string{"key does not apply to a prometheus check", "password_secret does not apply"}},
		{"redis key and field", redis(func(s *metric.Spec) { s.Field = "used_memory" }), []string{"key and field are both set"}},
		{"redis neither key nor field", redis(func(s *metric.Spec) { s.Key = "" }), []string{"a redis check needs key"}},
		{"redis key without command", redis(func(s *metric.Spec) { s.Command = "" }), []string{`command is missing: "llen", "xlen" or "zcard"`}},
		{"redis unknown command", redis(func(s *metric.Spec) { s.Command = "hlen" }), []string{`command must be "llen", "xlen", "zcard" or "info", not "hlen"`}},
		{"redis info with key", redis(func(s *metric.Spec) { s.Command = "info" }), []string{`command = "info" reads field, not key`}},
		{"redis llen with field", redis(func(s *metric.Spec) { s.Key, s.Field = "", "used_memory" }), []string{`command = "llen" reads the length of key, but field is set`}},
		{"redis bad field", redis(func(s *metric.Spec) { s.Key, s.Command, s.Field = "", "", "used memory" }), []string{`field "used memory": want an INFO field name`}},
		{"redis bad ratio", redis(func(s *metric.Spec) { s.Key, s.Command, s.Field = "", "", "used_memory/" }), []string{`field "used_memory/"`}},
		{"redis address without port", redis(func(s *metric.Spec) { s.Address = "localhost" }), []string{"address: address must be host:port"}},
		{"redis negative db", redis(func(s *metric.Spec) { s.DB = -1 }), []string{"db must be 0 or more"}},
		{"redis with a query", redis(func(s *metric.Spec) { s.Query = "up" }), []string{"query does not apply to a redis check"}},
		{"no threshold", redis(func(s *metric.Spec) { s.Max = nil }), []string{"no threshold"}},
		{"min above max", redis(func(s *metric.Spec) { s.Min = f(2000) }), []string{"min 2000 is above max 1000"}},
		{"memcached without field", mc(func(s *metric.Spec) { s.Field = "" }), []string{"field is missing"}},
		{"memcached with a key", mc(func(s *metric.Spec) { s.Key = "jobs" }), []string{"key does not apply to a memcached check"}},
		{"memcached without address", mc(func(s *metric.Spec) { s.Address = "" }), []string{"address is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.spec.Validate()
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %q, want %d problems like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestValidatePromQL(t *testing.T) {
	tests := []struct {
		q, want string // want: "" for valid, else a substring of the error
	}{
		{`sum(rate(http_errors_total{host="web-1"}[1m]))`, ""},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 0.5`, ""},
		{`rate(x[5m:1m])`, ""},
		{`x{path=~"/a(b|c"}`, ""},    // brackets inside strings do not count
		{"x{path=~`(`}", ""},         // raw strings neither
		{"x{a=\"\\\"(\"}", ""},       // nor escaped quotes
		{"sum(x) # a comment (", ""}, // nor comments
		{"sum(\n  x\n)", ""},         // several lines
		{"", "query is empty"},       //
		{"  \n", "query is empty"},   //
		{"sum(rate(x[1m])", `1:4: '(' is not closed`},
		{"sum(x))", `1:7: unexpected ')'`},
		{"x[5m)", `1:5: unexpected ')'`},
		{`x{a="b}`, "1:5: string opened here is not closed"},
		{"sum(\n x{a='b\n})", "2:6: string opened here is not closed"},
	}
	for _, tt := range tests {
		err := metric.ValidatePromQL(tt.q)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidatePromQL(%q) = %v, want nil", tt.q, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidatePromQL(%q) = %v, want an error containing %q", tt.q, err, tt.want)
		}
	}
}

// TestSpecFromTOML decodes checks as the playbook loader will (strict, so a
// misspelt key is refused) and validates them.
func TestSpecFromTOML(t *testing.T) {
	const doc = `
[[check]]
type = "prometheus"
address = "http://127.0.0.1:9090"
query = 'sum(rate(http_errors_total{version="1.4.0"}[1m]))'
compare = "baseline"
baseline_query = 'sum(rate(http_errors_total{version="1.3.0"}[1m]))'
max_ratio = 1.5
direction = "lower_is_better"

[[check]]
type = "redis"
address = "127.0.0.1:6379"
password_secret = "redis_password"
db = 0
command = "llen"
key = "jobs"
max = 1000
max_growth_per_minute = 100

[[check]]
type = "memcached"
address = "127.0.0.1:11211"
via = "controller"
field = "bytes/limit_maxbytes"
max = 0.9
`
	var got struct {
		Check []metric.Spec `toml:"check"`
	}
	dec := toml.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Check) != 3 {
		t.Fatalf("decoded %d checks, want 3", len(got.Check))
	}
	for i, s := range got.Check {
		if p := s.Validate(); p != nil {
			t.Errorf("check %d: %q", i, p)
		}
	}
	if r := got.Check[0].MaxRatio; r == nil || *r != 1.5 {
		t.Errorf("max_ratio = %v, want 1.5", r)
	}
	if m := got.Check[1].Max; m == nil || *m != 1000 {
		t.Errorf("max (a TOML integer) = %v, want 1000", m)
	}

	dec = toml.NewDecoder(strings.NewReader("[[check]]\ntype = \"redis\"\nthreshold = 3\n"))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err == nil {
		t.Error("an unknown key decoded without error")
	}
}
