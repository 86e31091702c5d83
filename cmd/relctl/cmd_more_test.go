package main

import (
	"os/exec"
	"testing"

	"github.com/relctl/relctl/testenv"
)

func TestNewCmdHistory(t *testing.T) {
	testFlags(t, newCmdHistory, nil, []flagCase[HistoryOptions]{
		{name: "defaults", args: args("--env", "production"), want: HistoryOptions{Env: "production", Format: "text"}},
		{name: "json", args: args("-e", "production", "--output", "json"), want: HistoryOptions{Env: "production", Format: "json"}},
		{name: "no env", args: nil, wantErr: usageNeeds("history", "env")},
		{name: "bad output", args: args("--env", "x", "-o", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}

func TestNewCmdHistoryShow(t *testing.T) {
	testFlags(t, newCmdHistoryShow, []string{"history"}, []flagCase[HistoryShowOptions]{
		{name: "run id", args: args("20261123T114501Z-3f9a1c"), want: HistoryShowOptions{RunID: "20261123T114501Z-3f9a1c", Format: "text"}},
		{name: "from the hosts, json", args: args("20261123T1145", "--env", "production", "--output", "json"),
			want: HistoryShowOptions{RunID: "20261123T1145", Env: "production", Format: "json"}},
		{name: "no run id", args: nil, wantErr: "accepts 1 arg(s), received 0"},
		{name: "two run ids", args: args("a", "b"), wantErr: "accepts 1 arg(s), received 2"},
		{name: "bad output", args: args("a", "-o", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}

func TestNewCmdUnlock(t *testing.T) {
	const needForce = "unlock removes a lock another run may still hold: pass --force and --reason TEXT"
	testFlags(t, newCmdUnlock, nil, []flagCase[UnlockOptions]{
		{name: "force and reason", args: args("--env", "production", "--force", "--reason", "laptop died mid-deploy"),
			want: UnlockOptions{Env: "production", Force: true, Reason: "laptop died mid-deploy"}},
		{name: "some hosts", args: args("-e", "production", "--hosts", "production-2", "--force", "--reason", "broken lock"),
			want: UnlockOptions{Env: "production", Hosts: []string{"production-2"}, Force: true, Reason: "broken lock"}},
		{name: "no env", args: args("--force", "--reason", "x"), wantErr: usageNeeds("unlock", "env")},
		{name: "no force", args: args("--env", "production", "--reason", "x"), wantErr: needForce},
		{name: "no reason", args: args("--env", "production", "--force"), wantErr: needForce},
	})
}

func TestNewCmdParity(t *testing.T) {
	testFlags(t, newCmdParity, nil, []flagCase[ParityOptions]{
		{name: "two environments", args: args("--env", "staging", "--env", "production"),
			want: ParityOptions{Envs: []string{"staging", "production"}, Format: "text"}},
		{name: "every flag", args: args("-e", "staging", "-e", "production", "--playbook", "search", "-o", "json"),
			want: ParityOptions{Envs: []string{"staging", "production"}, Playbook: "search", Format: "json"}},
		{name: "one environment", args: args("--env", "staging"),
			wantErr: "relctl parity compares two environments: give --env twice (got 1), e.g. --env staging --env production"},
		{name: "three environments", args: args("-e", "a", "-e", "b", "-e", "c"),
			wantErr: "relctl parity compares two environments: give --env twice (got 3), e.g. --env staging --env production"},
		{name: "the same twice", args: args("--env", "staging", "--env", "staging"),
			wantErr: "relctl parity: --env staging given twice; name two different environments"},
		{name: "bad output", args: args("-e", "a", "-e", "b", "-o", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}

func TestNewCmdTestenvUp(t *testing.T) {
	_, err := exec.LookPath("monit")
	monitInstalled := err == nil
	testFlags(t, newCmdTestenvUp, []string{"testenv"}, []flagCase[TestenvUpOptions]{
		{name: "defaults", args: args("--dir", "/tmp/relctl-demo"), want: TestenvUpOptions{Dir: "/tmp/relctl-demo", Hosts: 3, Monit: monitInstalled}},
		{name: "every flag", args: args("--dir", "d", "--hosts", "2", "--traffic", "--monit=false"), want: TestenvUpOptions{Dir: "d", Hosts: 2, Traffic: true}},
		{name: "no dir", args: nil, wantErr: "--dir is required"},
		{name: "no hosts", args: args("--dir", "d", "--hosts", "0"), wantErr: "--hosts must be at least 1"},
		{name: "hosts not a number", args: args("--dir", "d", "--hosts", "x"), wantErr: `invalid argument "x" for "--hosts" flag: strconv.ParseInt: parsing "x": invalid syntax`},
	})
}

func TestNewCmdTestenvDown(t *testing.T) {
	testFlags(t, newCmdTestenvDown, []string{"testenv"}, []flagCase[TestenvDownOptions]{
		{name: "dir", args: args("--dir", "/tmp/relctl-demo"), want: TestenvDownOptions{Dir: "/tmp/relctl-demo"}},
		{name: "no dir", args: nil, wantErr: "--dir is required"},
	})
}

func TestNewCmdTestenvStatus(t *testing.T) {
	testFlags(t, newCmdTestenvStatus, []string{"testenv"}, []flagCase[TestenvStatusOptions]{
		{name: "defaults", args: args("--dir", "d"), want: TestenvStatusOptions{Dir: "d", Format: "text"}},
		{name: "json", args: args("--dir", "d", "-o", "json"), want: TestenvStatusOptions{Dir: "d", Format: "json"}},
		{name: "no dir", args: args("-o", "json"), wantErr: "--dir is required"},
		{name: "bad output", args: args("--dir", "d", "-o", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}

func TestNewCmdTestenvFault(t *testing.T) {
	const giveOne = "give --clear, or one or more of --drop-ssh, --hang, --fail-step, --hang-step, --truncate-step, --drop-lines-step, --garbage-step, --never-ends-step, --unreadable"
	testFlags(t, newCmdTestenvFault, []string{"testenv"}, []flagCase[TestenvFaultOptions]{
		{name: "clear", args: args("--dir", "d", "--host", "staging-1", "--clear"), want: TestenvFaultOptions{Dir: "d", Host: "staging-1", Clear: true}},
		{name: "faults combine", args: args("--dir", "d", "--host", "staging-1", "--drop-ssh", "--hang", "--fail-step", "activate/restart", "--hang-step", "verify",
			"--truncate-step", "read-state", "--garbage-step", "upload", "--never-ends-step", "post/prune", "--unreadable", ".relctl/history.json"),
			want: TestenvFaultOptions{Dir: "d", Host: "staging-1", Fault: testenv.FaultSpec{DropSSH: true, Hang: true, FailStep: "activate/restart", HangStep: "verify",
				TruncateStep: "read-state", GarbageStep: "upload", NeverEndsStep: "post/prune", Unreadable: ".relctl/history.json"}}},
		{name: "dropped lines", args: args("--dir", "d", "--host", "h", "--drop-lines-step", "read-state", "--drop-every", "2", "--drop-matching", "^--relctl"),
			want: TestenvFaultOptions{Dir: "d", Host: "h", Fault: testenv.FaultSpec{DropLinesStep: "read-state", DropEvery: 2, DropMatching: "^--relctl"}}},
		{name: "no dir", args: args("--host", "h", "--clear"), wantErr: "--dir is required"},
		{name: "no host", args: args("--dir", "d", "--clear"), wantErr: usageNeeds("testenv fault", "host")},
		{name: "no fault", args: args("--dir", "d", "--host", "h"), wantErr: giveOne},
		{name: "clear and a fault", args: args("--dir", "d", "--host", "h", "--clear", "--hang"), wantErr: giveOne},
		{name: "drop-every alone", args: args("--dir", "d", "--host", "h", "--hang", "--drop-every", "2"), wantErr: "--drop-every and --drop-matching need --drop-lines-step"},
	})
}

func TestNewCmdTestenvServe(t *testing.T) {
	testFlags(t, newCmdTestenvServe, []string{"testenv"}, []flagCase[TestenvServeOptions]{
		{name: "defaults", args: args("--dir", "d"), want: TestenvServeOptions{Dir: "d", Hosts: 3}},
		{name: "every flag", args: args("--dir", "d", "--hosts", "2", testenv.MonitFlag, testenv.TrafficFlag), want: TestenvServeOptions{Dir: "d", Hosts: 2, Monit: true, Traffic: true}},
		{name: "no dir", args: nil, wantErr: "--dir is required"},
	})
}
