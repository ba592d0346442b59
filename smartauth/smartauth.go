// Package smartauth is our authorization server: the OAuth 2.0
// client-credentials grant with a signed JWT client assertion (RFC 7523,
// as SMART Backend Services profiles it: RS384 or ES384, a kid naming a
// key of the client's registered JWKS), exchanged for short-lived access
// tokens (RFC 9068 JWTs, typ at+jwt) signed by our own key. One Server
// serves one surface: the partner-facing FHIR API (/fhir, clients from
// the partner registry, SMART system/ scopes) or the REST API (/v1,
// clients from the store, caller.Scope roles). Its tokens carry the
// surface's audience, so a token of one is never taken by the other.
// Authenticator turns a /v1 request's token or client certificate into a
// caller.Principal.
//
// Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html
package smartauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/signing"
)

// Grant and assertion constants of SMART Backend Services.
const (
	GrantType           = "client_credentials"
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// MaxAssertionLifetime is the longest exp - now a client assertion may
	// have (the spec: no more than five minutes).
	MaxAssertionLifetime = 5 * time.Minute
	// DefaultTokenLifetime is how long our access tokens last.
	DefaultTokenLifetime = 5 * time.Minute
	// TokenType is the typ header of our access tokens (RFC 9068): a
	// signed manifest or checkpoint is never taken for one.
	TokenType = signing.TypeToken
	// Leeway is the clock skew allowed on exp, iat and nbf.
	Leeway = 30 * time.Second
)

// Errors of Verify and of clients' lookups.
var (
	// ErrInvalidToken: the access token is not ours, not for this
	// surface, expired, or of a client no longer active.
	ErrInvalidToken = errors.New("smartauth: invalid access token")
	// ErrUnknownClient: Server.Clients or Server.Active found no active
	// client.
	ErrUnknownClient = errors.New("smartauth: unknown or disabled client")
)

// Client is a client allowed to ask for tokens.
type Client struct {
	// ID is its client_id: the iss and sub of its assertions.
	ID string
	// Subject is whom its tokens name (sub): its partner id on /fhir;
	// "" is ID.
	Subject string
	// JWKSURL is where its assertion keys are published; JWKS holds them
	// inline instead.
	JWKSURL string
	JWKS    []byte
	// Scopes are what it may be granted; nil: every scope the Server
	// offers.
	Scopes []string
	// Person is the person acting through the client; tokens carry it as
	// act.sub (RFC 8693).
	Person string
}

func (c Client) subject() string {
	if c.Subject != "" {
		return c.Subject
	}
	return c.ID
}

// Replay remembers the assertions taken (store.AssertionReplay): shared
// by every process, so that an assertion buys one token in all of them.
type Replay interface {
	UseAssertion(ctx context.Context, clientID, jti string, expires, now time.Time) (bool, error)
}

// Server issues and checks the access tokens of one surface. Safe for
// concurrent use.
type Server struct {
	// Surface names the API the tokens are for ("v1", "fhir"): it
	// namespaces the replay cache and log lines.
	Surface string
	// TokenURL is our token endpoint as clients address it: the aud
	// their assertions must carry, and the iss of our tokens.
	TokenURL string
	// Audience is the aud of our tokens: the API they are for.
	Audience string
	// Signer signs access tokens; its public keys are in our JWKS.
	Signer *signing.Signer
	// Clients finds the client with a client_id (ErrUnknownClient when
	// none is registered or it is disabled).
	Clients func(ctx context.Context, clientID string) (Client, error)
	// Active finds the client a token names by its subject, as it is
	// registered now (ErrUnknownClient when it is gone or disabled): a
	// token outlives no removal, and its scopes narrow to the current
	// registration.
	Active func(ctx context.Context, subject string) (Client, error)
	// Scopes are the scopes we grant and advertise.
	Scopes []string
	// Implies reports whether a registered scope covers a requested one;
	// nil: only itself.
	Implies func(registered, requested string) bool
	// DefaultScopes: a request without scope is granted every registered
	// scope (RFC 6749 §3.3); false: scope is required (SMART).
	DefaultScopes bool
	// Replay is the replay cache of assertions. Required.
	Replay Replay
	// Keys fetches clients' JWKS by URL; the zero value works.
	Keys *signing.RemoteKeys
	// Logger logs each token request's outcome (client id, granted scope;
	// never the assertion). nil: no logging.
	Logger *zap.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// TokenLifetime; 0: DefaultTokenLifetime.
	TokenLifetime time.Duration
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

// Claims are the claims of our access tokens (RFC 9068 §2.2).
type Claims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"` // the partner id (/fhir) or client id (/v1)
	Audience string `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"`
	// Act names the person acting through the client (RFC 8693 §4.1).
	Act *Actor `json:"act,omitempty"`
}

// Actor is an RFC 8693 act claim.
type Actor struct {
	Subject string `json:"sub"`
}

// Token is a verified access token.
type Token struct {
	Subject  string   // whom it names
	ClientID string   // the client it was issued to
	Scopes   []string // granted, narrowed to the client's current registration
	Person   string   // act.sub, or ""
	Expiry   time.Time
}

// oauthError answers an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_client"`)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description}) // the client sees a short body
}

// TokenHandler serves POST {TokenURL}: form-encoded grant_type,
// client_assertion_type, client_assertion and scope.
func (s *Server) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log := s.log().With(zap.String("surface", s.Surface))
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
			return
		}
		switch {
		case r.PostForm.Get("grant_type") != GrantType:
			oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
			return
		case r.PostForm.Get("client_assertion_type") != ClientAssertionType:
			oauthError(w, http.StatusBadRequest, "invalid_request", "client_assertion_type must be "+ClientAssertionType)
			return
		}
		c, err := s.verifyAssertion(r.Context(), r.PostForm.Get("client_assertion"))
		var refused *refusal
		switch {
		case errors.As(err, &refused):
			log.Info("token refused", zap.String("why", refused.why))
			oauthError(w, http.StatusUnauthorized, "invalid_client", refused.why)
			return
		case err != nil:
			log.Error("token request", zap.Error(err))
			oauthError(w, http.StatusInternalServerError, "server_error", "the assertion could not be checked")
			return
		}
		log = log.With(zap.String("client_id", c.ID))
		granted, why := s.grant(c, r.PostForm.Get("scope"))
		if granted == nil {
			log.Info("token refused", zap.String("why", why))
			oauthError(w, http.StatusBadRequest, "invalid_scope", why)
			return
		}
		token, err := s.Issue(c, granted, 0)
		if err != nil {
			log.Error("token signing", zap.Error(err))
			oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be signed")
			return
		}
		scope := strings.Join(granted, " ")
		log.Info("token issued", zap.String("scope", scope))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{ // the client sees a short body
			"access_token": token, "token_type": "Bearer", "expires_in": int(s.lifetime(0) / time.Second), "scope": scope,
		})
	})
}

// grant is the scope granted to c for requested (space-separated):
// requested ∩ registered ∩ offered, in the order asked. Nil, with why,
// when that is nothing.
func (s *Server) grant(c Client, requested string) ([]string, string) {
	asked := strings.Fields(requested)
	if len(asked) == 0 {
		if !s.DefaultScopes {
			return nil, "scope is required"
		}
		asked = c.Scopes
		if c.Scopes == nil {
			asked = s.Scopes
		}
	}
	var out []string
	for _, sc := range asked {
		if s.allowed(c, sc) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if out == nil {
		return nil, "none of the scopes asked for is one we grant this client (we offer " + strings.Join(s.Scopes, " ") + ")"
	}
	return out, ""
}

// allowed reports whether c may hold scope sc: we offer it and c's
// registration covers it.
func (s *Server) allowed(c Client, sc string) bool {
	if !slices.Contains(s.Scopes, sc) {
		return false
	}
	if c.Scopes == nil {
		return true
	}
	return slices.ContainsFunc(c.Scopes, func(reg string) bool {
		return reg == sc || (s.Implies != nil && s.Implies(reg, sc))
	})
}

// ConfigurationHandler serves .well-known/smart-configuration: exactly
// the scopes we grant.
func (s *Server) ConfigurationHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{ // the client sees a short body
			"issuer":                                s.TokenURL,
			"token_endpoint":                        s.TokenURL,
			"grant_types_supported":                 []string{GrantType},
			"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
			"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
			"scopes_supported": s.Scopes,
			"capabilities":     []string{"client-confidential-asymmetric"},
		})
	})
}

// refusal is a client assertion we refuse; why is safe to show the
// client.
type refusal struct{ why string }

func (r *refusal) Error() string { return "client assertion: " + r.why }

func refuse(why string) error { return &refusal{why} }

// verifyAssertion checks a client assertion as SMART Backend Services
// says: RS384 or ES384, no key carried or pointed at by the header,
// signed by the key of the client's registered JWKS its kid names, iss =
// sub = a registered client id, aud = our token URL, exp set and no more
// than five minutes ahead, iat and nbf not in the future, jti never used
// before (in any process). Errors other than a refusal are ours.
func (s *Server) verifyAssertion(ctx context.Context, assertion string) (Client, error) {
	if assertion == "" {
		return Client{}, refuse("client_assertion is required")
	}
	// The allow-list refuses alg none and HMAC (HS256 keyed with a
	// public key) before anything else is read.
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		return Client{}, refuse("not a JWT signed with RS384 or ES384")
	}
	if len(tok.Headers) != 1 {
		return Client{}, refuse("want exactly one signature")
	}
	h := tok.Headers[0]
	if h.KeyID == "" {
		return Client{}, refuse("the header must name its key (kid)")
	}
	// The key is the one registered, never one the assertion brings.
	if carriesKey(assertion) {
		return Client{}, refuse("the header must not carry or point at a key (jwk, jku, x5c, x5u)")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Client{}, refuse("unreadable claims")
	}
	if unverified.Issuer == "" || unverified.Subject != unverified.Issuer {
		return Client{}, refuse("iss and sub must both be the client id")
	}
	c, err := s.Clients(ctx, unverified.Issuer)
	if errors.Is(err, ErrUnknownClient) {
		return Client{}, refuse("iss and sub must be a registered, active client id")
	} else if err != nil {
		return Client{}, err
	}
	key, err := s.clientKey(ctx, c, h.KeyID)
	if err != nil {
		return Client{}, err
	}
	var claims jwt.Claims
	if err := tok.Claims(key, &claims); err != nil {
		return Client{}, refuse("the signature does not verify")
	}
	now := s.now()
	if err := claims.ValidateWithLeeway(jwt.Expected{
		Issuer: c.ID, Subject: c.ID, AnyAudience: jwt.Audience{s.TokenURL}, Time: now,
	}, Leeway); err != nil {
		return Client{}, refuse("claims: " + err.Error())
	}
	if claims.Expiry == nil || claims.Expiry.Time().After(now.Add(MaxAssertionLifetime+Leeway)) {
		return Client{}, refuse("exp must be set and at most five minutes ahead")
	}
	if claims.ID == "" {
		return Client{}, refuse("jti is required")
	}
	fresh, err := s.Replay.UseAssertion(ctx, s.Surface+":"+c.ID, claims.ID, claims.Expiry.Time().Add(Leeway), now)
	if err != nil {
		return Client{}, fmt.Errorf("replay cache: %w", err)
	}
	if !fresh {
		return Client{}, refuse("jti was used before")
	}
	return c, nil
}

// carriesKey reports whether a compact JWS's protected header carries a
// key or points at one: whatever its value, the key is the registered one.
func carriesKey(compact string) bool {
	head, _, _ := strings.Cut(compact, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	var h map[string]json.RawMessage
	if err != nil || json.Unmarshal(raw, &h) != nil {
		return true
	}
	for _, k := range []string{"jwk", "jku", "x5c", "x5u"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// clientKey finds the client's public key by kid: in its inline JWKS, or
// at its JWKS URL, fetched again once when the kid is unknown (a
// rotation).
func (s *Server) clientKey(ctx context.Context, c Client, kid string) (any, error) {
	find := func(raw []byte) (any, bool, error) {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(raw, &set); err != nil {
			return nil, false, refuse("the client's JWKS is not a JWKS")
		}
		for _, k := range set.Key(kid) {
			if k.IsPublic() && k.Valid() {
				return k.Key, true, nil
			}
		}
		return nil, false, nil
	}
	if len(c.JWKS) > 0 {
		if key, ok, err := find(c.JWKS); err != nil || ok {
			return key, err
		}
	}
	if c.JWKSURL != "" {
		keys := s.Keys
		if keys == nil {
			keys = &signing.RemoteKeys{}
		}
		for _, refresh := range []bool{false, true} {
			raw, err := keys.Fetch(ctx, c.JWKSURL, refresh)
			if err != nil {
				return nil, refuse("the client's JWKS could not be fetched")
			}
			if key, ok, err := find(raw); err != nil || ok {
				return key, err
			}
		}
	}
	return nil, refuse("no key with this kid in the client's JWKS")
}

func (s *Server) lifetime(d time.Duration) time.Duration {
	switch {
	case d > 0:
		return d
	case s.TokenLifetime > 0:
		return s.TokenLifetime
	}
	return DefaultTokenLifetime
}

// Issue signs an access token for c with scopes, lasting lifetime (0:
// the Server's). The token endpoint calls it once the assertion and the
// scope hold; p2p dev mints its ready-made tokens with it.
func (s *Server) Issue(c Client, scopes []string, lifetime time.Duration) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	now := s.now()
	cl := Claims{
		Issuer: s.TokenURL, Subject: c.subject(), Audience: s.Audience, ClientID: c.ID, Scope: strings.Join(scopes, " "),
		IssuedAt: now.Unix(), Expiry: now.Add(s.lifetime(lifetime)).Unix(), ID: hex.EncodeToString(jti[:]),
	}
	if c.Person != "" {
		cl.Act = &Actor{Subject: c.Person}
	}
	b, err := json.Marshal(cl)
	if err != nil {
		return "", err
	}
	signer := s.Signer
	if signer.Purpose() != signing.Token {
		// One key for everything (tests): still typed as a token.
		if signer, err = signer.WithPurpose(signing.Token); err != nil {
			return "", err
		}
	}
	return signer.Sign(b)
}

// Verify checks an access token: typ at+jwt, ES256 under our key, our
// issuer, this surface's audience, not expired, and its client still
// active. The scopes it returns are those granted that the client's
// current registration still covers. Errors wrap ErrInvalidToken, but
// for a failure to look the client up.
func (s *Server) Verify(ctx context.Context, token string) (Token, error) {
	invalid := func(why string) (Token, error) { return Token{}, fmt.Errorf("%w: %s", ErrInvalidToken, why) }
	obj, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{signing.Algorithm})
	if err != nil || len(obj.Signatures) != 1 {
		return invalid("not an ES256 JWS")
	}
	if typ, _ := obj.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, TokenType) {
		return invalid("typ is not " + TokenType)
	}
	jwks, err := s.Signer.PublicJWKS()
	if err != nil {
		return Token{}, err
	}
	payload, _, err := signing.Verify(token, jwks)
	if err != nil {
		return invalid("signature")
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return invalid("claims")
	}
	now := s.now()
	switch {
	case c.Issuer != s.TokenURL:
		return invalid("issuer")
	case c.Audience != s.Audience:
		return invalid("audience")
	case c.Subject == "":
		return invalid("subject")
	case now.Unix() >= c.Expiry:
		return invalid("expired")
	case c.IssuedAt > now.Add(Leeway).Unix():
		return invalid("issued in the future")
	}
	cur, err := s.Active(ctx, c.Subject)
	if errors.Is(err, ErrUnknownClient) {
		return invalid("client not active")
	} else if err != nil {
		return Token{}, err
	}
	t := Token{Subject: c.Subject, ClientID: c.ClientID, Expiry: time.Unix(c.Expiry, 0)}
	for _, sc := range strings.Fields(c.Scope) {
		if s.allowed(cur, sc) {
			t.Scopes = append(t.Scopes, sc)
		}
	}
	if c.Act != nil {
		t.Person = c.Act.Subject
	}
	return t, nil
}

// Bearer returns the token of an Authorization: Bearer header; present
// says whether the request has an Authorization header at all (a
// malformed one is present but yields no token).
func Bearer(r *http.Request) (token string, present bool) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "", false
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(token), true
}
