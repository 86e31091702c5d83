package healthcheck

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"
)

// Wait probes s on h until the host is healthy, the attempts run out, or ctx
// ends.
//
// The policy, precisely: the host is healthy after HealthyFor consecutive
// passing attempts (HealthyFor < 1 counts as 1); a failure resets the streak.
// Wait makes at most HealthyFor+Retries attempts (Retries < 0 counts as 0),
// so Retries is how many attempts may be wasted: failures, and passes whose
// streak a later failure broke. Wait gives up as soon as the attempts left
// cannot make a full streak, e.g. HealthyFor=1, Retries=10 gives up after 11
// failures; HealthyFor=2, Retries=1 gives up at "pass, fail". After each
// attempt that does not end the wait, Wait pauses for Interval.
//
// When ctx ends, Wait returns at once (mid-probe or mid-pause) with
// Healthy=false and an Err for which errors.Is(err, ctx.Err()) holds; the
// interrupted attempt is not recorded. An invalid spec is not retried: Err
// matches ErrInvalidSpec and Attempts is empty.
func Wait(ctx context.Context, s Spec, h Host) (o Outcome) {
	start := time.Now()
	o = Outcome{Check: s.Name, Host: hostName(h)}
	fail := func(attempts int, observed string, err error) {
		o.Err = &CheckError{Host: o.Host, Check: o.Check, Attempts: attempts, Observed: observed, Err: err}
	}
	defer func() { o.Elapsed = time.Since(start) }()

	if err := validate(s, h); err != nil {
		fail(0, "", err)
		return o
	}
	need := max(s.HealthyFor, 1)
	budget := need + max(s.Retries, 0)
	log := zerolog.Ctx(ctx).With().Str("host", o.Host).Str("check", o.Check).Logger()

	streak := 0
	for n := 1; ; n++ {
		began := time.Now()
		observed, err := Probe(ctx, s, h)
		if ctx.Err() != nil {
			fail(len(o.Attempts), lastObserved(o.Attempts), ctx.Err())
			return o
		}
		a := Attempt{N: n, OK: err == nil, Observed: observed, Elapsed: time.Since(began)}
		o.Attempts = append(o.Attempts, a)
		log.Debug().Str("type", s.Type).Int("attempt", n).Bool("ok", a.OK).
			Str("observed", a.Observed).Dur("elapsed", a.Elapsed).Msg("health check attempt")

		if err == nil {
			streak++
			if streak >= need {
				o.Healthy = true
				return o
			}
		} else {
			streak = 0
		}
		// Only ever true right after a failure (a pass never shrinks the
		// slack), so err is the reason.
		if budget-n < need-streak {
			fail(n, observed, err)
			return o
		}
		if !pause(ctx, s.Interval) {
			fail(n, observed, ctx.Err())
			return o
		}
	}
}

// WaitAll runs Wait for every spec concurrently on h and returns the outcomes
// in the order of specs. The error is nil when all are healthy, otherwise a
// *multierror.Error holding each unhealthy outcome's Err (a *CheckError,
// which names host and check).
func WaitAll(ctx context.Context, specs []Spec, h Host) ([]Outcome, error) {
	out := make([]Outcome, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Go(func() { out[i] = Wait(ctx, s, h) })
	}
	wg.Wait()
	var merr *multierror.Error
	for _, o := range out {
		if !o.Healthy {
			merr = multierror.Append(merr, o.Err)
		}
	}
	return out, merr.ErrorOrNil()
}

// pause waits d unless ctx ends first; it reports whether to go on.
func pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func lastObserved(attempts []Attempt) string {
	if len(attempts) == 0 {
		return ""
	}
	return attempts[len(attempts)-1].Observed
}

func hostName(h Host) string {
	if h == nil {
		return "controller"
	}
	return h.Host()
}
