package timeline

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// layoutBand draws batch b as stacked areas: for each stretch of bucketW
// pixels, how many of its hosts were, on average, in each phase.
func layoutBand(b Batch, sc scale, y float64) bandView {
	buckets := int(plotW / bucketW)
	bucketDur := float64(sc.dur) / float64(buckets)
	occupancy := map[string][]float64{}
	for _, h := range b.Hosts {
		for _, s := range h.Steps {
			if !s.Timed() {
				continue
			}
			ph := phaseClass(s.Phase)
			if occupancy[ph] == nil {
				occupancy[ph] = make([]float64, buckets)
			}
			addOccupancy(occupancy[ph], float64(s.Start.Sub(sc.t0)), float64(s.End.Sub(sc.t0)), bucketDur)
		}
	}
	n := len(b.Hosts)
	band := bandView{Y: y, H: bandH, Hosts: n, Label: fmt.Sprintf("%d host%s", n, plural(n))}
	yOf := func(v float64) float64 { return y + bandH - min(v/float64(max(n, 1)), 1)*bandH }
	lower := make([]float64, buckets)
	var peaks []string
	for _, ph := range append(append([]string{}, phaseOrder...), "other") {
		occ := occupancy["ph-"+ph]
		if occ == nil {
			continue
		}
		upper := make([]float64, buckets)
		peak := 0.0
		for i := range upper {
			upper[i] = lower[i] + occ[i]
			peak = max(peak, occ[i])
		}
		if peak == 0 {
			continue // steps too short to show at this scale
		}
		points := stepLine(upper, yOf, false) + " " + stepLine(lower, yOf, true)
		tip := fmt.Sprintf("%s: %s, at most %s of %d hosts at once", clean(b.Name), ph, trimFloat(peak), n)
		band.Areas = append(band.Areas, areaView{PhaseClass: "ph-" + ph, Points: points, Tip: tip})
		peaks = append(peaks, fmt.Sprintf("%s at most %s", ph, trimFloat(peak)))
		lower = upper
	}
	band.Tip = fmt.Sprintf("%s: %d hosts (average hosts per phase over each %s): %s",
		clean(b.Name), n, Duration(time.Duration(bucketDur)), strings.Join(peaks, ", "))
	return band
}

// addOccupancy adds to each bucket the share of it that [from, to) covers.
func addOccupancy(occ []float64, from, to, bucketDur float64) {
	first := max(int(from/bucketDur), 0)
	for i := first; i < len(occ); i++ {
		lo, hi := float64(i)*bucketDur, float64(i+1)*bucketDur
		if lo >= to {
			break
		}
		if overlap := min(hi, to) - max(lo, from); overlap > 0 {
			occ[i] += overlap / bucketDur
		}
	}
}

// stepLine is the outline of a series as polygon points, left to right (or
// right to left when backwards), a point only where the value changes.
func stepLine(v []float64, yOf func(float64) float64, backwards bool) string {
	type pt struct{ x, y float64 }
	var pts []pt
	xAt := func(i int) float64 { return plotX + float64(i)*bucketW }
	pts = append(pts, pt{xAt(0), yOf(v[0])})
	for i := 1; i < len(v); i++ {
		if round1(yOf(v[i])) != round1(yOf(v[i-1])) {
			pts = append(pts, pt{xAt(i), yOf(v[i-1])}, pt{xAt(i), yOf(v[i])})
		}
	}
	pts = append(pts, pt{xAt(len(v)), yOf(v[len(v)-1])})
	var b strings.Builder
	for i := range pts {
		p := pts[i]
		if backwards {
			p = pts[len(pts)-1-i]
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(num(p.x) + "," + num(p.y))
	}
	return b.String()
}

// num writes a coordinate with at most one decimal.
func num(f float64) string {
	return strconv.FormatFloat(round1(f), 'f', -1, 64)
}

func trimFloat(f float64) string {
	return strconv.FormatFloat(float64(int(f*10+0.5))/10, 'f', -1, 64)
}
