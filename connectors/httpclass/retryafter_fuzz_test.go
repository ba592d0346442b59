package httpclass

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzRetryAfter reads Retry-After values against any clock and cap: the
// delay is never negative and never above the cap (MaxRetryAfter for
// ParseRetryAfter); delay-seconds within the cap are honoured exactly; an
// empty value is no advice; an absolute Unix time is waited for until
// then; and a date's delay never grows as the clock runs.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []string{
		"", "later", "1.5", "0", "17", " 30 ", "-4", "+5", "3600", "3601", "1748779200", "1748779200000",
		"99999999999999999999999", "-99999999999999999999999",
		now.Add(45 * time.Second).Format(http.TimeFormat),
		now.Add(10 * time.Second).Format(time.RFC850),
		now.Add(50 * time.Second).Format(time.ANSIC),
		now.Add(-time.Hour).Format(http.TimeFormat),
		now.Add(48 * time.Hour).Format(http.TimeFormat),
	} {
		f.Add(v, now.Unix(), int64(MaxRetryAfter))
	}
	f.Add("1800", now.Unix(), int64(10*time.Minute))
	f.Add("5", now.Unix(), int64(1500*time.Millisecond))
	f.Fuzz(func(t *testing.T, v string, nowUnix, limitNanos int64) {
		now := time.Unix(nowUnix, 0).UTC()
		limit := time.Duration(limitNanos)
		d, ok := RetryAfter(v, now, limit)
		if d < 0 || d > max(limit, 0) {
			t.Fatalf("RetryAfter(%q, cap %v) = %v: outside [0, cap]", v, limit, d)
		}
		if !ok && d != 0 {
			t.Fatalf("RetryAfter(%q) = %v with no advice", v, d)
		}
		if strings.TrimSpace(v) == "" && ok {
			t.Fatalf("RetryAfter(%q) is advice", v)
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n >= 0 && n <= int64(limit/time.Second) {
			if !ok || d != time.Duration(n)*time.Second {
				t.Fatalf("RetryAfter(%q, cap %v) = %v, %v; want %d s", v, limit, d, ok, n)
			}
		}
		// An absolute Unix time in seconds: never earlier than asked.
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > int64(limit/time.Second) && n >= minEpochSeconds && n < maxEpochSeconds {
			if want := max(0, min(time.Unix(n, 0).Sub(now), max(limit, 0))); d != want {
				t.Fatalf("RetryAfter(%q, now %v, cap %v) = %v; want %v", v, now, limit, d, want)
			}
		}
		if pd, pok := ParseRetryAfter(v, now); pd < 0 || pd > MaxRetryAfter || (pok && limit == MaxRetryAfter && pd != d) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v; RetryAfter with its cap %v", v, pd, pok, d)
		}
		if later, lok := RetryAfter(v, now.Add(time.Minute), limit); lok != ok || later > d {
			t.Fatalf("RetryAfter(%q) grew from %v to %v a minute later", v, d, later)
		}
	})
}
