package playbooks

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// gatedConfig is goodConfig plus a production environment whose deploys
// need a rehearsal in staging. Cases replace its production table (lines
// 11-13) or append to it.
const gatedConfig = goodConfig + `
[environments.production]
require_rehearsal = "staging"
allowed_signers = "allowed_signers"

[environments.production.vars]
base_dir = "/srv/search"

[[environments.production.hosts]]
name = "web-11"
address = "127.0.0.1:22011"
roles = ["web"]
`

const productionGate = "require_rehearsal = \"staging\"\nallowed_signers = \"allowed_signers\"\n"

// gated is gatedConfig with production's gate settings replaced.
func gated(settings string) string {
	return strings.Replace(gatedConfig, productionGate, settings, 1)
}

func TestRehearsalConfigProblems(t *testing.T) {
	if !strings.Contains(gatedConfig, "[environments.production]\n"+productionGate) {
		t.Fatal("gatedConfig does not hold productionGate")
	}
	tests := []struct {
		name   string
		config string
		want   string // Problems.Error()
	}{
		{
			name:   "require_rehearsal names a missing environment",
			config: gated("require_rehearsal = \"stagin\"\nallowed_signers = \"allowed_signers\"\n"),
			want:   `relctl.toml:12:1: require_rehearsal names environment "stagin", which relctl.toml does not define (it has: production, staging)`,
		},
		{
			name:   "require_rehearsal names its own environment",
			config: gated("require_rehearsal = \"production\"\nallowed_signers = \"allowed_signers\"\n"),
			want:   `relctl.toml:12:1: environment "production" cannot require a rehearsal in itself`,
		},
		{
			name:   "require_rehearsal without allowed_signers",
			config: gated("require_rehearsal = \"staging\"\n"),
			want:   `relctl.toml:12:1: require_rehearsal needs allowed_signers: the OpenSSH allowed_signers file of the keys trusted to sign rehearsal records`,
		},
		{
			name:   "allowed_signers without require_rehearsal",
			config: gated("allowed_signers = \"allowed_signers\"\n"),
			want:   `relctl.toml:12:1: allowed_signers is only used with require_rehearsal: set require_rehearsal = "<environment>" or remove it`,
		},
		{
			name:   "both problems of a gate on itself without signers",
			config: gated("require_rehearsal = \"production\"\n"),
			want: `relctl.toml:12:1: environment "production" cannot require a rehearsal in itself
relctl.toml:12:1: require_rehearsal needs allowed_signers: the OpenSSH allowed_signers file of the keys trusted to sign rehearsal records`,
		},
		{
			name:   "rehearsal_max_age zero",
			config: gated(productionGate + "rehearsal_max_age = \"0s\"\n"),
			want:   `relctl.toml:14:1: rehearsal_max_age must be more than 0s`,
		},
		{
			name:   "rehearsal_max_age negative",
			config: gated(productionGate + "rehearsal_max_age = \"-1h\"\n"),
			want:   `relctl.toml:14:1: environments.production.rehearsal_max_age: invalid duration "-1h": must not be negative`,
		},
		{
			name:   "rehearsal_max_age not a duration is reported once",
			config: gated(productionGate + "rehearsal_max_age = \"bogus\"\n"),
			want:   `relctl.toml:14:1: environments.production.rehearsal_max_age: invalid duration "bogus" (use a form like "30s" or "1m30s")`,
		},
		{
			name:   "rehearsal_max_age in days is not a Go duration",
			config: gated(productionGate + "rehearsal_max_age = \"7d\"\n"),
			want:   `relctl.toml:14:1: environments.production.rehearsal_max_age: invalid duration "7d" (use a form like "30s" or "1m30s")`,
		},
		{
			name:   "rehearsal_max_age written as a number",
			config: gated(productionGate + "rehearsal_max_age = 168\n"),
			want:   `relctl.toml:14:1: environments.production.rehearsal_max_age: expected a duration string like "30s", got an integer`,
		},
		{
			name:   "rehearsal_max_age on an ungated environment is still checked",
			config: strings.Replace(goodConfig, `project = "search"`, "project = \"search\"\n\n[environments.staging]\nrehearsal_max_age = \"0s\"", 1),
			want:   `relctl.toml:4:1: rehearsal_max_age must be more than 0s`,
		},
		{
			name:   "unknown key in [rehearsal]",
			config: gatedConfig + "\n[rehearsal]\nsigning_key = \"keys/rehearsal\"\nsigner = \"ci@example.com\"\nsigners = [\"ana\"]\n",
			want:   `relctl.toml:26:1: unknown key "signers" in [rehearsal] (did you mean signer?)`,
		},
		{
			name:   "unknown key next to the gate",
			config: gated(productionGate + "require_rehersal = \"staging\"\n"),
			want:   `relctl.toml:14:1: unknown key "require_rehersal" in [environments.production] (did you mean require_rehearsal?)`,
		},
		{
			name:   "require_rehearsal as a list",
			config: gated("require_rehearsal = [\"staging\"]\nallowed_signers = \"allowed_signers\"\n"),
			want:   `relctl.toml:12:21: environments.production.require_rehearsal: expected a string, got a list`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.config == gatedConfig {
				t.Fatal("the case does not change gatedConfig")
			}
			writeProject(t, map[string]string{"relctl.toml": tt.config, "playbooks/web.toml": goodPlaybook})
			_, err := Load("relctl.toml")
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Load: want Problems, got %T %v", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestRehearsalConfigLoads(t *testing.T) {
	tests := []struct {
		name       string
		config     string
		wantMaxAge time.Duration
	}{
		// The allowed_signers file is not written: only the gate reads it, so
		// an on-call laptop without it can still load the config and roll back.
		{"defaults", gatedConfig + "\n[rehearsal]\nsigning_key = \"keys/rehearsal\"\nsigner = \"ci@example.com\"\n", 168 * time.Hour},
		{"explicit rehearsal_max_age", gated(productionGate + "rehearsal_max_age = \"36h\"\n"), 36 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeProject(t, map[string]string{"relctl.toml": tt.config, "playbooks/web.toml": goodPlaybook})
			p, err := Load("relctl.toml")
			if err != nil {
				t.Fatalf("a valid gated config does not load:\n%v", err)
			}
			prod, err := p.Environment("production")
			if err != nil {
				t.Fatal(err)
			}
			if prod.RequireRehearsal != "staging" || prod.AllowedSigners != "allowed_signers" || prod.RehearsalMaxAge.Duration != tt.wantMaxAge {
				t.Errorf("production: require_rehearsal %q, allowed_signers %q, rehearsal_max_age %v; want staging, allowed_signers, %v",
					prod.RequireRehearsal, prod.AllowedSigners, prod.RehearsalMaxAge.Duration, tt.wantMaxAge)
			}
			if got := p.Config.Where("environments.production.allowed_signers"); got != "relctl.toml:13:1" {
				t.Errorf("Where(allowed_signers) = %q; want relctl.toml:13:1 (the gate's refusals point there)", got)
			}
			staging, err := p.Environment("staging")
			if err != nil {
				t.Fatal(err)
			}
			if staging.RequireRehearsal != "" || staging.RehearsalMaxAge.Duration != 168*time.Hour {
				t.Errorf("staging: require_rehearsal %q, rehearsal_max_age %v; want none, 168h", staging.RequireRehearsal, staging.RehearsalMaxAge.Duration)
			}
		})
	}

	writeProject(t, map[string]string{"relctl.toml": gatedConfig + "\n[rehearsal]\nsigning_key = \"keys/rehearsal\"\nsigner = \"ci@example.com\"\n", "playbooks/web.toml": goodPlaybook})
	p, err := Load("relctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Config.Rehearsal; r.SigningKey != "keys/rehearsal" || r.Signer != "ci@example.com" {
		t.Errorf("[rehearsal] = %+v; want signing_key keys/rehearsal, signer ci@example.com", r)
	}
}
