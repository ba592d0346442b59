package bulkdata

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestNextPollDelay(t *testing.T) {
	def := DefaultPollPolicy
	date := func(d time.Duration) string { return t0.Add(d).Format(http.TimeFormat) }
	epochSecs := strconv.FormatInt(t0.Add(time.Minute).Unix(), 10)
	epochMillis := strconv.FormatInt(t0.Add(time.Minute).UnixMilli(), 10)
	tests := []struct {
		name     string
		header   string
		attempt  int
		policy   PollPolicy
		min, max time.Duration // inclusive bounds; min == max for an exact value
	}{
		// The server's delay, exactly.
		{"delta seconds", "120", 1, def, 120 * time.Second, 120 * time.Second},
		{"delta seconds, late attempt: no backoff added", "7", 30, def, 7 * time.Second, 7 * time.Second},
		{"delta seconds with spaces", "  30 ", 1, def, 30 * time.Second, 30 * time.Second},
		{"exactly the cap", "3600", 1, def, time.Hour, time.Hour},
		{"HTTP-date (IMF-fixdate)", date(90 * time.Second), 1, def, 90 * time.Second, 90 * time.Second},
		{"HTTP-date (RFC 850)", t0.Add(45 * time.Second).Format(time.RFC850), 1, def, 45 * time.Second, 45 * time.Second},
		{"HTTP-date (asctime)", t0.Add(50 * time.Second).Format(time.ANSIC), 1, def, 50 * time.Second, 50 * time.Second},
		// Now, but never a tight loop.
		{"zero", "0", 1, def, time.Second, time.Second},
		{"negative: the moment passed", "-5", 1, def, time.Second, time.Second},
		{"HTTP-date in the past", date(-time.Hour), 1, def, time.Second, time.Second},
		{"below a policy floor", "2", 1, PollPolicy{MinDelay: 10 * time.Second}, 10 * time.Second, 10 * time.Second},
		// Nonsense, clamped to the cap.
		{"above the cap", "3601", 1, def, time.Hour, time.Hour},
		{"a day", "86400", 1, def, time.Hour, time.Hour},
		{"epoch seconds sent as delta-seconds", epochSecs, 1, def, time.Minute - time.Second, time.Minute},
		{"epoch milliseconds sent as delta-seconds", epochMillis, 1, def, time.Minute - time.Second, time.Minute},
		{"overflowing int64", "99999999999999999999999", 1, def, time.Hour, time.Hour},
		{"HTTP-date beyond the cap", date(3 * time.Hour), 1, def, time.Hour, time.Hour},
		{"policy cap", "1800", 1, PollPolicy{MaxRetryAfter: 10 * time.Minute}, 10 * time.Minute, 10 * time.Minute},
		// No usable advice: exponential backoff, ±20 %, within [MinDelay, MaxBackoff].
		{"absent, attempt 1", "", 1, def, 4 * time.Second, 6 * time.Second},
		{"absent, attempt 2", "", 2, def, 6 * time.Second, 9 * time.Second},
		{"absent, attempt 3", "", 3, def, 9 * time.Second, 13500 * time.Millisecond},
		{"absent, attempt 0 counts as 1", "", 0, def, 4 * time.Second, 6 * time.Second},
		{"absent, attempt -3 counts as 1", "", -3, def, 4 * time.Second, 6 * time.Second},
		{"absent, attempt 40: capped", "", 40, def, 4 * time.Minute, 5 * time.Minute},
		{"absent, huge attempt: capped", "", 1 << 30, def, 4 * time.Minute, 5 * time.Minute},
		{"unreadable", "soon", 1, def, 4 * time.Second, 6 * time.Second},
		{"fraction is not delta-seconds", "1.5", 1, def, 4 * time.Second, 6 * time.Second},
		{"custom backoff", "", 3, PollPolicy{Initial: time.Second, Multiplier: 2, MaxBackoff: time.Minute, Jitter: 0.1}, 3600 * time.Millisecond, 4400 * time.Millisecond},
		{"custom cap below initial", "", 1, PollPolicy{Initial: time.Minute, MaxBackoff: 10 * time.Second}, 8 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Several clocks: jitter depends on now, the bounds must not.
			// An HTTP-date is relative to t0, so it is read at t0 only.
			clocks := 50
			if _, err := http.ParseTime(tt.header); err == nil {
				clocks = 1
			}
			for i := range clocks {
				now := t0.Add(time.Duration(i) * 7919 * time.Microsecond)
				header := tt.header
				got := NextPollDelay(header, now, tt.attempt, tt.policy)
				if got < tt.min || got > tt.max {
					t.Fatalf("NextPollDelay(%q, t0+%v, %d) = %v, want in [%v, %v]", header, now.Sub(t0), tt.attempt, got, tt.min, tt.max)
				}
				if again := NextPollDelay(header, now, tt.attempt, tt.policy); again != got {
					t.Fatalf("not deterministic: %v then %v", got, again)
				}
			}
		})
	}
}

// The server's ask is a floor: for every sane delta-seconds value the
// delay is at least that.
func TestNextPollDelayNeverEarlierThanAsked(t *testing.T) {
	for secs := 0; secs <= 3600; secs += 13 {
		for attempt := 1; attempt < 12; attempt++ {
			got := NextPollDelay(strconv.Itoa(secs), t0.Add(time.Duration(secs)*time.Millisecond), attempt, PollPolicy{})
			if got < time.Duration(secs)*time.Second {
				t.Fatalf("Retry-After %d, attempt %d: delay %v is earlier than asked", secs, attempt, got)
			}
		}
	}
}

// Jitter spreads exports that poll together.
func TestNextPollDelayJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	lo, hi := time.Hour, time.Duration(0)
	for i := range 200 {
		d := NextPollDelay("", t0.Add(time.Duration(i)*time.Millisecond), 4, PollPolicy{})
		seen[d] = true
		lo, hi = min(lo, d), max(hi, d)
	}
	// attempt 4: 5s·1.5³ = 16.875s, ±20 %.
	if len(seen) < 150 {
		t.Errorf("%d distinct delays out of 200: jitter does not spread", len(seen))
	}
	if hi-lo < 5*time.Second {
		t.Errorf("delays span [%v, %v]: want most of ±20 %% of 16.9s", lo, hi)
	}
}

func TestPollPolicyExhausted(t *testing.T) {
	p := PollPolicy{Budget: time.Hour}
	if p.Exhausted(t0, t0.Add(59*time.Minute)) {
		t.Error("exhausted after 59 minutes of a 1 h budget")
	}
	if !p.Exhausted(t0, t0.Add(time.Hour)) {
		t.Error("not exhausted after the whole budget")
	}
	if (PollPolicy{}).Exhausted(t0, t0.Add(23*time.Hour)) {
		t.Error("default budget (24 h) exhausted after 23 h")
	}
}
