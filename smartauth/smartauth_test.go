package smartauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/p2p-payer/p2p/internal/egress"
	"github.com/p2p-payer/p2p/signing"
)

const tokenURL = "https://p2p.example/fhir/auth/token"

type partnerKeys struct {
	kid string
	key crypto.Signer
	alg jose.SignatureAlgorithm
}

func newFixture(t *testing.T) (*Server, *time.Time, map[string]partnerKeys) {
	t.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	keys := map[string]partnerKeys{
		"es384": {"k-ec", ec, jose.ES384},
		"rs384": {"k-rsa", rs, jose.RS384},
	}
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Use: "sig"})
	}
	jwks, _ := json.Marshal(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	t.Cleanup(srv.Close)
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	active := map[string]bool{"new-payer": true}
	return &Server{
		TokenURL: tokenURL, Signer: signer,
		Clients: func(id string) (Client, bool) {
			if id != "client-new-payer" {
				return Client{}, false
			}
			return Client{PartnerID: "new-payer", JWKSURL: srv.URL}, true
		},
		Active: func(id string) bool { return active[id] },
		Now:    func() time.Time { return now },
		// The partner's JWKS is on loopback, as its registry entry allows.
		Keys: &signing.RemoteKeys{Egress: func(string) egress.Policy { return egress.Policy{Name: "new-payer", AllowPrivate: true} }},
	}, &now, keys
}

func assertion(t *testing.T, k partnerKeys, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func post(s *Server, form url.Values) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/auth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.TokenHandler().ServeHTTP(w, r)
	return w
}

func form(assertion string) url.Values {
	return url.Values{"grant_type": {GrantType}, "client_assertion_type": {ClientAssertionType},
		"client_assertion": {assertion}, "scope": {"system/*.rs"}}
}

func TestTokenFlow(t *testing.T) {
	s, now, keys := newFixture(t)
	good := func(jti string) map[string]any {
		return map[string]any{"iss": "client-new-payer", "sub": "client-new-payer", "aud": tokenURL,
			"exp": now.Add(4 * time.Minute).Unix(), "jti": jti}
	}
	for _, alg := range []string{"es384", "rs384"} {
		w := post(s, form(assertion(t, keys[alg], good("jti-"+alg))))
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", alg, w.Code, w.Body)
		}
		var res struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
			t.Fatalf("%s: %v: %s", alg, err, w.Body)
		}
		if res.TokenType != "bearer" || res.ExpiresIn != 300 || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: token response %s", alg, w.Body)
		}
		r := httptest.NewRequest(http.MethodPost, "/Patient/$member-match", nil)
		r.Header.Set("Authorization", "Bearer "+res.AccessToken)
		if id, ok := s.Requester(r); !ok || id != "new-payer" {
			t.Fatalf("%s: requester %q %v", alg, id, ok)
		}
		// Tampered, expired, or for a partner no longer allowed: refused.
		r.Header.Set("Authorization", "Bearer "+res.AccessToken[:len(res.AccessToken)-4]+"AAAA")
		if _, ok := s.Requester(r); ok {
			t.Errorf("%s: a tampered token was taken", alg)
		}
		r.Header.Set("Authorization", "Bearer "+res.AccessToken)
		*now = now.Add(6 * time.Minute)
		if _, ok := s.Requester(r); ok {
			t.Errorf("%s: an expired token was taken", alg)
		}
		*now = now.Add(-6 * time.Minute)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if _, ok := s.Requester(r); ok {
		t.Error("a request without a token was taken")
	}
	s.Active = func(string) bool { return false }
	w := post(s, form(assertion(t, keys["es384"], good("jti-inactive"))))
	var res struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+res.AccessToken)
	if _, ok := s.Requester(r); ok {
		t.Error("a token of a partner no longer allowed was taken")
	}
}

func TestTokenRefusals(t *testing.T) {
	s, now, keys := newFixture(t)
	es256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "client-new-payer", "sub": "client-new-payer", "aud": tokenURL,
			"exp": now.Add(4 * time.Minute).Unix(), "jti": "j-" + time.Now().Format("150405.000000000")}
		if mod != nil {
			mod(c)
		}
		return c
	}
	replayed := assertion(t, keys["es384"], claims(nil))
	if w := post(s, form(replayed)); w.Code != http.StatusOK {
		t.Fatalf("first use: %d %s", w.Code, w.Body)
	}
	tests := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"replayed jti", form(replayed), 401, "invalid_client"},
		{"wrong audience", form(assertion(t, keys["es384"], claims(func(c map[string]any) { c["aud"] = "https://other.example/token" }))), 401, "invalid_client"},
		{"expired", form(assertion(t, keys["es384"], claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }))), 401, "invalid_client"},
		{"exp too far ahead", form(assertion(t, keys["es384"], claims(func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }))), 401, "invalid_client"},
		{"no jti", form(assertion(t, keys["es384"], claims(func(c map[string]any) { delete(c, "jti") }))), 401, "invalid_client"},
		{"iss differs from sub", form(assertion(t, keys["es384"], claims(func(c map[string]any) { c["sub"] = "someone" }))), 401, "invalid_client"},
		{"unknown client", form(assertion(t, keys["es384"], claims(func(c map[string]any) { c["iss"], c["sub"] = "nobody", "nobody" }))), 401, "invalid_client"},
		{"unknown kid", form(assertion(t, partnerKeys{"k-other", keys["es384"].key, jose.ES384}, claims(nil))), 401, "invalid_client"},
		{"key not in the JWKS", form(assertion(t, partnerKeys{"k-ec", mustEC384(t), jose.ES384}, claims(nil))), 401, "invalid_client"},
		{"ES256 is not offered", form(assertion(t, partnerKeys{"k-ec", es256, jose.ES256}, claims(nil))), 401, "invalid_client"},
		{"not a JWT", form("nonsense"), 401, "invalid_client"},
		{"wrong grant", func() url.Values { f := form(replayed); f.Set("grant_type", "password"); return f }(), 400, "unsupported_grant_type"},
		{"wrong assertion type", func() url.Values { f := form(replayed); f.Set("client_assertion_type", "x"); return f }(), 400, "invalid_request"},
		{"no scope", func() url.Values { f := form(replayed); f.Del("scope"); return f }(), 400, "invalid_scope"},
		{"user scope", func() url.Values { f := form(replayed); f.Set("scope", "user/*.rs"); return f }(), 400, "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := post(s, tt.form)
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("%v: %s", err, w.Body)
			}
			if w.Code != tt.status || e.Error != tt.code {
				t.Fatalf("%d %s, want %d %s", w.Code, w.Body, tt.status, tt.code)
			}
		})
	}
}

func mustEC384(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
