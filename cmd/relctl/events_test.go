package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/testenv"
)

// eventSchemaFile is the events' JSON Schema (README.md documents it).
const eventSchemaFile = "testdata/event.schema.json"

// compileEventSchema compiles testdata/event.schema.json (draft 2020-12).
func compileEventSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := eventSchemaCompiled()
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

var eventSchemaCompiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	// Scripts run in their own directories: the file is found from here.
	path, err := filepath.Abs(eventSchemaFile)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", eventSchemaFile, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(path, doc); err != nil {
		return nil, err
	}
	return c.Compile(path)
})

// cmdEvents is `events stdout|FILE`: every line of the last command's
// stdout (or FILE) is an event that matches testdata/event.schema.json.
func cmdEvents(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: events stdout|FILE")
	}
	text := ts.ReadFile(args[0])
	sch, err := eventSchemaCompiled()
	ts.Check(err)
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, line := range lines {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
		if err != nil {
			ts.Fatalf("%s line %d is not JSON: %v\n%s", args[0], i+1, err, line)
		}
		if err := sch.Validate(inst); err != nil {
			ts.Fatalf("%s line %d does not match %s: %v\n%s", args[0], i+1, eventSchemaFile, err, line)
		}
	}
	ts.Logf("%s: %d events, each valid", args[0], len(lines))
}

// validEvents checks that stdout is events alone, a JSON object per line,
// each valid against the schema, and returns them.
func validEvents(t *testing.T, sch *jsonschema.Schema, stdout string) []map[string]any {
	t.Helper()
	var events []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
		if err != nil {
			t.Fatalf("stdout line %d is not JSON: %v\n%s", i+1, err, line)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("stdout line %d does not match %s: %v\n%s", i+1, eventSchemaFile, err, line)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	return events
}

// The schema is strict: an event missing a field, with a field of the
// wrong type, an unknown type or a time without milliseconds is refused.
func TestEventSchemaRefuses(t *testing.T) {
	sch := compileEventSchema(t)
	good := `{"schema":"relctl.event/v1","type":"rollback-start","time":"2026-12-08T02:37:27.700Z","run":"r1","hosts":["web-1"]}`
	for name, line := range map[string]string{
		"good":          good,
		"no run":        `{"schema":"relctl.event/v1","type":"rollback-start","time":"2026-12-08T02:37:27.700Z","hosts":["web-1"]}`,
		"other schema":  strings.Replace(good, "v1", "v2", 1),
		"unknown type":  strings.Replace(good, "rollback-start", "rollback-begin", 1),
		"seconds only":  strings.Replace(good, "27.700Z", "27Z", 1),
		"hosts a text":  strings.Replace(good, `["web-1"]`, `"web-1"`, 1),
		"unknown field": strings.Replace(good, `"hosts"`, `"extra":1,"hosts"`, 1),
		"step-end without status": `{"schema":"relctl.event/v1","type":"step-end","time":"2026-12-08T02:37:27.700Z","run":"r1",` +
			`"host":"web-1","batch":1,"phase":"stage","step":"upload","rollback":false,"duration_ms":3,"detail":"","error":""}`,
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
		if err != nil {
			t.Fatal(err)
		}
		err = sch.Validate(inst)
		if (err == nil) != (name == "good") {
			t.Errorf("%s: Validate: %v", name, err)
		}
	}
}

// Every event of real runs matches the schema: a deploy that succeeds, one
// whose host fails a step (so the automatic rollback runs) and, after the
// release is deployed again, a rollback.
// The failed deploy's stream tells the story in order: run-start first, a
// batch-end that failed, the failed step with its error, the rollback's
// start and end, and the result (exit 3, rolled back) last.
func TestEventsOfRealRunsMatchTheSchema(t *testing.T) {
	sch := compileEventSchema(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := testenv.Start(ctx, testenv.Options{Dir: filepath.Join(dir, "cluster"), Hosts: 4, Envs: []string{"staging"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	relctl := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(append(args, "-c", filepath.Join(c.Dir(), "relctl.toml")), output.Test(strings.NewReader(""), &out, &errOut))
		return code, out.String(), errOut.String()
	}

	code, out, errOut := relctl("deploy", "--env", "staging", "--release", "1.0.0", "--yes", "--output", "json")
	if code != 0 {
		t.Fatalf("deploy 1.0.0: exit %d\n%s", code, errOut)
	}
	first := validEvents(t, sch, out)
	if !strings.Contains(errOut, "HOST ") {
		t.Errorf("with --output json the result table goes to stderr:\n%s", errOut)
	}

	if err := c.SetFault("staging-3", testenv.FaultSpec{FailStep: "activate/restart"}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = relctl("deploy", "--env", "staging", "--release", "1.1.0", "--yes", "--output", "json")
	if code != exitFailedClean {
		t.Fatalf("deploy 1.1.0 with staging-3 failing: exit %d, want %d\n%s", code, exitFailedClean, errOut)
	}
	if err := c.SetFault("staging-3", testenv.FaultSpec{}); err != nil {
		t.Fatal(err)
	}
	failed := validEvents(t, sch, out)
	checkFailedDeployEvents(t, failed)

	if code, _, errOut := relctl("deploy", "--env", "staging", "--release", "1.1.0", "--yes"); code != 0 {
		t.Fatalf("deploy 1.1.0: exit %d\n%s", code, errOut)
	}
	code, out, errOut = relctl("rollback", "--env", "staging", "--to", "prev", "--yes", "-o", "json")
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s", code, errOut)
	}
	back := validEvents(t, sch, out)
	if back[0]["kind"] != "rollback" || back[len(back)-1]["outcome"] != "succeeded" {
		t.Errorf("rollback: first event %v, last %v", back[0], back[len(back)-1])
	}
	for _, evs := range [][]map[string]any{first, failed, back} {
		checkStepsPaired(t, evs)
	}
}

// checkFailedDeployEvents: the failed deploy's events, in order.
func checkFailedDeployEvents(t *testing.T, evs []map[string]any) {
	t.Helper()
	types := make([]string, len(evs))
	for i, ev := range evs {
		types[i] = ev["type"].(string)
		if ev["run"] != evs[0]["run"] {
			t.Errorf("event %d is of run %v, the stream's is %v", i+1, ev["run"], evs[0]["run"])
		}
	}
	if types[0] != "run-start" || types[len(types)-1] != "result" {
		t.Fatalf("events from %s to %s, want run-start to result", types[0], types[len(types)-1])
	}
	at := func(typ string, match func(map[string]any) bool) int {
		for i, ev := range evs {
			if ev["type"] == typ && (match == nil || match(ev)) {
				return i
			}
		}
		t.Errorf("no %s event (that matches)", typ)
		return -1
	}
	failedStep := at("step-end", func(ev map[string]any) bool {
		return ev["host"] == "staging-3" && ev["status"] == "failed" && ev["step"] == "restart" && ev["phase"] == "activate" &&
			strings.Contains(ev["error"].(string), "injected failure")
	})
	batchFailed := at("batch-end", func(ev map[string]any) bool { return ev["status"] == "failed" })
	rbStart := at("rollback-start", nil)
	rbStep := at("step-end", func(ev map[string]any) bool { return ev["rollback"] == true && ev["host"] == "staging-3" })
	rbEnd := at("rollback-end", func(ev map[string]any) bool { return len(ev["failed"].([]any)) == 0 })
	if !(failedStep < batchFailed && batchFailed < rbStart && rbStart < rbStep && rbStep < rbEnd) {
		t.Errorf("out of order: failed step %d, batch-end %d, rollback-start %d, a rollback step %d, rollback-end %d\n%v",
			failedStep, batchFailed, rbStart, rbStep, rbEnd, types)
	}
	res := evs[len(evs)-1]
	if res["exit_code"] != float64(exitFailedClean) || res["outcome"] != "rolled-back" {
		t.Errorf("result: exit %v, outcome %v; want %d, rolled-back", res["exit_code"], res["outcome"], exitFailedClean)
	}
	for _, h := range res["hosts"].([]any) {
		h := h.(map[string]any)
		if h["host"] == "staging-3" && (h["failed_step"] != "activate/restart" || h["rollback"] != "healthy" || h["unresolved"] != false) {
			t.Errorf("result for staging-3: %v", h)
		}
	}
}

// checkStepsPaired: every step that started ended (same host, phase, step
// and rollback), and nothing ended that did not start.
func checkStepsPaired(t *testing.T, evs []map[string]any) {
	t.Helper()
	open := map[string]int{}
	for _, ev := range evs {
		key := fmt.Sprint(ev["host"], " ", ev["phase"], "/", ev["step"], " rollback=", ev["rollback"])
		switch ev["type"] {
		case "step-start":
			open[key]++
		case "step-end":
			if open[key] == 0 {
				t.Errorf("step-end without its start: %v", ev)
			}
			open[key]--
		}
	}
	for key, n := range open {
		if n != 0 {
			t.Errorf("%s: started %d more times than it ended", key, n)
		}
	}
}
