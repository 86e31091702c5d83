package main

import (
	"github.com/relctl/relctl/internal/hostlist"
)

// Host lists on the console are folded into ranges (internal/hostlist):
// "staging-[1-40]". Two forms:
//   - allHosts names every host: for hosts that failed, were left
//     unresolved, hold a lock or are to be acted on;
//   - someHosts may end "… and N more" past hostlist.LineMax runes: for
//     hosts listed only to say where something runs or went well (a batch,
//     the touched hosts a rollback walks, a fleet's releases).
//
// The per-host detail is in the run log and `relctl history show`.
func allHosts(names []string) string { return hostlist.Compress(names) }

func someHosts(names []string) string { return hostlist.Abbrev(names, hostlist.LineMax) }

// perHostMax is the most hosts a run's result (and status) has a row per
// host for; with more, one row per outcome names its hosts folded.
const perHostMax = 20

// hostGroup is the hosts that share one row of a folded table.
type hostGroup struct {
	cols  []string
	hosts []string
}

// groupHosts folds rows (a host and its other columns) into one row per
// distinct columns, in the order each first appears.
func groupHosts(n int, row func(i int) (host string, cols []string)) []*hostGroup {
	var out []*hostGroup
	byKey := map[string]*hostGroup{}
	for i := range n {
		host, cols := row(i)
		key := ""
		for _, c := range cols {
			key += c + "\x00"
		}
		g := byKey[key]
		if g == nil {
			g = &hostGroup{cols: cols}
			byKey[key] = g
			out = append(out, g)
		}
		g.hosts = append(g.hosts, host)
	}
	return out
}
