package timeline

import (
	"sort"
	"strconv"
	"time"
)

// InferBatches groups hosts into the batches they ran in, from their step
// times alone (a journal does not record batches). Within a batch every
// host starts its first phase before any host of the batch starts the next
// one, and the next batch starts only once the batch is done: so a host
// whose first step started after a later-phase step of the current batch
// began opens a new batch. Preflight and rollback steps are left out (they
// run on every host at once); a run that has nothing else (a rollback
// command) is grouped by its rollback steps. Hosts with nothing left to go
// by form a last group, "preflight only". Groups of steps after the batches
// (phase move) are named "move".
func InferBatches(hosts []Host) []Batch {
	firsts, rest := firstSteps(hosts, false)
	if len(firsts) == 0 {
		firsts, rest = firstSteps(hosts, true)
	}
	sort.SliceStable(firsts, func(i, j int) bool {
		if !firsts[i].start.Equal(firsts[j].start) {
			return firsts[i].start.Before(firsts[j].start)
		}
		return NaturalLess(firsts[i].host.Name, firsts[j].host.Name)
	})
	var batches []Batch
	var cur *openBatch
	for _, f := range firsts {
		if cur == nil || !cur.admits(f.start) {
			if cur != nil {
				batches = append(batches, cur.batch(len(batches)+1))
			}
			cur = &openBatch{phase: f.phase}
		}
		cur.add(f.host)
	}
	if cur != nil {
		batches = append(batches, cur.batch(len(batches)+1))
	}
	if len(rest) > 0 {
		sortHosts(rest)
		name := "preflight only"
		if len(batches) == 0 {
			name = "hosts"
		}
		batches = append(batches, Batch{Name: name, Hosts: rest})
	}
	return batches
}

type firstStep struct {
	host  Host
	start time.Time
	phase string
}

// firstSteps is each host's first timed step that counts for batching (with
// rollback steps too when withRollback), and the hosts that have none.
func firstSteps(hosts []Host, withRollback bool) (firsts []firstStep, rest []Host) {
	for _, h := range hosts {
		var f *firstStep
		for _, s := range h.Steps {
			if !counts(s, withRollback) {
				continue
			}
			if f == nil || s.Start.Before(f.start) {
				f = &firstStep{host: h, start: s.Start, phase: s.Phase}
			}
		}
		if f == nil {
			rest = append(rest, h)
		} else {
			firsts = append(firsts, *f)
		}
	}
	return firsts, rest
}

func counts(s Step, withRollback bool) bool {
	return s.Timed() && s.Phase != PhasePreflight && (s.Phase != PhaseRollback || withRollback)
}

// openBatch is the batch InferBatches is filling.
type openBatch struct {
	phase string // the first phase of its first host
	hosts []Host
	// next is when its first step of a later phase started; end when its
	// last step ended (the bound when it has one phase only).
	next, end time.Time
}

func (b *openBatch) add(h Host) {
	b.hosts = append(b.hosts, h)
	for _, s := range h.Steps {
		if !counts(s, true) {
			continue
		}
		if s.Phase != b.phase && (b.next.IsZero() || s.Start.Before(b.next)) {
			b.next = s.Start
		}
		if s.End.After(b.end) {
			b.end = s.End
		}
	}
}

// admits says whether a host whose first step started at t is in the batch.
func (b *openBatch) admits(t time.Time) bool {
	if !b.next.IsZero() {
		return t.Before(b.next)
	}
	return t.Before(b.end)
}

func (b *openBatch) batch(n int) Batch {
	sortHosts(b.hosts)
	name := "batch " + strconv.Itoa(n)
	if b.phase == PhaseMove {
		name = "move"
	}
	return Batch{Name: name, Hosts: b.hosts}
}

// SortHosts orders hosts by name, numbers as numbers (NaturalLess).
func SortHosts(hosts []Host) { sortHosts(hosts) }

func sortHosts(hosts []Host) {
	sort.SliceStable(hosts, func(i, j int) bool { return NaturalLess(hosts[i].Name, hosts[j].Name) })
}

// NaturalLess orders names with their digit runs compared as numbers, so
// web-2 comes before web-10.
func NaturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da > 0 && db > 0 {
			na, nb := trimZeros(a[:da]), trimZeros(b[:db])
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			if da != db {
				return da < db
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func trimZeros(d string) string {
	for len(d) > 1 && d[0] == '0' {
		d = d[1:]
	}
	return d
}
