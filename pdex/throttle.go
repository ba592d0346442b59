package pdex

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/p2p-payer/p2p/store"
)

// Defaults of the brute-force throttle. A new payer calls $member-match
// once per member it enrols from us, so honest traffic is far below the
// rate; and it knows the member is ours (the card says so), so most of its
// calls match. Someone probing for who our members are fails often: they
// are stopped after DefaultMaxFailures failed matches per window.
const (
	DefaultRate          = rate.Limit(5) // requests per second per requester, sustained
	DefaultBurst         = 20            // requests per requester at once
	DefaultMaxFailures   = 20            // failed matches (no match, several) per requester per window
	DefaultFailureWindow = 15 * time.Minute
)

// Throttle limits each requester: a token bucket for the request rate and
// a cap on failed matches in a sliding window: a requester with
// maxFailures failures in the last window is refused until the oldest of
// them leaves it. A success does not reset the count: a prober could
// otherwise interleave a member it knows. The rate is this process's; the
// failures are counted in the store if it has one (NewSharedThrottle),
// else in this process's memory.
type Throttle struct {
	limit       rate.Limit
	burst       int
	maxFailures int
	window      time.Duration
	failures    store.FailedMatches // nil: in memory

	mu sync.Mutex
	by map[string]*requesterState // requesters are registered partners: a bounded set
}

type requesterState struct {
	lim      *rate.Limiter
	failures []time.Time // in memory: the newest maxFailures failed matches, oldest first
}

// NewThrottle returns a Throttle of limit requests per second (burst at
// once) and maxFailures failed matches per window, per requester, counted
// in memory; zero values take the Default* constants.
func NewThrottle(limit rate.Limit, burst, maxFailures int, window time.Duration) *Throttle {
	if limit == 0 {
		limit = DefaultRate
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	if maxFailures <= 0 {
		maxFailures = DefaultMaxFailures
	}
	if window <= 0 {
		window = DefaultFailureWindow
	}
	return &Throttle{limit: limit, burst: burst, maxFailures: maxFailures, window: window, by: map[string]*requesterState{}}
}

// NewSharedThrottle is NewThrottle with the failed matches counted in fs,
// where every process sees them: a partner's count is then one across the
// API and worker processes and their replicas, and survives restarts.
func NewSharedThrottle(limit rate.Limit, burst, maxFailures int, window time.Duration, fs store.FailedMatches) *Throttle {
	t := NewThrottle(limit, burst, maxFailures, window)
	t.failures = fs
	return t
}

func (t *Throttle) state(who string) *requesterState {
	s := t.by[who]
	if s == nil {
		s = &requesterState{lim: rate.NewLimiter(t.limit, t.burst)}
		t.by[who] = s
	}
	return s
}

// admit decides whether who may make a request at now. When not, it says
// how long to wait and why ("failures" or "rate"). The error is the
// failure store's: the request is not admitted.
func (t *Throttle) admit(ctx context.Context, who string, now time.Time) (wait time.Duration, why string, err error) {
	if wait, capped, err := t.capped(ctx, who, now); err != nil || capped {
		return wait, "failures", err
	}
	if wait := t.pace(who, now); wait > 0 {
		return wait, "rate", nil
	}
	return 0, "", nil
}

// pace takes a token of who's request rate at now, or says how long until
// there is one. Bulk export kick-offs are paced so, without the
// failed-match cap: exporting members already matched probes nothing.
func (t *Throttle) pace(who string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.state(who).lim.ReserveN(now, 1)
	if !r.OK() {
		return t.window // burst 0: never; kept safe
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// capped reports whether who has reached the failed-match cap at now, and
// until when: a failure at f counts until f+window, so the cap lifts when
// the oldest of the newest maxFailures failures leaves the window.
func (t *Throttle) capped(ctx context.Context, who string, now time.Time) (time.Duration, bool, error) {
	var newest []time.Time // newest first, within the window
	if t.failures != nil {
		var err error
		if newest, err = t.failures.MatchFailures(ctx, who, now.Add(-t.window), t.maxFailures); err != nil {
			return 0, false, err
		}
	} else {
		t.mu.Lock()
		fs := t.state(who).failures
		for i := len(fs) - 1; i >= 0 && now.Sub(fs[i]) < t.window; i-- {
			newest = append(newest, fs[i])
		}
		t.mu.Unlock()
	}
	if len(newest) < t.maxFailures {
		return 0, false, nil
	}
	wait := newest[t.maxFailures-1].Add(t.window).Sub(now)
	return wait, wait > 0, nil
}

// fail records a failed match by who at now.
func (t *Throttle) fail(ctx context.Context, who string, now time.Time) error {
	if t.failures != nil {
		return t.failures.AppendMatchFailure(ctx, who, now, now.Add(-t.window))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.state(who)
	s.failures = append(s.failures, now)
	if n := len(s.failures) - t.maxFailures; n > 0 {
		s.failures = append(s.failures[:0], s.failures[n:]...)
	}
	return nil
}
