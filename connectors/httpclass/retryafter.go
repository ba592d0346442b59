package httpclass

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter is the longest Retry-After honoured by default. A server
// asking for more is misconfigured, and waiting an hour is already long
// against a one-business-day deadline.
const MaxRetryAfter = time.Hour

// ParseRetryAfter reads a Retry-After header value with the default cap:
// RetryAfter(v, now, MaxRetryAfter).
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	return RetryAfter(v, now, MaxRetryAfter)
}

// RetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay-seconds
// or an HTTP-date, relative to now. Negative delays and past dates mean
// "now" (0). An integer above limit that reads as an absolute Unix time
// in seconds or milliseconds (some servers send one, against the RFC) is
// the delay until that time; any other value above limit is nonsense and
// gives limit. The delay is never above limit; a negative limit is read
// as 0, so it is never negative either. ok is false when the value is
// empty or unreadable: the server gave no advice.
func RetryAfter(v string, now time.Time, limit time.Duration) (d time.Duration, ok bool) {
	limit = max(limit, 0)
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil || isIntOverflow(err) {
		switch {
		case n < 0:
			return 0, true // "-5": the moment has passed
		case err == nil && n <= int64(limit/time.Second):
			return time.Duration(n) * time.Second, true
		case err == nil && n >= minEpochSeconds && n < maxEpochSeconds:
			return until(time.Unix(n, 0), now, limit), true
		case err == nil && n >= minEpochSeconds*1000 && n < maxEpochSeconds*1000:
			return until(time.UnixMilli(n), now, limit), true
		}
		return limit, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return until(t, now, limit), true
}

// The integers RetryAfter reads as a Unix time when they are too large
// for a delay: from September 2001 (10^9 s) to before the year 5138
// (10^11 s), in seconds or in milliseconds. The bounds do not depend on
// the clock, so a value never reads as a longer wait a moment later.
const (
	minEpochSeconds = 1_000_000_000
	maxEpochSeconds = 100_000_000_000
)

// until is the wait from now to t, within [0, limit].
func until(t, now time.Time, limit time.Duration) time.Duration {
	return max(0, min(t.Sub(now), limit))
}

func isIntOverflow(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}
