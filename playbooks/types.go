// Package playbooks owns relctl's configuration: relctl.toml and the playbooks
// it applies, loaded strictly (unknown keys are errors, every problem carries
// file:line:column), validated as a whole, and rendered per host with every
// interpolated value shell-quoted.
package playbooks

import (
	"fmt"
	"time"
)

// Config is relctl.toml.
type Config struct {
	// Project names the thing being released; it appears in history and logs.
	Project string `toml:"project"`
	// StateDir holds run logs and journals; relative to relctl.toml's directory. Default ".relctl".
	StateDir string `toml:"state_dir"`
	// Playbooks names the playbooks (file stem under playbooks/) applied to every
	// environment that does not name its own. Empty: every playbooks/*.toml.
	Playbooks []string `toml:"playbooks"`
	// LockTTL is how old a lock's heartbeat may get before the lock counts as
	// stale (its holder gone). Default 2m; the holder refreshes it every TTL/4.
	LockTTL      Duration                `toml:"lock_ttl"`
	SSH          SSHConfig               `toml:"ssh"`
	Rehearsal    RehearsalConfig         `toml:"rehearsal"`
	Environments map[string]*Environment `toml:"environments"`
	// Secrets maps a name to where its value comes from (secrets.go).
	Secrets map[string]*SecretConfig `toml:"secrets"`
	Notify  []*NotifyConfig          `toml:"notify"` // [[notify]]: webhooks and commands told about runs (notify.go)

	// Path is the file the config was read from; Dir its directory (absolute).
	Path string `toml:"-"`
	Dir  string `toml:"-"`

	pos *positions // where each key is in Path, for Where and problems
}

// Host key policies, named after OpenSSH's StrictHostKeyChecking.
const (
	HostKeyStrict    = "strict"
	HostKeyAcceptNew = "accept-new"
)

// DefaultControlTimeout is ssh.control_timeout's default. relctl's own
// commands take well under 5s on a healthy host (the longest, an HAProxy
// call, is capped by socat -t 5), so 1m is a wide margin for a slow or loaded
// host while keeping a hung one from stalling a rollback for command_timeout
// per command. It is also about the 4 keepalive intervals (4 x 15s) a dead
// connection takes to be noticed: a host that went away is still reported
// as lost (and retried by a rollback), not as a timed-out command.
const DefaultControlTimeout = time.Minute

// SSHConfig holds connection defaults for every host.
type SSHConfig struct {
	User string `toml:"user"` // default: the local user name
	// IdentityFile is a private key; relative paths are resolved against relctl.toml's directory; "~/" is expanded.
	IdentityFile string `toml:"identity_file"`
	// UseAgent: nil means "when SSH_AUTH_SOCK is set".
	UseAgent *bool `toml:"use_agent"`
	// KnownHosts is the known_hosts file; default ~/.ssh/known_hosts.
	KnownHosts     string   `toml:"known_hosts"`
	HostKeyPolicy  string   `toml:"host_key_policy"` // strict (default) | accept-new
	ConnectTimeout Duration `toml:"connect_timeout"` // default 10s
	CommandTimeout Duration `toml:"command_timeout"` // default 10m; a step may set its own
	// ControlTimeout bounds each command relctl runs for itself (state reads,
	// locks, the activate script, HAProxy and monit calls...), so a host whose
	// commands hang stalls a run or a rollback for this long, not for
	// command_timeout. Default 1m. Commands whose duration scales with data
	// (the upload, sha256 of an artifact, removing old releases) and the
	// playbook's own commands keep command_timeout.
	ControlTimeout Duration `toml:"control_timeout"`
	Keepalive      Duration `toml:"keepalive"`    // default 15s; 0 disables
	MaxParallel    int      `toml:"max_parallel"` // max hosts worked on at once across the run; default 20
	// ReconnectAttempts and ReconnectBackoff: while rolling back, a host that
	// cannot be reached is retried this many times, waiting ReconnectBackoff,
	// then twice as long each time (defaults 5 and 1s: 1s, 2s, 4s, 8s, 16s).
	ReconnectAttempts int      `toml:"reconnect_attempts"`
	ReconnectBackoff  Duration `toml:"reconnect_backoff"`
	// Config is the OpenSSH client configuration read for every host and
	// bastion (ssh.go): unset, ~/.ssh/config then /etc/ssh/ssh_config; a
	// path, that file alone (like ssh -F); "", none. relctl.toml wins over it.
	Config string `toml:"config"`
	// ProxyJump is the bastions every host is reached through, in OpenSSH's
	// ProxyJump syntax ("[user@]host[:port]", comma-separated, first first;
	// "none": directly). An environment's [ssh] and a host override it.
	ProxyJump string `toml:"proxy_jump"`
	// ForwardAgent forwards the local ssh-agent to the hosts' sessions (never
	// to bastions). Off unless set here, per environment or per host.
	ForwardAgent bool `toml:"forward_agent"`
}

// EnvSSH is an environment's [environments.<name>.ssh] table: the [ssh]
// settings that differ per environment.
type EnvSSH struct {
	User         string `toml:"user"`
	IdentityFile string `toml:"identity_file"`
	ProxyJump    string `toml:"proxy_jump"`
	ForwardAgent *bool  `toml:"forward_agent"`
}

// RehearsalConfig is the [rehearsal] table: how `relctl rehearse` signs the
// records a gated environment's deploys check.
type RehearsalConfig struct {
	// SigningKey is the OpenSSH private key that signs rehearsal records
	// (resolved like ssh.identity_file); default ssh.identity_file. A key
	// with a passphrase is used through the SSH agent.
	SigningKey string `toml:"signing_key"`
	// Signer is the principal written into the record, the name its key has
	// in allowed_signers; default the operator (user@host).
	Signer string `toml:"signer"`
}

// Environment is one [environments.<name>] table.
type Environment struct {
	Name string `toml:"-"`
	// Playbooks overrides Config.Playbooks for this environment.
	Playbooks []string `toml:"playbooks"`
	// RequireRehearsal names the environment (e.g. "staging") where a
	// release must have been rehearsed, forced rollback included, before
	// `relctl deploy` takes it here.
	RequireRehearsal string `toml:"require_rehearsal"`
	// AllowedSigners is an OpenSSH allowed_signers file (ssh-keygen(1)) of
	// the keys trusted to sign rehearsal records; required with
	// require_rehearsal. Relative to relctl.toml's directory.
	AllowedSigners string `toml:"allowed_signers"`
	// RehearsalMaxAge is how old a rehearsal record may be; default 168h.
	RehearsalMaxAge Duration       `toml:"rehearsal_max_age"`
	Vars            map[string]any `toml:"vars"`
	Hosts           []*Host        `toml:"hosts"`
	// SSH overrides [ssh] for this environment's hosts.
	SSH *EnvSSH `toml:"ssh"`
}

// Host is one [[environments.<name>.hosts]] entry.
type Host struct {
	Name string `toml:"name"`
	// Address is host or host:port. Unset: the OpenSSH client
	// configuration's HostName and Port for Name, else Name and 22. After
	// Load it holds the effective host:port.
	Address string `toml:"address"`
	// User overrides the environment's and ssh.user; after Load it holds
	// the effective login.
	User  string         `toml:"user"`
	Roles []string       `toml:"roles"`
	Vars  map[string]any `toml:"vars"`
	// IdentityFile, ProxyJump and ForwardAgent override the environment's
	// and [ssh]'s.
	IdentityFile string `toml:"identity_file"`
	ProxyJump    string `toml:"proxy_jump"`
	ForwardAgent *bool  `toml:"forward_agent"`
	// SSH is how the host is reached, each setting with where it came
	// from: set by Load (ssh.go).
	SSH *HostSSH `toml:"-"`
}

// Playbook is one playbooks/<name>.toml.
type Playbook struct {
	Name  string   `toml:"name"`
	Roles []string `toml:"roles"` // target roles; a host with any of them is targeted
	// KeepReleases is how many release directories to keep per host (default 5).
	// The current release, the one before it and any rollback target are never pruned.
	KeepReleases int               `toml:"keep_releases"`
	Vars         map[string]any    `toml:"vars"` // defaults; env vars and host vars override
	Artifact     Artifact          `toml:"artifact"`
	Strategy     Strategy          `toml:"strategy"`
	Checks       map[string]*Check `toml:"checks"`
	Steps        []*Step           `toml:"steps"`
	Rollback     Rollback          `toml:"rollback"`
	Watchdog     *Watchdog         `toml:"watchdog"`
	// Component names what the playbook releases, for compatibility
	// constraints between components; default the playbook's name.
	Component string `toml:"component"`
	// Requires constrains the versions of other components a release of
	// this playbook works with: component -> semver constraint, e.g.
	// cache = ">=2.0, <3". Recorded in each host's history at activation,
	// so a rollback knows the constraints of the release it goes back to.
	Requires map[string]string `toml:"requires"`
	// Traffic takes each host out of the load balancer before its release
	// is switched and puts it back once the new release passed its checks.
	Traffic *Traffic `toml:"traffic"`
	// Move moves the component from the hosts of another role to the
	// playbook's (roles): the new hosts are installed and verified while
	// the old ones serve, then traffic and dependents move over.
	Move *Move `toml:"move"`
	// Path is the file the playbook was read from.
	Path string `toml:"-"`

	pos *positions // where each key is in Path, for Where and problems
}

// Rollback is the playbook's [rollback] table: what makes a release a valid
// rollback target, and the steps that bring a restored release back into
// service (e.g. restart it) once `current` points at it again.
type Rollback struct {
	// Requires lists files, relative to a release directory, that must exist
	// for that release to be rolled back to (e.g. "bin/start", "bin/stop").
	Requires []string `toml:"requires"`
	// Steps run, in order, on every host whose current release was switched
	// back, before the health checks. Kind run only (templates see the
	// restored release as .Version); phase is not used.
	Steps []*Step `toml:"steps"`
}

// Traffic providers.
const (
	TrafficHAProxy = "haproxy"
	TrafficCommand = "command"
)

// Traffic is the playbook's [traffic] table.
type Traffic struct {
	Provider string `toml:"provider"` // haproxy | command
	// haproxy: the environment's hosts with LBRole run HAProxy; relctl
	// reaches its runtime API (Socket, a template rendered per LB host) over
	// SSH. Server (a template rendered per target host, default
	// "{{.Host.Name}}") is the host's server in Backend.
	LBRole  string `toml:"lb_role"`
	Socket  string `toml:"socket"`
	Backend string `toml:"backend"`
	Server  string `toml:"server"`
	// DrainTimeout bounds the wait for a draining server's sessions to end; default 30s.
	DrainTimeout Duration `toml:"drain_timeout"`
	// command: run on each target host: Disable before its release is
	// switched, Enable after its checks passed (and on rollback, once the
	// restored release is healthy). Templates.
	Disable string `toml:"disable"`
	Enable  string `toml:"enable"`
}

// Move is the playbook's [move] table.
type Move struct {
	// FromRole names the hosts the component moves away from; they are
	// never changed by the move, and keep running until `relctl finalize`.
	FromRole string `toml:"from_role"`
	// Dependents are the hosts whose configuration names the component's
	// hosts (e.g. app servers): they get it rendered for the new hosts and
	// are restarted in batches, health-checked.
	Dependents []*Dependent `toml:"dependents"`
	// Retire runs on each old host when `relctl finalize` retires it (e.g.
	// stop the service). A template.
	Retire string `toml:"retire"`
}

// Dependent is one [[move.dependents]] entry.
type Dependent struct {
	Role string `toml:"role"`
	// Config is the file on the dependent host (a template) that is
	// replaced by Template rendered with the component's hosts.
	Config string `toml:"config"`
	// Template is a text/template file, relative to the playbook's
	// directory, rendered with .Hosts (the component's hosts: .Name,
	// .Address, .Vars) and the dependent host's own .Host and .Vars.
	Template string `toml:"template"`
	// Restart (a template) restarts the dependent so it reads Config.
	Restart string `toml:"restart"`
	// Checks names [checks.<name>] run on each dependent after its restart.
	Checks []string `toml:"checks"`
	// BatchSize dependents are restarted at a time; default 1.
	BatchSize int `toml:"batch_size"`
}

// Watchdog kinds.
const (
	WatchdogMonit   = "monit"
	WatchdogSystemd = "systemd"
)

// Watchdog is the playbook's [watchdog] table: the supervisor configuration a
// release ships, checked before any traffic moves and restored on rollback.
type Watchdog struct {
	Kind string `toml:"kind"` // monit | systemd
	// Snippet is the snippet template's path inside the release directory
	// (shipped in the artifact); relctl renders it per host like a URL.
	Snippet string `toml:"snippet"`
	// InstallPath (a template) is where the rendered snippet lives on the
	// host; the control file must include it.
	InstallPath string `toml:"install_path"`
	// ControlFile (a template) is the host's monit control file (monit only).
	ControlFile string `toml:"control_file"`
	// Service is the monit service (or systemd unit) that must run
	// supervised after activation.
	Service string `toml:"service"`
	// Timeout bounds each wait for the service to run supervised; default 60s.
	Timeout Duration `toml:"timeout"`
}

// Artifact is the file every host gets: pushed over SSH from a local path
// (the default), or pulled by each host from a URL. Exactly one of Path and
// URL is set; the other keys go with URL.
type Artifact struct {
	// Path is a template (e.g. "artifacts/search-{{.Version}}.tar.gz") resolved
	// against relctl.toml's directory. Its sha256 is computed before anything runs.
	Path string `toml:"path"`
	// URL (a template, http or https) is fetched by each host itself with curl
	// or wget and checked against the sha256 before anything unpacks it; the
	// controller reads only the checksum. The file's name on the host is the
	// URL path's last segment.
	URL string `toml:"url"`
	// The sha256 comes from one of: SHA256 (64 hex digits, a template),
	// SHA256URL (a file in sha256sum format, or bare hex; default URL +
	// ".sha256"), or Manifest (a SHA256SUMS file: the line naming the
	// artifact's file name). The controller fetches a checksum file at plan time.
	SHA256    string `toml:"sha256"`
	SHA256URL string `toml:"sha256_url"`
	Manifest  string `toml:"manifest"`
	// AuthHeaderEnv names the controller's environment variable holding the
	// value of the header sent with every artifact and checksum request
	// (e.g. "Bearer abc"); AuthHeaderName is that header (default
	// Authorization). The value reaches hosts on the session's stdin, never
	// a command line, and is never printed.
	AuthHeaderEnv  string `toml:"auth_header_env"`
	AuthHeaderName string `toml:"auth_header_name"`
	// ConnectTimeout bounds connecting (default 10s); Timeout each attempt
	// (default 10m; with wget, each read); Retries is how many times a
	// transient failure (timeout, refused connection, HTTP 408/429/5xx) is
	// tried again, 1s apart (default 3; 0: no retry).
	ConnectTimeout Duration `toml:"connect_timeout"`
	Timeout        Duration `toml:"timeout"`
	Retries        int      `toml:"retries"`
}

// Strategy says how hosts are batched.
type Strategy struct {
	Canary int `toml:"canary"` // hosts in the first (canary) batch; default 1, 0 disables the canary batch
	// BatchSize is an integer count or a percentage string like "25%" of the targeted hosts; default 1.
	BatchSize   any      `toml:"batch_size"`
	MaxParallel int      `toml:"max_parallel"` // hosts worked on at once within a batch; default: the batch size
	Pause       Duration `toml:"pause"`        // wait between batches
}

// Check kinds.
const (
	CheckHTTP    = "http"
	CheckTCP     = "tcp"
	CheckCommand = "command"
)

// Check is one named health check, [checks.<name>].
type Check struct {
	Name string `toml:"-"`
	Type string `toml:"type"` // http | tcp | command
	// http
	URL          string `toml:"url"`           // template
	ExpectStatus int    `toml:"expect_status"` // default 200
	BodyContains string `toml:"body_contains"` // template
	BodyRegex    string `toml:"body_regex"`
	// tcp
	Address string `toml:"address"` // template, host:port
	// command: run on the host over SSH; exit 0 passes. Template, values shell-quoted.
	Command string `toml:"command"`
	// Via says where http and tcp checks dial from: "host" (default; through the
	// host's SSH connection, so the check sees what the host sees) or "controller".
	Via        string   `toml:"via"`
	Timeout    Duration `toml:"timeout"`     // per attempt; default 5s
	Interval   Duration `toml:"interval"`    // between attempts; default 1s
	Retries    int      `toml:"retries"`     // attempts after the first failure; default 10
	HealthyFor int      `toml:"healthy_for"` // consecutive passes needed; default 1
}

// Phases, in the order they run.
const (
	PhasePreflight = "preflight"
	PhaseStage     = "stage"
	PhaseActivate  = "activate"
	PhaseVerify    = "verify"
	PhaseCutover   = "cutover"
	PhasePost      = "post"
)

// Phases lists every phase in execution order.
var Phases = []string{PhasePreflight, PhaseStage, PhaseActivate, PhaseVerify, PhaseCutover, PhasePost}

// Step kinds.
const (
	StepRun      = "run"
	StepUpload   = "upload"
	StepActivate = "activate"
	StepCheck    = "check"
)

// Step is one [[steps]] entry.
type Step struct {
	Name  string `toml:"name"`  // default: the kind, or "run-<n>"
	Phase string `toml:"phase"` // one of Phases
	Kind  string `toml:"kind"`  // run (default when run is set) | upload | activate | check
	// Run is a shell command template; every interpolated value is shell-quoted.
	Run string `toml:"run"`
	// Undo reverses Run; used by rollback.
	Undo    string   `toml:"undo"`
	Checks  []string `toml:"checks"`  // kind check: names from [checks]
	Timeout Duration `toml:"timeout"` // default: ssh.command_timeout
}

// Duration is a time.Duration written in TOML as a Go duration string ("1m30s").
type Duration struct{ time.Duration }

// UnmarshalText accepts any string: Load reports an invalid duration with
// its position (and the file's other problems) instead of stopping here.
func (d *Duration) UnmarshalText(b []byte) error {
	if err := d.parse(string(b)); err != nil {
		d.Duration = 0
	}
	return nil
}

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a form like \"30s\" or \"1m30s\")", s)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// TemplateData is what step, check and artifact templates see, per host.
// In shell commands every value is shell-quoted when it is interpolated.
type TemplateData struct {
	Project  string
	Env      string
	Playbook string
	Version  string
	RunID    string
	Host     HostData
	// Vars merges playbook vars, then environment vars, then host vars (last wins), as strings.
	Vars map[string]string
	// On-host layout, all absolute.
	BaseDir     string // vars.base_dir
	ReleasesDir string // BaseDir/releases
	ReleaseDir  string // BaseDir/releases/<Version>
	CurrentDir  string // BaseDir/current (a symlink to the active release)
	// Artifact is the artifact's path on the host (inside ReleaseDir); ArtifactName its base name.
	Artifact       string
	ArtifactName   string
	ArtifactSHA256 string
	// Secrets are references to [secrets]: only a run step's commands may
	// use them, and they render as a shell variable, never the value.
	Secrets map[string]Secret
}

// HostData describes the host a template is rendered for.
type HostData struct {
	Name    string
	Address string
	Roles   []string
}
