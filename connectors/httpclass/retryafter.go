package httpclass

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter is the longest Retry-After honoured by default. A server
// asking for more is misconfigured or sent something else than a delay
// (an epoch in seconds or milliseconds), and waiting an hour is already
// long against a one-business-day deadline.
const MaxRetryAfter = time.Hour

// ParseRetryAfter reads a Retry-After header value with the default cap:
// RetryAfter(v, now, MaxRetryAfter).
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	return RetryAfter(v, now, MaxRetryAfter)
}

// RetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay-seconds
// or an HTTP-date, relative to now. Negative delays and past dates mean
// "now" (0). Values above limit, among them absolute epochs in seconds or
// milliseconds sent as delay-seconds, are nonsense and give limit; a
// negative limit is read as 0, so the delay is never negative. ok is
// false when the value is empty or unreadable: the server gave no advice.
func RetryAfter(v string, now time.Time, limit time.Duration) (d time.Duration, ok bool) {
	limit = max(limit, 0)
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil || isIntOverflow(err) {
		if n < 0 {
			return 0, true // "-5": the moment has passed
		}
		if err != nil || n > int64(limit/time.Second) {
			return limit, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(0, min(t.Sub(now), limit)), true
}

func isIntOverflow(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}
