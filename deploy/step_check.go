package deploy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/relctl/relctl/healthcheck"
	"github.com/relctl/relctl/playbooks"
)

// checkAction runs named health checks against the host until each is
// healthy for its required number of consecutive passes, or gives up.
type checkAction struct {
	Specs []healthcheck.Spec
}

func buildCheckStep(s *playbooks.Step, _ *Plan, hp *HostPlan) (Action, string, error) {
	a := &checkAction{}
	var names []string
	for _, name := range s.Checks {
		c, ok := hp.checks[name]
		if !ok {
			return nil, "", fmt.Errorf("unknown check %q", name)
		}
		spec, err := RenderCheck(c, hp.Data)
		if err != nil {
			return nil, "", err
		}
		a.Specs = append(a.Specs, spec)
		names = append(names, describeCheck(spec))
	}
	return a, "check " + strings.Join(names, "; "), nil
}

// RenderCheck resolves a configured check's templates for one host.
func RenderCheck(c *playbooks.Check, data *playbooks.TemplateData) (healthcheck.Spec, error) {
	spec := healthcheck.Spec{
		Name: c.Name, Type: c.Type, ExpectStatus: c.ExpectStatus, Via: c.Via,
		Timeout: c.Timeout.Duration, Interval: c.Interval.Duration,
		Retries: c.Retries, HealthyFor: c.HealthyFor,
	}
	var err error
	render := func(field, text string, shell bool) string {
		if err != nil || text == "" {
			return ""
		}
		var out string
		if shell {
			out, err = playbooks.RenderCommand("checks."+c.Name+"."+field, text, data)
		} else {
			out, err = playbooks.RenderText("checks."+c.Name+"."+field, text, data)
		}
		return out
	}
	spec.URL = render("url", c.URL, false)
	spec.BodyContains = render("body_contains", c.BodyContains, false)
	spec.Address = render("address", c.Address, false)
	spec.Command = render("command", c.Command, true)
	if err != nil {
		return spec, err
	}
	if c.BodyRegex != "" {
		if spec.BodyRegex, err = regexp.Compile(c.BodyRegex); err != nil {
			return spec, fmt.Errorf("checks.%s.body_regex: %v", c.Name, err)
		}
	}
	return spec, nil
}

func describeCheck(s healthcheck.Spec) string {
	var target string
	switch s.Type {
	case playbooks.CheckHTTP:
		target = "GET " + healthcheck.RedactURL(s.URL)
		if s.BodyContains != "" {
			target += fmt.Sprintf(" expecting %d and %q", s.ExpectStatus, s.BodyContains)
		}
	case playbooks.CheckTCP:
		target = "connect " + s.Address
	case playbooks.CheckCommand:
		target = "run " + s.Command
	}
	return fmt.Sprintf("%s (%s, healthy for %d)", s.Name, target, max(s.HealthyFor, 1))
}

func (a *checkAction) Do(ctx context.Context, h *hostRun) (string, error) {
	outcomes, err := healthcheck.WaitAll(ctx, a.Specs, h.conn)
	var parts []string
	for _, o := range outcomes {
		parts = append(parts, o.Summary())
	}
	var merr *multierror.Error
	if errors.As(err, &merr) {
		// One line per failed check; the host is named by the caller.
		merr.ErrorFormat = func(errs []error) string {
			lines := make([]string, len(errs))
			for i, e := range errs {
				lines[i] = strings.TrimPrefix(e.Error(), h.host.Name+": ")
			}
			return strings.Join(lines, "; ")
		}
	}
	return strings.Join(parts, "; "), err
}
