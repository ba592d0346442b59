package bulkdata

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/p2p-payer/p2p/fault"
)

// tokenServer is a SMART Backend Services authorisation server: it
// publishes .well-known/smart-configuration under /fhir and checks every
// client assertion as the spec says (algorithm, kid, signature, iss = sub
// = client id, aud = token URL, exp at most five minutes ahead, jti never
// seen before) before issuing at-1, at-2, ...
type tokenServer struct {
	t        *testing.T
	clock    *fakeClock
	srv      *httptest.Server
	clientID string
	keys     map[string]crypto.PublicKey // kid → public key
	lifetime int                         // expires_in
	delay    time.Duration               // slow answers, for concurrency tests
	config   map[string]any              // the smart-configuration; nil: the default

	mu     sync.Mutex
	jtis   map[string]bool
	issued int
}

func newTokenServer(t *testing.T, clock *fakeClock, clientID string) *tokenServer {
	ts := &tokenServer{t: t, clock: clock, clientID: clientID, keys: map[string]crypto.PublicKey{}, lifetime: 300, jtis: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		cfg := ts.config
		if cfg == nil {
			cfg = map[string]any{
				"token_endpoint":                                   ts.tokenURL(),
				"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
				"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
				"grant_types_supported":                            []string{"client_credentials"},
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cfg)
	})
	mux.HandleFunc("POST /auth/token", ts.token)
	ts.srv = httptest.NewServer(mux)
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) tokenURL() string { return ts.srv.URL + "/auth/token" }

func (ts *tokenServer) Issued() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued
}

func (ts *tokenServer) token(w http.ResponseWriter, r *http.Request) {
	time.Sleep(ts.delay)
	refuse := func(why string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": why})
	}
	if err := r.ParseForm(); err != nil {
		refuse("form")
		return
	}
	if r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("client_assertion_type") != ClientAssertionType {
		refuse("grant_type or client_assertion_type")
		return
	}
	tok, err := jwt.ParseSigned(r.Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil || len(tok.Headers) != 1 {
		refuse("not a JWS with RS384 or ES384")
		return
	}
	h := tok.Headers[0]
	if h.ExtraHeaders["typ"] != "JWT" {
		refuse("typ")
		return
	}
	pub, ok := ts.keys[h.KeyID]
	if !ok {
		refuse("unknown kid")
		return
	}
	var c jwt.Claims
	if err := tok.Claims(pub, &c); err != nil {
		refuse("signature")
		return
	}
	now := ts.clock.Now()
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: ts.clientID, Subject: ts.clientID, AnyAudience: jwt.Audience{ts.tokenURL()}, Time: now}, 0); err != nil {
		refuse(err.Error())
		return
	}
	if c.Expiry == nil || c.Expiry.Time().After(now.Add(5*time.Minute)) || c.ID == "" {
		refuse("exp more than five minutes ahead, or no jti")
		return
	}
	ts.mu.Lock()
	replay := ts.jtis[c.ID]
	ts.jtis[c.ID] = true
	ts.issued++
	n := ts.issued
	ts.mu.Unlock()
	if replay {
		refuse("jti replayed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("at-%d", n), "token_type": "Bearer", "expires_in": ts.lifetime, "scope": r.Form.Get("scope")})
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBackendServices(t *testing.T) {
	for _, tt := range []struct {
		name     string
		key      crypto.Signer
		alg      string
		discover bool
	}{
		{"RS384, discovered token URL", rsaKey(t, 2048), "RS384", true},
		{"ES384, configured token URL", ecKey(t, elliptic.P384()), "ES384", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			ts := newTokenServer(t, clock, "p2p-newpayer")
			ts.keys["k1"] = tt.key.Public()
			cfg := BackendServicesConfig{Partner: "oldpayer", ClientID: "p2p-newpayer", Key: tt.key, KeyID: "k1", Scope: "system/*.rs", Now: clock.Now}
			if tt.discover {
				cfg.FHIRBaseURL = ts.srv.URL + "/fhir"
			} else {
				cfg.TokenURL = ts.tokenURL()
			}
			b, err := NewBackendServices(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if b.Algorithm() != tt.alg {
				t.Errorf("algorithm %s, want %s", b.Algorithm(), tt.alg)
			}
			ctx := context.Background()
			get := func(want string) {
				t.Helper()
				tok, err := b.Token(ctx)
				if err != nil || tok != want {
					t.Fatalf("Token() = %q, %v; want %q", tok, err, want)
				}
			}
			get("at-1")
			get("at-1") // cached
			// A 300 s token is replaced from 240 s on (one minute early).
			clock.Advance(239 * time.Second)
			get("at-1")
			clock.Advance(2 * time.Second)
			get("at-2")
			// Dropped after a 401: the next call fetches.
			b.Invalidate("at-1") // not the current one: no effect
			get("at-2")
			b.Invalidate("at-2")
			get("at-3")
			if ts.Issued() != 3 {
				t.Errorf("%d tokens issued, want 3", ts.Issued())
			}
		})
	}
}

// Callers arriving together share one fetch.
func TestBackendServicesOneFetchAtATime(t *testing.T) {
	clock := newFakeClock()
	ts := newTokenServer(t, clock, "c")
	ts.delay = 100 * time.Millisecond
	key := ecKey(t, elliptic.P384())
	b, err := NewBackendServices(BackendServicesConfig{ClientID: "c", Key: key, TokenURL: ts.tokenURL(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	// No KeyID: the RFC 7638 thumbprint.
	tp, _ := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	ts.keys[base64.RawURLEncoding.EncodeToString(tp)] = key.Public()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if tok, err := b.Token(context.Background()); err != nil || tok != "at-1" {
				errs <- fmt.Errorf("%q, %v", tok, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ts.Issued() != 1 {
		t.Errorf("%d fetches, want 1", ts.Issued())
	}
}

func TestBackendServicesRefused(t *testing.T) {
	clock := newFakeClock()
	ts := newTokenServer(t, clock, "c")
	key := rsaKey(t, 2048)
	ts.keys["k1"] = rsaKey(t, 2048).Public() // not our key
	b, _ := NewBackendServices(BackendServicesConfig{Partner: "oldpayer", ClientID: "c", Key: key, KeyID: "k1", TokenURL: ts.tokenURL(), Now: clock.Now})
	_, err := b.Token(context.Background())
	f := faultOf(t, err, fault.Auth, ErrTypeAuth)
	if HTTPStatus(err) != 400 || f.Msg != "partner oldpayer: token: refused (invalid_client)" {
		t.Errorf("refusal: %v", err)
	}

	// The wrong client id and a stale clock are refused too: the server
	// really checks.
	ts.keys["k1"] = key.Public()
	b, _ = NewBackendServices(BackendServicesConfig{ClientID: "someone-else", Key: key, KeyID: "k1", TokenURL: ts.tokenURL(), Now: clock.Now})
	_, err = b.Token(context.Background())
	wantFault(t, err, fault.Auth, ErrTypeAuth)
	b, _ = NewBackendServices(BackendServicesConfig{ClientID: "c", Key: key, KeyID: "k1", TokenURL: ts.tokenURL(), Now: func() time.Time { return t0.Add(-time.Hour) }})
	_, err = b.Token(context.Background())
	wantFault(t, err, fault.Auth, ErrTypeAuth)
}

func TestBackendServicesDiscovery(t *testing.T) {
	clock := newFakeClock()
	ts := newTokenServer(t, clock, "c")
	key := ecKey(t, elliptic.P384())
	ts.keys["k1"] = key.Public()
	for _, tt := range []struct {
		name   string
		config map[string]any
		typ    string
	}{
		{"token endpoint on another host", map[string]any{"token_endpoint": "https://auth.evil.example/token"}, ErrTypeHostNotAllowed},
		{"no token endpoint", map[string]any{"issuer": "x"}, ErrTypeBadResponse},
		{"no private_key_jwt", map[string]any{"token_endpoint": ts.tokenURL(), "token_endpoint_auth_methods_supported": []string{"client_secret_basic"}}, ErrTypeBadResponse},
		{"no ES384", map[string]any{"token_endpoint": ts.tokenURL(), "token_endpoint_auth_signing_alg_values_supported": []string{"RS384"}}, ErrTypeBadResponse},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts.config = tt.config
			b, err := NewBackendServices(BackendServicesConfig{ClientID: "c", Key: key, KeyID: "k1", FHIRBaseURL: ts.srv.URL + "/fhir", Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.Token(context.Background())
			wantFault(t, err, fault.Validation, tt.typ)
		})
	}
	// An auth server on an allow-listed host is fine.
	ts.config = map[string]any{"token_endpoint": ts.tokenURL()}
	b, _ := NewBackendServices(BackendServicesConfig{ClientID: "c", Key: key, KeyID: "k1", FHIRBaseURL: "http://fhir.invalid/fhir", AllowedHosts: []string{hostOf(t, ts.srv.URL)}, Now: clock.Now})
	b.cfg.FHIRBaseURL = ts.srv.URL + "/fhir" // discovery itself goes to the test server
	if _, err := b.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNewBackendServicesRefusesBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  BackendServicesConfig
	}{
		{"no client id", BackendServicesConfig{Key: rsaKey(t, 2048), TokenURL: "https://a.example/t"}},
		{"no key", BackendServicesConfig{ClientID: "c", TokenURL: "https://a.example/t"}},
		{"P-256 (ES256 is not SMART's)", BackendServicesConfig{ClientID: "c", Key: ecKey(t, elliptic.P256()), TokenURL: "https://a.example/t"}},
		{"RSA 1024", BackendServicesConfig{ClientID: "c", Key: rsaKey(t, 1024), TokenURL: "https://a.example/t"}},
		{"no token URL nor base", BackendServicesConfig{ClientID: "c", Key: rsaKey(t, 2048)}},
		{"relative token URL", BackendServicesConfig{ClientID: "c", Key: rsaKey(t, 2048), TokenURL: "/token"}},
	} {
		if _, err := NewBackendServices(tt.cfg); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

// The Bulk Data client with SMART Backend Services end to end: the kick-off
// carries the issued token.
func TestClientWithBackendServices(t *testing.T) {
	clock := newFakeClock()
	ts := newTokenServer(t, clock, "c")
	key := rsaKey(t, 2048)
	ts.keys["k1"] = key.Public()
	s := newBulkServer(t, clock)
	s.Token = "at-1"
	tokens, err := NewBackendServices(BackendServicesConfig{ClientID: "c", Key: key, KeyID: "k1", TokenURL: ts.tokenURL(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, s, clock, func(cfg *Config) { cfg.Tokens = tokens })
	if _, err := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel}); err != nil {
		t.Fatal(err)
	}
	// The server revokes at-1 and only takes at-2: the client gets a fresh
	// token on the 401 and goes on.
	s.Token = "at-2"
	if _, err := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel}); err != nil {
		t.Fatal(err)
	}
	if ts.Issued() != 2 {
		t.Errorf("%d tokens issued, want 2", ts.Issued())
	}
}
