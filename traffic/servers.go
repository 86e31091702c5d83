package traffic

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Admin states, as `set server <b>/<s> state` takes them.
const (
	AdminReady = "ready"
	AdminDrain = "drain"
	AdminMaint = "maint"
)

// srv_admin_state bits (HAProxy 2.6 include/haproxy/server-t.h, enum srv_admin).
// F* are forced through the CLI (what relctl sets), I* inherited from a
// tracked server, C* from the configuration (`disabled`), R* from a failed
// DNS resolution.
const (
	admFMaint = 0x01
	admIMaint = 0x02
	admCMaint = 0x04
	admFDrain = 0x08
	admIDrain = 0x10
	admRMaint = 0x20

	// admMaint is HAProxy's own SRV_ADMF_MAINT mask. CMAINT is not in it:
	// it only records that the configuration said `disabled`, and stays set
	// after `set server ... state ready` while the server takes traffic.
	admMaint = admFMaint | admIMaint | admRMaint
	admDrain = admFDrain | admIDrain
)

// adminState maps srv_admin_state bits to ready/drain/maint as HAProxy's
// stats do: any of FMAINT|IMAINT|RMAINT is maint; otherwise any of
// FDRAIN|IDRAIN is drain; otherwise ready (CMAINT alone included).
func adminState(bits int) string {
	switch {
	case bits&admMaint != 0:
		return AdminMaint
	case bits&admDrain != 0:
		return AdminDrain
	default:
		return AdminReady
	}
}

// Server is one server of a backend as `show servers state` reports it
// (HAProxy 2.6 format 1), with its sessions and check status from `show stat`.
type Server struct {
	Backend string `json:"backend"`
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	Port    int    `json:"port"`
	// Admin is "ready", "drain" or "maint", from AdminBits: maint when any of
	// FMAINT (0x01, forced), IMAINT (0x02, inherited from a tracked server)
	// or RMAINT (0x20, DNS resolution failed) is set; else drain when
	// FDRAIN (0x08) or IDRAIN (0x10) is set; else ready. CMAINT (0x04,
	// `disabled` in the configuration) alone is ready: HAProxy keeps it set
	// after the server was enabled.
	Admin string `json:"admin"`
	// AdminBits is srv_admin_state as HAProxy reports it. Restore puts back
	// its forced bits; the inherited ones follow the tracked server.
	AdminBits int `json:"admin_bits"`
	// Operational is srv_op_state (0 stopped, 1 starting, 2 running, 3 stopping).
	Operational int    `json:"operational"`
	Weight      int    `json:"weight"`          // srv_uweight: the user-set weight
	Sessions    int    `json:"sessions"`        // current sessions (scur) from `show stat`
	Queued      int    `json:"queued"`          // requests queued for this server (qcur) from `show stat`
	Check       string `json:"check,omitempty"` // status from `show stat` (UP, DOWN, MAINT, no check, ...)
}

// forcedAdmin is the state to send with `set server ... state` to get this
// server's admin state back: its forced bits decide. A server that is maint
// or drain only by inheritance gets ready (nothing was forced on it). A
// Server built without bits (AdminBits 0) is taken at its Admin word.
func (s Server) forcedAdmin() string {
	switch {
	case s.AdminBits&admFMaint != 0:
		return AdminMaint
	case s.AdminBits&admFDrain != 0:
		return AdminDrain
	case s.AdminBits != 0:
		return AdminReady
	case s.Admin == "":
		return AdminReady
	default:
		return s.Admin
	}
}

// serversStateFormat is the only `show servers state` format HAProxy 2.6 writes.
const serversStateFormat = "1"

// errNotAnAnswer marks output that is not the table asked for: HAProxy
// said something else (an error) in its place.
var errNotAnAnswer = errors.New("not a table")

// parseServersState reads the answer to `show servers state [<backend>]`:
// a format line "1", a "# be_id be_name ..." header naming the columns,
// then one space-separated line per server. Columns are found by name.
func parseServersState(answer string) ([]Server, error) {
	lines := nonEmptyLines(answer)
	if len(lines) == 0 {
		return nil, errNotAnAnswer
	}
	if _, err := strconv.Atoi(lines[0]); err != nil {
		return nil, errNotAnAnswer
	}
	if lines[0] != serversStateFormat {
		return nil, fmt.Errorf("show servers state: format line %q, want %q (HAProxy 2.x)", lines[0], serversStateFormat)
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		return nil, errors.New("show servers state: no column header after the format line")
	}
	cols, err := columns(strings.Fields(strings.TrimPrefix(lines[1], "# ")),
		"be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight", "srv_port")
	if err != nil {
		return nil, fmt.Errorf("show servers state: %w", err)
	}
	servers := make([]Server, 0, len(lines)-2)
	seen := map[string]bool{}
	for i, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) != len(cols.names) {
			return nil, fmt.Errorf("show servers state: line %d has %d fields, the header %d: %q", i+3, len(f), len(cols.names), line)
		}
		s := Server{
			Backend: f[cols.index["be_name"]],
			Name:    f[cols.index["srv_name"]],
			Addr:    f[cols.index["srv_addr"]],
		}
		ints := []struct {
			col string
			dst *int
			max int
		}{
			{"srv_op_state", &s.Operational, 3},
			{"srv_admin_state", &s.AdminBits, maxAdminBits},
			{"srv_uweight", &s.Weight, maxWeight},
			{"srv_port", &s.Port, 65535},
		}
		for _, n := range ints {
			raw := f[cols.index[n.col]]
			v, err := count(raw)
			if err != nil {
				return nil, fmt.Errorf("show servers state: server %s/%s: %s %q is not a number", s.Backend, s.Name, n.col, raw)
			}
			if v > n.max {
				return nil, fmt.Errorf("show servers state: server %s/%s: %s %d is more than %d", s.Backend, s.Name, n.col, v, n.max)
			}
			*n.dst = v
		}
		// A line repeated (or a server listed twice) is not HAProxy's answer.
		if seen[s.Backend+"/"+s.Name] {
			return nil, fmt.Errorf("show servers state: server %s/%s is listed twice", s.Backend, s.Name)
		}
		seen[s.Backend+"/"+s.Name] = true
		s.Admin = adminState(s.AdminBits)
		servers = append(servers, s)
	}
	return servers, nil
}

// Bounds of what show servers state reports: srv_uweight is 0..256, and
// srv_admin_state holds the bits of enum srv_admin (up to HMAINT, 0x40).
const (
	maxWeight    = 256
	maxAdminBits = 0xff
)

// count reads a non-negative decimal number as HAProxy prints it: digits
// only (no sign), at most 10 of them.
func count(s string) (int, error) {
	if s == "" || len(s) > 10 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a count")
	}
	return strconv.Atoi(s)
}

// statRow is what relctl reads of one server's `show stat` line.
type statRow struct {
	Backend  string
	Server   string
	Sessions int    // scur
	Queued   int    // qcur
	Status   string // status
}

// parseStat reads the answer to `show stat`: CSV with a "# pxname,svname,..."
// header. Frontend and backend summary rows are skipped. Columns are found by name.
func parseStat(answer string) ([]statRow, error) {
	lines := nonEmptyLines(answer)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, errNotAnAnswer
	}
	cols, err := columns(strings.Split(strings.TrimPrefix(lines[0], "# "), ","),
		"pxname", "svname", "qcur", "scur", "status")
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	var rows []statRow
	seen := map[string]bool{}
	for i, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) < len(cols.names) {
			return nil, fmt.Errorf("show stat: line %d has %d fields, the header %d", i+2, len(f), len(cols.names))
		}
		row := statRow{
			Backend: f[cols.index["pxname"]],
			Server:  f[cols.index["svname"]],
			Status:  f[cols.index["status"]],
		}
		if row.Server == "FRONTEND" || row.Server == "BACKEND" {
			continue
		}
		for _, n := range []struct {
			col string
			dst *int
		}{{"scur", &row.Sessions}, {"qcur", &row.Queued}} {
			raw := f[cols.index[n.col]]
			v, err := count(raw)
			if err != nil {
				return nil, fmt.Errorf("show stat: server %s/%s: %s %q is not a number", row.Backend, row.Server, n.col, raw)
			}
			*n.dst = v
		}
		if seen[row.Backend+"/"+row.Server] {
			return nil, fmt.Errorf("show stat: server %s/%s is listed twice", row.Backend, row.Server)
		}
		seen[row.Backend+"/"+row.Server] = true
		rows = append(rows, row)
	}
	return rows, nil
}

type columnSet struct {
	names []string
	index map[string]int
}

// columns indexes a header and checks that it has every column relctl reads.
func columns(names []string, required ...string) (columnSet, error) {
	// show stat's header ends with a comma: its last "name" is empty.
	for len(names) > 0 && names[len(names)-1] == "" {
		names = names[:len(names)-1]
	}
	cs := columnSet{names: names, index: make(map[string]int, len(names))}
	for i, n := range names {
		if _, dup := cs.index[n]; !dup {
			cs.index[n] = i
		}
	}
	var missing []string
	for _, r := range required {
		if _, ok := cs.index[r]; !ok {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return cs, fmt.Errorf("header lacks column(s) %s", strings.Join(missing, ", "))
	}
	return cs, nil
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
