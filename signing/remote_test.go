package signing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// jwksServer serves a JWKS with a Cache-Control header and counts fetches.
type jwksServer struct {
	*httptest.Server
	hits  atomic.Int32
	mu    sync.Mutex
	body  string
	cache string
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{body: `{"keys":[]}`}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cache != "" {
			w.Header().Set("Cache-Control", s.cache)
		}
		_, _ = w.Write([]byte(s.body))
	}))
	t.Cleanup(s.Close)
	return s
}

// private lets fetches reach the loopback test servers, as a partner
// configured with allow_private_network.
func private(string) egress.Policy { return egress.Policy{Name: "dev", AllowPrivate: true} }

func TestRemoteKeysLifetime(t *testing.T) {
	for _, tc := range []struct {
		cacheControl string
		want         time.Duration
	}{
		{"", DefaultKeysTTL},
		{"max-age=3600", time.Hour},
		{"public, max-age=120, must-revalidate", 2 * time.Minute},
		{"max-age=1", MinKeysTTL},        // too short: bounded
		{"max-age=31536000", MaxKeysTTL}, // a year: bounded
		{"max-age=999999999999999", MaxKeysTTL},
		{"no-store", MinKeysTTL},
		{"no-cache", MinKeysTTL},
		{"max-age=x", DefaultKeysTTL},
	} {
		k := &RemoteKeys{}
		if got := k.lifetime(tc.cacheControl); got != tc.want {
			t.Errorf("Cache-Control %q: lifetime %v, want %v", tc.cacheControl, got, tc.want)
		}
	}
}

// TestRemoteKeysCache: max-age decides when a document is fetched again,
// and an unknown kid refetches at most once per refetch interval.
func TestRemoteKeysCache(t *testing.T) {
	srv := newJWKSServer(t)
	srv.cache = "max-age=300"
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := &RemoteKeys{Egress: private, Now: func() time.Time { return now }}
	ctx := context.Background()
	steps := []struct {
		name      string
		advance   time.Duration
		refresh   bool
		wantTotal int32
	}{
		{"first use fetches", 0, false, 1},
		{"unknown kid within the refetch interval: cached", 10 * time.Second, true, 1},
		{"fresh: cached", time.Minute, false, 1},
		{"unknown kid after the interval: fetched", 0, true, 2},
		{"unknown kid again at once: cached", time.Second, true, 2},
		{"a flood of unknown kids: cached", 0, true, 2},
		{"fresh for max-age from the last fetch", 4 * time.Minute, false, 2},
		{"past max-age: fetched", 2 * time.Minute, false, 3},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if _, err := k.Fetch(ctx, srv.URL, st.refresh); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := srv.hits.Load(); got != st.wantTotal {
			t.Fatalf("%s: %d fetches, want %d", st.name, got, st.wantTotal)
		}
	}
}

func TestRemoteKeysRefusals(t *testing.T) {
	good := newJWKSServer(t)
	big := newJWKSServer(t)
	big.body = `{"keys":[` + strings.Repeat(`{"kty":"oct"},`, MaxJWKSBytes/14) + `{}]}`
	notJWKS := newJWKSServer(t)
	notJWKS.body = `{"hello":"world"}`
	var redirectHits atomic.Int32
	redirected := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { redirectHits.Add(1) }))
	defer redirected.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Another host: "localhost" is not the 127.0.0.1 the URL names.
		http.Redirect(w, r, strings.Replace(redirected.URL, "127.0.0.1", "localhost", 1)+"/jwks", http.StatusFound)
	}))
	defer redirector.Close()
	for _, tc := range []struct {
		name     string
		keys     *RemoteKeys
		url      string
		wantType string // "" any ErrJWKSUnavailable; else the egress fault type
	}{
		{"loopback without the partner's allowance", &RemoteKeys{}, good.URL, fault.TypeEgressRefused},
		{"metadata address", &RemoteKeys{Egress: private}, "http://169.254.169.254/latest/meta-data/jwks", fault.TypeEgressRefused},
		{"redirect to another host", &RemoteKeys{Egress: private}, redirector.URL, fault.TypeEgressRefused},
		{"redirect to another host with a given client", &RemoteKeys{Client: redirector.Client()}, redirector.URL, fault.TypeEgressRefused},
		{"larger than the cap", &RemoteKeys{Egress: private}, big.URL, fault.TypeResponseTooLarge},
		{"not a JWKS", &RemoteKeys{Egress: private}, notJWKS.URL, ""},
		{"not a URL", &RemoteKeys{Egress: private}, "file:///etc/passwd", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.keys.Fetch(context.Background(), tc.url, false)
			if !errors.Is(err, ErrJWKSUnavailable) {
				t.Fatalf("err = %v, want ErrJWKSUnavailable", err)
			}
			if tc.wantType != "" {
				if f, ok := egress.Fault(err); !ok || f.Type != tc.wantType {
					t.Fatalf("err = %v, want %s", err, tc.wantType)
				}
			}
		})
	}
	if redirectHits.Load() != 0 {
		t.Error("a redirect to another host was followed")
	}
	if _, err := (&RemoteKeys{Egress: private}).Fetch(context.Background(), good.URL, false); err != nil {
		t.Errorf("allowed fetch: %v", err)
	}
}

// A failed fetch is not retried at once, however many callers ask.
func TestRemoteKeysFailureBackoff(t *testing.T) {
	var hits atomic.Int32
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := &RemoteKeys{Egress: private, Now: func() time.Time { return now }}
	for range 5 {
		if _, err := k.Fetch(context.Background(), down.URL, true); !errors.Is(err, ErrJWKSUnavailable) {
			t.Fatalf("err = %v", err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d fetches of a failing JWKS, want 1", hits.Load())
	}
	now = now.Add(failedFetchBackoff)
	_, _ = k.Fetch(context.Background(), down.URL, false)
	if hits.Load() != 2 {
		t.Fatalf("%d fetches after the backoff, want 2", hits.Load())
	}
}

// Concurrent first uses of one URL fetch it once.
func TestRemoteKeysOneFetch(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		<-release
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()
	k := &RemoteKeys{Egress: private}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := k.Fetch(context.Background(), srv.URL, false); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if hits.Load() != 1 {
		t.Fatalf("%d fetches, want 1", hits.Load())
	}
}

// TestRemoteKeysVerifyFor: a partner checking our manifests takes only
// manifest signatures, and picks up a rotated key on its first use.
func TestRemoteKeysVerifyFor(t *testing.T) {
	ks := mustKeySet(t, Manifest)
	before := mustSigner(t, ks, 0)
	cp := mustSigner(t, mustKeySet(t, Checkpoint), 0)
	var current atomic.Pointer[Signer]
	current.Store(before)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		b, _ := PublicKeySet{current.Load(), cp}.PublicJWKS()
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	// The test server is on loopback; the rotation is picked up at once.
	keys := &RemoteKeys{Egress: private, RefetchInterval: time.Nanosecond}
	ctx := context.Background()

	sig, _ := before.Sign(manifest)
	cpSig, _ := cp.Sign(manifest)
	if _, kid, err := keys.VerifyFor(ctx, Manifest, srv.URL, sig); err != nil || kid != before.KID() {
		t.Fatalf("manifest: kid %s err %v", kid, err)
	}
	if _, _, err := keys.VerifyFor(ctx, Manifest, srv.URL, cpSig); !errors.Is(err, ErrType) {
		t.Fatalf("a checkpoint as a manifest: %v", err)
	}
	if _, err := ks.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	after := mustSigner(t, ks, 0)
	current.Store(after)
	newSig, _ := after.Sign(manifest)
	n := fetches.Load()
	if _, kid, err := keys.VerifyFor(ctx, Manifest, srv.URL, newSig); err != nil || kid != after.KID() {
		t.Fatalf("after rotation: kid %s err %v", kid, err)
	}
	if fetches.Load() != n+1 {
		t.Fatalf("%d fetches for an unknown kid, want 1", fetches.Load()-n)
	}
	if _, _, err := keys.VerifyFor(ctx, Manifest, srv.URL, sig); err != nil {
		t.Fatalf("the retired key's signature: %v", err)
	}
}
