package ratelimit

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func TestAllow(t *testing.T) {
	cases := []struct {
		name     string
		limit    float64
		burst    int
		at       []time.Duration // request times after t0, all for key "a"
		refused  []int           // indexes refused
		wantWait time.Duration   // of the first refusal
	}{
		{"burst then refused", 2, 3, []time.Duration{0, 0, 0, 0}, []int{3}, 500 * time.Millisecond},
		{"refill", 2, 1, []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond}, []int{1}, 400 * time.Millisecond},
		{"slow enough never refused", 1, 1, []time.Duration{0, time.Second, 2 * time.Second}, nil, 0},
		{"a refusal takes no token", 1, 1, []time.Duration{0, 500 * time.Millisecond, time.Second}, []int{1}, 500 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := New(rateOf(c.limit), c.burst)
			var refused []int
			var first time.Duration
			for i, at := range c.at {
				if w := k.Allow("a", t0.Add(at)); w > 0 {
					if refused == nil {
						first = w
					}
					refused = append(refused, i)
				}
			}
			if fmt.Sprint(refused) != fmt.Sprint(c.refused) || first != c.wantWait {
				t.Errorf("refused %v (first wait %v), want %v (%v)", refused, first, c.refused, c.wantWait)
			}
		})
	}
}

func TestKeysAreIndependent(t *testing.T) {
	k := New(1, 1)
	if k.Allow("a", t0) != 0 || k.Allow("a", t0) == 0 {
		t.Fatal("a: want one admitted, then refused")
	}
	if k.Allow("b", t0) != 0 {
		t.Error("b refused because of a")
	}
}

func TestNoLimit(t *testing.T) {
	for _, k := range []*Keyed{New(0, 10), New(5, 0), New(-1, 1)} {
		if k != nil {
			t.Fatalf("New gave a limiter for a disabled limit: %+v", k)
		}
		for range 1000 {
			if k.Allow("a", t0) != 0 {
				t.Fatal("a nil Keyed refused")
			}
		}
	}
}

// TestBoundedKeys: however many keys callers bring, the buckets kept stay
// bounded, and a busy key is still limited while it is kept.
func TestBoundedKeys(t *testing.T) {
	k := New(1, 1)
	k.maxKeys = 100
	for i := range 10_000 {
		k.Allow(fmt.Sprint("addr:", i), t0)
		if n := k.Len(); n > k.maxKeys {
			t.Fatalf("after %d keys, %d buckets kept; max %d", i+1, n, k.maxKeys)
		}
	}
	// Full buckets go first: a key seen long ago is dropped before a busy one.
	k = New(1, 1)
	k.maxKeys = 4
	k.Allow("busy", t0.Add(time.Hour))
	for i := range 3 {
		k.Allow(fmt.Sprint("old-", i), t0)
	}
	k.Allow("new", t0.Add(time.Hour)) // evicts the three old ones, now full
	if k.Allow("busy", t0.Add(time.Hour)) == 0 {
		t.Error("the busy key's bucket was dropped: it was admitted again at once")
	}
}

func TestRetryAfter(t *testing.T) {
	for wait, want := range map[time.Duration]string{
		time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 0: "1", 90 * time.Second: "90",
	} {
		if got := RetryAfter(wait); got != want {
			t.Errorf("RetryAfter(%v) = %s, want %s", wait, got, want)
		}
	}
}

func TestRemoteKey(t *testing.T) {
	cases := []struct{ remote, want string }{
		{"192.0.2.7:5123", "addr:192.0.2.7"},
		{"[::ffff:192.0.2.7]:5123", "addr:192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:443", "addr:2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:443", "addr:2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:443", "addr:2001:db8:1:3::/64"},
		{"[fe80::1%eth0]:80", "addr:fe80::/64"},
		{"pipe", "addr:pipe"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if got := RemoteKey(r); got != c.want {
			t.Errorf("RemoteKey(%q) = %q, want %q", c.remote, got, c.want)
		}
	}
}

func rateOf(f float64) rate.Limit { return rate.Limit(f) }
