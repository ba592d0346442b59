package signing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/p2p-payer/p2p/internal/egress"
)

// ErrJWKSUnavailable is returned when a remote JWKS cannot be fetched.
var ErrJWKSUnavailable = errors.New("signing: JWKS unavailable")

// Cache bounds of RemoteKeys.
const (
	// DefaultKeysTTL is how long a JWKS is trusted when its answer has no
	// Cache-Control max-age.
	DefaultKeysTTL = 10 * time.Minute
	// MinKeysTTL and MaxKeysTTL bound a max-age: a publisher cannot make
	// us fetch on every use, nor keep a retired key trusted for days.
	MinKeysTTL = time.Minute
	MaxKeysTTL = 24 * time.Hour
	// DefaultRefetchInterval is how often, at most, a kid missing from a
	// cached JWKS fetches it again: a caller sending random kids cannot
	// make us hammer the publisher.
	DefaultRefetchInterval = 30 * time.Second
	// failedFetchBackoff is how long a failed fetch is not retried for.
	failedFetchBackoff = 5 * time.Second
	// MaxJWKSBytes caps a JWKS document.
	MaxJWKSBytes     = 512 << 10
	jwksFetchTimeout = 10 * time.Second
)

// RemoteKeys fetches and caches JWKS documents published at URLs (a
// partner's keys, or ours as a partner sees them), and verifies compact JWS
// against them: the one JWKS fetcher of p2p. Each URL's document is kept
// for its Cache-Control max-age, bounded to [MinKeysTTL, MaxKeysTTL]
// (DefaultKeysTTL without one). A kid missing from the cached copy
// fetches it again, at most once per RefetchInterval per URL, so a key
// rotation is picked up on its first use. Fetches go through an egress
// policy: the URL's own host only (a redirect elsewhere is refused), no
// token, at most MaxJWKSBytes, private addresses only if Egress allows
// them. Concurrent fetches of one URL are made once. Safe for concurrent
// use; the zero value is ready.
type RemoteKeys struct {
	// Client, if set, makes the fetches (tests, the sandbox partner),
	// still held to the URL's host and the size cap; nil: an egress
	// client per URL.
	Client *http.Client
	// Egress is the policy of fetches from a JWKS URL: the registry
	// partner's that publishes it (its allow_private_network); nil, or a
	// URL no partner publishes: public addresses only.
	Egress func(jwksURL string) egress.Policy
	// TTL is the lifetime of a document whose answer has no max-age; 0:
	// DefaultKeysTTL.
	TTL time.Duration
	// RefetchInterval: 0 is DefaultRefetchInterval.
	RefetchInterval time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	mu      sync.Mutex
	byURL   map[string]*cached
	clients map[clientKey]*http.Client
	flight  singleflight.Group
}

type cached struct {
	jwks    []byte
	expires time.Time // fetch again from then on
	tried   time.Time // the last fetch, successful or not
	failed  bool      // the last fetch failed
}

type clientKey struct {
	host         string
	name         string
	allowPrivate bool
}

// Verify checks compact against the JWKS at url (see Verify) and returns
// its payload and kid.
func (k *RemoteKeys) Verify(ctx context.Context, url, compact string) (payload []byte, kid string, err error) {
	return k.verify(ctx, url, func(jwks []byte) ([]byte, string, error) { return Verify(compact, jwks) })
}

// VerifyFor checks compact, made for purpose p (see VerifyFor), against
// the JWKS at url and returns its payload and kid.
func (k *RemoteKeys) VerifyFor(ctx context.Context, p Purpose, url, compact string) (payload []byte, kid string, err error) {
	return k.verify(ctx, url, func(jwks []byte) ([]byte, string, error) { return VerifyFor(p, compact, jwks) })
}

// verify runs check on the cached JWKS at url, and once more on a fresh
// copy when the kid is unknown.
func (k *RemoteKeys) verify(ctx context.Context, url string, check func(jwks []byte) ([]byte, string, error)) ([]byte, string, error) {
	jwks, err := k.keys(ctx, url, false)
	if err != nil {
		return nil, "", err
	}
	payload, kid, err := check(jwks)
	if !errors.Is(err, ErrUnknownKID) || kid == "" {
		return payload, kid, err
	}
	if jwks, err = k.keys(ctx, url, true); err != nil {
		return nil, "", err
	}
	return check(jwks)
}

// Fetch returns the JWKS document at url: the cached copy while it is
// fresh, unless refresh (the caller met an unknown kid), which fetches it
// again if the last fetch is older than the refetch interval. For keys of
// algorithms Verify does not take (a partner's RS384/ES384 client
// assertions).
func (k *RemoteKeys) Fetch(ctx context.Context, url string, refresh bool) ([]byte, error) {
	return k.keys(ctx, url, refresh)
}

func (k *RemoteKeys) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

func (k *RemoteKeys) keys(ctx context.Context, url string, refresh bool) ([]byte, error) {
	now := k.now()
	refetch := k.RefetchInterval
	if refetch <= 0 {
		refetch = DefaultRefetchInterval
	}
	k.mu.Lock()
	c := k.byURL[url]
	var snap cached
	if c != nil {
		snap = *c
	}
	k.mu.Unlock()
	if c != nil {
		fresh := snap.jwks != nil && now.Before(snap.expires)
		switch {
		case fresh && (!refresh || now.Sub(snap.tried) < refetch):
			return snap.jwks, nil // fresh, or refetched a moment ago
		case snap.failed && now.Sub(snap.tried) < failedFetchBackoff:
			if fresh {
				return snap.jwks, nil
			}
			return nil, fmt.Errorf("%w: the last fetch failed moments ago", ErrJWKSUnavailable)
		}
	}
	// One fetch per URL for every caller waiting; it runs on its own
	// deadline so that the first caller giving up does not fail the others.
	ch := k.flight.DoChan(url, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
		defer cancel()
		return k.fetch(fctx, url)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrJWKSUnavailable, ctx.Err())
	}
}

// fetch gets url and caches the answer, or records the failure.
func (k *RemoteKeys) fetch(ctx context.Context, raw string) ([]byte, error) {
	b, ttl, err := k.get(ctx, raw)
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byURL == nil {
		k.byURL = map[string]*cached{}
	}
	c := k.byURL[raw]
	if c == nil {
		c = &cached{}
		k.byURL[raw] = c
	}
	c.tried, c.failed = now, err != nil
	if err != nil {
		return nil, err
	}
	c.jwks, c.expires = b, now.Add(ttl)
	return b, nil
}

// get fetches a JWKS and returns it with its lifetime.
func (k *RemoteKeys) get(ctx context.Context, raw string) ([]byte, time.Duration, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, 0, fmt.Errorf("%w: %.100q is not an absolute http(s) URL", ErrJWKSUnavailable, raw)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrJWKSUnavailable, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	req.Header.Set("User-Agent", "p2p")
	c, name := k.client(u)
	resp, err := c.Do(req)
	if err != nil {
		if f, ok := egress.Fault(err); ok {
			return nil, 0, fmt.Errorf("%w: %w", ErrJWKSUnavailable, f)
		}
		return nil, 0, fmt.Errorf("%w: %v", ErrJWKSUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%w: status %d", ErrJWKSUnavailable, resp.StatusCode)
	}
	b, err := egress.ReadAll(resp.Body, MaxJWKSBytes, name)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrJWKSUnavailable, err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(b, &set) != nil || set.Keys == nil {
		return nil, 0, fmt.Errorf("%w: not a JWKS (a JSON object with keys)", ErrJWKSUnavailable)
	}
	return b, k.lifetime(resp.Header.Get("Cache-Control")), nil
}

// lifetime is how long an answer with Cache-Control cc is trusted.
func (k *RemoteKeys) lifetime(cc string) time.Duration {
	ttl := k.TTL
	if ttl <= 0 {
		ttl = DefaultKeysTTL
	}
	for _, d := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.ToLower(strings.TrimSpace(d)), "=")
		switch name {
		case "no-store", "no-cache":
			return MinKeysTTL
		case "max-age":
			if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(MaxKeysTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, MinKeysTTL), MaxKeysTTL)
}

// client is the client of fetches from u and the party's name, for
// errors: an egress client held to u's host, one per host and policy.
func (k *RemoteKeys) client(u *url.URL) (*http.Client, string) {
	host, _ := egress.HostOf(u)
	if k.Client != nil {
		c := *k.Client
		pol := egress.Policy{Name: u.Hostname(), Hosts: []egress.Rule{host}, FollowRedirects: true}
		c.CheckRedirect = pol.CheckRedirect
		return &c, u.Hostname()
	}
	pol := egress.Policy{Name: u.Hostname()}
	if k.Egress != nil {
		pol = k.Egress(u.String())
	}
	if pol.Name == "" {
		pol.Name = u.Hostname()
	}
	key := clientKey{host: strings.ToLower(u.Host), name: pol.Name, allowPrivate: pol.AllowPrivate}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.clients[key]; ok {
		return c, pol.Name
	}
	// The URL's host only, no token anywhere, a small answer.
	pol.Hosts, pol.TokenHosts = []egress.Rule{host}, nil
	pol.FollowRedirects = true
	pol.MaxResponseBytes = MaxJWKSBytes
	pol.Timeout = jwksFetchTimeout
	c := egress.NewClient(pol)
	if k.clients == nil {
		k.clients = map[clientKey]*http.Client{}
	}
	k.clients[key] = c
	return c, pol.Name
}
