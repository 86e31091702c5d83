package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relctl/relctl/deploy"
)

func checkFormat(format string) error {
	switch format {
	case "text", "json":
		return nil
	}
	return usageErrorf("invalid --output %q (use text or json)", format)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cols ...string) { fmt.Fprintln(t.tw, strings.Join(cols, "\t")) }
func (t *table) flush()             { t.tw.Flush() }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func shortDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func pluralES(n int) string {
	if n == 1 {
		return ""
	}
	return "es"
}

// batchHeading is "Batch 2 (canary): web[3-4]", or with the number of
// batches, "Batch 2/3 (canary): web[3-4]" (past hostlist.LineMax, "… and N
// more": a batch lists where it runs).
func batchHeading(b *deploy.Batch, total int) string {
	n := fmt.Sprint(b.Index)
	if total > 0 {
		n += fmt.Sprintf("/%d", total)
	}
	if b.Canary {
		n += " (canary)"
	}
	names := make([]string, len(b.Hosts))
	for i, h := range b.Hosts {
		names[i] = h.Name
	}
	return fmt.Sprintf("Batch %s: %s", n, someHosts(names))
}
