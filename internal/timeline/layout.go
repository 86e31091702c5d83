package timeline

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Geometry of the chart, in SVG user units (pixels at 100%).
const (
	chartWidth = 1360.0
	plotX      = 230.0 // left of the plot: the host names go before it
	plotRight  = 22.0
	plotW      = chartWidth - plotX - plotRight
	bodyTop    = 30.0 // the axis labels go above it
	groupH     = 22.0 // a batch's heading
	rowH       = 18.0
	barH       = 12.0
	bandH      = 56.0
	bucketW    = 4.0 // a band's resolution (plotW is a multiple of it)
	labelRunes = 32  // longer host names are cut (the tooltip has them whole)
	tipRunes   = 2000
	maxUntimed = 200 // rows of the table of steps without timings
	// maxRolledBackRows is how many hosts a band's batch gives a row for
	// having been rolled back (cleanly: a host that failed always has one).
	maxRolledBackRows = 20
)

// phaseOrder is the order of the legend and of a band's stacked areas.
var phaseOrder = []string{PhasePreflight, "stage", "activate", "verify", "cutover", "post", PhaseMove, PhaseRollback}

// phaseClass is the CSS class of a phase: only known names reach the page
// as classes.
func phaseClass(phase string) string {
	if slices.Contains(phaseOrder, phase) {
		return "ph-" + phase
	}
	return "ph-other"
}

var statusClasses = []string{StatusOK, StatusFailed, StatusSkipped, StatusRolledBack, StatusUnfinished}

func statusClass(status string) string {
	if slices.Contains(statusClasses, status) {
		return "st-" + status
	}
	return "st-other"
}

// page is what the template draws; every string in it is escaped there.
type page struct {
	Title   string
	Header  []field
	Notes   []string
	Legend  []legendItem
	Chart   chart
	Untimed []untimedRow
	// UntimedMore is how many steps without timings the table leaves out.
	UntimedMore int
}

type field struct{ Label, Value, Class string }

type legendItem struct {
	Label  string
	Phase  string // CSS class of the swatch's fill
	Status string // CSS class of the swatch's group
	Marker bool   // draw the failure marker
}

type chart struct {
	Width, Height float64
	PlotX, PlotW  float64
	Ticks         []tick
	Rollback      *spanView
	FirstFailure  *tick
	Groups        []groupView
	Bars          int
}

type tick struct {
	X     float64
	Label string
	// Anchor and DX place a label that would run off the right edge
	// before its x instead of after it.
	Anchor string
	DX     float64
}

type spanView struct {
	X, W, Y, H float64
	Label, Tip string
	LabelX     float64
	Anchor     string
}

// nearRight says whether a label starting at x would run off the chart.
func nearRight(x float64) bool { return x > plotX+plotW*0.8 }

type groupView struct {
	Y     float64
	Label string
	Band  *bandView
	Rows  []rowView
}

type rowView struct {
	Y          float64
	Label, Tip string
	Odd        bool
	Bars       []barView
}

type barView struct {
	X, Y, W, H  float64
	Step, Host  string
	Status      string
	PhaseClass  string
	StatusClass string
	Approx      bool
	Hatch       bool
	Failed      bool
	Tip         string
}

type bandView struct {
	Y, H  float64
	Hosts int
	Label string
	Tip   string
	Areas []areaView
}

type areaView struct {
	PhaseClass string
	Points     string
	Tip        string
}

type untimedRow struct{ Host, Step, Status, Duration, Detail string }

// scale maps times to x.
type scale struct {
	t0  time.Time
	dur time.Duration
}

func (s scale) x(t time.Time) float64 {
	return plotX + float64(t.Sub(s.t0))/float64(s.dur)*plotW
}

// layout turns a run into the page.
func layout(run *Run) page {
	sc := runScale(run)
	banded := run.Hosts() > BandThreshold
	p := page{
		Title:  clean(fmt.Sprintf("relctl run %s: %s %s to %s, %s", run.ID, run.Kind, run.Release, run.Env, run.Result)),
		Header: header(run, sc),
		Legend: legend(run),
	}
	y := bodyTop + 6
	ch := chart{Width: chartWidth, PlotX: plotX, PlotW: plotW}
	for i, b := range run.Batches {
		g := groupView{Y: y}
		y += groupH
		hosts := b.Hosts
		if banded {
			band := layoutBand(b, sc, y)
			g.Band = &band
			y += bandH + 8
			hosts = bandRows(b.Hosts)
		}
		g.Label = clean(groupLabel(b, banded, len(hosts)))
		for j, h := range hosts {
			row := layoutRow(h, sc, y, (i+j)%2 == 1)
			ch.Bars += len(row.Bars)
			g.Rows = append(g.Rows, row)
			y += rowH
		}
		ch.Groups = append(ch.Groups, g)
		y += 6
	}
	ch.Height = y + 10
	ch.Ticks = ticks(sc)
	ch.Rollback = rollbackSpan(run.Rollback, sc, ch.Height)
	ch.FirstFailure = firstFailure(run, sc)
	p.Chart = ch
	p.Untimed, p.UntimedMore = untimed(run)
	p.Notes = notes(run, banded, len(p.Untimed)+p.UntimedMore)
	return p
}

// runScale spans the run from its start to the last thing the page draws.
func runScale(run *Run) scale {
	t0, t1 := run.Started, run.Finished
	each := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if t0.IsZero() || t.Before(t0) {
			t0 = t
		}
		if t.After(t1) {
			t1 = t
		}
	}
	for _, b := range run.Batches {
		for _, h := range b.Hosts {
			for _, s := range h.Steps {
				if s.Timed() {
					each(s.Start)
					each(s.End)
				}
			}
		}
	}
	if run.Rollback != nil {
		each(run.Rollback.Start)
		each(run.Rollback.End)
	}
	dur := t1.Sub(t0)
	if dur < time.Millisecond {
		dur = time.Millisecond
	}
	return scale{t0: t0, dur: dur}
}

func groupLabel(b Batch, banded bool, rows int) string {
	n := len(b.Hosts)
	label := fmt.Sprintf("%s · %d host%s", b.Name, n, plural(n))
	if !banded {
		return label
	}
	failed, rolledBack := 0, 0
	for _, h := range b.Hosts {
		switch {
		case h.failed():
			failed++
		case h.rolledBack():
			rolledBack++
		}
	}
	var parts []string
	if failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed or did not finish", failed))
	}
	if shown := rows - failed; rolledBack > shown {
		parts = append(parts, fmt.Sprintf("%d of %d rolled back", shown, rolledBack))
	} else if rolledBack > 0 {
		parts = append(parts, fmt.Sprintf("%d rolled back", rolledBack))
	}
	if len(parts) == 0 {
		return label + " (summary band)"
	}
	return label + " (summary band; rows: " + strings.Join(parts, ", ") + ")"
}

// bandRows are the hosts of a band's batch that get a row: first every
// host that failed or did not finish, then the first maxRolledBackRows that
// were rolled back.
func bandRows(hosts []Host) []Host {
	var failed, rolledBack []Host
	for _, h := range hosts {
		switch {
		case h.failed():
			failed = append(failed, h)
		case h.rolledBack() && len(rolledBack) < maxRolledBackRows:
			rolledBack = append(rolledBack, h)
		}
	}
	return append(failed, rolledBack...)
}

func layoutRow(h Host, sc scale, y float64, odd bool) rowView {
	name := clean(h.Name)
	row := rowView{Y: y, Label: cut(name, labelRunes), Tip: name, Odd: odd}
	for _, s := range h.Steps {
		if !s.Timed() {
			continue
		}
		x := sc.x(s.Start)
		w := max(sc.x(s.End)-x, 1.5)
		row.Bars = append(row.Bars, barView{
			X: x, Y: y + (rowH-barH)/2, W: w, H: barH,
			Step: clean(s.ID()), Host: name, Status: clean(s.Status),
			PhaseClass: phaseClass(s.Phase), StatusClass: statusClass(s.Status),
			Approx: s.Approx, Hatch: s.Status == StatusRolledBack, Failed: s.Status == StatusFailed,
			Tip: barTip(name, s),
		})
	}
	return row
}

func barTip(host string, s Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s: %s, %s", host, clean(s.ID()), clean(s.Status), Duration(s.End.Sub(s.Start)))
	if s.Approx {
		b.WriteString(" (start not recorded: placed after the host's previous step)")
	}
	if s.Detail != "" {
		b.WriteString("\n" + cut(clean(s.Detail), tipRunes))
	}
	return b.String()
}

func rollbackSpan(sp *Span, sc scale, height float64) *spanView {
	if sp == nil || sp.Start.IsZero() {
		return nil
	}
	end := sp.End
	if end.Before(sp.Start) {
		end = sp.Start
	}
	x := sc.x(sp.Start)
	w := max(sc.x(end)-x, 2)
	label := sp.Label
	if label == "" {
		label = "automatic rollback"
	}
	label = clean(label)
	v := &spanView{X: x, W: w, Y: bodyTop, H: height - bodyTop - 4,
		Label:  fmt.Sprintf("%s · %s", label, Duration(end.Sub(sp.Start))),
		Tip:    fmt.Sprintf("%s: from +%s to +%s (%s)", label, Duration(sp.Start.Sub(sc.t0)), Duration(end.Sub(sc.t0)), Duration(end.Sub(sp.Start))),
		LabelX: x + 4, Anchor: "start"}
	if nearRight(x) {
		v.LabelX, v.Anchor = x+w-4, "end"
	}
	return v
}

// firstFailure is where the first failed step ended, for a line across the chart.
func firstFailure(run *Run, sc scale) *tick {
	var at time.Time
	for _, b := range run.Batches {
		for _, h := range b.Hosts {
			for _, s := range h.Steps {
				if s.Status == StatusFailed && s.Timed() && (at.IsZero() || s.End.Before(at)) {
					at = s.End
				}
			}
		}
	}
	if at.IsZero() {
		return nil
	}
	t := &tick{X: sc.x(at), Label: "first failure +" + Duration(at.Sub(sc.t0)), Anchor: "start", DX: 4}
	if nearRight(t.X) {
		t.Anchor, t.DX = "end", -4
	}
	return t
}

func header(run *Run, sc scale) []field {
	release := run.Release
	if run.From != "" && run.From != run.Release {
		release = run.From + " → " + run.Release
	}
	started, duration := "unknown", "unknown"
	if !run.Started.IsZero() {
		started = run.Started.UTC().Format("2006-01-02 15:04:05.000 UTC")
	}
	switch {
	case !run.Finished.IsZero() && !run.Started.IsZero():
		duration = Duration(run.Finished.Sub(run.Started))
	case !run.Started.IsZero():
		duration = Duration(sc.dur) + " (no end recorded: up to its last step)"
	}
	operator := run.Operator
	if run.Controller != "" {
		operator += "@" + run.Controller
	}
	fields := []field{
		{"Run", run.ID, ""}, {"Environment", run.Env, ""}, {"Release", release, ""},
		{"Kind", run.Kind, ""}, {"Result", run.Result, resultClass(run.Result)},
		{"Start", started, ""}, {"Duration", duration, ""}, {"Operator", operator, ""},
		{"Hosts", fmt.Sprint(run.Hosts()), ""}, {"Read from", run.Source, ""},
	}
	for i := range fields {
		fields[i].Value = clean(orDash(fields[i].Value))
	}
	return fields
}

func resultClass(result string) string {
	switch result {
	case "succeeded":
		return "res-ok"
	case "rolled-back":
		return "res-rolled"
	case "":
		return ""
	}
	return "res-bad"
}

func legend(run *Run) []legendItem {
	seen := map[string]bool{}
	for _, b := range run.Batches {
		for _, h := range b.Hosts {
			for _, s := range h.Steps {
				seen[phaseClass(s.Phase)] = true
			}
		}
	}
	var items []legendItem
	for _, ph := range append(slices.Clone(phaseOrder), "other") {
		if seen["ph-"+ph] {
			items = append(items, legendItem{Label: ph, Phase: "ph-" + ph, Status: "st-ok"})
		}
	}
	return append(items,
		legendItem{Label: "ok", Phase: "ph-neutral", Status: "st-ok"},
		legendItem{Label: "failed", Phase: "ph-neutral", Status: "st-failed", Marker: true},
		legendItem{Label: "skipped", Phase: "ph-neutral", Status: "st-skipped"},
		legendItem{Label: "rolled back (undone by the rollback)", Phase: "ph-neutral", Status: "st-rolled-back"},
		legendItem{Label: "unfinished", Phase: "ph-neutral", Status: "st-unfinished"},
	)
}

func untimed(run *Run) (rows []untimedRow, more int) {
	for _, b := range run.Batches {
		for _, h := range b.Hosts {
			for _, s := range h.Steps {
				if s.Timed() {
					continue
				}
				if len(rows) == maxUntimed {
					more++
					continue
				}
				d := "unknown"
				if s.Duration > 0 {
					d = Duration(s.Duration)
				}
				rows = append(rows, untimedRow{Host: clean(h.Name), Step: clean(s.ID()), Status: clean(s.Status), Duration: d, Detail: cut(clean(s.Detail), tipRunes)})
			}
		}
	}
	return rows, more
}

func notes(run *Run, banded bool, untimedSteps int) []string {
	var out []string
	for _, n := range run.Notes {
		out = append(out, clean(n))
	}
	approx := 0
	for _, b := range run.Batches {
		for _, h := range b.Hosts {
			for _, s := range h.Steps {
				if s.Approx && s.Timed() {
					approx++
				}
			}
		}
	}
	if approx > 0 {
		out = append(out, stepsHave(approx)+" no recorded start: each is drawn (dotted outline) right after the host's previous step, so durations are exact but positions are not.")
	}
	if untimedSteps > 0 {
		out = append(out, stepsHave(untimedSteps)+" no timings in the record: not drawn, listed under the chart.")
	}
	if banded {
		out = append(out, fmt.Sprintf("%d hosts: each batch is drawn as a band of how many of its hosts were in each phase over time. Every host that failed or did not finish has a row of its own, and so do the first %d of each batch that were rolled back.", run.Hosts(), maxRolledBackRows))
	}
	return out
}

// ticks are the time axis: round steps, about ten across.
func ticks(sc scale) []tick {
	steps := []time.Duration{}
	for _, base := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second} {
		steps = append(steps, base, 2*base, 5*base)
	}
	steps = append(steps, 10*time.Second, 15*time.Second, 30*time.Second, time.Minute, 2*time.Minute, 5*time.Minute,
		10*time.Minute, 15*time.Minute, 30*time.Minute, time.Hour, 2*time.Hour, 3*time.Hour, 6*time.Hour, 12*time.Hour, 24*time.Hour)
	step := steps[len(steps)-1]
	for _, s := range steps {
		if sc.dur/s <= 10 {
			step = s
			break
		}
	}
	var out []tick
	for d := time.Duration(0); d <= sc.dur; d += step {
		t := tick{X: sc.x(sc.t0.Add(d)), Label: "+" + Duration(d), Anchor: "middle"}
		if t.X > plotX+plotW-30 {
			t.Anchor = "end" // the last label stays inside the chart
		}
		out = append(out, t)
	}
	return out
}

// Duration is d the way the page writes it: 850ms, 5.2s, 3m05s, 1h02m.
func Duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	case d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d < 10*time.Second:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", d.Seconds()), ".0") + "s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	}
	return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
}

// clean makes any bytes printable text: invalid UTF-8 and control
// characters (but newline and tab) are written as \xNN, so nothing is lost
// and nothing reaches the page that a browser would mangle. html/template
// escapes the result.
func clean(s string) string {
	ok := utf8.ValidString(s)
	for _, r := range s {
		if ok && (r >= 0x20 || r == '\n' || r == '\t') && r != 0x7f && (r < 0x80 || r > 0x9f) {
			continue
		}
		ok = false
		break
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// cut shortens s to n runes, ending it with "…".
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// stepsHave is "1 step has" or "N steps have".
func stepsHave(n int) string {
	if n == 1 {
		return "1 step has"
	}
	return fmt.Sprintf("%d steps have", n)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// round1 keeps one decimal: enough for pixels, and a stable page.
func round1(f float64) float64 { return math.Round(f*10) / 10 }
