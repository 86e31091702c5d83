package main

import (
	"bufio"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// Shell completion (cobra's `relctl completion bash|zsh|fish|powershell`)
// offers what relctl.toml and this machine's state directory name. A
// completion reads local files only: it never contacts a host and never
// prints an error; a configuration that does not load completes nothing.

// completer answers completions from the project the line's -c/--config
// names (cobra parses the line's flags before it asks).
type completer struct {
	project  func() (*playbooks.Project, error)
	stateDir func(*playbooks.Config) string
}

// registerCompletions gives every flag named below, on every command that
// has one of the right type, its completion, and `history show` its run
// IDs. Call it once the command tree is built; a completion a command
// registered itself is kept.
func registerCompletions(root *cobra.Command, f *Factory) {
	c := &completer{project: f.Project, stateDir: f.StateDir}
	byFlag := map[string]struct {
		types []string
		fn    cobra.CompletionFunc
	}{
		"env":         {[]string{"string", "stringArray"}, c.envs},
		"playbook":    {[]string{"string"}, c.playbooks},
		"release":     {[]string{"string"}, c.releases},
		"to":          {[]string{"string"}, c.rollbackTargets},
		"hosts":       {[]string{"stringSlice"}, c.hosts},
		"explain-ssh": {[]string{"string"}, c.anyHost},
		"config":      {[]string{"string"}, fixedFiles("toml")},
		"state-dir":   {[]string{"string"}, directories},
		"output":      {[]string{"string"}, fixed("text", "json")},
		"log-format":  {[]string{"string"}, fixed("console", "json", "auto")},
		"log-level":   {[]string{"string"}, fixed("debug", "info", "warn", "error")},
	}
	walkCommands(root, func(cmd *cobra.Command) {
		cmd.LocalFlags().VisitAll(func(fl *pflag.Flag) {
			reg, ok := byFlag[fl.Name]
			if !ok || !slices.Contains(reg.types, fl.Value.Type()) {
				return
			}
			if _, has := cmd.GetFlagCompletionFunc(fl.Name); has {
				return
			}
			_ = cmd.RegisterFlagCompletionFunc(fl.Name, reg.fn) // the flag exists and has no completion yet
		})
	})
	if show, _, err := root.Find([]string{"history", "show"}); err == nil && show.Name() == "show" && show.ValidArgsFunction == nil {
		show.ValidArgsFunction = c.runIDs
	}
}

// walkCommands calls fn for cmd and every command below it.
func walkCommands(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, sub := range cmd.Commands() {
		walkCommands(sub, fn)
	}
}

const noFiles = cobra.ShellCompDirectiveNoFileComp

func fixed(values ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return withPrefix(values, toComplete), noFiles
	}
}

func fixedFiles(exts ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return exts, cobra.ShellCompDirectiveFilterFileExt
	}
}

func directories(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// withPrefix keeps the values that start with prefix, in their order.
func withPrefix(values []string, prefix string) []string {
	var out []string
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}

// flagValue is a string flag's value on cmd's line ("" when unset or not a string).
func flagValue(cmd *cobra.Command, name string) string {
	if fl := cmd.Flags().Lookup(name); fl != nil && fl.Value.Type() == "string" {
		return fl.Value.String()
	}
	return ""
}

// load is the project, or nil when it does not load (completion stays quiet).
func (c *completer) load() *playbooks.Project {
	proj, err := c.project()
	if err != nil {
		return nil
	}
	return proj
}

// envs are relctl.toml's environments, sorted; parity's repeated --env
// leaves out the one already given.
func (c *completer) envs(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	proj := c.load()
	if proj == nil {
		return nil, noFiles
	}
	var given []string
	if fl := cmd.Flags().Lookup("env"); fl != nil && fl.Value.Type() == "stringArray" {
		given, _ = cmd.Flags().GetStringArray("env")
	}
	var out []string
	for _, name := range sortedKeys(proj.Config.Environments) {
		if !slices.Contains(given, name) {
			out = append(out, name)
		}
	}
	return withPrefix(out, toComplete), noFiles
}

// playbooks are the playbooks --env applies (all of them without --env).
func (c *completer) playbooks(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	proj := c.load()
	if proj == nil {
		return nil, noFiles
	}
	var names []string
	for _, pb := range c.selectedPlaybooks(cmd, proj, false) {
		names = append(names, pb.Name)
	}
	sort.Strings(names)
	return withPrefix(names, toComplete), noFiles
}

// selectedPlaybooks are --playbook's playbook (when usePlaybookFlag), else
// the ones --env applies, else every playbook.
func (c *completer) selectedPlaybooks(cmd *cobra.Command, proj *playbooks.Project, usePlaybookFlag bool) []*playbooks.Playbook {
	if name := flagValue(cmd, "playbook"); usePlaybookFlag && name != "" {
		if pb, ok := proj.Playbooks[name]; ok {
			return []*playbooks.Playbook{pb}
		}
		return nil
	}
	if env := flagValue(cmd, "env"); env != "" {
		if pbs, err := proj.PlaybooksFor(env); err == nil {
			return pbs
		}
		return nil
	}
	var out []*playbooks.Playbook
	for _, name := range sortedKeys(proj.Playbooks) {
		out = append(out, proj.Playbooks[name])
	}
	return out
}

// releases are the versions whose artifact files exist locally, newest first.
func (c *completer) releases(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	proj := c.load()
	if proj == nil {
		return nil, noFiles
	}
	return withPrefix(localReleases(cmd, c, proj), toComplete), noFiles | cobra.ShellCompDirectiveKeepOrder
}

// rollbackTargets are "prev", then the local releases, newest first.
func (c *completer) rollbackTargets(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	proj := c.load()
	if proj == nil {
		return nil, noFiles
	}
	return withPrefix(append([]string{"prev"}, localReleases(cmd, c, proj)...), toComplete), noFiles | cobra.ShellCompDirectiveKeepOrder
}

// versionPlaceholder stands for the version while artifact.path is rendered
// for completion; it is a valid version so that Project.Data accepts it.
const versionPlaceholder = "RELCTLVERSIONPLACEHOLDER"

// localReleases lists, for each selected playbook that ships a local
// artifact, the versions whose artifact file exists: artifact.path rendered
// with a placeholder for the version (per targeted host, as a deploy
// renders it), then globbed. Newest first by semver; versions that are not
// semver last.
func localReleases(cmd *cobra.Command, c *completer, proj *playbooks.Project) []string {
	envs := sortedKeys(proj.Config.Environments)
	if env := flagValue(cmd, "env"); env != "" {
		envs = []string{env}
	}
	patterns := map[string]bool{}
	for _, pb := range c.selectedPlaybooks(cmd, proj, true) {
		if pb.Artifact.Pulled() || pb.Artifact.Path == "" {
			continue
		}
		rendered := false
		for _, name := range envs {
			env, ok := proj.Config.Environments[name]
			if !ok || !appliesTo(proj, pb, name) {
				continue
			}
			for _, h := range pb.TargetHosts(env) {
				d, err := proj.Data(pb, env, h, versionPlaceholder, "")
				if err != nil {
					continue
				}
				if p, err := pb.ArtifactPath(proj.Config, d); err == nil {
					patterns[p], rendered = true, true
				}
			}
		}
		if !rendered { // no targeted host: a path that needs none still renders
			d := &playbooks.TemplateData{Project: proj.Config.Project, Playbook: pb.Name, Version: versionPlaceholder}
			if p, err := pb.ArtifactPath(proj.Config, d); err == nil {
				patterns[p] = true
			}
		}
	}
	seen := map[string]bool{}
	for p := range patterns {
		for _, v := range versionsAt(p) {
			seen[v] = true
		}
	}
	return newestFirst(slices.Collect(maps.Keys(seen)))
}

// appliesTo reports whether env applies pb.
func appliesTo(proj *playbooks.Project, pb *playbooks.Playbook, env string) bool {
	pbs, err := proj.PlaybooksFor(env)
	return err == nil && slices.Contains(pbs, pb)
}

// versionsAt globs the rendered artifact path (the placeholder as "*") and
// reads the version back out of each file found; a path that does not
// depend on the version has none.
func versionsAt(rendered string) []string {
	parts := strings.Split(rendered, versionPlaceholder)
	if len(parts) < 2 {
		return nil
	}
	glob, re := make([]string, len(parts)), make([]string, len(parts))
	for i, p := range parts {
		glob[i], re[i] = escapeGlob(p), regexp.QuoteMeta(p)
	}
	matches, err := filepath.Glob(strings.Join(glob, "*"))
	if err != nil {
		return nil
	}
	versionRE := regexp.MustCompile("^" + strings.Join(re, "([^/]+)") + "$")
	var out []string
	for _, m := range matches {
		sub := versionRE.FindStringSubmatch(m)
		if sub == nil || playbooks.ValidateVersion(sub[1]) != nil {
			continue
		}
		if slices.ContainsFunc(sub[2:], func(s string) bool { return s != sub[1] }) {
			continue // the version appears twice in the path, differently
		}
		if fi, err := os.Stat(m); err != nil || fi.IsDir() {
			continue
		}
		out = append(out, sub[1])
	}
	return out
}

// escapeGlob quotes filepath.Match's special characters.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// newestFirst sorts versions by semver, newest first; those that are not
// semver come after, in reverse lexical order.
func newestFirst(versions []string) []string {
	parsed := map[string]*semver.Version{}
	for _, v := range versions {
		if sv, err := semver.NewVersion(v); err == nil {
			parsed[v] = sv
		}
	}
	sort.Slice(versions, func(i, j int) bool {
		a, b := parsed[versions[i]], parsed[versions[j]]
		switch {
		case a != nil && b != nil && !a.Equal(b):
			return a.GreaterThan(b)
		case (a == nil) != (b == nil):
			return a != nil
		}
		return versions[i] > versions[j]
	})
	return versions
}

// hosts completes the last name of a comma-separated --hosts list with the
// names of --env's hosts (--playbook's targets, when given) not yet listed.
func (c *completer) hosts(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	proj := c.load()
	if proj == nil {
		return nil, noFiles
	}
	env, ok := proj.Config.Environments[flagValue(cmd, "env")]
	if !ok {
		return nil, noFiles
	}
	hosts := env.Hosts
	if pb, ok := proj.Playbooks[flagValue(cmd, "playbook")]; ok {
		hosts = pb.TargetHosts(env)
	}
	done, part := "", toComplete
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		done, part = toComplete[:i+1], toComplete[i+1:]
	}
	listed := strings.Split(done, ",")
	var out []string
	for _, h := range hosts {
		if strings.HasPrefix(h.Name, part) && !slices.Contains(listed, h.Name) {
			out = append(out, done+h.Name)
		}
	}
	return out, noFiles
}

// anyHost completes validate --explain-ssh: --env's hosts, else every
// environment's, each name once.
func (c *completer) anyHost(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	proj := c.load()
	if proj == nil {
		return nil, noFiles
	}
	envs := sortedKeys(proj.Config.Environments)
	if env := flagValue(cmd, "env"); env != "" {
		envs = []string{env}
	}
	var out []string
	for _, name := range envs {
		if env, ok := proj.Config.Environments[name]; ok {
			for _, h := range env.Hosts {
				if !slices.Contains(out, h.Name) {
					out = append(out, h.Name)
				}
			}
		}
	}
	return withPrefix(out, toComplete), noFiles
}

// runIDs completes `history show`'s argument with the runs in this
// machine's journal directory, newest first (run IDs begin with their UTC
// start time), each described by its journal's first line.
func (c *completer) runIDs(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, noFiles
	}
	proj := c.load()
	if proj == nil {
		return nil, noFiles
	}
	dir := filepath.Dir(state.JournalPath(c.stateDir(proj.Config), "x"))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, noFiles
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".jsonl"); ok && id != "" && !e.IsDir() && strings.HasPrefix(id, toComplete) {
			ids = append(ids, id)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if desc := runDescription(filepath.Join(dir, id+".jsonl")); desc != "" {
			id = cobra.CompletionWithDesc(id, desc)
		}
		out = append(out, id)
	}
	return out, noFiles | cobra.ShellCompDirectiveKeepOrder
}

// runDescription is "command env release" from a journal's run-start line
// (its first), or "" when that line cannot be read.
func runDescription(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 64<<10).ReadSlice('\n')
	if err != nil && len(line) == 0 {
		return ""
	}
	ev, err := state.ParseJournalLine(line)
	if err != nil || ev.Kind != "run-start" {
		return ""
	}
	var words []string
	for _, w := range []string{ev.Command, ev.Env, ev.Release} {
		if w != "" {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}
