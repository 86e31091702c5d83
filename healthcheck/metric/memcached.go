package metric

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on a memcached stats answer: memcached 1.6 sends about 90 lines
// of under 60 bytes. A server that sends more is not answering `stats`.
const (
	maxStatsLine  = 1024
	maxStatsLines = 1000
	maxStatsBytes = 64 << 10
)

// readMemcached sends `stats` and reads its "STAT name value" lines up to
// "END", on a fresh connection closed when the sample's time is up.
func readMemcached(r reader, s Spec) Sample {
	conn, err := r.dial(r.ctx, "tcp", s.Address)
	if err != nil {
		return Sample{Err: r.classify(err)}
	}
	defer conn.Close()
	// Closing is the one deadline every conn honours (an SSH channel
	// refuses SetDeadline).
	stop := context.AfterFunc(r.ctx, func() { _ = conn.Close() })
	defer stop()
	if dl, ok := r.ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stats, err := readStats(conn)
	if err != nil {
		return Sample{Err: r.classify(err)}
	}
	v, detail, err := fieldValue(stats, s.Field, "stats")
	if err != nil {
		return Sample{Err: err}
	}
	return Sample{Value: v, Detail: detail}
}

// readStats writes `stats` to rw and reads the answer, within the limits
// above.
func readStats(rw io.ReadWriter) (map[string]string, error) {
	if _, err := io.WriteString(rw, "stats\r\n"); err != nil {
		return nil, err
	}
	limited := &io.LimitedReader{R: rw, N: maxStatsBytes}
	br := bufio.NewReaderSize(limited, maxStatsLine)
	stats := map[string]string{}
	for n := 0; ; n++ {
		if n == maxStatsLines {
			return nil, failf(ErrProtocol, fmt.Sprintf("stats answer has more than %d lines without END", maxStatsLines))
		}
		raw, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, failf(ErrProtocol, fmt.Sprintf("stats answer has a line longer than %d bytes", maxStatsLine))
		case errors.Is(err, io.EOF) && limited.N == 0:
			return nil, failf(ErrProtocol, fmt.Sprintf("stats answer is larger than %d bytes without END", maxStatsBytes))
		case errors.Is(err, io.EOF):
			if len(stats) == 0 && len(raw) == 0 {
				return nil, failf(ErrProtocol, "connection closed before any answer to stats")
			}
			return nil, failf(ErrProtocol, "connection closed before the stats answer's END")
		case err != nil:
			return nil, err
		}
		line := string(bytes.TrimRight(raw, "\r\n"))
		switch {
		case line == "END":
			return stats, nil
		case strings.HasPrefix(line, "STAT "):
			parts := strings.SplitN(line, " ", 3)
			if len(parts) != 3 || parts[1] == "" {
				return nil, failf(ErrProtocol, fmt.Sprintf("stats answer has a malformed line: %q", truncate(line, 60)))
			}
			stats[parts[1]] = parts[2]
		case line == "ERROR" || strings.HasPrefix(line, "CLIENT_ERROR") || strings.HasPrefix(line, "SERVER_ERROR"):
			return nil, failf(ErrProtocol, "memcached refused stats: "+oneLine(line))
		default:
			return nil, failf(ErrProtocol, fmt.Sprintf("not a memcached stats answer: %q", truncate(oneLine(line), 60)))
		}
	}
}

// fieldValue is field's number from fields (INFO or stats), or the ratio
// of two for "NAME/OTHER"; detail names a ratio's parts.
func fieldValue(fields map[string]string, field, what string) (float64, string, error) {
	get := func(name string) (float64, error) {
		raw, ok := fields[name]
		if !ok {
			return 0, failf(ErrNoField, fmt.Sprintf("%s has no field %q", what, name))
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil {
			return 0, failf(ErrNotNumber, fmt.Sprintf("%s field %s is %q, not a number", what, name, truncate(oneLine(raw), 40)))
		}
		return v, nil
	}
	num, den, ratio := strings.Cut(field, "/")
	n, err := get(num)
	if err != nil || !ratio {
		return n, "", err
	}
	d, err := get(den)
	if err != nil {
		return 0, "", err
	}
	if d == 0 {
		return 0, "", failf(ErrNoLimit, fmt.Sprintf("%s is 0 (no limit set?), so %s has no meaning: set a limit, or compare %s with max", den, field, num))
	}
	return n / d, fmt.Sprintf("%s %s of %s %s", num, fmtNum(n), den, fmtNum(d)), nil
}
