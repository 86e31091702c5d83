package transport

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
)

// Endpoint is how to log in to one SSH server: a host or a bastion.
type Endpoint struct {
	Address string // host:port; ":22" is added when the port is missing
	User    string // "": Options.User, else the local user
	// IdentityFiles replace Options.IdentityFile for this server when
	// non-nil: private keys tried in order (each with its <file>-cert.pub
	// certificate as today). A file that cannot be read or parsed is an
	// error for this server, naming the file; an encrypted one is used
	// through the agent as today.
	IdentityFiles []string
	// IdentitiesOnly: offer only IdentityFiles (and agent keys whose
	// public key is one of theirs, with its certificate), not every agent
	// key (OpenSSH IdentitiesOnly).
	IdentitiesOnly bool
	// KnownHostsFiles replace Options.KnownHostsFile when non-nil: every
	// file is read (a missing one is empty); accept-new appends to the
	// first. @cert-authority and @revoked lines count from any of them.
	KnownHostsFiles []string
	// GlobalKnownHostsFiles are read after KnownHostsFiles, never written
	// (OpenSSH's GlobalKnownHostsFile, /etc/ssh/ssh_known_hosts): with no
	// KnownHostsFiles, accept-new refuses an unknown host as ssh does.
	GlobalKnownHostsFiles []string
	// HashKnownHosts: a key accept-new records is written under the
	// hashed host name (OpenSSH HashKnownHosts).
	HashKnownHosts bool
	// SkipUnusableIdentities: an identity file that cannot be read or
	// parsed is left out, as ssh does with the keys of its configuration
	// and its defaults, instead of failing the server.
	SkipUnusableIdentities bool
	// HostKeyAlias, when set, is the name host keys are looked up under
	// instead of the address (OpenSSH HostKeyAlias).
	HostKeyAlias   string
	HostKeyPolicy  string        // "": Options.HostKeyPolicy
	ConnectTimeout time.Duration // 0: Options.ConnectTimeout
}

// Target is one host to connect to.
type Target struct {
	Name string // the inventory name, used in errors and logs
	Endpoint
	// Jumps are the bastions to reach the host through, first first; nil:
	// dialled directly. Each bastion connection is shared by every host
	// behind it (the pool key must include all of the bastion's Endpoint
	// fields and the chain before it, so two different logins to one
	// address are two connections; names in logs stay "bastion
	// user@host:port").
	Jumps []Endpoint
	// ForwardAgent forwards the local ssh-agent to this host's sessions
	// (never to bastions). Off unless asked for.
	ForwardAgent bool
}

// login is an Endpoint with the pool's defaults filled in: everything one
// dial needs.
type login struct {
	address        string // host:port
	user           string
	identityFiles  []string
	identitiesOnly bool
	hostKeys       *hostKeyChecker
	// lookup is the address known_hosts is searched and written under:
	// address, or HostKeyAlias (as OpenSSH, without a port).
	lookup       string
	alias        string
	timeout      time.Duration
	forwardAgent bool // hosts only
	// skipped are the identity files left out as unusable, for the run log.
	skipped []error
}

// lowerHost lower-cases the host name of host:port (an IP address, or a
// name that is not one, is left as it is).
func lowerHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || net.ParseIP(host) != nil {
		return addr
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

// display is how a bastion's login reads in names: "user@host:port".
func (l *login) display() string { return l.user + "@" + l.address }

// key is every setting of the login, so two bastions share a connection
// only when they would log in the same way.
func (l *login) key() string {
	parts := []string{l.user, l.address, strings.Join(l.identityFiles, "\x00"),
		strconv.FormatBool(l.identitiesOnly), strings.Join(l.hostKeys.paths(), "\x00"),
		strconv.Itoa(l.hostKeys.userFiles), strconv.FormatBool(l.hostKeys.hashNames),
		l.hostKeys.policy, l.alias, l.timeout.String()}
	for i, s := range parts {
		parts[i] = strconv.Quote(s)
	}
	return strings.Join(parts, " ")
}

// errNoIdentity is an endpoint with nothing to offer the server.
var errNoIdentity = errors.New("no SSH identity: set an identity file or use an ssh-agent")

// resolve fills in ep's defaults and loads what it needs: its identity
// files (each parsed once per pool) and its known_hosts checker. It
// returns every problem it finds; the login is usable only without any.
func (p *Pool) resolve(ep Endpoint) (*login, []error) {
	l := &login{
		address:        withDefaultPort(ep.Address),
		user:           ep.User,
		identityFiles:  ep.IdentityFiles,
		identitiesOnly: ep.IdentitiesOnly,
		alias:          ep.HostKeyAlias,
		timeout:        ep.ConnectTimeout,
	}
	var errs []error
	if l.user == "" {
		l.user = p.opts.User
	}
	if l.user == "" {
		u, err := user.Current()
		if err != nil {
			errs = append(errs, fmt.Errorf("no ssh user given and the local user is unknown: %w", err))
		} else {
			l.user = u.Username
		}
	}
	if l.identityFiles == nil && p.opts.IdentityFile != "" {
		l.identityFiles = []string{p.opts.IdentityFile}
	}
	usable := l.identityFiles[:0:0]
	for _, f := range l.identityFiles {
		switch _, err := p.identity(f); {
		case err == nil:
			usable = append(usable, f)
		case ep.SkipUnusableIdentities:
			l.skipped = append(l.skipped, err)
		default:
			errs = append(errs, err)
		}
	}
	if ep.SkipUnusableIdentities || len(errs) == 0 {
		l.identityFiles = usable
	}
	switch {
	case len(l.identityFiles) > 0:
	case !p.opts.UseAgent && len(l.skipped) > 0:
		errs = append(errs, fmt.Errorf("%w (left out as unusable: %v)", errNoIdentity, errors.Join(l.skipped...)))
	case !p.opts.UseAgent:
		errs = append(errs, errNoIdentity)
	case l.identitiesOnly:
		errs = append(errs, errors.New("no SSH identity: IdentitiesOnly is set and no identity file is given"))
	}
	policy := ep.HostKeyPolicy
	if policy == "" {
		policy = p.opts.HostKeyPolicy
	}
	policy, err := checkPolicy(policy)
	if err != nil {
		errs = append(errs, err)
		policy = PolicyStrict // a checker all the same, for CheckTargets to read its files
	}
	files := ep.KnownHostsFiles
	if files == nil {
		if p.defaultKnownHostsErr != nil {
			errs = append(errs, p.defaultKnownHostsErr)
		}
		files = []string{p.defaultKnownHosts}
	}
	l.hostKeys = p.hostKeyChecker(files, ep.GlobalKnownHostsFiles, policy, ep.HashKnownHosts)
	if l.timeout == 0 {
		l.timeout = p.opts.ConnectTimeout
	}
	// ssh looks host names up (and checks certificate principals) in
	// lower case: "LocalHost" is the known_hosts line of "localhost".
	l.address = lowerHost(l.address)
	l.lookup = l.address
	if l.alias != "" {
		l.lookup = net.JoinHostPort(l.alias, "22")
	}
	return l, errs
}

// resolveTarget resolves t's host and bastions (named as in logs), and
// checks that its agent can be forwarded. names[i] goes with logins[i];
// the host is last.
func (p *Pool) resolveTarget(t Target) (logins []*login, names []string, problems [][]error) {
	prefix := ""
	for _, j := range t.Jumps {
		l, errs := p.resolve(j)
		logins = append(logins, l)
		names = append(names, bastionName(prefix+l.display()))
		problems = append(problems, errs)
		prefix += l.display() + ">"
	}
	l, errs := p.resolve(t.Endpoint)
	if t.ForwardAgent {
		l.forwardAgent = true
		if _, err := p.agent(); err != nil {
			errs = append(errs, fmt.Errorf("ForwardAgent: cannot forward the ssh-agent: %w", err))
		}
	}
	return append(logins, l), append(names, t.Name), append(problems, errs)
}

// targetHop is the hop Get dials for t, with the bastions before it; the
// first problem found in t's settings is an error naming t (and the
// bastion it is about).
func (p *Pool) targetHop(t Target) (hop, error) {
	logins, names, problems := p.resolveTarget(t)
	last := len(logins) - 1
	for i, errs := range problems {
		if len(errs) == 0 {
			continue
		}
		if i == last {
			return hop{}, fmt.Errorf("%s: %w", t.Name, errs[0])
		}
		return hop{}, fmt.Errorf("%s: %s: %w", t.Name, names[i], errs[0])
	}
	// A host's connection is shared only by targets that reach it the same
	// way: one name in two environments may be two hosts.
	full := ""
	for _, l := range logins[:last] {
		full += ">" + l.key()
	}
	h := hop{key: t.Name + "\x00" + full + ">" + logins[last].key() + "\x00" + strconv.FormatBool(t.ForwardAgent), name: t.Name, login: logins[last]}
	full = ""
	for i, l := range logins[:last] {
		full += ">" + l.key()
		h.chain = append(h.chain, hop{
			key:     "\x00" + full, // never an inventory name
			name:    names[i],
			login:   l,
			bastion: true,
		})
	}
	return h, nil
}

// CheckTargets loads everything ts and their bastions will use - every
// identity file (and the agent for encrypted ones and for ForwardAgent)
// and every known_hosts file - and returns every problem at once, each
// naming the hosts and bastions it concerns, so a command can fail before
// it touches any host. What it loads stays loaded for the pool's Gets.
func (p *Pool) CheckTargets(ts []Target) error {
	type problem struct {
		err   error
		users []string
	}
	var order []string
	byText := map[string]*problem{}
	note := func(user string, err error) {
		text := err.Error()
		pr := byText[text]
		if pr == nil {
			pr = &problem{err: err}
			byText[text] = pr
			order = append(order, text)
		}
		if n := len(pr.users); n == 0 || pr.users[n-1] != user {
			pr.users = append(pr.users, user)
		}
	}
	read := map[*knownHostsFile]error{} // each file read once
	for _, t := range ts {
		logins, names, problems := p.resolveTarget(t)
		for i, l := range logins {
			for _, err := range problems[i] {
				note(names[i], err)
			}
			for _, f := range l.hostKeys.files {
				err, done := read[f]
				if !done {
					_, _, err = f.load()
					read[f] = err
				}
				if err != nil {
					note(names[i], err)
				}
			}
		}
	}
	var result *multierror.Error
	for _, text := range order {
		pr := byText[text]
		result = multierror.Append(result, fmt.Errorf("%s: %w", listNames(pr.users), pr.err))
	}
	if result != nil {
		result.ErrorFormat = problemList
	}
	return result.ErrorOrNil()
}

// problemList prints one problem as itself, several one per "  - " line.
func problemList(errs []error) string {
	if len(errs) == 1 {
		return errs[0].Error()
	}
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = "  - " + err.Error()
	}
	return fmt.Sprintf("%d problems:\n%s", len(errs), strings.Join(lines, "\n"))
}

// listNames is "a", "a, b" or "a, b, c and 7 more".
func listNames(names []string) string {
	seen := map[string]bool{}
	var uniq []string
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			uniq = append(uniq, n)
		}
	}
	if len(uniq) <= 3 {
		return strings.Join(uniq, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(uniq[:3], ", "), len(uniq)-3)
}
