// Package metric owns the soak checks that judge a release by a metrics
// server rather than by the service itself: a PromQL query against
// Prometheus, a queue length or INFO field of redis, a stats field of
// memcached. One call reads one sample; Evaluate compares it with the
// check's thresholds, or with the previous sample for growth and increase
// limits, so the caller (the soak loop) keeps the state between samples.
//
// It receives fully rendered values: templating, secrets and defaults belong
// to the playbooks package, choosing the dialer for `via` to the engine.
package metric

import (
	"context"
	"errors"
	"math"
	"net"
	"time"
)

// Check types.
const (
	TypePrometheus = "prometheus"
	TypeRedis      = "redis"
	TypeMemcached  = "memcached"
)

// Where a check dials from; the caller turns it into Options.Dial.
const (
	ViaHost       = "host"       // through the host's SSH connection (the default)
	ViaController = "controller" // directly from the machine running relctl
)

// Prometheus comparisons and directions.
const (
	CompareThreshold = "threshold" // the default: min and max
	CompareBaseline  = "baseline"  // the canary's value against baseline_query's, times max_ratio

	LowerIsBetter  = "lower_is_better" // the default: error rates, latencies
	HigherIsBetter = "higher_is_better"
)

// Redis commands.
const (
	RedisLLEN  = "llen"
	RedisXLEN  = "xlen"
	RedisZCARD = "zcard"
	RedisINFO  = "info"
)

// DefaultTimeout bounds a sample whose Options have no Timeout: an unbounded
// read could hang a soak forever.
const DefaultTimeout = 5 * time.Second

// Spec is one metric check as a playbook states it, already rendered (query
// templates filled in, but the password still a secret's name).
type Spec struct {
	Type string `toml:"type"` // prometheus | redis | memcached

	// Address is the server: an http(s) URL for prometheus
	// ("http://127.0.0.1:9090"), host:port for redis and memcached.
	Address string `toml:"address"`
	// Via is "host" (default when empty) or "controller"; see Options.Dial.
	Via string `toml:"via"`

	// prometheus: an instant query that yields exactly one number.
	Query string `toml:"query"`
	// Compare is "threshold" (default; min and max) or "baseline".
	Compare string `toml:"compare"`
	// BaselineQuery is Query over the hosts still on the previous release
	// (compare = "baseline").
	BaselineQuery string `toml:"baseline_query"`
	// MaxRatio is how much worse than the baseline the canary may be
	// (compare = "baseline"), e.g. 1.5.
	MaxRatio *float64 `toml:"max_ratio"`
	// Direction says which way is worse for compare = "baseline":
	// "lower_is_better" (default) or "higher_is_better".
	Direction string `toml:"direction"`

	// redis: Command is llen, xlen or zcard on Key, or info for Field. DB
	// is the database number for Key. PasswordSecret names the relctl
	// secret whose value the caller passes as Options.Password; Username
	// is for redis ACL users (empty: the default user).
	Command        string `toml:"command"`
	Key            string `toml:"key"`
	DB             int    `toml:"db"`
	Username       string `toml:"username"`
	PasswordSecret string `toml:"password_secret"`

	// Field is an INFO field (redis) or a stats field (memcached): "NAME"
	// for its value, "NAME/OTHER" for a ratio of two fields, e.g.
	// "used_memory/maxmemory" or "bytes/limit_maxbytes".
	Field string `toml:"field"`

	// Thresholds; every one that is set must hold. Min and Max bound the
	// value. MaxGrowthPerMinute bounds (value - previous value) per minute
	// (a queue's backlog). MaxIncrease bounds a counter's increase since the
	// previous sample (evicted_keys, evictions); a counter lower than before
	// was reset and counts from 0. In baseline mode Min and Max are absolute
	// limits on the canary on top of the ratio.
	Min                *float64 `toml:"min"`
	Max                *float64 `toml:"max"`
	MaxGrowthPerMinute *float64 `toml:"max_growth_per_minute"`
	MaxIncrease        *float64 `toml:"max_increase"`
}

// DialFunc opens a connection, like net.Dialer.DialContext or
// transport.Conn.DialContext (through the host's SSH connection).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Options are what a read needs beyond the Spec.
type Options struct {
	// Dial reaches the server: directly from the controller
	// ((&net.Dialer{}).DialContext) or through the host's SSH connection
	// (the host's transport.Conn.DialContext) for via = "host". Required:
	// a check never silently dials from somewhere else.
	Dial DialFunc
	// Password is the redis password, the value of Spec.PasswordSecret.
	// It never appears in an error or a reason.
	Password string
	// Timeout bounds one sample (0 means DefaultTimeout).
	Timeout time.Duration
	// Now stamps samples (nil means time.Now); tests move the clock.
	Now func() time.Time
}

// Kinds of failed reading, for errors.Is. When the caller's own context
// ends, Sample.Err is that context's error and the verdict is Stopped.
var (
	// ErrInvalidSpec: the spec cannot be read (see Spec.Validate), or
	// Options lack a Dial.
	ErrInvalidSpec = errors.New("invalid metric check")
	// ErrUnreachable: the server could not be dialled (refused, no route,
	// unknown host, the SSH channel refused).
	ErrUnreachable = errors.New("server unreachable")
	// ErrTimeout: the sample took longer than Options.Timeout.
	ErrTimeout = errors.New("timed out")
	// ErrQuery: Prometheus refused the query (a PromQL syntax or execution
	// error) or answered with an API error.
	ErrQuery = errors.New("query failed")
	// ErrNoSeries: the query returned no series.
	ErrNoSeries = errors.New("no series")
	// ErrManySeries: the query returned more than one series.
	ErrManySeries = errors.New("several series")
	// ErrNotNumber: the value is NaN, infinite, not a number, or not a
	// single instant value (a range vector, a string).
	ErrNotNumber = errors.New("not a number")
	// ErrNoField: the INFO or stats answer has no such field.
	ErrNoField = errors.New("no such field")
	// ErrNoLimit: a ratio's denominator is 0 (redis without maxmemory).
	ErrNoLimit = errors.New("denominator is 0")
	// ErrAuth: the server refused the credentials.
	ErrAuth = errors.New("authentication failed")
	// ErrProtocol: the server answered something this package cannot read
	// (garbage, an oversized or endless answer, a redis error reply).
	ErrProtocol = errors.New("unexpected answer")
	// ErrThreshold: the value was read and broke a threshold.
	ErrThreshold = errors.New("threshold exceeded")
)

// readError is a failed reading: Error() is what a user reads, errors.Is
// reaches the kind and the cause.
type readError struct {
	kind  error
	msg   string
	cause error
}

func (e *readError) Error() string { return e.msg }

func (e *readError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.kind, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func failf(kind error, msg string) error { return &readError{kind: kind, msg: msg} }

// Sample is one reading of a check's metric. Keep the last one that read a
// value and hand it back to Evaluate as prev (Result.Next does that).
type Sample struct {
	At time.Time
	// Value is the metric: the query's number, the queue length, the field
	// or the ratio. NaN when Err is set.
	Value float64
	// Baseline is baseline_query's value (compare = "baseline"); NaN otherwise.
	Baseline float64
	// Detail says what a ratio was made of ("used_memory 1048576 of
	// maxmemory 2097152"); empty otherwise.
	Detail string
	// Err is why no value was read; nil when Value holds one.
	Err error
}

// OK reports whether s holds a value.
func (s Sample) OK() bool { return s.Err == nil && !s.At.IsZero() }

func failedSample(at time.Time, err error) Sample {
	return Sample{At: at, Value: math.NaN(), Baseline: math.NaN(), Err: err}
}

// Verdict is what one sample says about the release.
type Verdict int

const (
	// Pass: the value was read and held every threshold.
	Pass Verdict = iota + 1
	// Fail: the value broke a threshold, or could not be read (never a
	// pass: an unreachable server or an empty query proves nothing).
	Fail
	// Pending: the value was read and holds min and max, but a growth or
	// increase limit needs a previous sample; this one becomes it.
	Pending
	// Stopped: the caller's context ended first; neither pass nor fail.
	Stopped
)

func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case Fail:
		return "fail"
	case Pending:
		return "pending"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

// Result is one evaluated sample.
type Result struct {
	Verdict Verdict
	// Metric names what was measured: "redis LLEN jobs",
	// "prometheus rate(http_errors_total[1m])".
	Metric string
	// Value is what was compared with Threshold: the metric itself, its
	// growth per minute, or its increase; NaN when nothing was read.
	Value float64
	// Limit names the threshold ("max", "min", "max_growth_per_minute",
	// "max_increase", "max_ratio"): the one broken on Fail, the first one
	// configured otherwise; empty when none was compared.
	Limit string
	// Threshold is the number Value was compared with; for max_ratio,
	// baseline × max_ratio (or ÷ for higher_is_better). NaN when none.
	Threshold float64
	// Reason is one line for a person: `redis LLEN jobs = 1840 > max 1000`,
	// `prometheus up{job="app"}: no series`.
	Reason string
	// Err is nil on Pass and Pending. On Fail it matches ErrThreshold or the
	// reading's kind (ErrUnreachable, ErrNoSeries, ...); on Stopped it is the
	// caller's context error.
	Err error
	// Sample is the sample evaluated. Next is the sample to pass as prev to
	// the next Evaluate: this one when it read a value, else prev.
	Sample, Next Sample
}

// Read takes one sample of s, dialling only through opts.Dial. It never
// returns a value it is not sure of: every problem is in Sample.Err. The
// sample's own time limit is opts.Timeout (a reading that takes longer is
// ErrTimeout, a Fail); ctx is the caller's (SIGINT, the end of the soak):
// when it ends first, Sample.Err is ctx's error and Evaluate says Stopped.
func Read(ctx context.Context, s Spec, opts Options) Sample {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	at := now()
	if problems := s.Validate(); len(problems) > 0 {
		return failedSample(at, failf(ErrInvalidSpec, "invalid check: "+problems[0]))
	}
	if opts.Dial == nil {
		return failedSample(at, failf(ErrInvalidSpec, "invalid check: no dialer (Options.Dial)"))
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := reader{parent: ctx, ctx: actx, timeout: timeout, dial: boundedDialer(opts.Dial), password: opts.Password}

	var smp Sample
	switch s.Type {
	case TypePrometheus:
		smp = readPrometheus(r, s)
	case TypeRedis:
		smp = readRedis(r, s)
	default: // TypeMemcached; Validate refused anything else
		smp = readMemcached(r, s)
	}
	smp.At = at
	if smp.Err != nil {
		smp.Value, smp.Baseline = math.NaN(), math.NaN()
		smp.Detail = ""
	}
	return smp
}

// Check reads one sample and evaluates it against prev: Evaluate(s, prev,
// Read(ctx, s, opts)).
func Check(ctx context.Context, s Spec, opts Options, prev Sample) Result {
	return Evaluate(s, prev, Read(ctx, s, opts))
}

// reader carries one sample's context and dialer to the per-type readers.
type reader struct {
	parent, ctx context.Context
	timeout     time.Duration
	dial        DialFunc
	password    string
}
