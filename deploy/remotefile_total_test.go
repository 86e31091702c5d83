package deploy

import (
	"errors"
	"strings"
	"testing"

	"github.com/relctl/relctl/internal/state"
)

func TestParseRemoteFile(t *testing.T) {
	const p = "/etc/monit/conf.d/search"
	tests := []struct {
		name     string
		out      string
		want     *savedFile
		wantErr  string
		wantKind error
	}{
		{name: "present", out: "--relctl-file-- present 4 640\nabc\n\n--relctl-end--\n", want: &savedFile{present: true, body: []byte("abc\n"), mode: 0o640}},
		{name: "present, no newline at its end", out: "--relctl-file-- present 3 644\nabc\n--relctl-end--\n", want: &savedFile{present: true, body: []byte("abc"), mode: 0o644}},
		{name: "mode unknown is 0600", out: "--relctl-file-- present 0 -\n\n--relctl-end--\n", want: &savedFile{present: true, body: []byte{}, mode: 0o600}},
		{name: "setuid bits are dropped", out: "--relctl-file-- present 0 4755\n\n--relctl-end--\n", want: &savedFile{present: true, body: []byte{}, mode: 0o755}},
		{name: "absent", out: "--relctl-file-- absent\n--relctl-end--\n", want: &savedFile{mode: 0o600}},
		{name: "a directory", out: "--relctl-file-- unreadable directory\n--relctl-end--\n", wantErr: p + " is a directory; move it aside (mv '" + p + "' '" + p + ".broken')", wantKind: state.ErrHostState},
		{name: "parent not searchable", out: "--relctl-file-- unreadable cannot-search 1\n--relctl-end--\n", wantErr: "/etc/monit cannot be searched by the SSH user, so " + p + " cannot be read", wantKind: state.ErrHostState},
		{name: "the old format: a malformed header is not a file", out: "present 644\ncheck process x\n", wantErr: "expected the --relctl-file-- line", wantKind: state.ErrHostOutput},
		{name: "empty output", out: "", wantErr: "ends early", wantKind: state.ErrHostOutput},
		{name: "garbage", out: "\x00\xff\n", wantErr: "expected the --relctl-file-- line", wantKind: state.ErrHostOutput},
		{name: "cut short", out: "--relctl-file-- present 40 644\nabc", wantErr: "40 bytes announced", wantKind: state.ErrHostOutput},
		{name: "a line dropped", out: "--relctl-file-- present 8 644\nabc\n\n--relctl-end--\n", wantErr: "8 bytes announced", wantKind: state.ErrHostOutput},
		{name: "end marker missing", out: "--relctl-file-- absent\n", wantErr: "ends early", wantKind: state.ErrHostOutput},
		{name: "output after the end", out: "--relctl-file-- absent\n--relctl-end--\nmore\n", wantErr: "after the end marker", wantKind: state.ErrHostOutput},
		{name: "size not a number", out: "--relctl-file-- present x 644\n", wantErr: "not a file size", wantKind: state.ErrHostOutput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRemoteFile(p, []byte(tt.out))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, tt.wantKind) {
					t.Fatalf("err = %v, want %q (%v)", err, tt.wantErr, tt.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.present != tt.want.present || string(got.body) != string(tt.want.body) || got.mode != tt.want.mode {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseMoveAndTrafficRecords(t *testing.T) {
	const mp, tp = "/srv/search/.relctl/move.json", "/srv/search/.relctl/traffic.json"
	for _, tt := range []struct {
		name, body, wantErr string
		traffic             bool
	}{
		{name: "move record", body: `{"release":"1.1.0","state":"cut-over"}`},
		{name: "move: empty", body: "", wantErr: mp + " is empty"},
		{name: "move: garbage", body: "\x00", wantErr: mp + ": not valid JSON at byte 1"},
		{name: "move: truncated", body: `{"release":"1.1.0","sta`, wantErr: mp + ": not valid JSON at byte"},
		{name: "move: null", body: "null", wantErr: mp + ": holds null, not a JSON object"},
		{name: "move: unknown state", body: `{"release":"1.1.0","state":"sideways"}`, wantErr: mp + `: unknown move state "sideways"`},
		{name: "move: no release", body: `{"state":"cut-over"}`, wantErr: mp + ": no release"},
		{name: "traffic record", body: `{"run_id":"r","servers":{"lb":{"name":"s","weight":3}}}`, traffic: true},
		{name: "traffic: wrong type", body: `{"servers":{"lb":{"port":"x"}}}`, wantErr: tp + ": unexpected JSON at byte", traffic: true},
		{name: "traffic: two objects", body: `{}{}`, wantErr: tp + ": not valid JSON at byte 3", traffic: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.traffic {
				_, err = parseTrafficRecord(tp, []byte(tt.body))
			} else {
				_, err = parseMoveRecord(mp, []byte(tt.body))
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, state.ErrHostState) || !strings.Contains(err.Error(), "then re-run") {
				t.Fatalf("err = %v, want %q with a fix", err, tt.wantErr)
			}
		})
	}
}
