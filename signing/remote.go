package signing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ErrJWKSUnavailable is returned when a remote JWKS cannot be fetched.
var ErrJWKSUnavailable = errors.New("signing: JWKS unavailable")

// DefaultKeysTTL is how long RemoteKeys trusts a fetched JWKS before
// fetching it again; an unknown kid refetches at once.
const DefaultKeysTTL = 10 * time.Minute

// RemoteKeys verifies compact JWS against JWKS documents published at URLs
// (a partner's keys, or ours as a partner sees them), caching each
// document: a kid not in the cached copy refetches it once, so a key
// rotation is picked up on its first use. Safe for concurrent use.
type RemoteKeys struct {
	Client *http.Client  // nil: a client with a 10 s timeout
	TTL    time.Duration // 0: DefaultKeysTTL

	mu    sync.Mutex
	byURL map[string]fetched
}

type fetched struct {
	jwks []byte
	at   time.Time
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

// Fetch returns the JWKS document at url, from the cache unless refresh
// or it is older than the TTL: for keys of algorithms Verify does not take
// (a partner's RS384/ES384 client assertions).
func (k *RemoteKeys) Fetch(ctx context.Context, url string, refresh bool) ([]byte, error) {
	return k.keys(ctx, url, refresh)
}

func (k *RemoteKeys) keys(ctx context.Context, url string, refresh bool) ([]byte, error) {
	ttl := k.TTL
	if ttl == 0 {
		ttl = DefaultKeysTTL
	}
	k.mu.Lock()
	c, ok := k.byURL[url]
	k.mu.Unlock()
	if ok && !refresh && time.Since(c.at) < ttl {
		return c.jwks, nil
	}
	client := k.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrJWKSUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrJWKSUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK || !json.Valid(b) {
		return nil, fmt.Errorf("%w: status %d", ErrJWKSUnavailable, resp.StatusCode)
	}
	k.mu.Lock()
	if k.byURL == nil {
		k.byURL = map[string]fetched{}
	}
	k.byURL[url] = fetched{jwks: b, at: time.Now()}
	k.mu.Unlock()
	return b, nil
}
