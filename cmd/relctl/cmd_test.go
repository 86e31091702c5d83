package main

import (
	"io"
	"reflect"
	"testing"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/output"
)

// The command tests below check each command's flag parsing through runF:
// which flags land in which option, and which combinations are usage
// errors (exit 2) with which message. No host, no relctl.toml.

// flagCase is one command line: the options it parses into (their flags
// only: the factory's fields are checked to be set, not compared), or the
// usage error it is, exactly.
type flagCase[O any] struct {
	name    string
	args    []string
	want    O
	wantErr string
}

// testFlags runs each case's args through newCmd mounted under parents
// (below relctl, as newRootCmd mounts it).
func testFlags[O any](t *testing.T, newCmd func(*Factory, func(*O) error) *cobra.Command, parents []string, cases []flagCase[O]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &Factory{IOStreams: output.Test(nil, io.Discard, io.Discard), Stop: make(chan struct{})}
			var got *O
			err := execCmd(newCmd(f, func(o *O) error { got = o; return nil }), parents, tc.args...)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || exitCode(output.Test(nil, io.Discard, io.Discard), err) != exitUsage {
					t.Fatalf("error %v, want the usage error %q", err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("runF ran despite the usage error")
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if got == nil {
				t.Fatal("runF did not run")
			}
			checkFactoryFields(t, f, *got)
			if g, w := flagsOnly(*got), flagsOnly(tc.want); !reflect.DeepEqual(g, w) {
				t.Errorf("options\n%+v\nwant\n%+v", g, w)
			}
		})
	}
}

// execCmd runs cmd under relctl and parents with args, as main does: a
// flag error is a usage error.
func execCmd(cmd *cobra.Command, parents []string, args ...string) error {
	root := &cobra.Command{Use: "relctl", SilenceUsage: true, SilenceErrors: true}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	parent := root
	for _, name := range parents {
		p := &cobra.Command{Use: name}
		parent.AddCommand(p)
		parent = p
	}
	parent.AddCommand(cmd)
	root.SetArgs(append(append(append([]string{}, parents...), cmd.Name()), args...))
	return root.Execute()
}

// flagsOnly is o without the fields a Factory fills in (funcs, streams,
// channels), which reflect.DeepEqual cannot compare.
func flagsOnly(o any) any {
	v := reflect.New(reflect.TypeOf(o)).Elem()
	v.Set(reflect.ValueOf(o))
	for i := 0; i < v.NumField(); i++ {
		switch v.Field(i).Kind() {
		case reflect.Func, reflect.Chan, reflect.Pointer, reflect.Interface:
			v.Field(i).SetZero()
		}
	}
	return v.Interface()
}

// checkFactoryFields: the options carry the factory's streams and stop
// channel, and every function the run needs.
func checkFactoryFields(t *testing.T, f *Factory, o any) {
	t.Helper()
	v := reflect.ValueOf(o)
	for i := 0; i < v.NumField(); i++ {
		name, field := v.Type().Field(i).Name, v.Field(i)
		switch {
		case name == "IO" && field.Interface() != f.IOStreams:
			t.Errorf("IO is not the factory's streams")
		case name == "Stop" && field.Interface() != f.Stop:
			t.Errorf("Stop is not the factory's stop channel")
		case field.Kind() == reflect.Func && field.IsNil():
			t.Errorf("%s is not set", name)
		}
	}
}

func args(s ...string) []string { return s }

func usageNeeds(command, flag string) string {
	return "relctl " + command + " needs --" + flag + " (see `relctl " + command + " --help`)"
}

func TestNewCmdDeploy(t *testing.T) {
	testFlags(t, newCmdDeploy, nil, []flagCase[DeployOptions]{
		{name: "env and release", args: args("--env", "staging", "--release", "1.1.0"),
			want: DeployOptions{releaseFlags: releaseFlags{Env: "staging", Release: "1.1.0"}, viewFlags: textView}},
		{name: "every flag", args: args("-e", "production", "-r", "1.1.0", "--playbook", "search", "--hosts", "production-1,production-2", "-y", "--prove-supervision", "-v", "-o", "json"),
			want: DeployOptions{releaseFlags: releaseFlags{Env: "production", Release: "1.1.0", Playbook: "search", Hosts: []string{"production-1", "production-2"}},
				Yes: true, ProveSupervision: true, viewFlags: viewFlags{Verbose: true, Output: "json"}}},
		{name: "resume needs no release", args: args("--env", "production", "--resume", "--yes"),
			want: DeployOptions{releaseFlags: releaseFlags{Env: "production"}, Resume: true, Yes: true, viewFlags: textView}},
		{name: "skip the rehearsal gate", args: args("--env", "production", "--release", "1.1.1", "--skip-rehearsal", "--reason", "hotfix for INC-123"),
			want: DeployOptions{releaseFlags: releaseFlags{Env: "production", Release: "1.1.1"}, SkipRehearsal: true, Reason: "hotfix for INC-123", viewFlags: textView}},
		{name: "no env", args: args("--release", "1.1.0"), wantErr: usageNeeds("deploy", "env")},
		{name: "no release", args: args("--env", "staging"), wantErr: usageNeeds("deploy", "release")},
		{name: "skip without reason", args: args("--env", "staging", "-r", "1", "--skip-rehearsal"),
			wantErr: "--skip-rehearsal and --reason go together: say why the rehearsal gate is skipped (it is written to every host's history)"},
		{name: "reason without skip", args: args("--env", "staging", "-r", "1", "--reason", "x"),
			wantErr: "--skip-rehearsal and --reason go together: say why the rehearsal gate is skipped (it is written to every host's history)"},
		{name: "unknown output", args: args("--env", "staging", "-r", "1", "--output", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
		{name: "unknown flag", args: args("--env", "staging", "--bogus"), wantErr: "unknown flag: --bogus"},
		{name: "an argument", args: args("staging"), wantErr: `unknown command "staging" for "relctl deploy"`},
	})
}

// textView is -v and --output as a command line without them sets them.
var textView = viewFlags{Output: "text"}

func TestNewCmdRollback(t *testing.T) {
	testFlags(t, newCmdRollback, nil, []flagCase[RollbackOptions]{
		{name: "to prev", args: args("--env", "production", "--to", "prev"),
			want: RollbackOptions{Env: "production", To: "prev", viewFlags: textView}},
		{name: "every flag", args: args("-e", "production", "--to", "1.1.0", "--playbook", "search", "--hosts", "production-2,production-3", "--parallel", "all", "-y", "--dry-run", "--verbose", "--output", "json"),
			want: RollbackOptions{Env: "production", To: "1.1.0", Playbook: "search", Hosts: []string{"production-2", "production-3"}, Parallel: "all", Yes: true, DryRun: true,
				viewFlags: viewFlags{Verbose: true, Output: "json"}}},
		{name: "no env", args: args("--to", "prev"), wantErr: usageNeeds("rollback", "env")},
		{name: "no to", args: args("--env", "production"), wantErr: usageNeeds("rollback", "to")},
		{name: "parallel other than all", args: args("--env", "production", "--to", "prev", "--parallel", "2"), wantErr: `--parallel takes only "all"`},
		{name: "unknown output", args: args("--env", "production", "--to", "prev", "-o", "xml"), wantErr: `invalid --output "xml" (use text or json)`},
	})
}

func TestNewCmdRehearse(t *testing.T) {
	testFlags(t, newCmdRehearse, nil, []flagCase[RehearseOptions]{
		{name: "defaults", args: args("--env", "staging", "--release", "1.1.0"),
			want: RehearseOptions{Env: "staging", Release: "1.1.0", FailAt: "cutover", viewFlags: textView}},
		{name: "every flag", args: args("-e", "staging", "-r", "1.1.0", "--playbook", "search", "--fail-at", "all", "--for", "production", "--junit", "rehearsal.xml", "-v", "-o", "json"),
			want: RehearseOptions{Env: "staging", Release: "1.1.0", Playbook: "search", FailAt: "all", For: "production", JUnit: "rehearsal.xml",
				viewFlags: viewFlags{Verbose: true, Output: "json"}}},
		{name: "no env", args: args("--release", "1.1.0"), wantErr: usageNeeds("rehearse", "env")},
		{name: "no release", args: args("--env", "staging"), wantErr: usageNeeds("rehearse", "release")},
		{name: "unknown output", args: args("--env", "staging", "--release", "1.1.0", "-o", "csv"), wantErr: `invalid --output "csv" (use text or json)`},
	})
}

func TestNewCmdFinalize(t *testing.T) {
	testFlags(t, newCmdFinalize, nil, []flagCase[FinalizeOptions]{
		{name: "env", args: args("--env", "production"), want: FinalizeOptions{Env: "production", viewFlags: textView}},
		{name: "every flag", args: args("-e", "production", "--playbook", "solr-upgrade-and-move", "--yes", "--dry-run", "-v", "-o", "json"),
			want: FinalizeOptions{Env: "production", Playbook: "solr-upgrade-and-move", Yes: true, DryRun: true, viewFlags: viewFlags{Verbose: true, Output: "json"}}},
		{name: "no env", args: args("--yes"), wantErr: usageNeeds("finalize", "env")},
		{name: "unknown output", args: args("--env", "production", "-o", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}

func TestNewCmdPlan(t *testing.T) {
	testFlags(t, newCmdPlan, nil, []flagCase[PlanOptions]{
		{name: "defaults", args: args("--env", "staging", "--release", "1.1.0"),
			want: PlanOptions{releaseFlags: releaseFlags{Env: "staging", Release: "1.1.0"}, Format: "text"}},
		{name: "every flag", args: args("-e", "production", "-r", "1.1.0", "--playbook", "search", "--hosts", "production-1", "-o", "json"),
			want: PlanOptions{releaseFlags: releaseFlags{Env: "production", Release: "1.1.0", Playbook: "search", Hosts: []string{"production-1"}}, Format: "json"}},
		{name: "no env", args: args("--release", "1.1.0"), wantErr: usageNeeds("plan", "env")},
		{name: "no release", args: args("--env", "staging"), wantErr: usageNeeds("plan", "release")},
		{name: "bad output", args: args("--env", "staging", "-r", "1", "-o", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}

func TestNewCmdValidate(t *testing.T) {
	testFlags(t, newCmdValidate, nil, []flagCase[ValidateOptions]{
		{name: "no flags", args: nil, want: ValidateOptions{}},
		{name: "an argument", args: args("relctl.toml"), wantErr: `unknown command "relctl.toml" for "relctl validate"`},
	})
}

func TestNewCmdStatus(t *testing.T) {
	testFlags(t, newCmdStatus, nil, []flagCase[StatusOptions]{
		{name: "defaults", args: args("--env", "production"), want: StatusOptions{Env: "production", Format: "text"}},
		{name: "json", args: args("-e", "staging", "--output", "json"), want: StatusOptions{Env: "staging", Format: "json"}},
		{name: "no env", args: nil, wantErr: usageNeeds("status", "env")},
		{name: "bad output", args: args("--env", "x", "--output", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}

func TestNewCmdCheck(t *testing.T) {
	testFlags(t, newCmdCheck, nil, []flagCase[CheckOptions]{
		{name: "defaults", args: args("--env", "production"), want: CheckOptions{Env: "production", Format: "text"}},
		{name: "every flag", args: args("-e", "production", "-r", "1.3.0", "--playbook", "search", "--hosts", "a,b", "-o", "json"),
			want: CheckOptions{Env: "production", Release: "1.3.0", Playbook: "search", Hosts: []string{"a", "b"}, Format: "json"}},
		{name: "no env", args: args("--release", "1.3.0"), wantErr: usageNeeds("check", "env")},
		{name: "bad output", args: args("--env", "x", "-o", "yaml"), wantErr: `invalid --output "yaml" (use text or json)`},
	})
}
