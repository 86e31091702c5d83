package timeline

import (
	"fmt"
	"time"
)

// Runs the tests draw, shaped like what relctl's journal records.

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func step(id, status string, from, to int, detail string) Step {
	phase, name := id, ""
	for i := range id {
		if id[i] == '/' {
			phase, name = id[:i], id[i+1:]
			break
		}
	}
	return Step{Phase: phase, Name: name, Status: status, Start: at(from), End: at(to), Detail: detail}
}

func preflight() []Step {
	return []Step{
		step("preflight/base-dir", StatusOK, 2, 8, ""),
		step("preflight/rollback-ready", StatusOK, 8, 15, "rollback target 1.1.0 intact"),
	}
}

// hostPlan says how a host's deploy went in fixtures: its batch starts at
// batchStart, it is the j-th host of its batch (steps within a phase are
// staggered by j), health failed or not, post reached or not, and a
// rollback starting at rollbackAt (0: none).
type hostPlan struct {
	batchStart, j int
	healthFails   bool
	noPost        bool
	rollbackAt    int
}

func deployHost(name string, p hostPlan) Host {
	s, j := p.batchStart, p.j*10
	activate := StatusOK
	if p.rollbackAt > 0 {
		activate = StatusRolledBack
	}
	steps := append(preflight(),
		step("stage/upload", StatusOK, s+j, s+j+13, "uploaded 2.8 KiB, sha256 ok"),
		step("stage/unpack", StatusOK, s+j+13, s+j+18, ""),
		step("activate/activate", activate, s+300+j, s+310+j, "1.1.0 -> 1.2.0"),
		step("activate/restart", StatusOK, s+310+j, s+430+j, ""),
	)
	switch {
	case p.healthFails:
		steps = append(steps, step("verify/health", StatusFailed, s+500+j, s+5500,
			`check "health": health failed after 26 attempts: HTTP 500: {"status":"failing"}`))
	default:
		steps = append(steps, step("verify/health", StatusOK, s+500+j, s+740+j, "health ok after 2 attempts"))
	}
	if !p.noPost && !p.healthFails {
		steps = append(steps, step("post/prune", StatusOK, s+800+j, s+812+j, "kept 5 releases"))
	}
	if r := p.rollbackAt; r > 0 {
		steps = append(steps,
			step("rollback/undo-restart", StatusSkipped, r, r+1, "no undo command"),
			step("rollback/undo-activate", StatusOK, r+1, r+15, "1.2.0 -> 1.1.0"),
			step("rollback/undo-unpack", StatusSkipped, r+15, r+16, "no undo command"),
			step("rollback/restart", StatusOK, r+16, r+140, ""),
			step("rollback/health", StatusOK, r+140, r+340, "health ok after 2 attempts"),
		)
	}
	return Host{Name: name, Steps: steps}
}

func runHeader(result string, finished int) Run {
	return Run{ID: "20261207T100000Z-abc123", Env: "staging", Kind: "deploy", Release: "1.2.0", From: "1.1.0",
		Result: result, Operator: "tester", Controller: "laptop", Source: "journal on this machine",
		Started: t0, Finished: at(finished)}
}

// okRun: three hosts in two batches, every step ok.
func okRun() *Run {
	r := runHeader("succeeded", 2100)
	r.Release, r.From = "1.1.0", "1.0.0"
	r.Batches = []Batch{
		{Name: "batch 1", Hosts: []Host{deployHost("staging-1", hostPlan{batchStart: 20})}},
		{Name: "batch 2", Hosts: []Host{deployHost("staging-2", hostPlan{batchStart: 1000}), deployHost("staging-3", hostPlan{batchStart: 1000, j: 1})}},
	}
	return &r
}

// failedCanaryRun: the canary fails its health check and is rolled back;
// the other two hosts ran preflight only.
func failedCanaryRun() *Run {
	r := runHeader("rolled-back", 5900)
	r.Batches = []Batch{
		{Name: "batch 1", Hosts: []Host{deployHost("staging-1", hostPlan{batchStart: 20, healthFails: true, rollbackAt: 5530})}},
		{Name: "preflight only", Hosts: []Host{{Name: "staging-2", Steps: preflight()}, {Name: "staging-3", Steps: preflight()}}},
	}
	r.Rollback = &Span{Label: "automatic rollback", Start: at(5525), End: at(5870)}
	return &r
}

// bigRun: 150 hosts in batches of 1, 74 and 75; host-120 fails its health
// check in batch 3, and every host is rolled back.
func bigRun() *Run {
	r := runHeader("rolled-back", 8600)
	const rollbackAt = 7800
	b1 := Batch{Name: "batch 1", Hosts: []Host{deployHost("host-1", hostPlan{batchStart: 20, rollbackAt: rollbackAt})}}
	b2, b3 := Batch{Name: "batch 2"}, Batch{Name: "batch 3"}
	for i := 2; i <= 75; i++ {
		b2.Hosts = append(b2.Hosts, deployHost(fmt.Sprintf("host-%d", i), hostPlan{batchStart: 1100, j: (i - 2) % 10, rollbackAt: rollbackAt + (i%10)*30}))
	}
	for i := 76; i <= 150; i++ {
		b3.Hosts = append(b3.Hosts, deployHost(fmt.Sprintf("host-%d", i), hostPlan{batchStart: 2200, j: (i - 76) % 10,
			healthFails: i == 120, noPost: true, rollbackAt: rollbackAt + (i%10)*30}))
	}
	r.Batches = []Batch{b1, b2, b3}
	r.Rollback = &Span{Label: "automatic rollback", Start: at(rollbackAt - 5), End: at(8580)}
	return &r
}

// hostileRun: a host name and details holding markup, quotes and bytes
// that are not UTF-8.
func hostileRun() *Run {
	r := runHeader("failed", 600)
	r.Env = `prod"><script>alert(3)</script>`
	h := deployHost(`web-1<script>alert("host")</script>'"`, hostPlan{batchStart: 20})
	h.Steps[2].Detail = "<script>alert('detail')</script> & \"quoted\" 'single' \xff\x1b[31m"
	h.Steps[3].Name = `unpack"><img src=x onerror=alert(1)>`
	r.Batches = []Batch{{Name: `batch </title><script>alert(4)</script>`, Hosts: []Host{h}}}
	r.Notes = []string{"note <b>not bold</b>"}
	return &r
}
