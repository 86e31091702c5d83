package metric

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// maxPrometheusResponse bounds what a query's answer may weigh: one series
// is a few hundred bytes; a query that returns thousands fails anyway.
const maxPrometheusResponse = 1 << 20

// maxSeriesListed is how many of several series a reason names.
const maxSeriesListed = 3

// readPrometheus runs Query (and BaselineQuery in baseline mode) as
// instant queries at the server's current time.
func readPrometheus(r reader, s Spec) Sample {
	client, closeIdle, err := r.prometheusAPI(s.Address)
	if err != nil {
		return Sample{Err: failf(ErrInvalidSpec, "address: "+r.scrub(err.Error()))}
	}
	defer closeIdle()
	v, err := r.instant(client, s.Query)
	if err != nil {
		return Sample{Err: err}
	}
	smp := Sample{Value: v, Baseline: math.NaN()}
	if s.Compare == CompareBaseline {
		b, err := r.instant(client, s.BaselineQuery)
		if err != nil {
			var re *readError
			if errors.As(err, &re) {
				re.msg = "baseline_query: " + re.msg
				if errors.Is(err, ErrNoSeries) {
					re.msg += " (no host left on the previous release?)"
				}
			}
			return Sample{Err: err}
		}
		smp.Baseline = b
	}
	return smp
}

// PreflightQuery asks the Prometheus at s.Address to run s.Query (and
// s.BaselineQuery): nil when the server accepts them, even with no series
// yet (the release they watch may not run anywhere yet). An error matching
// ErrQuery means the server refused the query (a PromQL syntax error:
// "parse error: …"); others mean it could not be asked (ErrUnreachable,
// ErrTimeout). This is what `relctl validate` cannot do offline.
func PreflightQuery(ctx context.Context, s Spec, opts Options) error {
	if s.Type != TypePrometheus {
		return nil
	}
	if problems := s.Validate(); len(problems) > 0 {
		return failf(ErrInvalidSpec, "invalid check: "+problems[0])
	}
	if opts.Dial == nil {
		return failf(ErrInvalidSpec, "invalid check: no dialer (Options.Dial)")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := reader{parent: ctx, ctx: actx, timeout: timeout, dial: boundedDialer(opts.Dial)}
	client, closeIdle, err := r.prometheusAPI(s.Address)
	if err != nil {
		return failf(ErrInvalidSpec, "address: "+r.scrub(err.Error()))
	}
	defer closeIdle()
	queries := []struct{ key, q string }{{"query", s.Query}}
	if s.Compare == CompareBaseline {
		queries = append(queries, struct{ key, q string }{"baseline_query", s.BaselineQuery})
	}
	for _, q := range queries {
		_, _, _, err := client.Query(r.ctx, q.q, time.Time{}, v1.WithTimeout(timeout))
		if err != nil {
			err = r.prometheusError(err)
			var re *readError
			if errors.As(err, &re) {
				re.msg = q.key + ": " + re.msg
			}
			return err
		}
	}
	return nil
}

// prometheusAPI is a client whose every connection goes through r.dial: a
// fresh transport per sample, no proxy from the environment (the check
// must reach what the host or controller reaches directly), no redirects,
// bounded responses.
func (r reader) prometheusAPI(address string) (v1.API, func(), error) {
	tr := &http.Transport{
		DialContext:            r.dial,
		DisableKeepAlives:      true,
		Proxy:                  nil,
		MaxResponseHeaderBytes: 64 << 10,
	}
	client, err := api.NewClient(api.Config{
		Address: address,
		Client: &http.Client{
			Transport:     boundedBody{tr},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return v1.NewAPI(client), tr.CloseIdleConnections, nil
}

// instant runs q at the server's time and returns its one number.
func (r reader) instant(client v1.API, q string) (float64, error) {
	val, _, _, err := client.Query(r.ctx, q, time.Time{}, v1.WithTimeout(r.timeout))
	if err != nil {
		return math.NaN(), r.prometheusError(err)
	}
	return oneNumber(val)
}

// oneNumber is the value of a scalar or of a vector of exactly one sample.
func oneNumber(val model.Value) (float64, error) {
	var v float64
	switch x := val.(type) {
	case *model.Scalar:
		v = float64(x.Value)
	case model.Vector:
		switch len(x) {
		case 0:
			return math.NaN(), failf(ErrNoSeries, "no series")
		case 1:
			v = float64(x[0].Value)
		default:
			return math.NaN(), failf(ErrManySeries, fmt.Sprintf("%d series, want one (aggregate with sum, avg or max): %s", len(x), listSeries(x)))
		}
	case model.Matrix:
		return math.NaN(), failf(ErrNotNumber, "a range vector, want an instant value (wrap it in rate(), avg_over_time(), …)")
	case nil:
		return math.NaN(), failf(ErrNoSeries, "no result")
	default:
		return math.NaN(), failf(ErrNotNumber, fmt.Sprintf("a %s, want a number", val.Type()))
	}
	switch {
	case math.IsNaN(v):
		return v, failf(ErrNotNumber, "NaN (a division by zero, or no data in the range?)")
	case math.IsInf(v, 0):
		return v, failf(ErrNotNumber, fmt.Sprintf("%s (a division by zero?)", fmtNum(v)))
	}
	return v, nil
}

// listSeries names the first few series by the labels that tell them
// apart: {host="canary"}, {host="old1"}, ….
func listSeries(vec model.Vector) string {
	same := map[model.LabelName]bool{}
	for name, v := range vec[0].Metric {
		same[name] = true
		for _, smp := range vec[1:] {
			if smp.Metric[name] != v {
				same[name] = false
				break
			}
		}
	}
	names := make([]string, 0, len(vec))
	for _, smp := range vec {
		differ := model.Metric{}
		for name, v := range smp.Metric {
			if !same[name] {
				differ[name] = v
			}
		}
		names = append(names, labelSet(differ))
	}
	sort.Strings(names)
	if len(names) > maxSeriesListed {
		names = append(names[:maxSeriesListed], "…")
	}
	return strings.Join(names, ", ")
}

// labelSet prints labels as {a="1", b="2"}, name included like any label.
func labelSet(m model.Metric) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, string(m[model.LabelName(k)])))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// prometheusError classifies a client error: an API error (the query
// refused or failed at the server) is ErrQuery with the server's message;
// a 5xx or a non-API answer is ErrProtocol; the rest as any reading.
func (r reader) prometheusError(err error) error {
	if r.parent.Err() != nil {
		return r.parent.Err()
	}
	var ae *v1.Error
	if !errors.As(err, &ae) {
		return r.classify(err)
	}
	switch ae.Type {
	case v1.ErrBadData, v1.ErrExec:
		// "invalid parameter \"query\": 1:29: parse error: …": the position says enough.
		msg := strings.TrimPrefix(ae.Msg, `invalid parameter "query": `)
		return &readError{kind: ErrQuery, msg: r.scrub(msg), cause: err}
	case v1.ErrTimeout, v1.ErrCanceled:
		if r.ctx.Err() != nil {
			return r.classify(err)
		}
		return &readError{kind: ErrTimeout, msg: "the server gave up: " + r.scrub(ae.Msg), cause: err}
	}
	if ae.Type == v1.ErrBadResponse && strings.HasPrefix(ae.Msg, "unexpected value type") {
		// The client reads numbers only; a query for a string gets here.
		return &readError{kind: ErrNotNumber, msg: r.scrub(ae.Msg) + ", want a number", cause: err}
	}
	// A 404 page, a proxy's error page: not an API answer.
	msg := ae.Msg
	if ex := oneLine(ae.Detail); ex != "" {
		msg += ": " + truncate(ex, 80)
	}
	return &readError{kind: ErrProtocol, msg: r.scrub(msg) + " (is address a Prometheus server?)", cause: err}
}

// boundedBody limits every response body to maxPrometheusResponse.
type boundedBody struct{ rt http.RoundTripper }

func (b boundedBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxPrometheusResponse + 1}
	return resp, nil
}

// limitedBody fails the read that goes past the limit: left starts one
// above it, so a body of exactly the limit still reads to EOF.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.ReadCloser.Read(p)
	l.left -= int64(n)
	if l.left <= 0 {
		return n, failf(ErrProtocol, fmt.Sprintf("answer larger than %d bytes", maxPrometheusResponse))
	}
	return n, err
}
