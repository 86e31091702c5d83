// Package hostlist writes lists of host names for the console the way
// Slurm, pdsh and ClusterShell do: names that share a prefix and a suffix
// and differ in one number fold into ranges, so web1..web40 and web42 are
// "web[1-40,42]" and web01..web10 are "web[01-10]".
//
// The rules, all deterministic:
//   - The number is a name's last run of ASCII digits; what comes before it
//     is the prefix, what comes after it the suffix ("db3.eu" folds with
//     "db4.eu" into "db[3-4].eu"; "a1b2" has prefix "a1b" and number 2).
//   - Zero padding is kept: a number written with a leading zero (e.g. "07")
//     folds only with numbers of the same width ("07" and "10" are
//     "web[07,10]"; "7" and "07" stay in two groups).
//   - A name without digits, or whose last digit run is longer than
//     MaxDigits (it would overflow), is kept as it is.
//   - Duplicates are dropped. Groups are written in the order their first
//     name appears, joined by ", "; within a group the numbers are sorted.
//
// Compress names every host (Expand gives the same set back, for names
// without '[', ']', ',' or a space). Abbrev caps the result for lines that
// list hosts only to show where something happened (successes), never for
// hosts that failed or were left unresolved.
package hostlist

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxDigits is the longest digit run read as a number; a longer one is part
// of the name (18 digits always fit a uint64, and n+1 never overflows).
const MaxDigits = 18

// LineMax is the cap Abbrev is given for a console line: about two lines
// of a terminal of names (in runes), then "… and N more".
const LineMax = 160

// Separator joins the groups.
const Separator = ", "

// split is a name with its number: prefix + digits + suffix.
type split struct {
	prefix, digits, suffix string
	n                      uint64
	numeric                bool
}

func splitName(s string) split {
	end := -1
	for i := len(s) - 1; i >= 0; i-- {
		if isDigit(s[i]) {
			end = i + 1
			break
		}
	}
	if end < 0 {
		return split{prefix: s}
	}
	start := end - 1
	for start > 0 && isDigit(s[start-1]) {
		start--
	}
	digits := s[start:end]
	if len(digits) > MaxDigits {
		return split{prefix: s}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return split{prefix: s}
	}
	return split{prefix: s[:start], digits: digits, suffix: s[end:], n: n, numeric: true}
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// padded is the width a number's text pins it to: its length when it has
// a leading zero, 0 otherwise.
func padded(digits string) int {
	if len(digits) > 1 && digits[0] == '0' {
		return len(digits)
	}
	return 0
}

// group is the names of one prefix, suffix and width (or one literal name).
type group struct {
	prefix, suffix string
	width          int
	literal        bool
	nums           []uint64
}

type groupKey struct {
	prefix, suffix string
	width          int
}

type family struct{ prefix, suffix string }

// groups folds names into groups, in the order their first name appears.
func groups(names []string) []*group {
	seen := make(map[string]bool, len(names))
	splits := make([]split, 0, len(names))
	widths := map[family]map[int]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		s := splitName(name)
		splits = append(splits, s)
		if w := padded(s.digits); s.numeric && w > 0 {
			f := family{s.prefix, s.suffix}
			if widths[f] == nil {
				widths[f] = map[int]bool{}
			}
			widths[f][w] = true
		}
	}
	var out []*group
	byKey := map[groupKey]*group{}
	for _, s := range splits {
		if !s.numeric {
			out = append(out, &group{prefix: s.prefix, literal: true})
			continue
		}
		w := padded(s.digits)
		if w == 0 && widths[family{s.prefix, s.suffix}][len(s.digits)] {
			w = len(s.digits) // "10" is as wide as "07": one group
		}
		k := groupKey{s.prefix, s.suffix, w}
		g := byKey[k]
		if g == nil {
			g = &group{prefix: s.prefix, suffix: s.suffix, width: w}
			byKey[k] = g
			out = append(out, g)
		}
		g.nums = append(g.nums, s.n)
	}
	for _, g := range out {
		slices.Sort(g.nums)
	}
	return out
}

// ranges are a group's numbers as "1-40", "42", ...; each covers count names.
func (g *group) ranges() (items []string, counts []int) {
	for i := 0; i < len(g.nums); {
		j := i
		for j+1 < len(g.nums) && g.nums[j+1] == g.nums[j]+1 {
			j++
		}
		item := g.num(g.nums[i])
		if j > i {
			item += "-" + g.num(g.nums[j])
		}
		items = append(items, item)
		counts = append(counts, j-i+1)
		i = j + 1
	}
	return items, counts
}

func (g *group) num(n uint64) string {
	return fmt.Sprintf("%0*d", g.width, n)
}

// write is the group with the ranges given: "web5" for one name,
// "web[1-40,42]" otherwise (the ranges given may be the first few).
func (g *group) write(items []string) string {
	if len(items) == 1 && !strings.Contains(items[0], "-") {
		return g.prefix + items[0] + g.suffix
	}
	return g.prefix + "[" + strings.Join(items, ",") + "]" + g.suffix
}

func (g *group) String() string {
	if g.literal {
		return g.prefix
	}
	items, _ := g.ranges()
	return g.write(items)
}

// Fold is the groups of Compress, one string each.
func Fold(names []string) []string {
	gs := groups(names)
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.String()
	}
	return out
}

// Compress folds names into ranges, every name in it: "web[1-40,42], db1".
// An empty list is "".
func Compress(names []string) string {
	return strings.Join(Fold(names), Separator)
}

// Abbrev is Compress cut after about max runes: the ranges past it are
// left out and counted, "web[1,3,5], db2 … and 480 more". The first range
// is always shown. Use it only where a host is listed to say where
// something went well; a failed host is always named (Compress).
func Abbrev(names []string, max int) string {
	a := abbrev{max: max}
	for _, g := range groups(names) {
		a.add(g)
	}
	if a.shown < a.total {
		fmt.Fprintf(&a.b, " … and %d more", a.total-a.shown)
	}
	return a.b.String()
}

// abbrev writes groups until the next range would pass max runes.
type abbrev struct {
	b            strings.Builder
	max, used    int // runes
	shown, total int // names
	cut          bool
}

func (a *abbrev) add(g *group) {
	if g.literal {
		a.total++
		if a.fits(utf8.RuneCountInString(g.prefix), 0) {
			a.write(g.prefix, 1)
		}
		return
	}
	items, counts := g.ranges()
	// The group's text with i+1 ranges: prefix, "[", the ranges and the
	// commas between them, "]", suffix (no brackets for one name).
	text := utf8.RuneCountInString(g.prefix) + utf8.RuneCountInString(g.suffix)
	keep, kept := 0, 0
	for i, item := range items {
		a.total += counts[i]
		if a.cut {
			continue
		}
		text += len(item) + min(i, 1)
		size := text
		if i > 0 || counts[0] > 1 {
			size += 2
		}
		if !a.fits(size, kept) {
			continue
		}
		keep, kept = i+1, kept+counts[i]
	}
	if keep > 0 {
		a.write(g.write(items[:keep]), kept)
	}
}

// fits says whether n more runes fit (pending names of the group being
// written are not shown yet); the first range always does. Once something
// did not fit, nothing after it is written.
func (a *abbrev) fits(n, pending int) bool {
	if a.cut {
		return false
	}
	if a.shown > 0 {
		n += len(Separator)
	}
	if a.shown+pending > 0 && a.used+n > a.max {
		a.cut = true
	}
	return !a.cut
}

func (a *abbrev) write(s string, names int) {
	if a.shown > 0 {
		a.b.WriteString(Separator)
		a.used += len(Separator)
	}
	a.b.WriteString(s)
	a.used += utf8.RuneCountInString(s)
	a.shown += names
}

// Summary is "40 hosts" or, with failures, "40 hosts (failed: web[3,7])":
// the failed hosts are always named.
func Summary(total int, failed []string) string {
	s := fmt.Sprintf("%d host", total)
	if total != 1 {
		s += "s"
	}
	if len(failed) > 0 {
		s += " (failed: " + Compress(failed) + ")"
	}
	return s
}

// maxExpand bounds what Expand produces, so a hostile "h[0-999999999999]"
// is an error, not an allocation.
const maxExpand = 1 << 20

// Expand is Compress read back: the names a list of groups stands for, in
// the order written. It reads only what Compress writes for names without
// '[', ']', ',' or a space.
func Expand(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, item := range splitTop(s) {
		open := strings.IndexByte(item, '[')
		if open < 0 {
			if strings.ContainsAny(item, "],") {
				return nil, fmt.Errorf("hostlist: %q: stray ']' or ','", item)
			}
			out = append(out, item)
			continue
		}
		end := strings.IndexByte(item[open:], ']')
		if end < 0 {
			return nil, fmt.Errorf("hostlist: %q: '[' without ']'", item)
		}
		prefix, body, suffix := item[:open], item[open+1:open+end], item[open+end+1:]
		if strings.ContainsAny(suffix, "[]") {
			return nil, fmt.Errorf("hostlist: %q: more than one range", item)
		}
		var err error
		if out, err = expandRanges(out, prefix, body, suffix); err != nil {
			return nil, fmt.Errorf("hostlist: %q: %w", item, err)
		}
	}
	return out, nil
}

// splitTop splits s at the separators outside brackets.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '[':
			depth++
		case s[i] == ']':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], Separator):
			parts = append(parts, s[start:i])
			start = i + len(Separator)
			i += len(Separator) - 1
		}
	}
	return append(parts, s[start:])
}

func expandRanges(out []string, prefix, body, suffix string) ([]string, error) {
	for _, r := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := parseNum(lo)
		b, err2 := parseNum(hi)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if b < a || (isRange && padded(lo) > 0 && len(hi) != len(lo)) {
			return nil, fmt.Errorf("bad range %q", r)
		}
		if b-a >= maxExpand || len(out)+int(b-a) >= maxExpand {
			return nil, errors.New("too many names")
		}
		width := padded(lo)
		for n := a; ; n++ {
			out = append(out, prefix+fmt.Sprintf("%0*d", width, n)+suffix)
			if n == b {
				break
			}
		}
	}
	return out, nil
}

func parseNum(s string) (uint64, error) {
	if s == "" || len(s) > MaxDigits {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	return strconv.ParseUint(s, 10, 64)
}
