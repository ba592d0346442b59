package smartauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/store/storetest"
)

const (
	tokenURL = "https://p2p.example/oauth/token"
	audV1    = "https://p2p.example/v1"
	fhirURL  = "https://p2p.example/fhir/auth/token"
	audFHIR  = "https://p2p.example/fhir"
)

var v1Scopes = []string{"transfers:write", "transfers:read", "review", "members:write", "members:read", "audit:read", "admin"}

type clientKey struct {
	kid string
	key crypto.Signer
	alg jose.SignatureAlgorithm
}

// registry is a mutable set of clients, as the store would hold them.
type registry struct {
	mu       sync.Mutex
	clients  map[string]Client
	disabled map[string]bool
}

func (g *registry) get(_ context.Context, id string) (Client, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.clients[id]
	if !ok || g.disabled[id] {
		return Client{}, ErrUnknownClient
	}
	return c, nil
}

func (g *registry) set(c Client) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.clients[c.ID] = c
}

func (g *registry) disable(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.disabled[id] = true
}

type fixture struct {
	now    time.Time
	keys   map[string]clientKey
	reg    *registry
	signer *signing.Signer
	dbPath string
	jwks   []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{now: time.Now(), keys: map[string]clientKey{
		"es384": {"k-ec", ec, jose.ES384},
		"rs384": {"k-rsa", rs, jose.RS384},
	}, dbPath: filepath.Join(t.TempDir(), "p2p.db")}
	set := jose.JSONWebKeySet{}
	for _, k := range f.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Use: "sig"})
	}
	f.jwks, _ = json.Marshal(set)
	if f.signer, err = signing.Generate(); err != nil {
		t.Fatal(err)
	}
	f.reg = &registry{clients: map[string]Client{
		"intake":   {ID: "intake", JWKS: f.jwks, Scopes: []string{"transfers:write", "transfers:read"}},
		"reviewer": {ID: "reviewer", JWKS: f.jwks, Scopes: []string{"review", "members:read"}, Person: "Pat Reviewer"},
		"root":     {ID: "root", JWKS: f.jwks, Scopes: []string{"admin"}},
	}, disabled: map[string]bool{}}
	return f
}

// v1 is a /v1 Server over the fixture, its replay cache a store of its
// own on the fixture's database file: two of them are two API processes.
func (f *fixture) v1(t *testing.T) *Server {
	t.Helper()
	st, err := sqlite.Open(context.Background(), f.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	storetest.CloseAtEnd(t, st)
	return &Server{
		Surface: "v1", TokenURL: tokenURL, Audience: audV1, Signer: f.signer,
		Clients: f.reg.get, Active: f.reg.get, Scopes: v1Scopes, DefaultScopes: true, Replay: st,
		Implies: func(reg, req string) bool { return reg == "admin" },
		Now:     func() time.Time { return f.now },
	}
}

// fhir is a /fhir Server naming partner "new-payer" for client
// "client-np", with the SMART scopes offered.
func (f *fixture) fhir(t *testing.T) *Server {
	t.Helper()
	s := f.v1(t)
	s.Surface, s.TokenURL, s.Audience, s.DefaultScopes, s.Implies = "fhir", fhirURL, audFHIR, false, nil
	s.Scopes = []string{"system/*.rs", "system/Patient.rs", "system/Patient.s"}
	np := Client{ID: "client-np", Subject: "new-payer", JWKS: f.jwks}
	s.Clients = func(_ context.Context, id string) (Client, error) {
		if id != np.ID {
			return Client{}, ErrUnknownClient
		}
		return np, nil
	}
	s.Active = func(_ context.Context, sub string) (Client, error) {
		if sub != np.Subject {
			return Client{}, ErrUnknownClient
		}
		return np, nil
	}
	return s
}

// claims are a valid assertion's claims for client id, modified by mod.
func (f *fixture) claims(id, aud string, mod func(map[string]any)) map[string]any {
	c := map[string]any{"iss": id, "sub": id, "aud": aud, "iat": f.now.Unix(),
		"exp": f.now.Add(4 * time.Minute).Unix(), "jti": randomID()}
	if mod != nil {
		mod(c)
	}
	return c
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sign(t *testing.T, k clientKey, claims map[string]any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.kid != "" {
		opts = opts.WithHeader("kid", k.kid)
	}
	for h, v := range headers {
		opts = opts.WithHeader(h, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// handmade builds a compact JWS with the header and signature function
// given: what no honest library makes (alg none, HMAC under a public key).
func handmade(header, claims map[string]any, sig func(signingInput string) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig(in))
}

func post(s *Server, form url.Values) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.TokenHandler().ServeHTTP(w, r)
	return w
}

func form(assertion, scope string) url.Values {
	f := url.Values{"grant_type": {GrantType}, "client_assertion_type": {ClientAssertionType}, "client_assertion": {assertion}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	Error       string `json:"error"`
}

func decode(t *testing.T, w *httptest.ResponseRecorder) tokenResponse {
	t.Helper()
	var res tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	return res
}

// TestTokenFlow: both algorithms buy a token whose claims name the client,
// its scope and its person; Verify takes it back.
func TestTokenFlow(t *testing.T) {
	f := newFixture(t)
	s := f.v1(t)
	for _, alg := range []string{"es384", "rs384"} {
		w := post(s, form(sign(t, f.keys[alg], f.claims("reviewer", tokenURL, nil), nil), "review"))
		res := decode(t, w)
		if w.Code != http.StatusOK || res.TokenType != "Bearer" || res.ExpiresIn != 300 || res.Scope != "review" ||
			w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %s", alg, w.Code, w.Body)
		}
		obj, err := jose.ParseSignedCompact(res.AccessToken, []jose.SignatureAlgorithm{signing.Algorithm})
		if err != nil || obj.Signatures[0].Protected.ExtraHeaders[jose.HeaderType] != TokenType {
			t.Fatalf("%s: token header %+v, %v", alg, obj, err)
		}
		tok, err := s.Verify(context.Background(), res.AccessToken)
		if err != nil || tok.Subject != "reviewer" || tok.ClientID != "reviewer" || strings.Join(tok.Scopes, " ") != "review" ||
			tok.Person != "Pat Reviewer" || !tok.Expiry.Equal(time.Unix(f.now.Add(5*time.Minute).Unix(), 0)) {
			t.Fatalf("%s: Verify = %+v, %v", alg, tok, err)
		}
	}
}

// TestAssertionRefusals: every assertion SMART Backend Services or RFC
// 7523 forbids is refused with invalid_client, and a scope we do not
// grant with invalid_scope.
func TestAssertionRefusals(t *testing.T) {
	f := newFixture(t)
	s := f.v1(t)
	ec := f.keys["es384"]
	pub, _ := x509.MarshalPKIXPublicKey(ec.key.Public())
	good := func(mod func(map[string]any)) map[string]any { return f.claims("intake", tokenURL, mod) }
	other384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	es256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name      string
		assertion string
		scope     string
		status    int
		code      string
	}{
		{"expired", sign(t, ec, good(func(c map[string]any) { c["exp"] = f.now.Add(-time.Minute).Unix() }), nil), "", 401, "invalid_client"},
		{"exp more than five minutes ahead", sign(t, ec, good(func(c map[string]any) { c["exp"] = f.now.Add(time.Hour).Unix() }), nil), "", 401, "invalid_client"},
		{"no exp", sign(t, ec, good(func(c map[string]any) { delete(c, "exp") }), nil), "", 401, "invalid_client"},
		{"iat in the future", sign(t, ec, good(func(c map[string]any) { c["iat"] = f.now.Add(2 * time.Minute).Unix() }), nil), "", 401, "invalid_client"},
		{"nbf in the future", sign(t, ec, good(func(c map[string]any) { c["nbf"] = f.now.Add(2 * time.Minute).Unix() }), nil), "", 401, "invalid_client"},
		{"wrong aud", sign(t, ec, good(func(c map[string]any) { c["aud"] = "https://other.example/token" }), nil), "", 401, "invalid_client"},
		{"the /fhir token URL as aud", sign(t, ec, good(func(c map[string]any) { c["aud"] = fhirURL }), nil), "", 401, "invalid_client"},
		{"no jti", sign(t, ec, good(func(c map[string]any) { delete(c, "jti") }), nil), "", 401, "invalid_client"},
		{"iss differs from sub", sign(t, ec, good(func(c map[string]any) { c["sub"] = "root" }), nil), "", 401, "invalid_client"},
		{"unknown client", sign(t, ec, f.claims("nobody", tokenURL, nil), nil), "", 401, "invalid_client"},
		{"unknown kid", sign(t, clientKey{"k-other", ec.key, jose.ES384}, good(nil), nil), "", 401, "invalid_client"},
		{"no kid", sign(t, clientKey{"", ec.key, jose.ES384}, good(nil), nil), "", 401, "invalid_client"},
		{"a known kid, another key", sign(t, clientKey{"k-ec", other384, jose.ES384}, good(nil), nil), "", 401, "invalid_client"},
		{"ES256 is not offered", sign(t, clientKey{"k-ec", es256, jose.ES256}, good(nil), nil), "", 401, "invalid_client"},
		{"alg none", handmade(map[string]any{"alg": "none", "kid": "k-ec"}, good(nil), func(string) []byte { return nil }), "", 401, "invalid_client"},
		{"HS256 keyed with the public key", handmade(map[string]any{"alg": "HS256", "kid": "k-ec"}, good(nil), func(in string) []byte {
			m := hmac.New(sha256.New, pub)
			m.Write([]byte(in))
			return m.Sum(nil)
		}), "", 401, "invalid_client"},
		{"jku header", sign(t, ec, good(nil), map[jose.HeaderKey]any{"jku": "https://evil.example/jwks"}), "", 401, "invalid_client"},
		{"x5u header", sign(t, ec, good(nil), map[jose.HeaderKey]any{"x5u": "https://evil.example/cert"}), "", 401, "invalid_client"},
		{"jwk header", sign(t, ec, good(nil), map[jose.HeaderKey]any{"jwk": jose.JSONWebKey{Key: ec.key.Public()}}), "", 401, "invalid_client"},
		{"not a JWT", "nonsense", "", 401, "invalid_client"},
		{"a scope nobody offers", sign(t, ec, good(nil), nil), "system/*.cruds", 400, "invalid_scope"},
		{"a scope not registered", sign(t, ec, good(nil), nil), "audit:read", 400, "invalid_scope"},
	}
	// Why each is refused, so that none passes for the wrong reason.
	why := map[string]string{
		"expired": "token is expired", "exp more than five minutes ahead": "at most five minutes", "no exp": "exp must be set",
		"iat in the future": "issued in the future", "nbf in the future": "not valid yet", "wrong aud": "audience",
		"the /fhir token URL as aud": "audience", "no jti": "jti is required", "iss differs from sub": "iss and sub",
		"unknown client": "registered", "unknown kid": "no key with this kid", "no kid": "(kid)",
		"a known kid, another key": "does not verify", "ES256 is not offered": "RS384 or ES384", "alg none": "RS384 or ES384",
		"HS256 keyed with the public key": "RS384 or ES384", "jku header": "point at a key", "x5u header": "point at a key",
		"jwk header": "point at a key", "not a JWT": "RS384 or ES384", "a scope nobody offers": "none of the scopes",
		"a scope not registered": "none of the scopes",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := post(s, form(tt.assertion, tt.scope))
			var e struct {
				Description string `json:"error_description"`
			}
			_ = json.Unmarshal(w.Body.Bytes(), &e)
			if res := decode(t, w); w.Code != tt.status || res.Error != tt.code || res.AccessToken != "" ||
				why[tt.name] == "" || !strings.Contains(e.Description, why[tt.name]) {
				t.Fatalf("%d %s, want %d %s (%s)", w.Code, w.Body, tt.status, tt.code, why[tt.name])
			}
		})
	}
	bad := []struct {
		name string
		form url.Values
		code string
	}{
		{"wrong grant", url.Values{"grant_type": {"password"}}, "unsupported_grant_type"},
		{"wrong assertion type", url.Values{"grant_type": {GrantType}, "client_assertion_type": {"x"}}, "invalid_request"},
	}
	for _, tt := range bad {
		if w := post(s, tt.form); w.Code != 400 || decode(t, w).Error != tt.code {
			t.Errorf("%s: %d %s", tt.name, w.Code, w.Body)
		}
	}
}

// TestReplayAcrossProcesses: an assertion taken by one API process is
// refused by another sharing the store, and by the first again.
func TestReplayAcrossProcesses(t *testing.T) {
	f := newFixture(t)
	a, b := f.v1(t), f.v1(t)
	assertion := sign(t, f.keys["es384"], f.claims("intake", tokenURL, nil), nil)
	if w := post(a, form(assertion, "")); w.Code != http.StatusOK {
		t.Fatalf("first use: %d %s", w.Code, w.Body)
	}
	for name, s := range map[string]*Server{"the other process": b, "the same process": a} {
		if w := post(s, form(assertion, "")); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "jti was used before") {
			t.Errorf("replay at %s: %d %s", name, w.Code, w.Body)
		}
	}
	// Both racing with one fresh assertion: exactly one token.
	assertion = sign(t, f.keys["rs384"], f.claims("intake", tokenURL, nil), nil)
	var wg sync.WaitGroup
	codes := make(chan int, 6)
	for i := range 6 {
		wg.Add(1)
		go func() { defer wg.Done(); codes <- post([]*Server{a, b}[i%2], form(assertion, "")).Code }()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of 6 concurrent uses of one assertion got a token, want 1", ok)
	}
}

// TestScopeGrant: granted = requested ∩ registered ∩ offered; admin covers
// every /v1 scope; nothing asked is everything registered.
func TestScopeGrant(t *testing.T) {
	f := newFixture(t)
	s := f.v1(t)
	tests := []struct {
		client, asked, want string
	}{
		{"intake", "", "transfers:write transfers:read"},
		{"intake", "transfers:read", "transfers:read"},                     // a downgrade
		{"intake", "transfers:read audit:read nonsense", "transfers:read"}, // what is not registered or offered is dropped
		{"intake", "transfers:write transfers:write", "transfers:write"},   // once
		{"root", "review members:write", "review members:write"},           // admin covers them
		{"root", "", "admin"},           // the registered scope
		{"reviewer", "admin", ""},       // no escalation
		{"reviewer", "system/*.rs", ""}, // not a /v1 scope
		{"reviewer", "review members:read members:write", "review members:read"},              // the registered part
		{"intake", "transfers:write transfers:read review", "transfers:write transfers:read"}, // idem
	}
	for _, tt := range tests {
		w := post(s, form(sign(t, f.keys["es384"], f.claims(tt.client, tokenURL, nil), nil), tt.asked))
		res := decode(t, w)
		if tt.want == "" {
			if w.Code != http.StatusBadRequest || res.Error != "invalid_scope" {
				t.Errorf("%s asking %q: %d %s, want invalid_scope", tt.client, tt.asked, w.Code, w.Body)
			}
			continue
		}
		if w.Code != http.StatusOK || res.Scope != tt.want {
			t.Errorf("%s asking %q: %d %s, want %q", tt.client, tt.asked, w.Code, w.Body, tt.want)
			continue
		}
		if tok, err := s.Verify(context.Background(), res.AccessToken); err != nil || strings.Join(tok.Scopes, " ") != tt.want {
			t.Errorf("%s asking %q: Verify = %v, %v", tt.client, tt.asked, tok.Scopes, err)
		}
	}
}

// TestVerifyRefusals: Verify takes only our unexpired at+jwt tokens for
// this surface, of active clients, narrowed to their registration now.
func TestVerifyRefusals(t *testing.T) {
	f := newFixture(t)
	v1, fhir := f.v1(t), f.fhir(t)
	ctx := context.Background()
	issue := func(s *Server, c Client, scopes ...string) string {
		tok, err := s.Issue(c, scopes, 0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	intake, _ := f.reg.get(ctx, "intake")
	good := issue(v1, intake, "transfers:write", "transfers:read")
	if _, err := v1.Verify(ctx, good); err != nil {
		t.Fatalf("a good token: %v", err)
	}
	manifest, _ := f.signer.Sign([]byte(`{"iss":"` + tokenURL + `","aud":"` + audV1 + `","sub":"intake","exp":9999999999}`))
	otherKey, _ := signing.Generate()
	foreign := *v1
	foreign.Signer = otherKey
	fhirToken := issue(fhir, Client{ID: "client-np", Subject: "new-payer"}, "system/*.rs")
	fhirNamedIntake := issue(fhir, intake, "transfers:write")
	parts := strings.Split(good, ".")
	tests := []struct {
		name  string
		s     *Server
		token string
	}{
		{"a signed manifest (typ JOSE)", v1, manifest},
		{"a /fhir token at /v1", v1, fhirToken},
		{"a /fhir token naming a /v1 client", v1, fhirNamedIntake},
		{"a /v1 token at /fhir", fhir, good},
		{"signed by another key", v1, issue(&foreign, intake, "transfers:read")},
		{"tampered", v1, parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+tokenURL+`","aud":"`+audV1+`","sub":"root","scope":"admin","exp":9999999999}`)) + "." + parts[2]},
		{"alg none", v1, handmade(map[string]any{"alg": "none", "typ": "at+jwt"}, map[string]any{"iss": tokenURL, "aud": audV1, "sub": "root", "scope": "admin", "exp": 9999999999}, func(string) []byte { return nil })},
		{"not a JWS", v1, "abc"},
	}
	for _, tt := range tests {
		if _, err := tt.s.Verify(ctx, tt.token); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want ErrInvalidToken", tt.name, err)
		}
	}

	// Expired: one second past exp.
	later := *v1
	later.Now = func() time.Time { return f.now.Add(5*time.Minute + time.Second) }
	if _, err := later.Verify(ctx, good); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("expired: %v", err)
	}
	// A registration narrowed after issue narrows the token.
	f.reg.set(Client{ID: "intake", JWKS: f.jwks, Scopes: []string{"transfers:write"}})
	if tok, err := v1.Verify(ctx, good); err != nil || strings.Join(tok.Scopes, " ") != "transfers:write" {
		t.Errorf("after narrowing: %v, %v", tok.Scopes, err)
	}
	// Disabled: its tokens stop working, and it gets no new one.
	f.reg.disable("intake")
	if _, err := v1.Verify(ctx, good); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("disabled client's token: %v", err)
	}
	if w := post(v1, form(sign(t, f.keys["es384"], f.claims("intake", tokenURL, nil), nil), "")); w.Code != http.StatusUnauthorized {
		t.Errorf("disabled client's assertion: %d %s", w.Code, w.Body)
	}
}

// TestFHIRScopes: /fhir grants only what it offers and advertises: a
// scope nobody offers (system/*.cruds) is refused, not granted as asked.
func TestFHIRScopes(t *testing.T) {
	f := newFixture(t)
	s := f.fhir(t)
	tests := []struct{ asked, want string }{
		{"system/*.rs", "system/*.rs"},
		{"system/*.cruds", ""},
		{"system/Observation.r", ""},
		{"system/Patient.s system/Observation.r", "system/Patient.s"},
		{"", ""}, // SMART: scope is required
	}
	for _, tt := range tests {
		w := post(s, form(sign(t, f.keys["es384"], f.claims("client-np", fhirURL, nil), nil), tt.asked))
		res := decode(t, w)
		if tt.want == "" != (w.Code == http.StatusBadRequest && res.Error == "invalid_scope") || (tt.want != "" && res.Scope != tt.want) {
			t.Errorf("asking %q: %d %s, want %q", tt.asked, w.Code, w.Body, tt.want)
		}
		if tt.want != "" {
			if tok, err := s.Verify(context.Background(), res.AccessToken); err != nil || tok.Subject != "new-payer" || tok.ClientID != "client-np" {
				t.Errorf("asking %q: Verify = %+v, %v", tt.asked, tok, err)
			}
		}
	}
	w := httptest.NewRecorder()
	s.ConfigurationHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/smart-configuration", nil))
	var conf struct {
		Scopes []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &conf); err != nil || strings.Join(conf.Scopes, " ") != strings.Join(s.Scopes, " ") {
		t.Errorf("advertised %v, %v; want exactly what is granted %v", conf.Scopes, err, s.Scopes)
	}
}
