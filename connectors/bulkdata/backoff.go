package bulkdata

import (
	"time"

	"github.com/p2p-payer/p2p/connectors/httpclass"
)

// PollPolicy says how long to wait between status polls. The zero value is
// DefaultPollPolicy; zero fields take their default.
type PollPolicy struct {
	// MinDelay is the floor of every delay, so that a server answering
	// "Retry-After: 0" (or a date in the past) is not polled in a tight loop.
	MinDelay time.Duration
	// Initial, Multiplier and MaxBackoff shape the exponential backoff
	// used when the server sends no usable Retry-After: attempt n waits
	// Initial·Multiplier^(n-1), never more than MaxBackoff.
	Initial    time.Duration
	Multiplier float64
	MaxBackoff time.Duration
	// Jitter spreads each backoff delay uniformly over ±Jitter of itself
	// (0.2 = ±20 %), never above MaxBackoff.
	Jitter float64
	// MaxRetryAfter caps a server's Retry-After; anything above it is
	// clamped to it (an absolute Unix time sent as delta-seconds is read
	// as the wait until then, and capped too).
	MaxRetryAfter time.Duration
	// Budget is how long an export may stay in progress, from kick-off,
	// before the caller gives up (see Exhausted).
	Budget time.Duration
}

// DefaultPollPolicy is the policy of the zero PollPolicy.
var DefaultPollPolicy = PollPolicy{
	MinDelay:      time.Second,
	Initial:       5 * time.Second,
	Multiplier:    1.5,
	MaxBackoff:    5 * time.Minute,
	Jitter:        0.2,
	MaxRetryAfter: httpclass.MaxRetryAfter,
	Budget:        24 * time.Hour,
}

func (p PollPolicy) withDefaults() PollPolicy {
	d := DefaultPollPolicy
	if p.MinDelay > 0 {
		d.MinDelay = p.MinDelay
	}
	if p.Initial > 0 {
		d.Initial = p.Initial
	}
	if p.Multiplier >= 1 {
		d.Multiplier = p.Multiplier
	}
	if p.MaxBackoff > 0 {
		d.MaxBackoff = p.MaxBackoff
	}
	if p.Jitter > 0 && p.Jitter < 1 {
		d.Jitter = p.Jitter
	}
	if p.MaxRetryAfter > 0 {
		d.MaxRetryAfter = p.MaxRetryAfter
	}
	if p.Budget > 0 {
		d.Budget = p.Budget
	}
	d.MaxBackoff = max(d.MaxBackoff, d.MinDelay)
	d.MaxRetryAfter = max(d.MaxRetryAfter, d.MinDelay)
	return d
}

// Exhausted reports whether an export kicked off at start and still in
// progress at now has used up the policy's budget.
func (p PollPolicy) Exhausted(start, now time.Time) bool {
	return now.Sub(start) >= p.withDefaults().Budget
}

// NextPollDelay is how long to wait before the next status poll. It is a
// pure function, safe to call from a Temporal workflow with
// workflow.Now: jitter comes from a hash of now and attempt, so that
// exports kicked off together do not poll in lockstep, yet a replay
// computes the same delay.
//
//	Retry-After                        delay
//	delay-seconds within the cap       exactly that (at least MinDelay)
//	HTTP-date within the cap           the time until it (at least MinDelay)
//	Unix time in s or ms, within cap   the time until it (at least MinDelay)
//	0, negative, or a time passed      MinDelay
//	above the cap                      MaxRetryAfter: clamped
//	empty or unreadable                backoff: Initial·Multiplier^(attempt-1) ±Jitter,
//	                                   within [MinDelay, MaxBackoff]
//
// The delay is never shorter than what the server asked, unless what it
// asked is nonsense. attempt counts polls from 1; now is when the answer
// carrying retryAfterHeader arrived (or later: the delay only grows).
func NextPollDelay(retryAfterHeader string, now time.Time, attempt int, policy PollPolicy) time.Duration {
	p := policy.withDefaults()
	if d, ok := httpclass.RetryAfter(retryAfterHeader, now, p.MaxRetryAfter); ok {
		return max(d, p.MinDelay)
	}
	return backoff(now, attempt, p)
}

func backoff(now time.Time, attempt int, p PollPolicy) time.Duration {
	d := float64(p.Initial)
	for i := 1; i < attempt && d < float64(p.MaxBackoff); i++ {
		d *= p.Multiplier
	}
	d = min(d, float64(p.MaxBackoff))
	u := unitHash(uint64(now.UnixNano()) ^ uint64(attempt)*0x9e3779b97f4a7c15)
	d *= 1 - p.Jitter + 2*p.Jitter*u
	return min(max(time.Duration(d), p.MinDelay), p.MaxBackoff)
}

// unitHash maps x to [0, 1) with the SplitMix64 finaliser: cheap,
// deterministic and well spread.
func unitHash(x uint64) float64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
