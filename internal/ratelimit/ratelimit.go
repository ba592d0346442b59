// Package ratelimit keeps a token bucket per key — an authenticated
// client, a partner, a remote address — in this process's memory. Every
// process counts on its own: N API processes behind a balancer admit up to
// N times a key's rate. That is the trade chosen over a bucket in the
// store, which would cost a database write on every request.
package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the buckets a Keyed keeps: keys come from callers
// (remote addresses), so their number must not be theirs to choose.
const DefaultMaxKeys = 1 << 16

// Limit is a rate and a burst: Rate requests per second sustained, Burst
// at once. A Rate or Burst of 0 or less is no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// New returns a Keyed of l, nil when l is no limit.
func (l Limit) New() *Keyed { return New(rate.Limit(l.Rate), l.Burst) }

// Keyed is a token bucket of the same rate and burst per key. A nil
// *Keyed admits everything.
type Keyed struct {
	limit   rate.Limit
	burst   int
	maxKeys int

	mu sync.Mutex
	by map[string]*rate.Limiter
}

// New returns a Keyed of limit tokens per second per key, burst at once.
// A limit of 0 or less, or a burst of 0 or less, returns nil: no limit.
func New(limit rate.Limit, burst int) *Keyed {
	if limit <= 0 || burst <= 0 {
		return nil
	}
	return &Keyed{limit: limit, burst: burst, maxKeys: DefaultMaxKeys, by: map[string]*rate.Limiter{}}
}

// Allow takes a token of key's bucket at now. It returns 0 when one was
// there, else how long until one will be (and takes nothing).
func (k *Keyed) Allow(key string, now time.Time) time.Duration {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	lim := k.by[key]
	if lim == nil {
		if len(k.by) >= k.maxKeys {
			k.evict(now)
		}
		lim = rate.NewLimiter(k.limit, k.burst)
		k.by[key] = lim
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() { // burst 0: New never builds one
		return time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// evict makes room: first the buckets that are full again (the same as a
// new one, so dropping them forgets nothing), then, if every key is busy,
// an arbitrary half, so that a flood of new keys costs amortised O(1).
func (k *Keyed) evict(now time.Time) {
	for key, lim := range k.by {
		if lim.TokensAt(now) >= float64(k.burst) {
			delete(k.by, key)
		}
	}
	for key := range k.by {
		if len(k.by) < k.maxKeys/2 {
			break
		}
		delete(k.by, key) // map order is random: no key can count on staying
	}
}

// Len returns how many buckets k keeps.
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.by)
}

// RetryAfter is wait as a Retry-After value: whole seconds, rounded up,
// at least 1.
func RetryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second)))
}

// RemoteKey is the key of r's remote address: the IP address, or for
// IPv6 its /64, which one subscriber typically holds whole (a key per
// address would let them mint 2^64 buckets). Behind a proxy it is the
// proxy's address: limit at the proxy, or per client after authentication.
func RemoteKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "addr:" + host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64) // a valid IPv6 address always has a /64
		return "addr:" + p.String()
	}
	return "addr:" + ip.String()
}
