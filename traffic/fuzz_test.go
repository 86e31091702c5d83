package traffic

import (
	"os"
	"testing"
)

// The parsers of HAProxy's answers never panic: any answer is servers or
// an error. Seeds: the committed capture from a real HAProxy 2.6, and the
// hostile answers in testdata/fuzz.

func FuzzParseServersState(f *testing.F) {
	if b, err := os.ReadFile(sampleState); err == nil {
		f.Add(string(b))
	}
	f.Add("1\n" + stateHeader + "3 app 1 web-1 10.0.0.1 2 0 10 10 12 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n")
	f.Add("1\n# srv_port srv_uweight srv_admin_state srv_op_state srv_addr srv_name be_name\n80 5 16 3 ::1 s b\n")
	f.Add("Can't find backend.\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, answer string) {
		servers, err := parseServersState(answer)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range servers {
			switch {
			case s.Admin != adminState(s.AdminBits):
				t.Fatalf("%+v: admin %q from bits %#x", s, s.Admin, s.AdminBits)
			case s.Port < 0 || s.Port > 65535 || s.Weight < 0 || s.Weight > maxWeight || s.AdminBits < 0 || s.AdminBits > maxAdminBits || s.Operational < 0 || s.Operational > 3:
				t.Fatalf("out of range: %+v", s)
			case s.Backend == "" || s.Name == "" || s.Addr == "":
				t.Fatalf("empty name: %+v", s)
			case seen[s.Backend+"/"+s.Name]:
				t.Fatalf("%s/%s twice", s.Backend, s.Name)
			}
			seen[s.Backend+"/"+s.Name] = true
		}
	})
}

func FuzzParseShowStat(f *testing.F) {
	if b, err := os.ReadFile(sampleStat); err == nil {
		f.Add(string(b))
	}
	const header = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,\n"
	f.Add(header + "fe,FRONTEND,,,3,5,100,9,OPEN,,\napp,web-1,0,0,2,4,,7,UP,10,\napp,BACKEND,0,0,2,4,10,9,UP,30,\n")
	f.Add("No such proxy.\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, answer string) {
		rows, err := parseStat(answer)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range rows {
			switch {
			case r.Sessions < 0 || r.Queued < 0:
				t.Fatalf("negative count: %+v", r)
			case r.Server == "FRONTEND" || r.Server == "BACKEND":
				t.Fatalf("summary row kept: %+v", r)
			case seen[r.Backend+"/"+r.Server]:
				t.Fatalf("%s/%s twice", r.Backend, r.Server)
			}
			seen[r.Backend+"/"+r.Server] = true
		}
	})
}
