package metric

import (
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/relctl/relctl/healthcheck/checkspec"
)

// fieldRE is an INFO or stats field name: what redis and memcached print.
var fieldRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Validate lists what is wrong with s, each problem one sentence naming
// the TOML keys concerned; nil when s can be read. It checks what can be
// checked without a server (a query's syntax only as far as ValidatePromQL
// goes; PreflightQuery asks the server).
func (s Spec) Validate() []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	switch s.Via {
	case "", ViaHost, ViaController:
	default:
		add("via must be %q or %q, not %q", ViaHost, ViaController, s.Via)
	}
	switch s.Type {
	case TypePrometheus:
		s.validatePrometheus(add)
	case TypeRedis:
		s.validateRedis(add)
	case TypeMemcached:
		s.validateMemcached(add)
	case "":
		add("type is missing: %q, %q or %q", TypePrometheus, TypeRedis, TypeMemcached)
		return problems
	default:
		add("type must be %q, %q or %q, not %q", TypePrometheus, TypeRedis, TypeMemcached, s.Type)
		return problems
	}
	s.validateThresholds(add)
	return problems
}

func (s Spec) validatePrometheus(add func(string, ...any)) {
	if s.Address == "" {
		add(`address is missing: the Prometheus URL, e.g. "http://127.0.0.1:9090"`)
	} else if err := checkspec.URL(s.Address); err != nil {
		add("address: %v (the Prometheus URL, e.g. \"http://127.0.0.1:9090\")", err)
	}
	if strings.TrimSpace(s.Query) == "" {
		add("query is missing: a prometheus check needs a PromQL query")
	} else if err := ValidatePromQL(s.Query); err != nil {
		add("query: %v", err)
	}
	baseline := s.Compare == CompareBaseline
	switch s.Compare {
	case "", CompareThreshold, CompareBaseline:
	default:
		add("compare must be %q or %q, not %q", CompareThreshold, CompareBaseline, s.Compare)
	}
	if baseline {
		if strings.TrimSpace(s.BaselineQuery) == "" {
			add(`baseline_query is missing: compare = "baseline" needs the same query over the hosts still on the previous release`)
		} else if err := ValidatePromQL(s.BaselineQuery); err != nil {
			add("baseline_query: %v", err)
		}
		switch {
		case s.MaxRatio == nil:
			add(`max_ratio is missing: compare = "baseline" needs how much worse than the baseline the canary may be (e.g. 1.5)`)
		case math.IsNaN(*s.MaxRatio) || math.IsInf(*s.MaxRatio, 0) || *s.MaxRatio < 1:
			add("max_ratio must be a number of at least 1 (1.5: the canary may be 50%% worse than the baseline), not %v", *s.MaxRatio)
		}
	} else {
		for _, k := range []struct {
			key string
			set bool
		}{{"baseline_query", s.BaselineQuery != ""}, {"max_ratio", s.MaxRatio != nil}, {"direction", s.Direction != ""}} {
			if k.set {
				add(`%s only applies with compare = "baseline"`, k.key)
			}
		}
	}
	switch s.Direction {
	case "", LowerIsBetter, HigherIsBetter:
	default:
		add("direction must be %q or %q, not %q", LowerIsBetter, HigherIsBetter, s.Direction)
	}
	s.refuse(add, "prometheus", map[string]bool{
		"command": s.Command != "", "key": s.Key != "", "db": s.DB != 0, "username": s.Username != "",
		"password_secret": s.PasswordSecret != "", "field": s.Field != "",
	})
}

func (s Spec) validateRedis(add func(string, ...any)) {
	s.validateAddress(add, "redis", "127.0.0.1:6379")
	switch {
	case s.Key != "" && s.Field != "":
		add("key and field are both set: a redis check reads a key's length (key, command = llen|xlen|zcard) or an INFO field (field), not both")
	case s.Key == "" && s.Field == "":
		add(`a redis check needs key (with command = "llen", "xlen" or "zcard") or field (an INFO field, e.g. "used_memory/maxmemory")`)
	case s.Key != "":
		switch s.Command {
		case RedisLLEN, RedisXLEN, RedisZCARD:
		case "":
			add("command is missing: %q, %q or %q, the length of key %q as a list, stream or sorted set", RedisLLEN, RedisXLEN, RedisZCARD, s.Key)
		case RedisINFO:
			add(`command = "info" reads field, not key`)
		default:
			add("command must be %q, %q, %q or %q, not %q", RedisLLEN, RedisXLEN, RedisZCARD, RedisINFO, s.Command)
		}
	default:
		switch s.Command {
		case "", RedisINFO:
		case RedisLLEN, RedisXLEN, RedisZCARD:
			add("command = %q reads the length of key, but field is set: use key, or command = %q", s.Command, RedisINFO)
		default:
			add("command must be %q, %q, %q or %q, not %q", RedisLLEN, RedisXLEN, RedisZCARD, RedisINFO, s.Command)
		}
		validateField(add, s.Field, "INFO", "used_memory/maxmemory")
	}
	if s.DB < 0 {
		add("db must be 0 or more, not %d", s.DB)
	}
	s.refuse(add, "redis", s.promqlKeys())
}

func (s Spec) validateMemcached(add func(string, ...any)) {
	s.validateAddress(add, "memcached", "127.0.0.1:11211")
	if s.Field == "" {
		add(`field is missing: a memcached stats field, e.g. "evictions" or "bytes/limit_maxbytes"`)
	} else {
		validateField(add, s.Field, "stats", "bytes/limit_maxbytes")
	}
	keys := s.promqlKeys()
	for k, v := range map[string]bool{
		"command": s.Command != "", "key": s.Key != "", "db": s.DB != 0, "username": s.Username != "",
		"password_secret": s.PasswordSecret != "",
	} {
		keys[k] = v
	}
	s.refuse(add, "memcached", keys)
}

func (s Spec) promqlKeys() map[string]bool {
	return map[string]bool{
		"query": s.Query != "", "baseline_query": s.BaselineQuery != "", "compare": s.Compare != "",
		"max_ratio": s.MaxRatio != nil, "direction": s.Direction != "",
	}
}

func (s Spec) validateAddress(add func(string, ...any), kind, example string) {
	if s.Address == "" {
		add("address is missing: the %s server as host:port, e.g. %q", kind, example)
	} else if err := checkspec.Address(s.Address); err != nil {
		add("address: %v", err)
	}
}

// refuse reports keys that another check type reads, in a stable order.
func (s Spec) refuse(add func(string, ...any), kind string, keys map[string]bool) {
	for _, k := range []string{"query", "baseline_query", "compare", "max_ratio", "direction", "command", "key", "db", "username", "password_secret", "field"} {
		if keys[k] {
			add("%s does not apply to a %s check", k, kind)
		}
	}
}

func validateField(add func(string, ...any), field, what, example string) {
	num, den, ratio := strings.Cut(field, "/")
	names := []string{num}
	if ratio {
		names = append(names, den)
	}
	for _, name := range names {
		if !fieldRE.MatchString(name) {
			add("field %q: want an %s field name, or two as a ratio (e.g. %q)", field, what, example)
			return
		}
	}
}

func (s Spec) validateThresholds(add func(string, ...any)) {
	limits := []struct {
		key string
		v   *float64
	}{{"min", s.Min}, {"max", s.Max}, {"max_growth_per_minute", s.MaxGrowthPerMinute}, {"max_increase", s.MaxIncrease}}
	set := false
	for _, l := range limits {
		if l.v == nil {
			continue
		}
		set = true
		if math.IsNaN(*l.v) || math.IsInf(*l.v, 0) {
			add("%s must be a finite number, not %v", l.key, *l.v)
		}
	}
	if s.Min != nil && s.Max != nil && *s.Min > *s.Max {
		add("min %v is above max %v: no value can pass", *s.Min, *s.Max)
	}
	if s.Type == TypePrometheus && s.Compare == CompareBaseline {
		if s.MaxGrowthPerMinute != nil || s.MaxIncrease != nil {
			add(`max_growth_per_minute and max_increase do not apply with compare = "baseline"`)
		}
		return
	}
	if !set {
		add("no threshold: set max, min, max_growth_per_minute or max_increase")
	}
}

// ValidatePromQL checks what can be checked of a PromQL query without a
// Prometheus server: it is not empty, its strings are closed and its
// brackets balanced, outside strings and # comments. A query it refuses is
// refused by every Prometheus; one it accepts may still be refused, which
// PreflightQuery asks the server itself.
//
// Why not the Prometheus parser: github.com/prometheus/prometheus/promql/parser
// is served (v0.316.0) and builds, but its module is Prometheus itself: 16
// more compiled packages (tsdb included), 120 more go.sum lines (cloud SDKs,
// Kubernetes, OpenTelemetry), a v0 API that changes between releases, and a
// grammar newer than the servers relctl talks to: it refuses
// holt_winters(), which Debian's Prometheus 2.42 runs, and accepts quoted
// UTF-8 metric names that 2.42 refuses. The server's own parser is the one
// that counts.
func ValidatePromQL(q string) error {
	if strings.TrimSpace(q) == "" {
		return fmt.Errorf("query is empty")
	}
	type open struct {
		r   rune
		pos int
	}
	var stack []open
	closing := map[rune]rune{')': '(', ']': '[', '}': '{'}
	rs := []rune(q)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '#':
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case '"', '\'', '`':
			start := i
			for i++; ; i++ {
				if i >= len(rs) || (r != '`' && rs[i] == '\n') {
					return fmt.Errorf("%s: string opened here is not closed", position(rs, start))
				}
				if r != '`' && rs[i] == '\\' {
					i++
					continue
				}
				if rs[i] == r {
					break
				}
			}
		case '(', '[', '{':
			stack = append(stack, open{r, i})
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1].r != closing[r] {
				return fmt.Errorf("%s: unexpected %q", position(rs, i), r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		o := stack[len(stack)-1]
		return fmt.Errorf("%s: %q is not closed", position(rs, o.pos), o.r)
	}
	return nil
}

// position is "line:column" (1-based, in runes) of rune index i, as
// Prometheus reports parse errors.
func position(rs []rune, i int) string {
	line, col := 1, 1
	for _, r := range rs[:i] {
		if r == '\n' {
			line, col = line+1, 1
			continue
		}
		col++
	}
	return fmt.Sprintf("%d:%d", line, col)
}
