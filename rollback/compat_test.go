package rollback_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/rollback"
)

// carrying is an activation recorded with its component and constraints
// (requires as "name", "constraint" pairs).
func carrying(a state.Activation, component string, requires ...string) state.Activation {
	a.Component = component
	if len(requires) > 0 {
		a.Requires = map[string]string{}
		for i := 0; i+1 < len(requires); i += 2 {
			a.Requires[requires[i]] = requires[i+1]
		}
	}
	return a
}

// fleetPart is a playbook's hosts, releasing component.
func fleetPart(component string, hosts ...rollback.HostState) rollback.ComponentFleet {
	return rollback.ComponentFleet{Component: component, Playbook: component, Fleet: &rollback.Fleet{Env: "staging", Hosts: hosts}}
}

// running is a component whose hosts run the given versions, each
// deployed once with the given constraints. Spec: host, version, requires...
type hostSpec struct {
	name, version string
	requires      []string
}

func runningComponent(component string, minute int, specs ...hostSpec) rollback.ComponentFleet {
	var hosts []rollback.HostState
	for i, s := range specs {
		hosts = append(hosts, host(s.name, s.version, carrying(deployed(s.version, "", minute+i), component, s.requires...)))
	}
	return fleetPart(component, hosts...)
}

func TestCheckCompatibility(t *testing.T) {
	cache := func(version string, requires ...string) rollback.ComponentFleet {
		return runningComponent("cache", 0, hostSpec{"staging-3", version, requires})
	}
	tests := []struct {
		name      string
		fleets    []rollback.ComponentFleet
		component string
		version   string
		requires  map[string]string
		want      []string // Conflict.String() of each conflict, in order
	}{
		{
			name:      "the release requires a range the running cache is below",
			fleets:    []rollback.ComponentFleet{cache("1.9.0")},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": ">=2.0, <3"},
			want: []string{`search 1.1.0 requires cache ">=2.0, <3", but staging runs cache 1.9.0 (staging-3)`},
		},
		{
			name:      "the release requires a range the running cache is inside",
			fleets:    []rollback.ComponentFleet{cache("2.1.0")},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": ">=2.0, <3"},
		},
		{
			name:      "a rollback target requires what was upgraded past",
			fleets:    []rollback.ComponentFleet{cache("2.1.0")},
			component: "search", version: "1.0.0", requires: map[string]string{"cache": "<2.0"},
			want: []string{"search 1.0.0 requires cache <2.0, but staging runs cache 2.1.0 (staging-3)"},
		},
		{
			name:      "the running cache requires a newer search than the target",
			fleets:    []rollback.ComponentFleet{cache("2.1.0", "search", ">=1.1")},
			component: "search", version: "1.0.0",
			want: []string{"cache 2.1.0 (running on staging-3) requires search >=1.1, and search would be 1.0.0"},
		},
		{
			name:      "the running cache accepts the target",
			fleets:    []rollback.ComponentFleet{cache("2.1.0", "search", ">=1.1")},
			component: "search", version: "1.1.0",
		},
		{
			name:      "both directions at once",
			fleets:    []rollback.ComponentFleet{cache("2.1.0", "search", ">=1.1")},
			component: "search", version: "1.0.0", requires: map[string]string{"cache": "<2"},
			want: []string{
				"search 1.0.0 requires cache <2, but staging runs cache 2.1.0 (staging-3)",
				"cache 2.1.0 (running on staging-3) requires search >=1.1, and search would be 1.0.0",
			},
		},
		{
			name: "several components, in playbook order, only the broken constraints",
			fleets: []rollback.ComponentFleet{
				cache("2.1.0"),
				runningComponent("db", 0, hostSpec{"db-1", "14.2.0", []string{"search", "^1.2"}}),
				runningComponent("queue", 0, hostSpec{"queue-1", "3.3.0", []string{"search", ">=1.0"}}),
			},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": "~2.1", "db": "^15", "queue": "3.x"},
			want: []string{
				"search 1.1.0 requires db ^15, but staging runs db 14.2.0 (db-1)",
				"db 14.2.0 (running on db-1) requires search ^1.2, and search would be 1.1.0",
			},
		},
		{
			name: "mixed versions on a component: each running version is checked",
			fleets: []rollback.ComponentFleet{runningComponent("cache", 0,
				hostSpec{"cache-1", "2.0.0", nil}, hostSpec{"cache-2", "1.9.0", nil}, hostSpec{"cache-3", "2.0.0", nil})},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": "^2"},
			want: []string{`search 1.1.0 requires cache ^2, but staging runs cache 1.9.0 (cache-2)`},
		},
		{
			name: "mixed versions: only the release carrying the constraint refuses",
			fleets: []rollback.ComponentFleet{runningComponent("cache", 0,
				hostSpec{"cache-1", "2.1.0", []string{"search", ">=1.1"}}, hostSpec{"cache-2", "2.0.0", nil})},
			component: "search", version: "1.0.0",
			want: []string{"cache 2.1.0 (running on cache-1) requires search >=1.1, and search would be 1.0.0"},
		},
		{
			name: "a running release with unknown constraints constrains nothing",
			fleets: []rollback.ComponentFleet{fleetPart("cache",
				host("staging-3", "2.1.0", deployed("2.1.0", "", 0)))},
			component: "search", version: "1.0.0",
		},
		{
			name:      "tilde: 1.5.0 is outside ~1.4",
			fleets:    []rollback.ComponentFleet{cache("1.5.0")},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": "~1.4"},
			want: []string{"search 1.1.0 requires cache ~1.4, but staging runs cache 1.5.0 (staging-3)"},
		},
		{
			name:      "tilde: 1.4.9 is inside ~1.4",
			fleets:    []rollback.ComponentFleet{cache("1.4.9")},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": "~1.4"},
		},
		{
			name:      "caret: 3.0.0 is outside ^2",
			fleets:    []rollback.ComponentFleet{cache("3.0.0")},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": "^2"},
			want: []string{"search 1.1.0 requires cache ^2, but staging runs cache 3.0.0 (staging-3)"},
		},
		{
			name:      "range: 3.0.0 is outside >=2.0, <3",
			fleets:    []rollback.ComponentFleet{cache("3.0.0")},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": ">=2.0, <3"},
			want: []string{`search 1.1.0 requires cache ">=2.0, <3", but staging runs cache 3.0.0 (staging-3)`},
		},
		{
			name:      "a running version that is not semantic cannot satisfy a constraint",
			fleets:    []rollback.ComponentFleet{cache("nightly-7")},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": ">=2.0"},
			want: []string{`search 1.1.0 requires cache >=2.0, but staging runs cache nightly-7 (staging-3); "nightly-7" is not a semantic version, so no constraint can accept it`},
		},
		{
			name:      "a target version that is not semantic cannot satisfy a running constraint",
			fleets:    []rollback.ComponentFleet{cache("2.1.0", "search", ">=1.1")},
			component: "search", version: "build-42",
			want: []string{`cache 2.1.0 (running on staging-3) requires search >=1.1, and search would be build-42; "build-42" is not a semantic version, so no constraint can accept it`},
		},
		{
			name:      "a non-semantic version nobody constrains is fine",
			fleets:    []rollback.ComponentFleet{cache("nightly-7")},
			component: "search", version: "build-42",
		},
		{
			name:      "a recorded constraint that does not parse is a conflict",
			fleets:    []rollback.ComponentFleet{cache("2.1.0", "search", "newest please")},
			component: "search", version: "1.1.0",
			want: []string{`cache 2.1.0 (running on staging-3) requires search "newest please", and search would be 1.1.0; "newest please" is not a version constraint (improper constraint: newest please)`},
		},
		{
			name: "a component no host runs yet constrains nothing and is not constrained",
			fleets: []rollback.ComponentFleet{fleetPart("cache",
				host("staging-3", ""))},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": ">=2.0"},
		},
		{
			name:      "a constraint on a component the environment does not have",
			fleets:    []rollback.ComponentFleet{cache("2.1.0")},
			component: "search", version: "1.1.0", requires: map[string]string{"metrics": ">=9"},
		},
		{
			name: "the component's own other hosts are not checked against it",
			fleets: []rollback.ComponentFleet{
				runningComponent("search", 0, hostSpec{"staging-1", "1.0.0", []string{"cache", "<2"}}),
				cache("2.1.0"),
			},
			component: "search", version: "1.1.0", requires: map[string]string{"cache": ">=2.0, <3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rollback.BuildComponents("staging", tt.fleets)
			var got []string
			for _, cf := range rollback.CheckCompatibility(c, tt.component, tt.version, tt.requires) {
				got = append(got, cf.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("conflicts:\n  got  %q\n  want %q", got, tt.want)
			}
		})
	}
}

func TestConflictFields(t *testing.T) {
	c := rollback.BuildComponents("production", []rollback.ComponentFleet{
		runningComponent("cache", 0, hostSpec{"cache-1", "2.1.0", []string{"search", ">=1.1"}}),
	})
	got := rollback.CheckCompatibility(c, "search", "1.0.0", map[string]string{"cache": "<2.0"})
	want := []rollback.Conflict{
		{Env: "production", Component: "cache", Version: "2.1.0", Constraint: "<2.0", Requirer: "search", RequirerVersion: "1.0.0",
			Hosts: []string{"cache-1"}, Direction: rollback.TargetRequires},
		{Env: "production", Component: "search", Version: "1.0.0", Constraint: ">=1.1", Requirer: "cache", RequirerVersion: "2.1.0",
			Hosts: []string{"cache-1"}, Direction: rollback.RequiredByRunning},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("conflicts:\n  got  %+v\n  want %+v", got, want)
	}
	if s := got[0].String(); s != "search 1.0.0 requires cache <2.0, but production runs cache 2.1.0 (cache-1)" {
		t.Errorf("String() = %q", s)
	}
}

func TestBuildComponents(t *testing.T) {
	c := rollback.BuildComponents("staging", []rollback.ComponentFleet{
		{Component: "search", Playbook: "search", Requires: map[string]string{"cache": ">=1.9"}, Fleet: &rollback.Fleet{Hosts: []rollback.HostState{
			host("staging-1", "1.1.0",
				carrying(deployed("1.0.0", "", 0), "search", "cache", "<2"),
				carrying(deployed("1.1.0", "1.0.0", 10), "search", "cache", ">=1.9")),
			host("staging-2", "1.0.0",
				carrying(deployed("1.0.0", "", 1), "search", "cache", "<2"),
				carrying(deployed("1.1.0", "1.0.0", 11), "search", "cache", ">=1.9"),
				// the rollback copied 1.0.0's constraints: the newest activation says them
				carrying(rolledBack("1.0.0", "1.1.0", 12), "search", "cache", "<2"),
				// a relctl that did not record constraints re-activated 1.1.0: still known
				rolledBack("1.1.0", "1.0.0", 13),
				rolledBack("1.0.0", "1.1.0", 14)),
			{Name: "staging-4", Err: errors.New("connection refused")},
		}}},
		{Component: "cache", Playbook: "cache-east", Fleet: &rollback.Fleet{Hosts: []rollback.HostState{
			host("cache-1", "2.0.0", deployed("1.9.0", "", 0), carrying(deployed("2.0.0", "1.9.0", 20), "cache")),
		}}},
		{Component: "cache", Playbook: "cache-west", Fleet: &rollback.Fleet{Hosts: []rollback.HostState{
			// current set by hand: no activation says what it carries
			host("cache-2", "2.2.0-hotfix", deployed("1.9.0", "", 2)),
			host("cache-3", ""),
		}}},
	})
	type rel struct {
		Version  string
		Hosts    []string
		Known    bool
		Requires map[string]string
	}
	flatten := func(rs []*rollback.ComponentRelease) []rel {
		var out []rel
		for _, r := range rs {
			out = append(out, rel{r.Version, r.Hosts, r.Known, r.Requires})
		}
		return out
	}
	if len(c.List) != 2 || c.List[0].Name != "search" || c.List[1].Name != "cache" {
		t.Fatalf("components %+v, want search then cache (playbook order)", c.List)
	}
	search, cache := c.Component("search"), c.Component("cache")
	if !search.Declares || cache.Declares {
		t.Errorf("Declares: search %v, cache %v; want true, false", search.Declares, cache.Declares)
	}
	if got, want := flatten(search.Running), []rel{
		{"1.0.0", []string{"staging-2"}, true, map[string]string{"cache": "<2"}},
		{"1.1.0", []string{"staging-1"}, true, map[string]string{"cache": ">=1.9"}},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("search running:\n  got  %+v\n  want %+v", got, want)
	}
	if got, want := search.Unreadable, []string{"staging-4: connection refused"}; !reflect.DeepEqual(got, want) {
		t.Errorf("search unreadable = %q, want %q", got, want)
	}
	if got, want := flatten(search.Released), []rel{
		{"1.0.0", nil, true, map[string]string{"cache": "<2"}},
		{"1.1.0", nil, true, map[string]string{"cache": ">=1.9"}},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("search released (most recent first):\n  got  %+v\n  want %+v", got, want)
	}
	if got, want := cache.Playbooks, []string{"cache-east", "cache-west"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cache playbooks = %q, want %q", got, want)
	}
	if got, want := flatten(cache.Running), []rel{
		{"2.0.0", []string{"cache-1"}, true, nil},
		{"2.2.0-hotfix", []string{"cache-2"}, false, nil},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("cache running:\n  got  %+v\n  want %+v", got, want)
	}
}

func TestOptions(t *testing.T) {
	// cacheHistory: cache-1 ran these versions in order (each with its
	// constraints), and runs the last one.
	type release struct {
		version  string
		known    bool
		requires []string
	}
	cacheHistory := func(rs ...release) rollback.ComponentFleet {
		var acts []state.Activation
		prev := ""
		for i, r := range rs {
			a := deployed(r.version, prev, i*10)
			if r.known {
				a = carrying(a, "cache", r.requires...)
			}
			acts = append(acts, a)
			prev = r.version
		}
		return fleetPart("cache", host("cache-1", rs[len(rs)-1].version, acts...))
	}
	searchOn := func(version string, requires ...string) rollback.ComponentFleet {
		return runningComponent("search", 0, hostSpec{"search-1", version, requires})
	}
	rollbackSearch := func(version string, requires ...string) rollback.CompatRequest {
		req := rollback.CompatRequest{Env: "staging", Kind: deploy.KindRollback, Component: "search", Version: version, RequiresKnown: true,
			Retry: "relctl rollback --env staging --playbook search --to prev"}
		if len(requires) > 0 {
			req.Requires = map[string]string{requires[0]: requires[1]}
		}
		return req
	}
	tests := []struct {
		name   string
		fleets []rollback.ComponentFleet
		req    rollback.CompatRequest
		want   []string
	}{
		{
			name: "rollback: roll forward, or roll cache back to the newest release that satisfies the target",
			fleets: []rollback.ComponentFleet{searchOn("1.1.0"),
				cacheHistory(release{"1.8.0", true, nil}, release{"1.9.0", true, nil}, release{"2.0.0", true, nil}, release{"2.1.0", true, nil})},
			req: rollbackSearch("1.0.0", "cache", "<2"),
			want: []string{
				"roll forward: deploy a release of search that works with cache 2.1.0",
				"roll cache back too: relctl rollback --env staging --playbook cache --to 1.9.0, then relctl rollback --env staging --playbook search --to prev",
			},
		},
		{
			name:   "rollback: no cache release the environment ran satisfies the target",
			fleets: []rollback.ComponentFleet{searchOn("1.1.0"), cacheHistory(release{"2.0.0", true, nil}, release{"2.1.0", true, nil})},
			req:    rollbackSearch("1.0.0", "cache", "<2"),
			want: []string{
				"roll forward: deploy a release of search that works with cache 2.1.0",
				"roll cache back too: no release of cache that staging ran is known to work with search 1.0.0",
			},
		},
		{
			name: "rollback: the running cache refuses the target; an older cache known to accept it is offered",
			fleets: []rollback.ComponentFleet{searchOn("1.1.0"), cacheHistory(
				release{"1.9.0", true, nil}, release{"2.0.0", true, []string{"search", ">=1.0"}}, release{"2.1.0", true, []string{"search", ">=1.1"}})},
			req: rollbackSearch("1.0.0"),
			want: []string{
				"roll forward: deploy a release of search that works with cache 2.1.0",
				"roll cache back too: relctl rollback --env staging --playbook cache --to 2.0.0, then relctl rollback --env staging --playbook search --to prev",
			},
		},
		{
			name: "rollback: a cache release with unknown constraints is not offered where cache refused the target",
			fleets: []rollback.ComponentFleet{searchOn("1.1.0"), cacheHistory(
				release{"1.9.0", true, nil}, release{"2.0.0", false, nil}, release{"2.1.0", true, []string{"search", ">=1.1"}})},
			req: rollbackSearch("1.0.0"),
			want: []string{
				"roll forward: deploy a release of search that works with cache 2.1.0",
				"roll cache back too: relctl rollback --env staging --playbook cache --to 1.9.0, then relctl rollback --env staging --playbook search --to prev",
			},
		},
		{
			name: "rollback: a cache release that satisfies the target but refuses it itself is not offered",
			fleets: []rollback.ComponentFleet{searchOn("1.1.0"), cacheHistory(
				release{"1.8.0", true, nil}, release{"1.9.0", true, []string{"search", ">=1.1"}}, release{"2.1.0", true, nil})},
			req: rollbackSearch("1.0.0", "cache", "<2"),
			want: []string{
				"roll forward: deploy a release of search that works with cache 2.1.0",
				"roll cache back too: relctl rollback --env staging --playbook cache --to 1.8.0, then relctl rollback --env staging --playbook search --to prev",
			},
		},
		{
			name: "rollback: several components in conflict, one option each",
			fleets: []rollback.ComponentFleet{searchOn("1.1.0"),
				cacheHistory(release{"1.9.0", true, nil}, release{"2.1.0", true, nil}),
				runningComponent("db", 0, hostSpec{"db-1", "15.0.0", []string{"search", ">=1.1"}}),
			},
			req: rollback.CompatRequest{Env: "staging", Kind: deploy.KindRollback, Component: "search", Version: "1.0.0",
				Requires: map[string]string{"cache": "<2"}, RequiresKnown: true, Retry: "relctl rollback --env staging --playbook search --to 1.0.0"},
			want: []string{
				"roll forward: deploy a release of search that works with cache 2.1.0 and db 15.0.0",
				"roll cache back too: relctl rollback --env staging --playbook cache --to 1.9.0, then relctl rollback --env staging --playbook search --to 1.0.0",
				"roll db back too: no release of db that staging ran is known to work with search 1.0.0",
			},
		},
		{
			name:   "deploy: search refuses the new cache; search ran a release that accepts it",
			fleets: []rollback.ComponentFleet{fleetPart("search", host("search-1", "1.0.0", carrying(deployed("1.0.0", "", 0), "search", "cache", "<2"), carrying(deployed("1.1.0", "1.0.0", 10), "search", "cache", ">=1.9, <3"), carrying(rolledBack("1.0.0", "1.1.0", 20), "search", "cache", "<2"))), cacheHistory(release{"1.9.0", true, nil})},
			req: rollback.CompatRequest{Env: "staging", Kind: deploy.KindDeploy, Component: "cache", Version: "2.0.0", RequiresKnown: true,
				Retry: "relctl deploy --env staging --playbook cache --release 2.0.0"},
			want: []string{
				"deploy a release of cache that works with search 1.0.0 instead",
				"move search to 1.1.0 first: relctl deploy --env staging --playbook search --release 1.1.0, then relctl deploy --env staging --playbook cache --release 2.0.0",
			},
		},
		{
			name:   "deploy: the new search needs a cache the environment never ran",
			fleets: []rollback.ComponentFleet{searchOn("1.0.0"), cacheHistory(release{"1.9.0", true, nil})},
			req: rollback.CompatRequest{Env: "staging", Kind: deploy.KindDeploy, Component: "search", Version: "1.1.0",
				Requires: map[string]string{"cache": ">=2.0, <3"}, RequiresKnown: true, Retry: "relctl deploy --env staging --playbook search --release 1.1.0"},
			want: []string{
				"deploy a release of search that works with cache 1.9.0 instead",
				"deploy a release of cache that works with search 1.1.0 first (none that staging ran is known to), then relctl deploy --env staging --playbook search --release 1.1.0",
			},
		},
		{
			name:   "deploy: the new search needs an older cache the environment ran",
			fleets: []rollback.ComponentFleet{searchOn("1.0.0"), cacheHistory(release{"1.9.0", true, nil}, release{"2.0.0", true, nil})},
			req: rollback.CompatRequest{Env: "staging", Kind: deploy.KindDeploy, Component: "search", Version: "1.1.0",
				Requires: map[string]string{"cache": "<2"}, RequiresKnown: true, Retry: "relctl deploy --env staging --playbook search --release 1.1.0"},
			want: []string{
				"deploy a release of search that works with cache 2.0.0 instead",
				"roll cache back first: relctl rollback --env staging --playbook cache --to 1.9.0, then relctl deploy --env staging --playbook search --release 1.1.0",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rollback.BuildComponents("staging", tt.fleets)
			conflicts := rollback.CheckCompatibility(c, tt.req.Component, tt.req.Version, tt.req.Requires)
			if len(conflicts) == 0 {
				t.Fatal("the fixture has no conflict")
			}
			if got := rollback.Options(c, tt.req, conflicts); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("options:\n  got  %q\n  want %q", got, tt.want)
			}
		})
	}
}

func TestEvaluateCompat(t *testing.T) {
	cacheDown := rollback.ComponentFleet{Component: "cache", Playbook: "cache", Fleet: &rollback.Fleet{Hosts: []rollback.HostState{
		{Name: "staging-3", Err: errors.New("dial tcp 127.0.0.1:2203: connect: connection refused")},
	}}}
	rollbackReq := rollback.CompatRequest{Env: "staging", Kind: deploy.KindRollback, Component: "search", Version: "1.0.0",
		Requires: map[string]string{"cache": "<2"}, RequiresKnown: true, Retry: "relctl rollback --env staging --playbook search --to prev"}

	t.Run("no constraint anywhere: nothing to show, even with a host down", func(t *testing.T) {
		c := rollback.BuildComponents("staging", []rollback.ComponentFleet{runningComponent("search", 0, hostSpec{"staging-1", "1.1.0", nil}), cacheDown})
		rep, err := rollback.Evaluate(c, rollback.CompatRequest{Env: "staging", Kind: deploy.KindDeploy, Component: "search", Version: "1.2.0", RequiresKnown: true})
		if err != nil || rep.InUse || len(rep.Checked)+len(rep.Notes) > 0 {
			t.Errorf("got %+v, %v; want an empty report", rep, err)
		}
	})

	t.Run("another component's host cannot be read: refused, naming it", func(t *testing.T) {
		c := rollback.BuildComponents("staging", []rollback.ComponentFleet{runningComponent("search", 0, hostSpec{"staging-1", "1.1.0", nil}), cacheDown})
		_, err := rollback.Evaluate(c, rollbackReq)
		var inc *rollback.IncompleteError
		if !errors.Is(err, rollback.ErrCompatibilityUnknown) || !errors.As(err, &inc) {
			t.Fatalf("err = %v, want an IncompleteError", err)
		}
		want := "cannot check that search 1.0.0 works with what staging runs: not every host could be read, and refusing is safer than guessing\n" +
			"  cache: staging-3: dial tcp 127.0.0.1:2203: connect: connection refused\n" +
			"bring them back (relctl status --env staging), then run the command again; no host was changed"
		if err.Error() != want {
			t.Errorf("message:\n%s\nwant:\n%s", err, want)
		}
	})

	t.Run("the component's own unreadable host is left to the deploy's preflight", func(t *testing.T) {
		c := rollback.BuildComponents("staging", []rollback.ComponentFleet{
			{Component: "search", Playbook: "search", Fleet: &rollback.Fleet{Hosts: []rollback.HostState{{Name: "staging-1", Err: errors.New("down")}}}},
			runningComponent("cache", 0, hostSpec{"staging-3", "1.9.0", nil}),
		})
		if _, err := rollback.Evaluate(c, rollbackReq); err != nil {
			t.Errorf("err = %v, want none", err)
		}
	})

	t.Run("incompatible: the conflicts and the ways out", func(t *testing.T) {
		c := rollback.BuildComponents("staging", []rollback.ComponentFleet{
			runningComponent("search", 0, hostSpec{"staging-1", "1.1.0", nil}),
			fleetPart("cache", host("staging-3", "2.1.0",
				carrying(deployed("1.9.0", "", 0), "cache"), carrying(deployed("2.0.0", "1.9.0", 10), "cache"), carrying(deployed("2.1.0", "2.0.0", 20), "cache"))),
		})
		_, err := rollback.Evaluate(c, rollbackReq)
		var inc *rollback.IncompatibleError
		if !errors.Is(err, rollback.ErrIncompatible) || !errors.As(err, &inc) {
			t.Fatalf("err = %v, want an IncompatibleError", err)
		}
		if inc.Env != "staging" || inc.Component != "search" || inc.Target != "1.0.0" || inc.Kind != deploy.KindRollback || len(inc.Conflicts) != 1 {
			t.Errorf("error fields %+v", inc)
		}
		want := "refusing to roll search back to 1.0.0 in staging: it does not work with what staging runs\n" +
			"  search 1.0.0 requires cache <2, but staging runs cache 2.1.0 (staging-3)\n" +
			"options:\n" +
			"  1. roll forward: deploy a release of search that works with cache 2.1.0\n" +
			"  2. roll cache back too: relctl rollback --env staging --playbook cache --to 1.9.0, then relctl rollback --env staging --playbook search --to prev\n" +
			"no host was changed"
		if err.Error() != want {
			t.Errorf("message:\n%s\nwant:\n%s", err, want)
		}
	})

	t.Run("a deploy refusal says deploy", func(t *testing.T) {
		c := rollback.BuildComponents("staging", []rollback.ComponentFleet{runningComponent("search", 0, hostSpec{"staging-1", "1.0.0", []string{"cache", "<2"}}),
			runningComponent("cache", 0, hostSpec{"staging-3", "1.9.0", nil})})
		_, err := rollback.Evaluate(c, rollback.CompatRequest{Env: "staging", Kind: deploy.KindDeploy, Component: "cache", Version: "2.0.0", RequiresKnown: true})
		if err == nil || !strings.HasPrefix(err.Error(), "refusing to deploy cache 2.0.0 to staging: it does not work with what staging runs\n"+
			"  search 1.0.0 (running on staging-1) requires cache <2, and cache would be 2.0.0\n") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("compatible: what was checked, and what could not be", func(t *testing.T) {
		c := rollback.BuildComponents("staging", []rollback.ComponentFleet{
			runningComponent("search", 0, hostSpec{"staging-1", "1.1.0", nil}),
			runningComponent("cache", 0, hostSpec{"staging-3", "1.9.0", []string{"search", "<2"}}, hostSpec{"staging-4", "1.9.0", []string{"search", "<2"}}),
			fleetPart("db", host("db-1", "15.0.0", deployed("15.0.0", "", 0))),
			fleetPart("queue", host("queue-1", "")),
		})
		rep, err := rollback.Evaluate(c, rollback.CompatRequest{Env: "staging", Kind: deploy.KindRollback, Component: "search", Version: "1.0.0",
			Requires: map[string]string{"cache": ">=1.9, <3", "queue": "^3", "metrics": "^1"}, RequiresKnown: true})
		if err != nil {
			t.Fatal(err)
		}
		wantChecked := []string{
			`search 1.0.0 requires cache ">=1.9, <3": staging runs cache 1.9.0 (staging-[3-4])`,
			"search 1.0.0 requires queue ^3: staging runs no queue yet",
			"cache 1.9.0 (running on staging-[3-4]) requires search <2: search 1.0.0 satisfies it",
		}
		wantNotes := []string{
			"search 1.0.0 requires metrics ^1, but no playbook of staging releases metrics: not checked",
			"db 15.0.0 (db-1): its constraints are unknown (activated before relctl recorded them): not checked",
		}
		if !rep.InUse || !reflect.DeepEqual(rep.Checked, wantChecked) || !reflect.DeepEqual(rep.Notes, wantNotes) {
			t.Errorf("report:\n  in use  %v\n  checked %q\n  notes   %q\nwant\n  checked %q\n  notes   %q", rep.InUse, rep.Checked, rep.Notes, wantChecked, wantNotes)
		}
	})

	t.Run("a rollback target with unknown constraints: only the other side is checked, and said so", func(t *testing.T) {
		c := rollback.BuildComponents("staging", []rollback.ComponentFleet{
			runningComponent("search", 0, hostSpec{"staging-1", "1.1.0", nil}),
			runningComponent("cache", 0, hostSpec{"staging-3", "2.1.0", []string{"search", ">=1.0"}}),
		})
		rep, err := rollback.Evaluate(c, rollback.CompatRequest{Env: "staging", Kind: deploy.KindRollback, Component: "search", Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"search 1.0.0: its own constraints are unknown (activated before relctl recorded them): only the other components' constraints on search were checked"}
		if !reflect.DeepEqual(rep.Notes, want) {
			t.Errorf("notes %q, want %q", rep.Notes, want)
		}
	})
}

func TestActivationOf(t *testing.T) {
	f := &rollback.Fleet{Env: "staging", Hosts: []rollback.HostState{
		host("staging-1", "1.1.0",
			carrying(deployed("1.0.0", "", 0), "search", "cache", "<2"),
			carrying(deployed("1.1.0", "1.0.0", 10), "search", "cache", ">=1.9")),
		host("staging-2", "1.1.0",
			carrying(deployed("1.0.0", "", 1), "search", "cache", "<2.1"),
			carrying(deployed("1.1.0", "1.0.0", 11), "search", "cache", ">=1.9")),
		{Name: "staging-3", Err: errors.New("down")},
	}}
	a := f.ActivationOf("1.0.0")
	if a == nil || a.Requires["cache"] != "<2.1" || !a.Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("ActivationOf(1.0.0) = %+v, want staging-2's (the newest)", a)
	}
	if a := f.ActivationOf("0.9.0"); a != nil {
		t.Errorf("ActivationOf(0.9.0) = %+v, want nil (never ran)", a)
	}
}
