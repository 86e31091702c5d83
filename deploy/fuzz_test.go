package deploy

import (
	"errors"
	"github.com/relctl/relctl/internal/fleet"
	"testing"

	"github.com/relctl/relctl/internal/state"
)

// The readers of on-host files never panic, and every error names the file
// (state.ErrHostState, with its path and fix) or says the output was not the
// read script's (state.ErrHostOutput).

func checkFileErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var se *state.StateError
	switch {
	case errors.As(err, &se):
		if se.Path == "" || se.Fix == "" {
			t.Fatalf("StateError without path or fix: %#v", se)
		}
	case errors.Is(err, state.ErrHostOutput):
	default:
		t.Fatalf("untyped error %T: %v", err, err)
	}
}

func FuzzReadRemoteFileOutput(f *testing.F) {
	f.Add([]byte("--relctl-file-- present 21 600\ncheck process search\n\n--relctl-end--\n"))
	f.Add([]byte("--relctl-file-- absent\n--relctl-end--\n"))
	f.Add([]byte("--relctl-file-- unreadable directory\n--relctl-end--\n"))
	f.Add([]byte("present 644\nold format\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		const p = "/etc/monit/conf.d/search"
		sf, err := fleet.ParseFile(p, out)
		checkFileErr(t, err)
		if err != nil {
			return
		}
		if sf.Mode > 0o777 || (!sf.Present && len(sf.Body) != 0) {
			t.Fatalf("%+v", sf)
		}
	})
}

func FuzzParseMoveRecord(f *testing.F) {
	f.Add([]byte(`{"run_id":"r1","playbook":"move","release":"1.1.0","from_role":"search","old_hosts":["a"],"new_hosts":["b"],"state":"cut-over","time":"2026-01-01T00:00:00Z",` +
		`"servers":[{"lb":"lb-1","saved":{"backend":"search","name":"a","addr":"127.0.0.1","port":8080,"admin":"ready","admin_bits":0,"operational":2,"weight":10,"sessions":0,"queued":0}}],` +
		`"dependents":[{"host":"app-1","config":"/etc/app.conf","existed":true,"mode":420,"copy":"/etc/app.conf.relctl-before-r1"}],"history":{"cut-over":"r1"}}`))
	f.Add([]byte(`{"state":"cutting-over","release":"1.0.0"}`))
	f.Add([]byte("null"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, body []byte) {
		const p = "/srv/search/.relctl/move.json"
		rec, err := parseMoveRecord(p, body)
		checkFileErr(t, err)
		if err == nil && (rec.Release == "" || rec.State == "") {
			t.Fatalf("accepted %+v", rec)
		}
	})
}

func FuzzParseTrafficRecord(f *testing.F) {
	f.Add([]byte(`{"run_id":"r1","servers":{"lb-1":{"backend":"search","name":"staging-1","addr":"127.0.0.1","port":8080,"admin":"ready","admin_bits":0,"operational":2,"weight":10}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"servers":null}`))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		const p = "/srv/search/.relctl/traffic.json"
		rec, err := parseTrafficRecord(p, body)
		checkFileErr(t, err)
		if err == nil {
			_, _ = rec.server("lb-1")
		}
	})
}
