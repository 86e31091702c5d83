package rollback

import (
	"encoding/json"
	"testing"
)

// FuzzParseRecord: a rehearsal record read from any host gives a record or
// an error, never a panic; what it accepts has the current format and
// survives a round trip.
func FuzzParseRecord(f *testing.F) {
	for _, seed := range []string{
		`{"format":"relctl-rehearsal/v1","project":"search","environment":"staging","playbook":"search","release":"1.1.0","release_digest":"ab","artifact_sha256":"cd","from_version":"1.0.0","to_version":"1.1.0","environment_fingerprint":null,"environment_fingerprint_digest":"","fail_points":["verify"],"result":"passed","cycles":[],"relctl_version":"dev","started":"2026-12-07T10:00:00Z","finished":"2026-12-07T10:01:00Z","operator":"ci","controller":"ci-1","signer":"relctl-testenv"}`,
		`{"format":"relctl-rehearsal/v2"}`,
		`{"format":"relctl-rehearsal/v1","unknown":1}`,
		`{"format":"relctl-rehearsal/v1","cycles":[{}],"forward":{}}`,
		`{"format":"relctl-rehearsal/v1","started":"yesterday"}`,
		`[]`, `null`, `{`, "\x00", ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec, err := ParseRecord(body)
		if err != nil {
			return
		}
		if rec == nil || rec.Format != RecordFormat {
			t.Fatalf("accepted %q as %+v", body, rec)
		}
		again, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("marshal an accepted record: %v", err)
		}
		if _, err := ParseRecord(again); err != nil {
			t.Fatalf("an accepted record does not read back: %v\n%s", err, again)
		}
	})
}
