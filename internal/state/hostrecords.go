package state

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/transport"
	"github.com/rs/zerolog"
)

// RunsDir holds the host's run summaries, one <runid>.json per run.
func (l Layout) RunsDir() string { return path.Join(l.StateDir(), "runs") }

// maxHostRunSummaries bounds what each host keeps.
const maxHostRunSummaries = 50

// AppendHistoryEvent adds ev to the host's history.json. The file is read,
// extended and written back (temp file + rename) only if it did not change in
// between, so a concurrent writer is retried rather than overwritten.
func AppendHistoryEvent(ctx context.Context, conn transport.Conn, layout Layout, ev HistoryEvent) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	hist := layout.HistoryFile()
	const attempts = 5
	for range attempts {
		res, err := conn.Run(ctx, fmt.Sprintf(`if [ -f %[1]s ]; then echo present; cat %[1]s; else echo absent; fi`, Quote(hist)), transport.RunOptions{Label: "read history"})
		if err != nil {
			return err
		}
		word, raw := firstLine(res.Stdout)
		want := "absent"
		var h History
		switch word {
		case "absent":
		case "present":
			sum := sha256.Sum256(raw)
			want = hex.EncodeToString(sum[:])
			if strings.TrimSpace(string(raw)) != "" {
				if err := json.Unmarshal(raw, &h); err != nil {
					return fmt.Errorf("%s is not valid JSON: %w", hist, err)
				}
			}
		default:
			return fmt.Errorf("unexpected output reading %s: %q", hist, truncate(string(res.Stdout), 200))
		}
		h.Events = append(h.Events, ev)
		body, err := json.MarshalIndent(h, "", "  ")
		if err != nil {
			return err
		}
		tmp := hist + ".tmp.event." + randomSuffix()
		script := fmt.Sprintf(`mkdir -p %[1]s || exit 1
if [ -f %[2]s ]; then set -- $(sha256sum < %[2]s); else set -- absent; fi
[ "$1" = %[3]s ] || { echo changed; exit 0; }
cat > %[4]s && mv -f %[4]s %[2]s && echo written`, Quote(layout.StateDir()), Quote(hist), Quote(want), Quote(tmp))
		res, err = conn.Run(ctx, script, transport.RunOptions{Label: "write history", Stdin: strings.NewReader(string(body) + "\n")})
		if err != nil {
			return err
		}
		switch word, _ := firstLine(res.Stdout); word {
		case "written":
			return nil
		case "changed":
			continue
		default:
			return fmt.Errorf("unexpected output writing %s: %q", hist, truncate(string(res.Stdout), 200))
		}
	}
	return fmt.Errorf("%s kept changing while an event was added; try again", hist)
}

// HostRunSummary is a host's own record of one run: <base>/.relctl/runs/<runid>.json.
type HostRunSummary struct {
	RunID      string       `json:"run_id"`
	Env        string       `json:"env"`
	Command    string       `json:"command"`
	Release    string       `json:"release,omitempty"`
	From       string       `json:"from,omitempty"`
	Operator   string       `json:"operator"`
	Controller string       `json:"controller"`
	Started    time.Time    `json:"started"`
	Finished   time.Time    `json:"finished"`
	Result     string       `json:"result"`
	Host       string       `json:"host"`
	Steps      []StepRecord `json:"steps,omitempty"`
}

// StepRecord is one step of a run on one host.
type StepRecord struct {
	Phase   string        `json:"phase"`
	Name    string        `json:"name"`
	Status  string        `json:"status"`
	Detail  string        `json:"detail,omitempty"`
	Error   string        `json:"error,omitempty"`
	Started time.Time     `json:"started,omitzero"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// WriteHostRunSummary stores s on the host (temp file + rename) and keeps
// only the newest maxHostRunSummaries summaries; run ids sort by time.
func WriteHostRunSummary(ctx context.Context, conn transport.Conn, layout Layout, s HostRunSummary) error {
	if err := checkRunID(s.RunID); err != nil {
		return err
	}
	body, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := layout.RunsDir()
	tmp := path.Join(dir, ".tmp."+s.RunID)
	final := path.Join(dir, s.RunID+".json")
	script := fmt.Sprintf(`set -e
mkdir -p %[1]s
cat > %[2]s
mv -f %[2]s %[3]s
cd %[1]s
ls -1 | grep '\.json$' | sort -r | sed 1,%[4]dd | while IFS= read -r f; do rm -f -- "$f"; done`,
		Quote(dir), Quote(tmp), Quote(final), maxHostRunSummaries)
	_, err = conn.Run(ctx, script, transport.RunOptions{Label: "write run summary", Stdin: strings.NewReader(string(body) + "\n")})
	return err
}

const markSummary = "--relctl-run-summary--"

// ReadHostRunSummaries returns every run summary on the host, newest first.
// A summary that does not parse is skipped (and logged): one damaged file
// must not hide the others.
func ReadHostRunSummaries(ctx context.Context, conn transport.Conn, layout Layout) ([]HostRunSummary, error) {
	script := fmt.Sprintf(`cd %[1]s 2>/dev/null || exit 0
for f in *.json; do [ -f "$f" ] || continue; echo %[2]s; cat "$f"; echo; done`, Quote(layout.RunsDir()), markSummary)
	res, err := conn.Run(ctx, script, transport.RunOptions{Label: "read run summaries"})
	if err != nil {
		return nil, err
	}
	log := zerolog.Ctx(ctx)
	var out []HostRunSummary
	for _, part := range strings.Split(string(res.Stdout), markSummary+"\n") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var s HostRunSummary
		if err := json.Unmarshal([]byte(part), &s); err != nil {
			log.Warn().Str("host", conn.Host()).Err(err).Msg("skipping an unreadable run summary")
			continue
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].RunID > out[j].RunID
	})
	return out, nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ReadHostState reads a host's release state (current, releases, history)
// in one command.
func ReadHostState(ctx context.Context, conn transport.Conn, l Layout, label string) (*HostState, error) {
	res, err := conn.Run(ctx, l.ReadScript(), transport.RunOptions{Label: label})
	if err != nil {
		return nil, err
	}
	return ParseHostState(string(res.Stdout))
}
