package fleet

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

func project() (*playbooks.Project, *playbooks.Playbook, *playbooks.Environment) {
	pb := &playbooks.Playbook{Name: "search", Roles: []string{"search"}, Artifact: playbooks.Artifact{Path: "/artifacts/search-{{.Version}}.tar.gz"},
		Vars: map[string]any{"base_dir": "/srv/search/"}}
	env := &playbooks.Environment{Name: "staging", Hosts: []*playbooks.Host{
		{Name: "s-1", Address: "10.0.0.1:22", Roles: []string{"search"}},
		{Name: "s-2", Address: "10.0.0.2:22", User: "deployer", Roles: []string{"search"}, Vars: map[string]any{"base_dir": "/opt/search"}},
		{Name: "lb-1", Address: "10.0.0.9:22", Roles: []string{"lb"}},
		{Name: "s-3", Address: "10.0.0.3:22", Roles: []string{"search"}, Vars: map[string]any{"base_dir": "relative"}},
	}}
	cfg := &playbooks.Config{Project: "search", SSH: playbooks.SSHConfig{User: "relctl"}}
	return &playbooks.Project{Config: cfg, Playbooks: map[string]*playbooks.Playbook{"search": pb}}, pb, env
}

func TestTargetTakesTheConfigsUserUnlessTheHostHasOne(t *testing.T) {
	proj, _, env := project()
	if got, want := Target(proj.Config, env.Hosts[0]), (transport.Target{Name: "s-1", Endpoint: transport.Endpoint{Address: "10.0.0.1:22", User: "relctl"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Target = %+v, want %+v", got, want)
	}
	if got := Target(proj.Config, env.Hosts[1]).User; got != "deployer" {
		t.Errorf("host user: got %q, want deployer", got)
	}
}

func TestLayoutIsBaseDirWhateverTheRelease(t *testing.T) {
	proj, pb, env := project()
	l, err := Layout(proj, pb, env, env.Hosts[0])
	if err != nil || l.BaseDir != "/srv/search" {
		t.Fatalf("Layout = %+v, %v; want /srv/search (cleaned)", l, err)
	}
	// What a real release's templates see: the same base_dir.
	for _, v := range []string{"1.0.0", "2.3.4-rc.1"} {
		data, err := proj.Data(pb, env, env.Hosts[0], v, "run")
		if err != nil || data.BaseDir != l.BaseDir {
			t.Errorf("release %s: BaseDir %q (%v), Layout says %q", v, data.BaseDir, err, l.BaseDir)
		}
	}
	if _, err := Layout(proj, pb, env, env.Hosts[3]); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative base_dir: err = %v", err)
	}
}

func TestHosts(t *testing.T) {
	proj, pb, env := project()
	hosts := Hosts(proj, pb, env)
	var got []string
	for _, h := range hosts {
		got = append(got, fmt.Sprintf("%s %s %s %v", h.Name, h.Target.User, h.Layout.BaseDir, h.Err != nil))
	}
	want := []string{"s-1 relctl /srv/search false", "s-2 deployer /opt/search false", "s-3 relctl  true"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Hosts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if hosts[1].Spec != env.Hosts[1] {
		t.Error("Spec is not the host's config")
	}
	other := &playbooks.Playbook{Name: "lb", Roles: []string{"lb", "search"}, Artifact: pb.Artifact, Vars: map[string]any{"base_dir": "/srv/lb"}}
	all := EnvHosts(proj, []*playbooks.Playbook{pb, other}, env)
	got = got[:0]
	for _, h := range all {
		got = append(got, h.Name+" "+h.Layout.BaseDir)
	}
	if want := "s-1 /srv/search,s-2 /opt/search,s-3 ,lb-1 /srv/lb"; strings.Join(got, ",") != want {
		t.Errorf("EnvHosts = %s, want %s", strings.Join(got, ","), want)
	}
}

func TestEachCollectsFailuresInHostOrder(t *testing.T) {
	hosts := []string{"a", "b", "c", "d"}
	err := Each(t.Context(), hosts, 2, func(s string) string { return s }, func(ctx context.Context, h string) error {
		if h == "a" {
			time.Sleep(20 * time.Millisecond) // finishes last, still listed first
		}
		if h == "b" {
			return nil
		}
		if h == "d" {
			return fmt.Errorf("%s: two\nlines", h)
		}
		return fmt.Errorf("%s: failed", h)
	})
	var merr *multierror.Error
	if !errors.As(err, &merr) || len(merr.Errors) != 3 {
		t.Fatalf("err = %#v, want a *multierror.Error of 3", err)
	}
	want := "3 hosts failed:\n  - a: failed\n  - c: failed\n  - d: two\n    lines"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	one := Each(t.Context(), hosts, 0, func(s string) string { return s }, func(ctx context.Context, h string) error {
		if h == "c" {
			return errors.New("c: down")
		}
		return nil
	})
	if one == nil || one.Error() != "c: down" {
		t.Errorf("one failure: %v, want it as it is", one)
	}
	if err := Each(t.Context(), hosts, 1, func(s string) string { return s }, func(context.Context, string) error { return nil }); err != nil {
		t.Errorf("no failure: %v (%T), want nil", err, err)
	}
}

func TestEachIsBoundedAndCancellable(t *testing.T) {
	items := make([]int, 10)
	for i := range items {
		items[i] = i
	}
	var running, most atomic.Int32
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	var once sync.Once
	errs := EachErrors(ctx, items, 3, func(i int) string { return fmt.Sprintf("h%d", i) }, func(ctx context.Context, i int) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		// The first host to start cancels; the others hold their slot until
		// then, so no host can start after the cancel, however the
		// goroutines are scheduled.
		first := false
		once.Do(func() { first = true; cancel(errors.New("operator pressed ^C")) })
		if !first {
			<-ctx.Done()
		}
		return nil
	})
	if most.Load() > 3 {
		t.Errorf("%d ran at once, limit 3", most.Load())
	}
	notStarted := 0
	for _, err := range errs {
		if err != nil {
			if !strings.Contains(err.Error(), ": not started: operator pressed ^C") {
				t.Errorf("unexpected error %v", err)
			}
			notStarted++
		}
	}
	if notStarted < len(items)-3 {
		t.Errorf("%d hosts not started after the cancel, want at least %d (only those holding a slot ran)", notStarted, len(items)-3)
	}
}

func TestEachTurnsAPanicIntoThatHostsError(t *testing.T) {
	err := Each(t.Context(), []string{"a", "b"}, 2, func(s string) string { return s }, func(ctx context.Context, h string) error {
		if h == "b" {
			panic("boom")
		}
		return nil
	})
	var p *fanout.PanicError
	if !errors.As(err, &p) || p.Host != "b" {
		t.Fatalf("err = %v, want b's *fanout.PanicError", err)
	}
}

// fakeConnector reaches every target but those in down.
type fakeConnector struct {
	down map[string]bool
	got  sync.Map // name -> transport.Target
}

func (c *fakeConnector) Get(ctx context.Context, t transport.Target) (transport.Conn, error) {
	c.got.Store(t.Name, t)
	if c.down[t.Name] {
		return nil, fmt.Errorf("dial %s: connection refused", t.Address)
	}
	return nil, nil
}

func TestConnectReturnsTheReachedInOrderAndWhyTheOthersWereNot(t *testing.T) {
	proj, pb, env := project()
	c := &fakeConnector{down: map[string]bool{"s-2": true}}
	reached, unreachable := Connect(t.Context(), c, Hosts(proj, pb, env), 0)
	if len(reached) != 1 || reached[0].Name != "s-1" || reached[0].Layout != (state.Layout{BaseDir: "/srv/search"}) {
		t.Errorf("reached = %+v, want s-1 only", reached)
	}
	if err := unreachable["s-2"]; err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("s-2: %v", err)
	}
	if err := unreachable["s-3"]; err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("s-3: %v", err)
	}
	if _, tried := c.got.Load("s-3"); tried {
		t.Error("connected to a host whose layout is unknown")
	}
	if tg, _ := c.got.Load("s-1"); tg.(transport.Target).User != "relctl" {
		t.Errorf("s-1 target %+v: the config's user is missing", tg)
	}
}

func TestReadRunsFnOnTheReachedHostsOnly(t *testing.T) {
	proj, pb, env := project()
	c := &fakeConnector{down: map[string]bool{"s-2": true}}
	got, errs := Read(t.Context(), c, Hosts(proj, pb, env), 1, func(ctx context.Context, h Host, _ transport.Conn) (string, error) {
		return h.Name + " at " + h.Layout.BaseDir, nil
	})
	if got[0] != "s-1 at /srv/search" || errs[0] != nil {
		t.Errorf("s-1: %q, %v", got[0], errs[0])
	}
	if got[1] != "" || errs[1] == nil || got[2] != "" || errs[2] == nil {
		t.Errorf("s-2, s-3: %q, %q, %v, %v; want no result and their errors", got[1], got[2], errs[1], errs[2])
	}
}
