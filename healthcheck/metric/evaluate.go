package metric

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxQueryInLabel keeps a long PromQL query from taking the whole line.
const maxQueryInLabel = 80

// Label names what s measures, for reasons and progress lines:
// "prometheus rate(http_errors_total[1m])", "redis LLEN jobs",
// "redis used_memory/maxmemory", "memcached evictions".
func (s Spec) Label() string {
	switch s.Type {
	case TypePrometheus:
		return "prometheus " + truncate(strings.Join(strings.Fields(s.Query), " "), maxQueryInLabel)
	case TypeRedis:
		if s.Key == "" {
			return "redis " + s.Field
		}
		label := "redis " + strings.ToUpper(s.Command) + " " + s.Key
		if s.DB != 0 {
			label += fmt.Sprintf(" (db %d)", s.DB)
		}
		return label
	case TypeMemcached:
		return "memcached " + s.Field
	}
	return s.Type
}

// comparison is one threshold applied to one sample.
type comparison struct {
	limit     string
	value     float64
	threshold float64
	ok        bool
	text      string // for the reason: "= 1840 > max 1000", "grew by 50 in 30s (…) = 100/min"
}

// Evaluate judges cur against s's thresholds, and against prev for growth
// and increase limits (prev may be the zero Sample: the first sample of a
// soak). A sample that holds no value is a Fail, never a Pass.
func Evaluate(s Spec, prev, cur Sample) Result {
	res := Result{Metric: s.Label(), Value: math.NaN(), Threshold: math.NaN(), Sample: cur, Next: prev}
	if cur.Err != nil || cur.At.IsZero() {
		return unread(s, res)
	}
	res.Next = cur
	cmps, pending, err := comparisons(s, prev, cur)
	if err != nil {
		res.Verdict, res.Err = Fail, err
		res.Value = cur.Value
		res.Reason = fmt.Sprintf("%s = %s: %v", res.Metric, fmtNum(cur.Value), err)
		return res
	}
	detail := ""
	if cur.Detail != "" {
		detail = " (" + cur.Detail + ")"
	}
	for _, c := range cmps {
		if !c.ok {
			res.Verdict = Fail
			res.Value, res.Limit, res.Threshold = c.value, c.limit, c.threshold
			res.Err = &readError{kind: ErrThreshold, msg: c.limit + " exceeded"}
			res.Reason = res.Metric + " " + c.text + detail
			return res
		}
	}
	res.Verdict = Pass
	if len(pending) > 0 {
		res.Verdict = Pending
	}
	res.Value = cur.Value
	if len(cmps) > 0 {
		res.Value, res.Limit, res.Threshold = cmps[0].value, cmps[0].limit, cmps[0].threshold
	} else {
		res.Limit, res.Threshold = s.firstLimit()
	}
	res.Reason = passReason(res.Metric, cur.Value, cmps, pending) + detail
	return res
}

// unread is the Result of a sample that holds no value: Stopped when the
// caller's context ended, Fail otherwise.
func unread(s Spec, res Result) Result {
	cur := res.Sample
	if cur.Err == nil { // the zero Sample: nothing was read at all
		res.Verdict, res.Err = Fail, failf(ErrInvalidSpec, "no sample")
		res.Reason = res.Metric + ": no sample"
		return res
	}
	res.Err = cur.Err
	if stopped(cur.Err) {
		res.Verdict = Stopped
		res.Reason = res.Metric + ": stopped: " + cur.Err.Error()
		return res
	}
	res.Verdict = Fail
	res.Reason = res.Metric + ": " + cur.Err.Error()
	res.Limit, res.Threshold = s.firstLimit()
	return res
}

// comparisons applies every threshold of s to cur (and prev); pending
// names the limits that need a previous sample to compare with.
func comparisons(s Spec, prev, cur Sample) (cmps []comparison, pending []string, err error) {
	if s.Type == TypePrometheus && s.Compare == CompareBaseline {
		if cmps, err = baselineComparison(s, cur); err != nil {
			return nil, nil, err
		}
	} else {
		cmps = boundComparisons(s, cur.Value)
	}
	for _, delta := range []struct {
		limit string
		max   *float64
	}{{"max_growth_per_minute", s.MaxGrowthPerMinute}, {"max_increase", s.MaxIncrease}} {
		if delta.max == nil {
			continue
		}
		c, ok := deltaComparison(delta.limit, *delta.max, prev, cur)
		if !ok {
			pending = append(pending, delta.limit)
			continue
		}
		cmps = append(cmps, c)
	}
	return cmps, pending, nil
}

// passReason is one line for a sample that held every threshold:
// "redis LLEN jobs = 12 ≤ max 1000; grew by … ≤ max_growth_per_minute 60".
func passReason(metric string, v float64, cmps []comparison, pending []string) string {
	var parts []string
	for _, c := range cmps {
		parts = append(parts, c.text)
	}
	reason := metric + " = " + fmtNum(v)
	if len(parts) > 0 && strings.HasPrefix(parts[0], "= ") {
		reason = metric + " " + parts[0]
		parts = parts[1:]
	}
	if len(parts) > 0 {
		reason += "; " + strings.Join(parts, "; ")
	}
	if len(pending) > 0 {
		reason += "; " + strings.Join(pending, " and ") + " from the next sample"
	}
	return reason
}

// stopped reports whether err is the caller's context ending rather than a
// failed reading (whose timeouts are readErrors of kind ErrTimeout).
func stopped(err error) bool {
	var re *readError
	return !errors.As(err, &re) && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

func (s Spec) firstLimit() (string, float64) {
	if s.Type == TypePrometheus && s.Compare == CompareBaseline && s.MaxRatio != nil {
		return "max_ratio", *s.MaxRatio
	}
	for _, l := range []struct {
		key string
		v   *float64
	}{{"max", s.Max}, {"min", s.Min}, {"max_growth_per_minute", s.MaxGrowthPerMinute}, {"max_increase", s.MaxIncrease}} {
		if l.v != nil {
			return l.key, *l.v
		}
	}
	return "", math.NaN()
}

func boundComparisons(s Spec, v float64) []comparison {
	var cmps []comparison
	if s.Max != nil {
		c := comparison{limit: "max", value: v, threshold: *s.Max, ok: v <= *s.Max}
		c.text = "= " + fmtNum(v) + " ≤ max " + fmtNum(*s.Max)
		if !c.ok {
			c.text = "= " + fmtNum(v) + " > max " + fmtNum(*s.Max)
		}
		cmps = append(cmps, c)
	}
	if s.Min != nil {
		c := comparison{limit: "min", value: v, threshold: *s.Min, ok: v >= *s.Min}
		c.text = "= " + fmtNum(v) + " ≥ min " + fmtNum(*s.Min)
		if !c.ok {
			c.text = "= " + fmtNum(v) + " < min " + fmtNum(*s.Min)
		}
		cmps = append(cmps, c)
	}
	if len(cmps) == 2 && cmps[0].ok && cmps[1].ok {
		// One "= v" is enough when both hold.
		cmps[1].text = strings.TrimPrefix(cmps[1].text, "= "+fmtNum(v)+" ")
	}
	return cmps
}

// baselineComparison compares the canary (cur.Value) with the baseline
// (cur.Baseline) times max_ratio; min and max, when set, still bound the
// canary. A baseline of 0 gives no ratio to compare with: for
// lower_is_better the canary is then judged by max when it is set, and
// must be 0 otherwise (any error rate is infinitely worse than none); for
// higher_is_better any canary ≥ 0 passes (nothing is worse than 0).
func baselineComparison(s Spec, cur Sample) ([]comparison, error) {
	c, b, ratio := cur.Value, cur.Baseline, *s.MaxRatio
	if math.IsNaN(b) {
		return nil, failf(ErrNoSeries, "no baseline value")
	}
	if b < 0 {
		return nil, failf(ErrNotNumber, fmt.Sprintf("baseline_query gave %s: a ratio needs a baseline of 0 or more", fmtNum(b)))
	}
	cmps := boundComparisons(s, c)
	higher := s.Direction == HigherIsBetter
	switch {
	case b == 0 && !higher && s.Max != nil:
		for i := range cmps {
			if cmps[i].limit == "max" {
				cmps[i].text += " (baseline 0: judged by max alone)"
			}
		}
		return cmps, nil
	case b == 0 && !higher:
		cmp := comparison{limit: "max_ratio", value: c, threshold: 0, ok: c <= 0}
		cmp.text = "= " + fmtNum(c) + " with baseline 0"
		if !cmp.ok {
			cmp.text = "= " + fmtNum(c) + " > baseline 0 (a baseline of 0 allows only 0; set max to allow a small value)"
		}
		return append([]comparison{cmp}, cmps...), nil
	case higher:
		thr := b / ratio
		cmp := comparison{limit: "max_ratio", value: c, threshold: thr, ok: c >= thr}
		op := "≥"
		if !cmp.ok {
			op = "<"
		}
		cmp.text = fmt.Sprintf("= %s %s baseline %s ÷ max_ratio %s = %s", fmtNum(c), op, fmtNum(b), fmtNum(ratio), fmtNum(thr))
		return append([]comparison{cmp}, cmps...), nil
	default:
		thr := b * ratio
		cmp := comparison{limit: "max_ratio", value: c, threshold: thr, ok: c <= thr}
		op := "≤"
		if !cmp.ok {
			op = ">"
		}
		cmp.text = fmt.Sprintf("= %s %s baseline %s × max_ratio %s = %s", fmtNum(c), op, fmtNum(b), fmtNum(ratio), fmtNum(thr))
		return append([]comparison{cmp}, cmps...), nil
	}
}

// deltaComparison compares cur with prev: growth per minute or increase.
// ok is false when prev holds no value or is not older than cur.
func deltaComparison(limit string, max float64, prev, cur Sample) (comparison, bool) {
	if !prev.OK() || !cur.At.After(prev.At) {
		return comparison{}, false
	}
	dt := cur.At.Sub(prev.At)
	span := fmt.Sprintf("in %s (%s → %s)", fmtDuration(dt), fmtNum(prev.Value), fmtNum(cur.Value))
	if limit == "max_growth_per_minute" {
		g := (cur.Value - prev.Value) / dt.Minutes()
		c := comparison{limit: limit, value: g, threshold: max, ok: g <= max}
		op := "≤"
		if !c.ok {
			op = ">"
		}
		c.text = fmt.Sprintf("grew by %s %s = %s/min %s max_growth_per_minute %s", fmtNum(cur.Value-prev.Value), span, fmtNum(g), op, fmtNum(max))
		return c, true
	}
	inc := cur.Value - prev.Value
	if inc < 0 { // the counter was reset (server restarted): count from 0
		inc = cur.Value
		span += ", counter reset"
	}
	c := comparison{limit: limit, value: inc, threshold: max, ok: inc <= max}
	op := "≤"
	if !c.ok {
		op = ">"
	}
	c.text = fmt.Sprintf("rose by %s %s %s max_increase %s", fmtNum(inc), span, op, fmtNum(max))
	return c, true
}

// fmtNum prints a metric value short and exact enough to read: integers
// whole, others to 4 significant digits, no exponent in everyday ranges.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v), math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1000 && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func fmtDuration(d time.Duration) string {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
