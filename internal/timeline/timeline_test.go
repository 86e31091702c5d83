package timeline

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func render(t *testing.T, run *Run) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, run); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return b.String()
}

func count(page, s string) int { return strings.Count(page, s) }

func TestRenderRuns(t *testing.T) {
	// bigRun's rows: host-1 (rolled back, 13 steps), the first 20 of batch
	// 2's 74 rolled-back hosts (13 steps each), host-120 (failed: 12) and the
	// first 20 other hosts of batch 3 (no post: 12 each).
	bigBars := 13 + 20*13 + 12 + 20*12
	tests := []struct {
		name                    string
		run                     *Run
		bars, failures, bands   int
		rollback, firstFailure  bool
		rows                    []string // host names that must have a row
		noRows                  []string
		contains                []string
		failedStep, rolledSteps int
	}{
		{name: "ok", run: okRun(), bars: 3 * 8, rows: []string{"staging-1", "staging-2", "staging-3"},
			contains: []string{"batch 1 · 1 host", "batch 2 · 2 hosts", ">succeeded<", "1.0.0 → 1.1.0", "2026-12-07 10:00:00.000 UTC", ">2.1s<"}},
		{name: "failed canary", run: failedCanaryRun(), bars: 12 + 2 + 2, failures: 1, rollback: true, firstFailure: true,
			rows:        []string{"staging-1", "staging-2", "staging-3"},
			contains:    []string{"preflight only · 2 hosts", "automatic rollback · 345ms", "first failure &#43;5.5s", ">rolled-back<"},
			failedStep:  1,
			rolledSteps: 1},
		{name: "150 hosts", run: bigRun(), bars: bigBars, failures: 1, bands: 3, rollback: true, firstFailure: true,
			rows:     []string{"host-1", "host-2", "host-21", "host-76", "host-120", "host-95"},
			noRows:   []string{"host-22", "host-96", "host-150"},
			contains: []string{"batch 2 · 74 hosts (summary band; rows: 20 of 74 rolled back)", "batch 3 · 75 hosts (summary band; rows: 1 failed or did not finish, 20 of 74 rolled back)", "150 hosts: each batch is drawn as a band"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := render(t, tt.run)
			if got := count(page, ` data-step="`); got != tt.bars {
				t.Errorf("%d bars (data-step), want %d", got, tt.bars)
			}
			if got := count(page, ` data-failure="`); got != tt.failures {
				t.Errorf("%d failure markers, want %d", got, tt.failures)
			}
			if got := count(page, ` data-band="`); got != tt.bands {
				t.Errorf("%d bands, want %d", got, tt.bands)
			}
			if got := strings.Contains(page, `data-rollback="automatic"`); got != tt.rollback {
				t.Errorf("rollback span drawn: %v, want %v", got, tt.rollback)
			}
			if got := strings.Contains(page, `data-first-failure=""`); got != tt.firstFailure {
				t.Errorf("first failure line drawn: %v, want %v", got, tt.firstFailure)
			}
			for _, h := range tt.rows {
				if !strings.Contains(page, `data-host="`+h+`"`) {
					t.Errorf("no row for %s", h)
				}
			}
			for _, h := range tt.noRows {
				if strings.Contains(page, `data-host="`+h+`"`) {
					t.Errorf("a row for %s, which is in the band only", h)
				}
			}
			for _, s := range tt.contains {
				if !strings.Contains(page, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			if tt.failedStep > 0 {
				if got := count(page, `class="bar tt st-failed" data-step="verify/health"`); got != tt.failedStep {
					t.Errorf("%d failed verify/health bars, want %d", got, tt.failedStep)
				}
			}
			if tt.rolledSteps > 0 {
				if got := count(page, `class="bar tt st-rolled-back" data-step="activate/activate"`); got != tt.rolledSteps {
					t.Errorf("%d rolled-back activate bars, want %d", got, tt.rolledSteps)
				}
				if got := count(page, `data-step="rollback/`); got != 5*tt.rolledSteps {
					t.Errorf("%d rollback step bars, want %d", got, 5*tt.rolledSteps)
				}
			}
			checkSelfContained(t, page)
		})
	}
}

// checkSelfContained: nothing the page would load from elsewhere.
func checkSelfContained(t *testing.T, page string) {
	t.Helper()
	for _, re := range []string{`(?i)<script[^>]+src=`, `(?i)<link\b`, `(?i)<img\b`, `(?i)@import`, `(?i)url\((?:["']?)(?:https?:|//)`, `(?i)(?:src|href)="(?:https?:)?//`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("page loads something: %q", m)
		}
	}
	if !strings.Contains(page, `default-src 'none'`) {
		t.Error("page has no Content-Security-Policy forbidding loads")
	}
	if !utf8.ValidString(page) {
		t.Error("page is not valid UTF-8")
	}
}

func TestEscaping(t *testing.T) {
	page := render(t, hostileRun())
	for _, bad := range []string{`<script>alert(`, `<img src=x`, `<b>not bold`, "\xff", "\x1b", `"><script`, `'"><`} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q unescaped", bad)
		}
	}
	for _, want := range []string{
		`data-host="web-1&lt;script&gt;alert(&#34;host&#34;)&lt;/script&gt;&#39;&#34;"`, // attribute
		`&lt;script&gt;alert(&#39;detail&#39;)&lt;/script&gt; &amp; &#34;quoted&#34; &#39;single&#39; \xff\x1b[31m`,
		`data-step="stage/unpack&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"`,
		`prod&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;`,
		`batch &lt;/title&gt;&lt;script&gt;alert(4)&lt;/script&gt;`,
		`note &lt;b&gt;not bold&lt;/b&gt;`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks the escaped %q", want)
		}
	}
	// The only scripts are the page's own two.
	if got := count(page, "<script"); got != 2 {
		t.Errorf("%d <script elements, want the page's 2", got)
	}
	checkSelfContained(t, page)
}

func TestUntimedSteps(t *testing.T) {
	run := failedCanaryRun()
	h := &run.Batches[0].Hosts[0]
	h.Steps[2].Start = time.Time{}                                                                                     // stage/upload: an end without a start
	h.Steps = append(h.Steps, Step{Phase: "post", Name: "prune", Status: StatusOK, Duration: 1500 * time.Millisecond}) // no times at all
	page := render(t, run)
	if got := count(page, ` data-step="`); got != 12+2+2-1 {
		t.Errorf("%d bars, want %d (the untimed steps are not drawn)", got, 12+2+2-1)
	}
	for _, want := range []string{"2 steps have no timings in the record", "<h2>Steps without timings</h2>",
		"<tr><td>staging-1</td><td>stage/upload</td><td>ok</td><td>unknown</td>", "<td>post/prune</td><td>ok</td><td>1.5s</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestApproxSteps(t *testing.T) {
	run := okRun()
	for i := range run.Batches[0].Hosts[0].Steps {
		run.Batches[0].Hosts[0].Steps[i].Approx = true
	}
	page := render(t, run)
	if got := count(page, ` approx" data-step="`); got != 8 {
		t.Errorf("%d approximate bars, want 8", got)
	}
	if !strings.Contains(page, "8 steps have no recorded start") || !strings.Contains(page, "start not recorded: placed after the host&#39;s previous step") {
		t.Error("the page does not say the bars are placed")
	}
}

func TestInferBatches(t *testing.T) {
	names := func(bs []Batch) [][]string {
		var out [][]string
		for _, b := range bs {
			var hs []string
			for _, h := range b.Hosts {
				hs = append(hs, h.Name)
			}
			out = append(out, append([]string{b.Name}, hs...))
		}
		return out
	}
	flat := func(r *Run) []Host {
		var hs []Host
		for i := len(r.Batches) - 1; i >= 0; i-- { // any order in
			hs = append(hs, r.Batches[i].Hosts...)
		}
		return hs
	}
	// A batch with bounded parallelism: staging-3 starts stage only after
	// staging-2 finished it, but before the batch's activate.
	slow := okRun()
	h3 := &slow.Batches[1].Hosts[1]
	h3.Steps[2].Start, h3.Steps[2].End = at(1050), at(1100)
	h3.Steps[3].Start, h3.Steps[3].End = at(1100), at(1200)
	moved := okRun()
	moved.Batches = append(moved.Batches, Batch{Name: "move", Hosts: []Host{{Name: "staging-lb", Steps: []Step{step("move/traffic", StatusOK, 2000, 2050, "")}}}})
	rollbackOnly := &Run{Batches: []Batch{{Hosts: []Host{
		{Name: "b", Steps: append(preflight(), step("rollback/undo-activate", StatusOK, 20, 40, ""))},
		{Name: "a", Steps: append(preflight(), step("rollback/undo-activate", StatusOK, 20, 40, ""))},
	}}}}
	tests := []struct {
		name string
		run  *Run
		want [][]string
	}{
		{"ok", okRun(), [][]string{{"batch 1", "staging-1"}, {"batch 2", "staging-2", "staging-3"}}},
		{"bounded parallelism", slow, [][]string{{"batch 1", "staging-1"}, {"batch 2", "staging-2", "staging-3"}}},
		{"failed canary", failedCanaryRun(), [][]string{{"batch 1", "staging-1"}, {"preflight only", "staging-2", "staging-3"}}},
		{"move after the batches", moved, [][]string{{"batch 1", "staging-1"}, {"batch 2", "staging-2", "staging-3"}, {"move", "staging-lb"}}},
		{"a rollback run", rollbackOnly, [][]string{{"batch 1", "a", "b"}}},
		{"nothing timed", &Run{Batches: []Batch{{Hosts: []Host{{Name: "x"}}}}}, [][]string{{"hosts", "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(InferBatches(flat(tt.run))); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	var big []string
	for _, b := range InferBatches(flat(bigRun())) {
		big = append(big, b.Name+":"+b.Hosts[0].Name+"+"+string(rune('0'+len(b.Hosts)/10)))
	}
	if want := []string{"batch 1:host-1+0", "batch 2:host-2+7", "batch 3:host-76+7"}; !reflect.DeepEqual(big, want) {
		t.Errorf("150 hosts: got %q, want %q", big, want)
	}
}

func TestNaturalLess(t *testing.T) {
	in := []string{"web-10", "web-2", "db", "web-02", "web-1", "a10b2", "a10b10", "a9"}
	want := []string{"a9", "a10b2", "a10b10", "db", "web-1", "web-2", "web-02", "web-10"}
	hosts := make([]Host, len(in))
	for i, n := range in {
		hosts[i] = Host{Name: n}
	}
	sortHosts(hosts)
	var got []string
	for _, h := range hosts {
		got = append(got, h.Name)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDurationAndClean(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 400 * time.Microsecond: "400µs", 345 * time.Millisecond: "345ms",
		5500 * time.Millisecond: "5.5s", 2 * time.Second: "2s", 42 * time.Second: "42s", 185 * time.Second: "3m05s", 3725 * time.Second: "1h02m"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
	for in, want := range map[string]string{"plain é": "plain é", "a\tb\nc": "a\tb\nc", "\xff\x00x": `\xff\x00x`, "\x1b[1m\u0085": `\x1b[1m\xc2\x85`} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPageGolden: the whole page of the failed canary, byte for byte.
func TestPageGolden(t *testing.T) {
	checkGolden(t, filepath.Join("testdata", t.Name()+".golden"), []byte(render(t, failedCanaryRun())))
}

// checkGolden compares got with the golden file; -update rewrites it.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("page differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
