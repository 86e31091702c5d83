package playbooks

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"text/template/parse"
	"time"
)

// NotifyConfig is one [[notify]] entry of relctl.toml: a webhook or a
// command told about chosen events of relctl's runs (internal/notify sends).
// Exactly one of Webhook and Command is set.
type NotifyConfig struct {
	// Name identifies the entry in warnings and the run log; unique.
	Name string `toml:"name"`
	// On lists the events it is told about (NotifyEvents).
	On []string `toml:"on"`
	// Webhook is the URL a Slack-compatible JSON body is POSTed to. It is a
	// credential, so it is a template of literal text and
	// {{.Secrets.NAME}}: the URL, or the part that is secret, comes from
	// [secrets]. A literal URL is accepted only for http:// on the loopback
	// interface (a local receiver, tests).
	Webhook string `toml:"webhook"`
	// Command is an argv run without a shell, in relctl.toml's directory,
	// with the event as JSON on its stdin.
	Command []string `toml:"command"`
	// Timeout bounds one delivery: the HTTP request, or the command (its
	// process group is killed). Default 10s.
	Timeout Duration `toml:"timeout"`
	// Environments limits the entry to these environments; empty: all.
	Environments []string `toml:"environments"`
}

// Notification events.
const (
	NotifyStart             = "start"              // a deploy or rollback run starts changing hosts
	NotifySuccess           = "success"            // the run ended well
	NotifyFailure           = "failure"            // the run failed (whatever its rollback did)
	NotifyRollback          = "rollback"           // hosts went back: a failed deploy's automatic rollback, or relctl rollback
	NotifyRehearsalRecorded = "rehearsal-recorded" // relctl rehearse stored its signed record (passed or failed)
	NotifyGateRefused       = "gate-refused"       // the rehearsal gate refused a deploy (or --skip-rehearsal overrode it)
)

// NotifyEvents lists every event a [[notify]] entry may name in on.
var NotifyEvents = []string{NotifyStart, NotifySuccess, NotifyFailure, NotifyRollback, NotifyRehearsalRecorded, NotifyGateRefused}

// DefaultNotifyTimeout bounds a delivery whose entry sets no timeout.
const DefaultNotifyTimeout = 10 * time.Second

// TimeoutOrDefault is the entry's timeout, DefaultNotifyTimeout when unset.
func (n *NotifyConfig) TimeoutOrDefault() time.Duration {
	if n.Timeout.Duration <= 0 {
		return DefaultNotifyTimeout
	}
	return n.Timeout.Duration
}

// Wants says whether the entry is told about event in environment env.
func (n *NotifyConfig) Wants(event, env string) bool {
	return slices.Contains(n.On, event) && (len(n.Environments) == 0 || slices.Contains(n.Environments, env))
}

// webhookPart is a piece of a webhook template: literal text, or the
// value of the secret Secret.
type webhookPart struct {
	Text, Secret string
}

// parseWebhook splits a webhook template into literal text and
// {{.Secrets.NAME}} references; anything else a template can do
// (functions, conditions, other fields) is refused: the template only says
// which part of the URL is secret.
func parseWebhook(text string) ([]webhookPart, error) {
	trees, err := parse.Parse("webhook", text, "{{", "}}")
	if err != nil {
		return nil, templateError(err)
	}
	var parts []webhookPart
	for _, n := range trees["webhook"].Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			parts = append(parts, webhookPart{Text: string(n.Text)})
		case *parse.ActionNode:
			name, ok := secretAction(n)
			if !ok {
				return nil, fmt.Errorf("%s: only literal text and {{.Secrets.NAME}} may be written in a webhook", n)
			}
			parts = append(parts, webhookPart{Secret: name})
		default:
			return nil, fmt.Errorf("%s: only literal text and {{.Secrets.NAME}} may be written in a webhook", n)
		}
	}
	return parts, nil
}

// secretAction reports the NAME of an action that is exactly {{.Secrets.NAME}}.
func secretAction(n *parse.ActionNode) (string, bool) {
	if n.Pipe == nil || len(n.Pipe.Decl) > 0 || len(n.Pipe.Cmds) != 1 || len(n.Pipe.Cmds[0].Args) != 1 {
		return "", false
	}
	f, ok := n.Pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 2 || f.Ident[0] != "Secrets" {
		return "", false
	}
	return f.Ident[1], true
}

// SecretNames lists the secrets the entry's webhook refers to, sorted.
func (n *NotifyConfig) SecretNames() []string {
	parts, err := parseWebhook(n.Webhook)
	if err != nil {
		return nil // a configuration problem: Load reported it
	}
	var out []string
	for _, p := range parts {
		if p.Secret != "" && !slices.Contains(out, p.Secret) {
			out = append(out, p.Secret)
		}
	}
	slices.Sort(out)
	return out
}

// WebhookURL renders the webhook with the secrets' values (value resolves
// one, or says why it cannot) and checks the URL it makes
// (CheckWebhookURL). Its errors never hold the URL.
func (n *NotifyConfig) WebhookURL(value func(name string) (string, error)) (string, error) {
	parts, err := parseWebhook(n.Webhook)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Secret == "" {
			b.WriteString(p.Text)
			continue
		}
		v, err := value(p.Secret)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	u := strings.TrimSpace(b.String())
	if err := CheckWebhookURL(u); err != nil {
		return "", err
	}
	return u, nil
}

// CheckWebhookURL accepts https:// URLs, and http:// ones to the loopback
// interface (localhost, 127.0.0.0/8, ::1): the body tells the world how a
// release went, and the URL is a credential, neither for the wire in clear.
// Its errors never hold the URL (it is a secret).
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("the webhook is not a URL")
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return errors.New("the webhook is not an absolute URL (https://host/path)")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("the webhook is http:// to a host other than the loopback interface: use https://")
	}
	return errors.New("the webhook's scheme is neither https nor http")
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// notifyProblems checks every [[notify]] entry.
func (c *Config) notifyProblems() Problems {
	var ps Problems
	names := map[string]string{} // entry name -> where it is first defined
	for i, n := range c.Notify {
		ps = append(ps, c.notifyEntryProblems(i, n, names)...)
	}
	return ps
}

// notifyEntryProblems checks entry i; names holds the entry names defined before it.
func (c *Config) notifyEntryProblems(i int, n *NotifyConfig, names map[string]string) Problems {
	ix := c.pos
	key := fmt.Sprintf("notify.%d", i)
	if n == nil {
		n = &NotifyConfig{}
	}
	label := "[[notify]]"
	if n.Name != "" {
		label = fmt.Sprintf("notify %q", n.Name)
	}
	var ps Problems
	add := func(sub, format string, args ...any) {
		k := key
		if sub != "" {
			k += "." + sub
		}
		ps = append(ps, ix.problem(k, label+": "+format, args...))
	}
	switch err := validName(n.Name); {
	case n.Name == "":
		add("", "missing name (it names the notification in warnings and the run log)")
	case err != nil:
		add("name", "%v", err)
	case names[n.Name] != "":
		add("name", "duplicate notify name (also at %s)", names[n.Name])
	default:
		names[n.Name] = ix.where(key + ".name")
	}
	if len(n.On) == 0 {
		add("on", "missing on: the events to tell it about (%s)", strings.Join(NotifyEvents, ", "))
	}
	for j, ev := range n.On {
		if slices.Contains(NotifyEvents, ev) {
			continue
		}
		hint := ""
		if near := nearestKey(NotifyEvents, ev); near != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", near)
		}
		add(fmt.Sprintf("on.%d", j), "unknown event %q%s; events: %s", ev, hint, strings.Join(NotifyEvents, ", "))
	}
	switch hasWebhook, hasCommand := ix.has(key+".webhook"), len(n.Command) > 0 || ix.has(key+".command"); {
	case hasWebhook && hasCommand:
		add("", "give only one of webhook and command")
	case hasWebhook:
		ps = append(ps, c.webhookProblems(key+".webhook", label, n.Webhook)...)
	case hasCommand:
		if len(n.Command) == 0 || n.Command[0] == "" {
			add("command", "the program (first element) is empty")
		}
	default:
		add("", "give one of webhook = \"{{.Secrets.NAME}}\" or command = [\"/path/to/program\", \"arg\"]")
	}
	tkey := key + ".timeout"
	if v, ok := ix.strings[tkey]; ok {
		var d Duration
		if err := d.parse(v); err != nil {
			add("timeout", "timeout: %v", err)
		} else if d.Duration <= 0 {
			add("timeout", "timeout must be more than 0s")
		}
	} else if ix.has(tkey) {
		add("timeout", "timeout: expected a duration string like \"10s\"")
	}
	for j, env := range n.Environments {
		if _, ok := c.Environments[env]; !ok {
			add(fmt.Sprintf("environments.%d", j), "environment %q is not defined in relctl.toml (it has: %s)", env, knownList(mapKeys(c.Environments)))
		}
	}
	return ps
}

// webhookProblems checks a webhook template: literal text and secrets
// only, at least one secret (a literal URL only for a loopback http
// receiver), each defined in [secrets], and the scheme when it is written
// literally.
func (c *Config) webhookProblems(key, label, text string) Problems {
	problem := func(format string, args ...any) Problems {
		return Problems{c.pos.problem(key, label+": webhook: "+format, args...)}
	}
	if strings.TrimSpace(text) == "" {
		return problem("is empty")
	}
	parts, err := parseWebhook(text)
	if err != nil {
		return problem("%v", err)
	}
	var ps Problems
	secrets := 0
	for _, p := range parts {
		if p.Secret == "" {
			continue
		}
		secrets++
		if _, ok := c.Secrets[p.Secret]; !ok {
			ps = append(ps, problem("secret %q is not defined: add [secrets.%s] (defined: %s)", p.Secret, p.Secret, knownList(mapKeys(c.Secrets)))...)
		}
	}
	if secrets == 0 {
		if err := CheckWebhookURL(text); err != nil || !isLoopbackURL(text) {
			return problem("a webhook URL is a credential: keep it in [secrets] and write webhook = \"{{.Secrets.NAME}}\" (a literal URL is accepted only for http:// on the loopback interface)")
		}
		return ps
	}
	// The scheme and host, when written before the first secret, can be
	// checked now; the rest is checked once the secrets are resolved.
	if prefix := parts[0].Text; strings.Contains(prefix, "://") {
		scheme, rest, _ := strings.Cut(prefix, "://")
		hostEnds := strings.ContainsAny(rest, "/?#")
		switch {
		case scheme == "https":
		case scheme == "http" && hostEnds:
			if err := CheckWebhookURL(prefix); err != nil {
				ps = append(ps, problem("%v", err)...)
			}
		default:
			ps = append(ps, problem("the URL must be https:// (http:// only to the loopback interface)")...)
		}
	}
	return ps
}

func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && isLoopbackHost(u.Hostname())
}

// NotifySecretNames lists the secrets the [[notify]] entries that could
// fire in env refer to, sorted: what a run there resolves for them.
func (c *Config) NotifySecretNames(env string) []string {
	var out []string
	for _, n := range c.Notify {
		if len(n.Environments) > 0 && !slices.Contains(n.Environments, env) {
			continue
		}
		for _, s := range n.SecretNames() {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}
