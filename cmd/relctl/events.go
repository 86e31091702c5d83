package main

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/relctl/relctl/deploy"
)

// eventSchema names the events' format; testdata/event.schema.json is
// its JSON Schema, and README.md documents it. A change that would break
// a reader of v1 is a new version; new event types and new fields are not.
const eventSchema = "relctl.event/v1"

// eventTimeFormat is RFC 3339 in UTC with milliseconds.
const eventTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// eventStream writes a run's events (--output json) as newline-delimited
// JSON, one object per line: run-start, batch-start and batch-end,
// step-start and step-end, rollback-start and rollback-end, result. Every
// text in them is masked with the run's secrets, as the console is.
type eventStream struct {
	mu     sync.Mutex
	enc    *json.Encoder
	redact func(string) string
	// batchOf is each host's batch number in the run being written.
	batchOf map[string]int
	// failedBatch: batch-end was written for these (a failed phase).
	ended map[int]bool
	// rollbackFailed are the hosts whose automatic rollback failed.
	rollbackFailed []string
	// gateFrom is the release a gated deploy starts from, as its rehearsal
	// gate checked it: run-start's from when the plan has none.
	gateFrom string
}

func newEventStream(w io.Writer, redact func(string) string) *eventStream {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // "1.0.0 -> 1.1.0", not "-\u003e"
	return &eventStream{enc: enc, redact: redact}
}

// eventHeader is what every event has.
type eventHeader struct {
	Schema string `json:"schema"`
	Type   string `json:"type"`
	Time   string `json:"time"`
	Run    string `json:"run"`
}

type eventBatch struct {
	Index  int      `json:"index"`
	Canary bool     `json:"canary"`
	Hosts  []string `json:"hosts"`
}

type runStartEvent struct {
	eventHeader
	Kind     string       `json:"kind"`
	Env      string       `json:"env"`
	Playbook string       `json:"playbook"`
	Release  string       `json:"release"`
	From     string       `json:"from"`
	Hosts    []string     `json:"hosts"`
	Batches  []eventBatch `json:"batches"`
}

type batchStartEvent struct {
	eventHeader
	eventBatch
	Of int `json:"of"`
}

type batchEndEvent struct {
	eventHeader
	Batch  int    `json:"batch"`
	Status string `json:"status"` // ok, failed
	Error  string `json:"error"`
}

type stepStartEvent struct {
	eventHeader
	Host     string `json:"host"`
	Batch    int    `json:"batch"`
	Phase    string `json:"phase"`
	Step     string `json:"step"`
	Rollback bool   `json:"rollback"`
}

type stepEndEvent struct {
	stepStartEvent
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Detail     string `json:"detail"`
	Error      string `json:"error"`
}

type rollbackStartEvent struct {
	eventHeader
	Hosts []string `json:"hosts"`
}

type rollbackEndEvent struct {
	eventHeader
	Hosts  []string `json:"hosts"`
	Failed []string `json:"failed"`
}

type resultHost struct {
	Host       string `json:"host"`
	Batch      int    `json:"batch"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Result     string `json:"result"`
	Touched    bool   `json:"touched"`
	FailedStep string `json:"failed_step"`
	Rollback   string `json:"rollback"` // "", healthy, not healthy, failed
	Unresolved bool   `json:"unresolved"`
	Error      string `json:"error"`
}

type resultEvent struct {
	eventHeader
	Outcome        string       `json:"outcome"`
	ExitCode       int          `json:"exit_code"`
	Error          string       `json:"error"`
	Hosts          []resultHost `json:"hosts"`
	Unresolved     []string     `json:"unresolved"`
	MoveUnresolved string       `json:"move_unresolved"`
}

// observe is the engine's Observer: it writes the events a reader of the
// stream gets, and ignores the others.
func (s *eventStream) observe(ev deploy.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Kind {
	case deploy.RunStarted:
		s.runStarted(ev)
	case deploy.BatchStarted:
		b := s.batch(ev.Batch)
		s.write(batchStartEvent{eventHeader: s.header("batch-start", ev), eventBatch: b, Of: len(ev.Plan.Batches)})
	case deploy.PhaseDone:
		if ev.Err != nil && ev.Batch != nil && !s.ended[ev.Batch.Index] {
			s.ended[ev.Batch.Index] = true
			s.write(batchEndEvent{eventHeader: s.header("batch-end", ev), Batch: ev.Batch.Index, Status: "failed", Error: s.redact(ev.Err.Error())})
		}
	case deploy.BatchDone:
		if !s.ended[ev.Batch.Index] {
			s.ended[ev.Batch.Index] = true
			s.write(batchEndEvent{eventHeader: s.header("batch-end", ev), Batch: ev.Batch.Index, Status: "ok"})
		}
	case deploy.StepStarted, deploy.RollbackStepStarted:
		s.write(s.stepStart(ev, ev.Step.Phase, ev.Step.Name))
	case deploy.StepDone, deploy.RollbackStepDone:
		r := ev.Result
		s.write(stepEndEvent{stepStartEvent: s.stepStart(ev, r.Phase, r.Name), Status: r.Status,
			DurationMS: r.Elapsed.Milliseconds(), Detail: s.redact(r.Detail), Error: s.redact(r.Error)})
	case deploy.RollbackStarted:
		s.rollbackFailed = []string{}
		s.write(rollbackStartEvent{eventHeader: s.header("rollback-start", ev), Hosts: s.names(ev.Hosts)})
	case deploy.RollbackHostDone:
		if ev.Err != nil {
			s.rollbackFailed = append(s.rollbackFailed, s.redact(ev.Host))
		}
	case deploy.RollbackDone:
		s.write(rollbackEndEvent{eventHeader: s.header("rollback-end", ev), Hosts: s.names(ev.Hosts), Failed: s.rollbackFailed})
	case deploy.RunDone:
		s.runDone(ev)
	}
}

func (s *eventStream) runStarted(ev deploy.Event) {
	p := ev.Plan
	s.batchOf, s.ended = map[string]int{}, map[int]bool{}
	var hosts []string
	batches := []eventBatch{}
	for _, b := range p.Batches {
		for _, hp := range b.Hosts {
			s.batchOf[hp.Name] = b.Index
			hosts = append(hosts, s.redact(hp.Name))
		}
		batches = append(batches, s.batch(b))
	}
	// deploy, rollback, finalize; "move back" (a rollback of a host move) as move-back
	kind := strings.ReplaceAll(p.Verb(), " ", "-")
	from := p.From
	if from == "" {
		from = s.gateFrom
	}
	s.write(runStartEvent{eventHeader: s.header("run-start", ev), Kind: kind, Env: s.redact(p.Env), Playbook: s.redact(p.Playbook),
		Release: s.redact(p.Version), From: s.redact(from), Hosts: orEmpty(hosts), Batches: batches})
}

// runDone is the result: how the run ended, the exit code it means (a
// deploy's, rollback's or finalize's own; a rehearsal's cycle says what a
// deploy would have exited), and each host's outcome.
func (s *eventStream) runDone(ev deploy.Event) {
	code, _ := exitCodeOf(ev.Err)
	res := resultEvent{eventHeader: s.header("result", ev), Outcome: runOutcome(ev.Report, ev.Err), ExitCode: code,
		Hosts: []resultHost{}, Unresolved: []string{}}
	if ev.Err != nil {
		res.Error = s.redact(ev.Err.Error())
	}
	// Only a failed run leaves hosts to look at (a run that succeeded
	// changed them all, as it should).
	var failure *deploy.Failure
	failed := errors.As(ev.Err, &failure)
	if rep := ev.Report; rep != nil {
		for _, h := range rep.Hosts {
			res.Hosts = append(res.Hosts, s.resultHost(h, failed))
		}
		if failed {
			res.Unresolved = s.names(rep.Unresolved())
		}
		res.MoveUnresolved = s.redact(rep.MoveUnresolved)
	}
	s.write(res)
}

func (s *eventStream) resultHost(h *deploy.HostReport, failed bool) resultHost {
	out := resultHost{Host: s.redact(h.Name), Batch: h.Batch, Before: s.redact(h.Before), After: s.redact(h.After),
		Result: s.redact(hostResult(h)), Touched: h.Touched, Unresolved: failed && h.Unresolved(), Error: s.redact(h.Error)}
	for _, st := range h.Steps {
		if st.Status == deploy.StatusFailed {
			out.FailedStep = s.redact(st.ID())
		}
	}
	switch rb := h.Rollback; {
	case rb == nil:
	case rb.Error != "":
		out.Rollback = "failed"
	case rb.Healthy:
		out.Rollback = "healthy"
	default:
		out.Rollback = "not healthy"
	}
	return out
}

func (s *eventStream) header(typ string, ev deploy.Event) eventHeader {
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	run := ""
	if ev.Plan != nil {
		run = ev.Plan.RunID
	}
	return eventHeader{Schema: eventSchema, Type: typ, Time: at.UTC().Format(eventTimeFormat), Run: s.redact(run)}
}

func (s *eventStream) batch(b *deploy.Batch) eventBatch {
	out := eventBatch{Index: b.Index, Canary: b.Canary, Hosts: []string{}}
	for _, hp := range b.Hosts {
		out.Hosts = append(out.Hosts, s.redact(hp.Name))
	}
	return out
}

func (s *eventStream) stepStart(ev deploy.Event, phase, name string) stepStartEvent {
	typ := "step-start"
	if ev.Kind == deploy.StepDone || ev.Kind == deploy.RollbackStepDone {
		typ = "step-end"
	}
	rollback := ev.Kind == deploy.RollbackStepStarted || ev.Kind == deploy.RollbackStepDone
	return stepStartEvent{eventHeader: s.header(typ, ev), Host: s.redact(ev.Host), Batch: s.batchOf[ev.Host],
		Phase: s.redact(phase), Step: s.redact(name), Rollback: rollback}
}

func (s *eventStream) names(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = s.redact(n)
	}
	return out
}

// write writes one event, a line; a stdout that cannot be written to
// (a closed pipe) does not change the run.
func (s *eventStream) write(v any) { _ = s.enc.Encode(v) }

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
