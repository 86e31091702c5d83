package metricstest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PrometheusOptions configure StartPrometheus.
type PrometheusOptions struct {
	// Targets are host:port addresses whose /metrics Prometheus scrapes
	// (job "app"), e.g. an Exporter's Addr.
	Targets []string
	// ScrapeInterval defaults to 1s: the first samples appear a second or
	// two after start.
	ScrapeInterval time.Duration
	// Args are more command-line flags.
	Args []string
}

// PrometheusServer is a running Prometheus server.
type PrometheusServer struct {
	*Server
	URL string // http://127.0.0.1:PORT
}

// StartPrometheus starts prometheus on a free 127.0.0.1 port with its
// config and TSDB under dir, scraping opts.Targets.
func StartPrometheus(ctx context.Context, dir string, opts PrometheusOptions) (*PrometheusServer, error) {
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = time.Second
	}
	s, err := start(ctx, launch{
		name: "prometheus", bin: PrometheusPath, pkg: "prometheus", dir: dir,
		args: func(port int) ([]string, error) {
			targets, _ := json.Marshal(opts.Targets) // a JSON list is a YAML flow sequence
			if opts.Targets == nil {
				targets = []byte("[]")
			}
			conf := fmt.Sprintf("global:\n  scrape_interval: %s\n  evaluation_interval: %s\n"+
				"scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: %s\n",
				interval, interval, targets)
			path := filepath.Join(dir, "prometheus.yml")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				return nil, err
			}
			return append([]string{
				"--config.file=" + path,
				"--storage.tsdb.path=" + filepath.Join(dir, "data"),
				"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
				"--log.level=warn",
			}, opts.Args...), nil
		},
		ready: func(ctx context.Context, addr string) bool {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/-/ready", nil)
			if err != nil {
				return false
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		},
	})
	if err != nil {
		return nil, err
	}
	return &PrometheusServer{Server: s, URL: "http://" + s.Addr}, nil
}

// Prometheus starts prometheus for t (see StartPrometheus), closed at cleanup.
func Prometheus(t testing.TB, opts PrometheusOptions) *PrometheusServer {
	t.Helper()
	Require(t, PrometheusPath, "prometheus")
	ctx, cancel := testContext(t)
	defer cancel()
	p, err := StartPrometheus(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("metricstest: %v", err)
	}
	forTest(t, p.Server)
	return p
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant query and returns its vector (a scalar is one
// sample without labels).
func (p *PrometheusServer) Query(ctx context.Context, query string) ([]Sample, error) {
	u := p.URL + "/api/v1/query?" + url.Values{"query": {query}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("query %q: HTTP %d: %s", query, resp.StatusCode, body)
	}
	if ans.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, ans.Error)
	}
	switch ans.Data.ResultType {
	case "scalar":
		var pair [2]any
		if err := json.Unmarshal(ans.Data.Result, &pair); err != nil {
			return nil, err
		}
		v, err := parseValue(pair[1])
		return []Sample{{Value: v}}, err
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(ans.Data.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(vec))
		for _, s := range vec {
			v, err := parseValue(s.Value[1])
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Labels: s.Metric, Value: v})
		}
		return out, nil
	}
	return nil, fmt.Errorf("query %q: a %s, want a vector or scalar", query, ans.Data.ResultType)
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}

// WaitFor polls query until ok accepts its answer, or ctx ends; the error
// then says what was seen last. Prometheus scrapes on its own schedule:
// waiting for the answer, not for a time, keeps tests free of sleeps.
func (p *PrometheusServer) WaitFor(ctx context.Context, query string, ok func([]Sample) bool) error {
	var last string
	for {
		got, err := p.Query(ctx, query)
		if err == nil && ok(got) {
			return nil
		}
		last = fmt.Sprintf("%v", got)
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prometheus: waiting for %s: %w (last: %s)", query, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitForValue waits until query returns exactly one sample equal to want
// (NaN matches NaN).
func (p *PrometheusServer) WaitForValue(ctx context.Context, query string, want float64) error {
	return p.WaitFor(ctx, query, func(got []Sample) bool {
		if len(got) != 1 {
			return false
		}
		v := got[0].Value
		return v == want || (math.IsNaN(v) && math.IsNaN(want))
	})
}

// WaitForSeries waits until query returns n series.
func (p *PrometheusServer) WaitForSeries(ctx context.Context, query string, n int) error {
	return p.WaitFor(ctx, query, func(got []Sample) bool { return len(got) == n })
}

// String names the server in test logs.
func (p *PrometheusServer) String() string {
	return strings.TrimPrefix(p.URL, "http://")
}
