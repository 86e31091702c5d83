package metricstest

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// Exporter serves /metrics in Prometheus's text format on 127.0.0.1, with
// values the caller sets: a scrape target whose numbers a test controls.
type Exporter struct {
	Addr string // 127.0.0.1:PORT, for PrometheusOptions.Targets
	URL  string // http://127.0.0.1:PORT/metrics

	mu     sync.Mutex
	series map[string]float64
	srv    *http.Server
}

// NewExporter listens on a free 127.0.0.1 port.
func NewExporter() (*Exporter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &Exporter{Addr: ln.Addr().String(), series: map[string]float64{}}
	e.URL = "http://" + e.Addr + "/metrics"
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", e.serve)
	e.srv = &http.Server{Handler: mux}
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

// StartExporter is NewExporter for t, closed at cleanup.
func StartExporter(t testing.TB) *Exporter {
	t.Helper()
	e, err := NewExporter()
	if err != nil {
		t.Fatalf("metricstest: exporter: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// Set makes series (a metric name with its labels, in the text format:
// `http_errors_rate{host="canary"}`) read v from the next scrape on.
func (e *Exporter) Set(series string, v float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.series[series] = v
}

// Delete removes series from the next scrape on.
func (e *Exporter) Delete(series string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.series, series)
}

// Close stops serving.
func (e *Exporter) Close() { _ = e.srv.Close() }

func (e *Exporter) serve(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	names := make([]string, 0, len(e.series))
	for name := range e.series {
		names = append(names, name)
	}
	slices.Sort(names)
	lines := make([]byte, 0, 64*len(names))
	for _, name := range names {
		lines = fmt.Appendf(lines, "%s %s\n", name, strconv.FormatFloat(e.series[name], 'g', -1, 64))
	}
	e.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write(lines)
}
