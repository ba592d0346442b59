package pdex

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
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
// a count of failed matches per fixed window. A success does not reset the
// count: a prober could otherwise interleave a member it knows. It is
// in-memory: one process's count (see Matching.Throttle).
type Throttle struct {
	limit       rate.Limit
	burst       int
	maxFailures int
	window      time.Duration

	mu sync.Mutex
	by map[string]*requesterState // requesters are registered partners: a bounded set
}

type requesterState struct {
	lim         *rate.Limiter
	failures    int
	windowStart time.Time
}

// NewThrottle returns a Throttle of limit requests per second (burst at
// once) and maxFailures failed matches per window, per requester; zero
// values take the Default* constants.
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

func (t *Throttle) state(who string, now time.Time) *requesterState {
	s := t.by[who]
	if s == nil {
		s = &requesterState{lim: rate.NewLimiter(t.limit, t.burst), windowStart: now}
		t.by[who] = s
	}
	if now.Sub(s.windowStart) >= t.window {
		s.failures, s.windowStart = 0, now
	}
	return s
}

// admit decides whether who may make a request at now. When not, it says
// how long to wait and why ("failures" or "rate").
func (t *Throttle) admit(who string, now time.Time) (wait time.Duration, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.state(who, now)
	if s.failures >= t.maxFailures {
		return s.windowStart.Add(t.window).Sub(now), "failures"
	}
	r := s.lim.ReserveN(now, 1)
	if !r.OK() {
		return t.window, "rate" // burst 0: never; kept safe
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, "rate"
	}
	return 0, ""
}

// capped reports whether who has reached the failed-match cap at now, and
// until when.
func (t *Throttle) capped(who string, now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.state(who, now)
	if s.failures >= t.maxFailures {
		return s.windowStart.Add(t.window).Sub(now), true
	}
	return 0, false
}

// fail records a failed match by who at now.
func (t *Throttle) fail(who string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.state(who, now).failures++
}
