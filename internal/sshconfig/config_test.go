package sshconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kevinburke/ssh_config"
)

// world is a home directory and a system directory in t.TempDir().
type world struct {
	t      *testing.T
	home   string
	sysDir string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	root := t.TempDir()
	w := &world{t: t, home: filepath.Join(root, "home", "alice"), sysDir: filepath.Join(root, "etc", "ssh")}
	for _, d := range []string{filepath.Join(w.home, ".ssh"), w.sysDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// path is rel under the home directory; "/etc/ssh/x" is x under sysDir.
func (w *world) path(rel string) string {
	if r, ok := strings.CutPrefix(rel, "/etc/ssh/"); ok {
		return filepath.Join(w.sysDir, r)
	}
	if filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(w.home, rel)
}

func (w *world) write(files map[string]string) {
	w.t.Helper()
	for rel, content := range files {
		p := w.path(rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
}

func (w *world) load(files ...File) (*Config, error) {
	l := &loader{home: w.home, systemDir: w.sysDir, readFile: readConfigFile, glob: filepath.Glob, getenv: os.LookupEnv}
	return l.load(files)
}

// userAndSystem are the files ssh reads, in this world.
func (w *world) userAndSystem() []File {
	return []File{{Path: w.path(".ssh/config")}, {Path: w.path("/etc/ssh/ssh_config"), System: true}}
}

func (w *world) local() Local {
	return Local{Home: w.home, User: "alice", Hostname: "laptop.example.org", UID: 1000}
}

// render lists the settings that are set, one "Name=value @where" a line,
// with the system directory written as /etc/ssh.
func (w *world) render(s Settings) string {
	var b strings.Builder
	v := reflect.ValueOf(s)
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Name
		switch f := v.Field(i).Interface().(type) {
		case Value:
			if f.Set() {
				fmt.Fprintf(&b, "%s=%s @%s\n", name, f.Value, f.Where())
			}
		case []Value:
			for _, x := range f {
				fmt.Fprintf(&b, "%s=%s @%s\n", strings.TrimSuffix(name, "s"), x.Value, x.Where())
			}
		}
	}
	return strings.ReplaceAll(strings.ReplaceAll(b.String(), w.sysDir, "/etc/ssh"), w.home, "HOME")
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // under the home; /etc/ssh/... for system files
		alias string
		env   map[string]string
		want  string // rendered settings, HOME for the home directory
		err   string // a part of Lookup's error; "" for none
	}{
		{
			name: "host patterns with wildcards and negation",
			files: map[string]string{".ssh/config": `
Host *.prod !db*.prod
  User deploy
Host db?.prod
  User dba
Host *
  Port 2222
`},
			alias: "web1.prod",
			want: `Port=2222 @~/.ssh/config:7
User=deploy @~/.ssh/config:3
`,
		},
		{
			name: "a negated pattern keeps the block out",
			files: map[string]string{".ssh/config": `
Host *.prod !db*.prod
  User deploy
Host db?.prod
  User dba
`},
			alias: "db1.prod",
			want:  "User=dba @~/.ssh/config:5\n",
		},
		{
			name:  "? is exactly one character",
			files: map[string]string{".ssh/config": "Host web?\n  User one\nHost *\n  User other\n"},
			alias: "web",
			want:  "User=other @~/.ssh/config:4\n",
		},
		{
			name:  "Host matches as typed, case-sensitively",
			files: map[string]string{".ssh/config": "Host Web\n  User upper\nHost web\n  User lower\n"},
			alias: "web",
			want:  "User=lower @~/.ssh/config:4\n",
		},
		{
			name:  "Host patterns separated by tabs, a quoted one",
			files: map[string]string{".ssh/config": "Host\tapi\tweb \"db*\"\n  User x\n"},
			alias: "db3",
			want:  "User=x @~/.ssh/config:2\n",
		},
		{
			name: "first value wins across blocks and files",
			files: map[string]string{
				".ssh/config": `
Host web
  HostName web.example.com
Host *
  HostName other.example.com
  User first
`,
				"/etc/ssh/ssh_config": "Host *\n  User system\n  Port 2200\n",
			},
			alias: "web",
			want: `HostName=web.example.com @~/.ssh/config:3
Port=2200 @/etc/ssh/ssh_config:3
User=first @~/.ssh/config:6
`,
		},
		{
			name:  "keywords are case-insensitive",
			files: map[string]string{".ssh/config": "HOST web\n  hOsTnAmE 10.0.0.1\n  PORT 22\n"},
			alias: "web",
			want:  "HostName=10.0.0.1 @~/.ssh/config:2\nPort=22 @~/.ssh/config:3\n",
		},
		{
			name: "IdentityFile accumulates in order, a repeat once",
			files: map[string]string{
				".ssh/config": `
Host web
  IdentityFile ~/.ssh/web
Host *
  IdentityFile ~/.ssh/all
  IdentityFile ~/.ssh/web
`,
				"/etc/ssh/ssh_config": "IdentityFile /etc/ssh/key\n",
			},
			alias: "web",
			want: `IdentityFile=HOME/.ssh/web @~/.ssh/config:3
IdentityFile=HOME/.ssh/all @~/.ssh/config:5
IdentityFile=/etc/ssh/key @/etc/ssh/ssh_config:1
`,
		},
		{
			name: "Include relative to ~/.ssh, glob in sorted order",
			files: map[string]string{
				".ssh/config":        "Include conf.d/*.conf\nUser top\n",
				".ssh/conf.d/b.conf": "User b\nPort 2202\n",
				".ssh/conf.d/a.conf": "User a\n",
				".ssh/conf.d/c.txt":  "Port 1\n",
			},
			alias: "web",
			want:  "Port=2202 @~/.ssh/conf.d/b.conf:2\nUser=a @~/.ssh/conf.d/a.conf:1\n",
		},
		{
			name: "Include with ~/ and an absolute path, several arguments",
			files: map[string]string{
				".ssh/config":   "Include ~/other/one \"HOME/abs/two\"\n",
				"other/one":     "User one\n",
				"abs/two":       "Port 2\nUser two\n",
				".ssh/ignored":  "Port 3\n",
				"other/ignored": "Port 4\n",
			},
			alias: "web",
			want:  "Port=2 @~/abs/two:1\nUser=one @~/other/one:1\n",
		},
		{
			name: "Include inside a Host block that matches",
			files: map[string]string{
				".ssh/config": `
Host web
  Include web.conf
  Port 2200
Host *
  User fallback
`,
				".ssh/web.conf": "User webuser\nHost nothing\n  Port 1\n",
			},
			alias: "web",
			// after the Include, the rest of the Host web block still applies
			want: "Port=2200 @~/.ssh/config:4\nUser=webuser @~/.ssh/web.conf:1\n",
		},
		{
			name: "Include inside a Host block that does not match",
			files: map[string]string{
				".ssh/config":   "Host db\n  Include web.conf\nHost *\n  User fallback\n",
				".ssh/web.conf": "User webuser\n",
			},
			alias: "web",
			want:  "User=fallback @~/.ssh/config:4\n",
		},
		{
			name: "Include inside a Match block applies only when it matches",
			files: map[string]string{
				".ssh/config":   "Match originalhost db*\n  Include db.conf\nMatch originalhost web*\n  Include web.conf\n",
				".ssh/db.conf":  "User dba\n",
				".ssh/web.conf": "User deploy\n",
			},
			alias: "web1",
			want:  "User=deploy @~/.ssh/web.conf:1\n",
		},
		{
			name:  "an Include that matches no file is nothing",
			files: map[string]string{".ssh/config": "Include missing.conf nothing/*\nUser u\n"},
			alias: "web",
			want:  "User=u @~/.ssh/config:2\n",
		},
		{
			name: "a system file includes relative to /etc/ssh",
			files: map[string]string{
				"/etc/ssh/ssh_config":               "Include ssh_config.d/*.conf\n",
				"/etc/ssh/ssh_config.d/10-sys.conf": "Port 2022\n",
				".ssh/ssh_config.d/10-sys.conf":     "Port 1\n",
			},
			alias: "web",
			want:  "Port=2022 @/etc/ssh/ssh_config.d/10-sys.conf:1\n",
		},
		{
			name: "Match host sees the HostName obtained earlier, originalhost the alias",
			files: map[string]string{".ssh/config": `
Host web
  HostName web.internal.example
Match host *.internal.example
  User internal
Match originalhost web
  Port 2200
Match host web
  IdentityFile ~/.ssh/never
`},
			alias: "web",
			want: `HostName=web.internal.example @~/.ssh/config:3
Port=2200 @~/.ssh/config:7
User=internal @~/.ssh/config:5
`,
		},
		{
			name:  "Match host without a HostName is the alias, lower-cased, %h expanded in HostName",
			files: map[string]string{".ssh/config": "Match host WEB\n  HostName %h.example.com\nMatch host web.example.com\n  User x\n"},
			alias: "Web",
			want:  "HostName=Web.example.com @~/.ssh/config:2\nUser=x @~/.ssh/config:4\n",
		},
		{
			name:  "Match host takes one comma-separated list with negation",
			files: map[string]string{".ssh/config": "Match host *.prod,!db*\n  User deploy\nMatch host db*.prod\n  User dba\n"},
			alias: "db1.prod",
			want:  "User=dba @~/.ssh/config:4\n",
		},
		{
			name:  "Match host list: a positive match",
			files: map[string]string{".ssh/config": "Match host *.prod,!db*\n  User deploy\n"},
			alias: "web.prod",
			want:  "User=deploy @~/.ssh/config:2\n",
		},
		{
			name: "Match user sees the User obtained so far",
			files: map[string]string{".ssh/config": `
Host web
  User deploy
Match user deploy
  Port 2200
Match user alice
  IdentityFile ~/.ssh/alice
`},
			alias: "web",
			want:  "Port=2200 @~/.ssh/config:5\nUser=deploy @~/.ssh/config:3\n",
		},
		{
			name:  "Match user without a User is the local user; localuser",
			files: map[string]string{".ssh/config": "Match user alice\n  Port 2200\nMatch localuser al*\n  User remote\n"},
			alias: "web",
			want:  "Port=2200 @~/.ssh/config:2\nUser=remote @~/.ssh/config:4\n",
		},
		{
			name: "several criteria are ANDed, ! negates one, key=value form",
			files: map[string]string{".ssh/config": `
Match originalhost web* user bob
  Port 1
Match originalhost=web* !user bob
  Port 2
Match all
  User everyone
`},
			alias: "web1",
			want:  "Port=2 @~/.ssh/config:5\nUser=everyone @~/.ssh/config:7\n",
		},
		{
			name:  "an unsupported criterion is an error with file:line",
			files: map[string]string{".ssh/config": "Host *\n  Port 22\nMatch originalhost web* exec \"test -f /x\"\n  User u\n"},
			alias: "web1",
			err:   `~/.ssh/config:3: Match exec is not supported by relctl, so it cannot tell whether this block applies to "web1"; set [ssh] config = "" in relctl.toml`,
		},
		{
			name:  "an unsupported criterion is no error when another one rules the block out",
			files: map[string]string{".ssh/config": "Match originalhost db* exec \"test -f /x\"\n  User u\nMatch canonical host nope\n  Port 1\n"},
			alias: "web1",
			want:  "",
		},
		{
			name: "tokens expanded with HostName, Port and User found later in the walk",
			files: map[string]string{".ssh/config": `
Host web
  IdentityFile ~/.ssh/%h-%p-%r
  IdentityFile %d/keys/%n_%u_%l_%L_%i_%k_%%
  UserKnownHostsFile ~/.ssh/kh-%h "%d/kh two"
  ProxyJump %r@bastion-%h:%p
  GlobalKnownHostsFile ~/g %h
Host *
  HostName Web.Example.com
  Port 2200
  User deploy
  HostKeyAlias WebAlias
`},
			alias: "web",
			err:   `~/.ssh/config:5: UserKnownHostsFile "%d/kh two": relctl does not support file names with blanks here`,
		},
		{
			name: "tokens expanded with HostName, Port and User found later in the walk (no blanks)",
			files: map[string]string{".ssh/config": `
Host web
  IdentityFile ~/.ssh/%h-%p-%r
  IdentityFile %d/keys/%n_%u_%l_%L_%i_%k_%%
  UserKnownHostsFile ~/.ssh/kh-%h "%d/kh_two"
  ProxyJump %r@bastion-%h:%p
  GlobalKnownHostsFile ~/g %h
  ProxyCommand ssh -W %h:%p gw-%n # as is
Host *
  HostName Web.Example.com
  Port 2200
  User deploy
  HostKeyAlias WebAlias
`},
			alias: "web",
			want: `HostName=Web.Example.com @~/.ssh/config:10
Port=2200 @~/.ssh/config:11
User=deploy @~/.ssh/config:12
ProxyJump=deploy@bastion-web.example.com:2200 @~/.ssh/config:6
HostKeyAlias=webalias @~/.ssh/config:13
UserKnownHostsFile=HOME/.ssh/kh-web.example.com HOME/kh_two @~/.ssh/config:5
GlobalKnownHostsFile=HOME/g %h @~/.ssh/config:7
IdentityFile=HOME/.ssh/web.example.com-2200-deploy @~/.ssh/config:3
IdentityFile=HOME/keys/web_alice_laptop.example.org_laptop_1000_webalias_% @~/.ssh/config:4
`,
		},
		{
			name:  "defaults for %p and %r; User expanded too",
			files: map[string]string{".ssh/config": "User %u-ops\nIdentityFile ~/.ssh/%p/%r\n"},
			alias: "web",
			want:  "User=alice-ops @~/.ssh/config:1\nIdentityFile=HOME/.ssh/22/alice-ops @~/.ssh/config:2\n",
		},
		{
			name:  "ProxyCommand expanded",
			files: map[string]string{".ssh/config": "ProxyCommand ssh -W %h:%p gw-%n # kept, as ssh keeps it\nHostName 10.0.0.5\n"},
			alias: "web",
			want:  "HostName=10.0.0.5 @~/.ssh/config:2\nProxyCommand=ssh -W 10.0.0.5:22 gw-web # kept, as ssh keeps it @~/.ssh/config:1\n",
		},
		{
			name:  "${VAR} in IdentityFile",
			files: map[string]string{".ssh/config": "IdentityFile ${KEYS_DIR}/id_${KEY_NAME}\n"},
			env:   map[string]string{"KEYS_DIR": "/keys", "KEY_NAME": "ed25519"},
			alias: "web",
			want:  "IdentityFile=/keys/id_ed25519 @~/.ssh/config:1\n",
		},
		{
			name:  "${VAR} not set",
			files: map[string]string{".ssh/config": "\nIdentityFile ${RELCTL_TEST_UNSET_VAR}/id\n"},
			alias: "web",
			err:   `~/.ssh/config:2: IdentityFile "${RELCTL_TEST_UNSET_VAR}/id": environment variable RELCTL_TEST_UNSET_VAR is not set`,
		},
		{
			name:  "an unknown token is an error with file:line",
			files: map[string]string{".ssh/config": "Host web\n  IdentityFile ~/.ssh/%x\n"},
			alias: "web",
			err:   `~/.ssh/config:2: IdentityFile "~/.ssh/%x": unknown token %x; IdentityFile takes %%, %d, %h, %i, %k, %L, %l, %n, %p, %r, %u and ${VAR}`,
		},
		{
			name:  "%C is not supported",
			files: map[string]string{".ssh/config": "UserKnownHostsFile ~/.ssh/kh-%C\n"},
			alias: "web",
			err:   `~/.ssh/config:1: UserKnownHostsFile "~/.ssh/kh-%C": %C is not supported by relctl in UserKnownHostsFile`,
		},
		{
			name:  "HostName takes only %h",
			files: map[string]string{".ssh/config": "HostName %p.example.com\n"},
			alias: "web",
			err:   `~/.ssh/config:1: HostName "%p.example.com": unknown token %p; HostName takes %% and %h`,
		},
		{
			name:  "a lone % at the end",
			files: map[string]string{".ssh/config": "ProxyJump bastion%\n"},
			alias: "web",
			err:   `~/.ssh/config:1: ProxyJump "bastion%": a lone % at the end`,
		},
		{
			name:  "an invalid ProxyJump is an error with file:line",
			files: map[string]string{".ssh/config": "Host web\n  ProxyJump ops@-oProxyCommand=x\n"},
			alias: "web",
			err:   `~/.ssh/config:2: ProxyJump "ops@-oProxyCommand=x": bastion 1: "-oProxyCommand=x": a host starting with '-'`,
		},
		{
			name:  "ProxyJump first keeps a later ProxyCommand out",
			files: map[string]string{".ssh/config": "Host web\n  ProxyJump a,b:2222\nHost *\n  ProxyCommand nc %h %p\n"},
			alias: "web",
			want:  "ProxyJump=a,b:2222 @~/.ssh/config:2\n",
		},
		{
			name:  "ProxyCommand first keeps a later ProxyJump out",
			files: map[string]string{".ssh/config": "Host web\n  ProxyCommand none\nHost *\n  ProxyJump a\n"},
			alias: "web",
			want:  "ProxyCommand=none @~/.ssh/config:2\n",
		},
		{
			name:  "ProxyJump none is returned as it is and lets a ProxyCommand in",
			files: map[string]string{".ssh/config": "Host web\n  ProxyJump None\nHost *\n  ProxyJump a\n  ProxyCommand nc %h %p\n"},
			alias: "web",
			want:  "ProxyJump=none @~/.ssh/config:2\nProxyCommand=nc web 22 @~/.ssh/config:5\n",
		},
		{
			name: "quoted values with spaces, = syntax, comments",
			files: map[string]string{".ssh/config": `
Host=web
  IdentityFile "~/.ssh/my key"
  User = "deploy"
  Port=2222 # the port
  ConnectTimeout =1m30s
  StrictHostKeyChecking Accept-New
  IdentitiesOnly true
  ForwardAgent No
  IdentityFile ~/.ssh/key#1
`},
			alias: "web",
			want: `Port=2222 @~/.ssh/config:5
User=deploy @~/.ssh/config:4
ConnectTimeout=90 @~/.ssh/config:6
StrictHostKeyChecking=accept-new @~/.ssh/config:7
IdentitiesOnly=yes @~/.ssh/config:8
ForwardAgent=no @~/.ssh/config:9
IdentityFile=HOME/.ssh/my key @~/.ssh/config:3
IdentityFile=HOME/.ssh/key#1 @~/.ssh/config:10
`,
		},
		{
			name:  "CRLF file",
			files: map[string]string{".ssh/config": "# made on Windows\r\nHost web\r\n  HostName web.example.com\r\n  User deploy\r\n\r\nInclude more.conf\r\n", ".ssh/more.conf": "Port 2200\r\n"},
			alias: "web",
			want:  "HostName=web.example.com @~/.ssh/config:3\nPort=2200 @~/.ssh/more.conf:1\nUser=deploy @~/.ssh/config:4\n",
		},
		{
			name:  "ConnectTimeout none is 0; GlobalKnownHostsFile none",
			files: map[string]string{".ssh/config": "ConnectTimeout none\nGlobalKnownHostsFile none\nUserKnownHostsFile /dev/null\n"},
			alias: "web",
			want:  "ConnectTimeout=0 @~/.ssh/config:1\nUserKnownHostsFile=/dev/null @~/.ssh/config:3\nGlobalKnownHostsFile=none @~/.ssh/config:2\n",
		},
		{
			name:  "an address HostName is not lower-cased for %h",
			files: map[string]string{".ssh/config": "HostName FE80::1\nIdentityFile /k/%h\n"},
			alias: "web",
			want:  "HostName=FE80::1 @~/.ssh/config:1\nIdentityFile=/k/FE80::1 @~/.ssh/config:2\n",
		},
		{
			name:  "~user is refused",
			files: map[string]string{".ssh/config": "IdentityFile ~bob/.ssh/id\n"},
			alias: "web",
			err:   `~/.ssh/config:1: IdentityFile "~bob/.ssh/id": ~bob/.ssh/id: ~user is not supported`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			files := map[string]string{}
			for rel, content := range tt.files {
				files[rel] = strings.ReplaceAll(content, "HOME", w.home) // an absolute path
			}
			w.write(files)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := w.load(w.userAndSystem()...)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			s, err := cfg.Lookup(tt.alias, w.local())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Lookup: %v\nwant an error with %s", err, tt.err)
				}
				var e *Error
				if !errors.As(err, &e) || e.Line == 0 {
					t.Errorf("Lookup's error is %T %#v, want an *Error with a line", err, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if s.Alias != tt.alias {
				t.Errorf("Alias %q", s.Alias)
			}
			if got := w.render(s); got != tt.want {
				t.Errorf("settings:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		err   string // Load's whole error, HOME for the home directory
	}{
		{"invalid Port", map[string]string{".ssh/config": "Host web\n  Port 70000\n"},
			`~/.ssh/config:2: Port "70000" is not a number from 1 to 65535`},
		{"Port 0", map[string]string{".ssh/config": "Port 0\n"},
			`~/.ssh/config:1: Port "0" is not a number from 1 to 65535`},
		{"invalid Port in a block no alias matches", map[string]string{".ssh/config": "Host nothing\n  Port ssh\n"},
			`~/.ssh/config:2: Port "ssh" is not a number from 1 to 65535`},
		{"invalid ConnectTimeout", map[string]string{".ssh/config": "\n\nConnectTimeout -5\n"},
			`~/.ssh/config:3: ConnectTimeout "-5" is not a number of seconds (nor none, nor an ssh time such as 1m30s)`},
		{"invalid StrictHostKeyChecking", map[string]string{".ssh/config": "StrictHostKeyChecking maybe\n"},
			`~/.ssh/config:1: StrictHostKeyChecking "maybe" is not one of yes, no, ask, accept-new, off`},
		{"invalid IdentitiesOnly", map[string]string{".ssh/config": "IdentitiesOnly 1\n"},
			`~/.ssh/config:1: IdentitiesOnly "1" is not yes or no`},
		{"ForwardAgent with a socket path", map[string]string{".ssh/config": "ForwardAgent /tmp/agent.sock\n"},
			`~/.ssh/config:1: ForwardAgent "/tmp/agent.sock" is not yes or no`},
		{"two values where one is taken", map[string]string{".ssh/config": "HostName a b\n"},
			`~/.ssh/config:1: HostName takes one value, not 2 (quote a value that holds spaces)`},
		{"no value", map[string]string{".ssh/config": "User\n"},
			`~/.ssh/config:1: User has no value`},
		{"an unclosed quote", map[string]string{".ssh/config": "IdentityFile \"~/.ssh/x\n"},
			`~/.ssh/config:1: IdentityFile: a quote is not closed`},
		{"Host without patterns", map[string]string{".ssh/config": "Host\n"},
			`~/.ssh/config:1: Host needs at least one pattern`},
		{"none among other files", map[string]string{".ssh/config": "UserKnownHostsFile none ~/.ssh/kh\n"},
			`~/.ssh/config:1: UserKnownHostsFile none cannot be given with other files`},
		{"a criterion ssh does not know", map[string]string{".ssh/config": "Match address 10.0.0.0/8\n"},
			`~/.ssh/config:1: Match criterion "address" is not one ssh knows; set [ssh] config = "" in relctl.toml to stop relctl reading ssh's configuration`},
		{"Match without criteria", map[string]string{".ssh/config": "Match\n"},
			`~/.ssh/config:1: Match needs at least one criterion`},
		{"Match host without an argument", map[string]string{".ssh/config": "Match host\n"},
			`~/.ssh/config:1: Match host needs an argument`},
		{"Match all with more", map[string]string{".ssh/config": "Match all host x\n"},
			`~/.ssh/config:1: Match all cannot be combined with other criteria`},
		{"an Include of itself", map[string]string{".ssh/config": "Host *\n  Include config\n"},
			`~/.ssh/config:2: Include ~/.ssh/config: the file includes itself (~/.ssh/config → ~/.ssh/config)`},
		{"an Include loop", map[string]string{".ssh/config": "Include a\n", ".ssh/a": "Include b\n", ".ssh/b": "\nInclude a\n"},
			`~/.ssh/b:2: Include ~/.ssh/a: the file includes itself (~/.ssh/a → ~/.ssh/b → ~/.ssh/a)`},
		{"an error in an included file names that file", map[string]string{".ssh/config": "Include conf.d/*\n", ".ssh/conf.d/x": "Port x\n"},
			`~/.ssh/conf.d/x:1: Port "x" is not a number from 1 to 65535`},
		{"a system file cannot Include under ~", map[string]string{"/etc/ssh/ssh_config": "Include ~/x\n"},
			`/etc/ssh/ssh_config:1: Include "~/x": a system file cannot Include a path under ~ (ssh refuses it)`},
		{"a host token in Include", map[string]string{".ssh/config": "Include ~/.ssh/%h.conf\n"},
			`~/.ssh/config:1: Include "~/.ssh/%h.conf": %h is not supported by relctl in Include`},
		{"a NUL byte", map[string]string{".ssh/config": "Host a\nUser \x00\n"},
			`~/.ssh/config:2: holds a NUL byte; is it an ssh configuration file?`},
		{"a very long line", map[string]string{".ssh/config": "# " + strings.Repeat("a long comment is fine ", 2000) + "\nUser x\nProxyCommand " + strings.Repeat("x", maxLineLen) + "\n"},
			`~/.ssh/config:3: longer than 16 KiB; relctl does not read lines that long`},
		{"an unknown keyword with no value is ignored, a known one is not", map[string]string{".ssh/config": "SomeFutureOption\nProxyJump # nothing\n"},
			`~/.ssh/config:2: ProxyJump has no value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.write(tt.files)
			_, err := w.load(w.userAndSystem()...)
			if err == nil {
				t.Fatalf("Load: no error, want %s", tt.err)
			}
			got := strings.ReplaceAll(err.Error(), w.sysDir, "/etc/ssh")
			if got != tt.err {
				t.Errorf("Load:\n got %s\nwant %s", got, tt.err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("Load's error is %T, want *Error", err)
			}
		})
	}
}

func TestIncludeDepth(t *testing.T) {
	w := newWorld(t)
	files := map[string]string{".ssh/config": "Include d1\n"}
	for i := 1; i <= maxIncludeDepth+1; i++ {
		files[fmt.Sprintf(".ssh/d%d", i)] = fmt.Sprintf("Include d%d\nUser depth%d\n", i+1, i)
	}
	w.write(files)
	_, err := w.load(File{Path: w.path(".ssh/config")})
	want := "~/.ssh/d16:1: Include ~/.ssh/d17: more than 16 levels of Include"
	if err == nil || err.Error() != want {
		t.Errorf("Load: %v\nwant %s", err, want)
	}

	// 16 levels are read.
	delete(files, ".ssh/d17")
	if err := os.Remove(w.path(".ssh/d17")); err != nil {
		t.Fatal(err)
	}
	cfg, err := w.load(File{Path: w.path(".ssh/config")})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if n := len(cfg.Files()); n != 17 {
		t.Errorf("Files: %d files, want 17: %v", n, cfg.Files())
	}
	s, err := cfg.Lookup("web", w.local())
	if err != nil || s.User.Value != "depth16" || s.User.Where() != "~/.ssh/d16:2" {
		t.Errorf("Lookup: User %+v, %v", s.User, err)
	}
}

func TestLoadFiles(t *testing.T) {
	w := newWorld(t)
	w.write(map[string]string{
		".ssh/config":         "Include conf.d/*\nHost a\n  Include conf.d/b\n",
		".ssh/conf.d/b":       "Port 1\n",
		".ssh/conf.d/a":       "Port 2\n",
		"/etc/ssh/ssh_config": "Include ssh_config.d/*.conf\n",
	})
	cfg, err := w.load(append([]File{{Path: w.path(".ssh/missing")}}, w.userAndSystem()...)...)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range cfg.Files() {
		got = append(got, strings.ReplaceAll(f, w.sysDir, "/etc/ssh"))
	}
	want := []string{"~/.ssh/config", "~/.ssh/conf.d/a", "~/.ssh/conf.d/b", "/etc/ssh/ssh_config"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Files: %q, want %q", got, want)
	}

	// No file at all is no error and no settings.
	cfg, err = w.load(File{Path: w.path(".ssh/nothing")})
	if err != nil || len(cfg.Files()) != 0 {
		t.Fatalf("Load of a missing file: %v, %v", cfg.Files(), err)
	}
	if s, err := cfg.Lookup("web", w.local()); err != nil || !reflect.DeepEqual(s, Settings{Alias: "web"}) {
		t.Errorf("Lookup: %+v, %v", s, err)
	}
}

func TestLoadUnreadable(t *testing.T) {
	w := newWorld(t)
	_, err := w.load(File{Path: w.path(".ssh")})
	if want := "~/.ssh: cannot read: is a directory"; err == nil || err.Error() != want {
		t.Errorf("Load of a directory: %v, want %s", err, want)
	}
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	w.write(map[string]string{".ssh/config": "User x\n"})
	if err := os.Chmod(w.path(".ssh/config"), 0); err != nil {
		t.Fatal(err)
	}
	_, err = w.load(File{Path: w.path(".ssh/config")})
	if want := "~/.ssh/config: cannot read: permission denied"; err == nil || err.Error() != want {
		t.Errorf("Load of an unreadable file: %v, want %s", err, want)
	}
}

// Load as relctl calls it: the real loader, paths shown under ~.
func TestLoadPublic(t *testing.T) {
	w := newWorld(t)
	w.write(map[string]string{".ssh/config": "Host web\n  HostName web.example.com\n"})
	cfg, err := Load(w.home+"/", File{Path: filepath.Join(w.home, ".ssh", "config")}, File{Path: filepath.Join(w.home, "no", "ssh_config"), System: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.Lookup("web", Local{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if s.HostName.Where() != "~/.ssh/config:2" || s.HostName.File != "~/.ssh/config" || s.HostName.Line != 2 {
		t.Errorf("HostName %+v, Where %q", s.HostName, s.HostName.Where())
	}
	if got := cfg.Files(); !reflect.DeepEqual(got, []string{"~/.ssh/config"}) {
		t.Errorf("Files %q", got)
	}
}

func TestNilConfig(t *testing.T) {
	var cfg *Config
	s, err := cfg.Lookup("web", Local{User: "alice"})
	if err != nil || !reflect.DeepEqual(s, Settings{Alias: "web"}) {
		t.Errorf("Lookup on nil: %+v, %v", s, err)
	}
	if cfg.Files() != nil {
		t.Errorf("Files on nil: %v", cfg.Files())
	}
}

func TestValue(t *testing.T) {
	var v Value
	if v.Set() || v.Where() != "" {
		t.Errorf("zero Value: Set %v, Where %q", v.Set(), v.Where())
	}
	v = Value{Value: "x", File: "~/.ssh/config", Line: 12}
	if !v.Set() || v.Where() != "~/.ssh/config:12" {
		t.Errorf("Value: Set %v, Where %q", v.Set(), v.Where())
	}
}

func TestError(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "~/.ssh/config", Line: 3, Col: 7, Msg: "bad"}, "~/.ssh/config:3:7: bad"},
		{Error{File: "~/.ssh/config", Line: 3, Msg: "bad"}, "~/.ssh/config:3: bad"},
		{Error{File: "/etc/ssh/ssh_config", Msg: "cannot read"}, "/etc/ssh/ssh_config: cannot read"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%#v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestDisplayPath(t *testing.T) {
	for _, tt := range []struct{ home, path, want string }{
		{"/home/a", "/home/a/.ssh/config", "~/.ssh/config"},
		{"/home/a", "/home/a", "~"},
		{"/home/a", "/home/ab/.ssh/config", "/home/ab/.ssh/config"},
		{"", "/home/a/.ssh/config", "/home/a/.ssh/config"},
		{"/", "/etc/ssh/ssh_config", "/etc/ssh/ssh_config"},
	} {
		if got := displayPath(tt.home, tt.path); got != tt.want {
			t.Errorf("displayPath(%q, %q) = %q, want %q", tt.home, tt.path, got, tt.want)
		}
	}
}

// The library reports problems by panicking with "(line, col): msg"; what
// it refuses becomes an *Error with the file's name. (Load hands it no line
// it refuses today, so the conversion is tested on its own.)
func TestLibraryError(t *testing.T) {
	_, err := ssh_config.DecodeBytes([]byte("Host a\n\nMatch exec true\n"))
	if err == nil {
		t.Fatal("the library accepts Match exec now; find another line it refuses")
	}
	got := libraryError("~/.ssh/config", err)
	if got.File != "~/.ssh/config" || got.Line != 3 || got.Col == 0 || !strings.Contains(got.Msg, "Match Exec is not supported") {
		t.Errorf("libraryError(%q) = %#v", err, got)
	}
	if want := fmt.Sprintf("~/.ssh/config:3:%d: ", got.Col); !strings.HasPrefix(got.Error(), want) {
		t.Errorf("Error() = %q, want it to start with %q", got.Error(), want)
	}
	if got := libraryError("f", errors.New("something else")); got.Line != 0 || got.Error() != "f: something else" {
		t.Errorf("libraryError without a position: %#v", got)
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"a b\tc", []string{"a", "b", "c"}, false},
		{`"a b" 'c d'`, []string{"a b", "c d"}, false},
		{`a\ b`, []string{"a b"}, false},
		{`"a\"b"`, []string{`a"b`}, false},
		{`a\x`, []string{`a\x`}, false},
		{`x#y # comment`, []string{"x#y"}, false},
		{`# all comment`, nil, false},
		{`""`, []string{""}, false},
		{`"open`, nil, true},
	} {
		got, err := splitArgs(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tt := range []struct {
		s, p string
		want bool
	}{
		{"web1", "web?", true},
		{"web", "web?", false},
		{"web12", "web?", false},
		{"a.prod", "*.prod", true},
		{"prod", "*.prod", false},
		{"abcabd", "*abd", true},
		{"", "*", true},
		{"", "", true},
		{"x", "", false},
		{"a.b.c", "a*c", true},
		{"a(b)", "a(b)", true},
	} {
		if got := matchPattern(tt.s, tt.p); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v", tt.s, tt.p, got)
		}
	}
	if got := matchPatternList("db1", "*,!db*", false); got != -1 {
		t.Errorf("matchPatternList negated = %d", got)
	}
	if got := matchPatternList("web", "db*,w*", false); got != 1 {
		t.Errorf("matchPatternList = %d", got)
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "30": 30, "30s": 30, "1m30s": 90, "2h": 7200, "1d": 86400, "1w": 604800, "none": 0} {
		if got, ok := parseSeconds(in); !ok || got != want {
			t.Errorf("parseSeconds(%q) = %d, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "-1", "1x", "m", "1.5", "99999999999", "4000000000"} {
		if got, ok := parseSeconds(in); ok {
			t.Errorf("parseSeconds(%q) = %d, want an error", in, got)
		}
	}
}

func TestTildeExpand(t *testing.T) {
	upper := func(s string) (string, error) { return strings.ToUpper(s), nil }
	for _, tt := range []struct {
		in, home string
		then     func(string) (string, error)
		want     string
		err      string
	}{
		{"~", "/home/a", nil, "/home/a", ""},
		{"~/", "/home/a", nil, "/home/a", ""},
		{"~//x", "/home/a", nil, "/home/a/x", ""},
		{"/abs/~x", "/home/a", upper, "/ABS/~X", ""},
		// the home directory is not passed through then: a '%' in it is no token
		{"~/k", "/home/100%p", upper, "/home/100%p/K", ""},
		{"~bob/k", "/home/a", nil, "", "~user is not supported"},
		{"~/k", "", nil, "", "the home directory is not known"},
	} {
		got, err := tildeExpand(tt.in, tt.home, tt.then)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("tildeExpand(%q, %q) = %q, %v; want an error with %q", tt.in, tt.home, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("tildeExpand(%q, %q) = %q, %v; want %q", tt.in, tt.home, got, err, tt.want)
		}
	}
}
