package sshconfig

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// tokenSet is what one keyword's value may hold (ssh_config(5) TOKENS).
type tokenSet struct {
	name        string          // the keyword, for messages
	repl        map[byte]string // the tokens it takes, with their values
	unsupported string          // tokens ssh takes there that relctl does not
	env         bool            // ${VAR} too
}

// expand replaces %-tokens (and ${VAR} when ts.env) as ssh's
// percent_dollar_expand does: "%%" is '%', any other token not in ts is an
// error, as is an environment variable that is not set.
func expand(s string, ts tokenSet, getenv func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ts.env && c == '$' && i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New("${ without a closing }")
			}
			name := s[i+2 : i+2+end]
			if name == "" {
				return "", errors.New("${} names no environment variable")
			}
			v, ok := getenv(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(v)
			i += 2 + end
			continue
		}
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("a lone %% at the end (write %%%% for a %%); %s takes %s", ts.name, ts.list())
		}
		t := s[i]
		if t == '%' {
			b.WriteByte('%')
			continue
		}
		if v, ok := ts.repl[t]; ok {
			b.WriteString(v)
			continue
		}
		if strings.IndexByte(ts.unsupported, t) >= 0 {
			return "", fmt.Errorf("%%%c is not supported by relctl in %s", t, ts.name)
		}
		return "", fmt.Errorf("unknown token %%%c; %s takes %s", t, ts.name, ts.list())
	}
	return b.String(), nil
}

// list is "%%, %d, %h and ${VAR}".
func (ts tokenSet) list() string {
	keys := make([]byte, 0, len(ts.repl))
	for k := range ts.repl {
		keys = append(keys, k)
	}
	// ssh_config(5)'s order: case-insensitive, then upper case first.
	sort.Slice(keys, func(i, j int) bool {
		li, lj := keys[i]|0x20, keys[j]|0x20
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	items := []string{"%%"}
	for _, k := range keys {
		items = append(items, "%"+string(k))
	}
	if ts.env {
		items = append(items, "${VAR}")
	}
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
