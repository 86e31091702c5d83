package deploy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/relctl/relctl/playbooks"
)

// orderRun is a run over five hosts in three batches (w1 the canary; w2, w3;
// w4, w5), every host on 1.1.0 before it, none touched yet.
func orderRun(t *testing.T) (*run, *[]Event) {
	t.Helper()
	var events []Event
	e := &Engine{Observe: func(ev Event) { events = append(events, ev) }}
	p := &Plan{RunID: "r1", Env: "staging", Version: "1.2.0"}
	r := &run{engine: e, plan: p, runs: map[string]*hostRun{}, report: &Report{RunID: "r1", Env: "staging", Version: "1.2.0"}}
	for i, names := range [][]string{{"w1"}, {"w2", "w3"}, {"w4", "w5"}} {
		b := &Batch{Index: i + 1, Canary: i == 0}
		for _, name := range names {
			hp := &HostPlan{Name: name}
			b.Hosts = append(b.Hosts, hp)
			hr := &HostReport{Name: name, Batch: b.Index, Reached: true, Before: "1.1.0", After: "1.1.0"}
			r.report.Hosts = append(r.report.Hosts, hr)
			r.runs[name] = &hostRun{engine: e, run: r, plan: p, host: hp, report: hr}
		}
		p.Batches = append(p.Batches, b)
	}
	return r, &events
}

// touch marks hosts touched; traffic (out or in) says where this run left
// their server in the load balancer, nil that it never changed it.
func touch(r *run, names string, traffic *bool) {
	for _, name := range strings.Fields(names) {
		h := r.runs[name]
		h.report.Touched = true
		if traffic != nil {
			ts := &trafficState{started: true, off: *traffic}
			h.host.Steps = append(h.host.Steps, &Step{Name: kindTrafficOff, Action: &trafficOffAction{ts: ts}})
		}
	}
}

var (
	out = func() *bool { b := true; return &b }()
	in  = func() *bool { b := false; return &b }()
)

func (r *run) touchedHosts() []*HostPlan {
	var hs []*HostPlan
	for _, hp := range r.plan.Hosts() {
		if r.runs[hp.Name].report.Touched {
			hs = append(hs, hp)
		}
	}
	return hs
}

func waveNames(waves [][]*HostPlan) [][]string {
	var out [][]string
	for _, w := range waves {
		out = append(out, hostNames(w))
	}
	return out
}

// TestRollbackWaves: hosts whose server the run changed come back in the
// deploy's batches reversed, the canary last; the others (no [traffic], or
// stopped before their traffic step) join the first wave.
func TestRollbackWaves(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *run)
		want  [][]string
	}{
		{"no [traffic]: every touched host in one wave", func(r *run) {
			touch(r, "w1 w2 w3 w4 w5", nil)
		}, [][]string{{"w1", "w2", "w3", "w4", "w5"}}},
		{"no [traffic], failure in batch 2: one wave", func(r *run) {
			touch(r, "w1 w2 w3", nil)
		}, [][]string{{"w1", "w2", "w3"}}},
		{"failure in batch 3 after traffic-off: latest batch first, canary last", func(r *run) {
			touch(r, "w1 w2 w3", in)
			touch(r, "w4 w5", out)
		}, [][]string{{"w4", "w5"}, {"w2", "w3"}, {"w1"}}},
		{"failure in batch 3's stage: its hosts never left the LB and join the first wave", func(r *run) {
			touch(r, "w1 w2 w3", in)
			touch(r, "w4 w5", nil)
		}, [][]string{{"w2", "w3", "w4", "w5"}, {"w1"}}},
		{"failure in batch 2: batch 3 untouched", func(r *run) {
			touch(r, "w1", in)
			touch(r, "w2 w3", out)
		}, [][]string{{"w2", "w3"}, {"w1"}}},
		{"failed canary", func(r *run) {
			touch(r, "w1", out)
		}, [][]string{{"w1"}}},
		{"one host of batch 3 stopped before its traffic step", func(r *run) {
			touch(r, "w1 w2 w3", in)
			touch(r, "w4", out)
			touch(r, "w5", nil)
		}, [][]string{{"w4", "w5"}, {"w2", "w3"}, {"w1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := orderRun(t)
			tt.setup(r)
			got := waveNames(rollbackWaves(r.plan, r.touchedHosts(), r.changedTraffic))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("waves = %v; want %v", got, tt.want)
			}
		})
	}
}

// TestLastInLB: a wave is held back only when rolling it back would take
// out the last hosts of the plan still in the load balancer.
func TestLastInLB(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *run)
		wave  string
		want  []string
	}{
		{"the later batches are back in", func(r *run) {
			touch(r, "w1 w2 w3 w4 w5", in)
		}, "w2 w3", nil},
		{"batch 3 left out, batch 2 and the canary the last in", func(r *run) {
			touch(r, "w1 w2 w3", in)
			touch(r, "w4 w5", out)
		}, "w2 w3", nil}, // the canary still serves
		{"batch 2 and 3 left out: the canary is the last in", func(r *run) {
			touch(r, "w1", in)
			touch(r, "w2 w3 w4 w5", out)
		}, "w1", []string{"w2", "w3", "w4", "w5"}},
		{"one host of batch 2 back: the canary may leave", func(r *run) {
			touch(r, "w1 w2", in)
			touch(r, "w3", out)
		}, "w1", nil},
		{"batch 2 left out, batch 3 untouched and serving", func(r *run) {
			touch(r, "w1", in)
			touch(r, "w2 w3", out)
		}, "w1", nil},
		{"the wave is out already: rolling it back takes nobody out", func(r *run) {
			touch(r, "w1 w2 w3 w4 w5", out)
		}, "w1", nil},
		{"no [traffic]: nobody leaves the LB", func(r *run) {
			touch(r, "w1 w2 w3 w4 w5", nil)
		}, "w1", nil},
		{"--hosts chose w1..w5: w6, a target this run never took out, serves", func(r *run) {
			var hosts []*playbooks.Host
			for _, n := range strings.Fields("w1 w2 w3 w4 w5 w6") {
				hosts = append(hosts, &playbooks.Host{Name: n, Roles: []string{"search"}})
			}
			r.plan.pb = &playbooks.Playbook{Roles: []string{"search"}}
			r.plan.env = &playbooks.Environment{Name: "staging", Hosts: hosts}
			touch(r, "w1", in)
			touch(r, "w2 w3 w4 w5", out)
		}, "w1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := orderRun(t)
			tt.setup(r)
			var wave []*HostPlan
			for _, name := range strings.Fields(tt.wave) {
				wave = append(wave, r.runs[name].host)
			}
			if got := r.lastInLB(wave); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("lastInLB(%s) = %q; want %q", tt.wave, got, tt.want)
			}
		})
	}
}

// TestHoldBackReportsEveryHost: a held-back host is not dropped: it has a
// rollback outcome naming why, counts as unresolved, and gets its
// RollbackHostDone event.
func TestHoldBackReportsEveryHost(t *testing.T) {
	r, events := orderRun(t)
	touch(r, "w1 w2 w3", in)
	touch(r, "w4 w5", out)
	r.runs["w1"].report.After, r.runs["w2"].report.After, r.runs["w3"].report.After = "1.2.0", "1.2.0", "1.2.0"
	r.holdBack([]*HostPlan{r.runs["w2"].host, r.runs["w3"].host}, []string{"w4", "w5"})
	for _, name := range []string{"w2", "w3"} {
		h := r.report.Host(name)
		want := name + ": not rolled back, left serving 1.2.0: w4, w5 could not be put back in the load balancer, and taking this host out too would leave no host in it"
		if h.Rollback == nil || h.Rollback.Error != want || h.Rollback.Healthy {
			t.Errorf("%s rollback = %+v; want error %q, not healthy", name, h.Rollback, want)
		}
		if !h.Unresolved() {
			t.Errorf("%s is not unresolved", name)
		}
	}
	var done []string
	for _, ev := range *events {
		if ev.Kind == RollbackHostDone && ev.Err != nil {
			done = append(done, ev.Host)
		}
	}
	if !reflect.DeepEqual(done, []string{"w2", "w3"}) {
		t.Errorf("RollbackHostDone with an error for %v; want w2, w3", done)
	}
	if r.report.Host("w1").Rollback != nil {
		t.Errorf("w1 was not in the held wave, but has a rollback outcome")
	}
}
