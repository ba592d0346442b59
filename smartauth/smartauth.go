// Package smartauth is our authorization server for partners that call
// the partner-facing FHIR API (/fhir): SMART Backend Services, the OAuth
// 2.0 client-credentials grant with a signed JWT client assertion
// (RS384 or ES384) under a key the partner publishes (its registry
// jwks_url). A verified assertion buys a short-lived access token, signed
// by our own key, that names the partner; Requester turns a request's
// bearer token back into that partner.
//
// Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html
package smartauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

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
)

// Client is a partner allowed to ask for tokens.
type Client struct {
	PartnerID string // the partner the token names
	JWKSURL   string // where its assertion keys are published
}

// Server issues and checks access tokens. Safe for concurrent use.
type Server struct {
	// TokenURL is our token endpoint as partners address it: the aud
	// their assertions must carry.
	TokenURL string
	// Signer signs access tokens; its public keys are in our JWKS.
	Signer *signing.Signer
	// Clients finds the partner registered with a client id.
	Clients func(clientID string) (Client, bool)
	// Active reports whether a partner may still call (it is still
	// registered with role requester): a token outlives no removal.
	Active func(partnerID string) bool
	// Keys fetches partners' JWKS; the zero value works.
	Keys *signing.RemoteKeys
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// TokenLifetime; 0: DefaultTokenLifetime.
	TokenLifetime time.Duration

	mu   sync.Mutex
	seen map[string]time.Time // client id + jti → assertion expiry: replays are refused
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// tokenClaims are the claims of our access tokens.
type tokenClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"` // the partner id
	Audience string `json:"aud"`
	Scope    string `json:"scope"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"`
}

// oauthError answers an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description}) // the client sees a short body
}

// TokenHandler serves POST {TokenURL}: form-encoded grant_type,
// client_assertion_type, client_assertion and scope.
func (s *Server) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		scope := r.PostForm.Get("scope")
		if scope == "" {
			oauthError(w, http.StatusBadRequest, "invalid_scope", "scope is required")
			return
		}
		for _, sc := range strings.Fields(scope) {
			if !strings.HasPrefix(sc, "system/") {
				oauthError(w, http.StatusBadRequest, "invalid_scope", "only system/ scopes are granted")
				return
			}
		}
		c, err := s.verifyAssertion(r.Context(), r.PostForm.Get("client_assertion"))
		if err != nil {
			oauthError(w, http.StatusUnauthorized, "invalid_client", err.Error())
			return
		}
		token, lifetime, err := s.issue(c.PartnerID, scope)
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be signed")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{ // the client sees a short body
			"access_token": token, "token_type": "bearer", "expires_in": int(lifetime / time.Second), "scope": scope,
		})
	})
}

// ConfigurationHandler serves .well-known/smart-configuration.
func (s *Server) ConfigurationHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{ // the client sees a short body
			"token_endpoint":                                   s.TokenURL,
			"grant_types_supported":                            []string{GrantType},
			"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
			"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
			"scopes_supported":                                 []string{"system/*.rs", "system/Patient.rs"},
			"capabilities":                                     []string{"client-confidential-asymmetric"},
		})
	})
}

// errAssertion is a client assertion we refuse; its message is safe to
// show the client.
var errAssertion = errors.New("client assertion")

func refuse(why string) error { return errors.Join(errAssertion, errors.New(why)) }

// verifyAssertion checks a client assertion as SMART Backend Services
// says: RS384 or ES384, signed by a key of the client's registered JWKS
// (by kid), iss = sub = a registered client id, aud = our token URL, exp
// no more than five minutes ahead and not passed, jti never seen.
func (s *Server) verifyAssertion(ctx context.Context, assertion string) (Client, error) {
	if assertion == "" {
		return Client{}, refuse("client_assertion is required")
	}
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		return Client{}, refuse("not a JWT signed with RS384 or ES384")
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return Client{}, refuse("the header must name its key (kid)")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Client{}, refuse("unreadable claims")
	}
	c, ok := s.Clients(unverified.Issuer)
	if !ok || unverified.Subject != unverified.Issuer {
		return Client{}, refuse("iss and sub must be a registered client id")
	}
	keys := s.Keys
	if keys == nil {
		keys = &signing.RemoteKeys{}
	}
	key, err := s.clientKey(ctx, keys, c, tok.Headers[0].KeyID)
	if err != nil {
		return Client{}, err
	}
	var claims jwt.Claims
	if err := tok.Claims(key, &claims); err != nil {
		return Client{}, refuse("the signature does not verify")
	}
	now := s.now()
	if err := claims.ValidateWithLeeway(jwt.Expected{
		Issuer: unverified.Issuer, Subject: unverified.Issuer, AnyAudience: jwt.Audience{s.TokenURL}, Time: now,
	}, 30*time.Second); err != nil {
		return Client{}, refuse("claims: " + err.Error())
	}
	if claims.Expiry == nil || claims.Expiry.Time().After(now.Add(MaxAssertionLifetime+30*time.Second)) {
		return Client{}, refuse("exp must be set and at most five minutes ahead")
	}
	if claims.ID == "" {
		return Client{}, refuse("jti is required")
	}
	if !s.firstUse(unverified.Issuer+" "+claims.ID, claims.Expiry.Time(), now) {
		return Client{}, refuse("jti was used before")
	}
	return c, nil
}

// clientKey finds the client's public key by kid, fetching its JWKS again
// once when the kid is unknown (a rotation).
func (s *Server) clientKey(ctx context.Context, keys *signing.RemoteKeys, c Client, kid string) (any, error) {
	for _, refresh := range []bool{false, true} {
		raw, err := keys.Fetch(ctx, c.JWKSURL, refresh)
		if err != nil {
			return nil, refuse("the client's JWKS could not be fetched")
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(raw, &set); err != nil {
			return nil, refuse("the client's JWKS is not a JWKS")
		}
		if ks := set.Key(kid); len(ks) > 0 {
			return ks[0].Public().Key, nil
		}
	}
	return nil, refuse("no key with this kid in the client's JWKS")
}

// firstUse records id until exp and reports whether it was new. Expired
// ids are forgotten. The memory is this process's: behind several API
// replicas, a replay could reach another one within the assertion's five
// minutes (the access token it buys names the same partner).
func (s *Server) firstUse(id string, exp, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	for k, e := range s.seen {
		if e.Before(now) {
			delete(s.seen, k)
		}
	}
	if _, dup := s.seen[id]; dup {
		return false
	}
	s.seen[id] = exp
	return true
}

func (s *Server) issue(partnerID, scope string) (string, time.Duration, error) {
	lifetime := s.TokenLifetime
	if lifetime == 0 {
		lifetime = DefaultTokenLifetime
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", 0, err
	}
	now := s.now()
	b, err := json.Marshal(tokenClaims{
		Issuer: s.TokenURL, Subject: partnerID, Audience: s.TokenURL, Scope: scope,
		IssuedAt: now.Unix(), Expiry: now.Add(lifetime).Unix(), ID: hex.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", 0, err
	}
	t, err := s.Signer.Sign(b)
	return t, lifetime, err
}

// Requester is a pdex Deps.Requester: the partner named by the request's
// bearer token, if the token is ours, unexpired, and the partner may still
// call.
func (s *Server) Requester(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	// Typed: only a JWS signed as an access token (typ at+jwt) is one.
	payload, _, err := s.Signer.Verify(strings.TrimSpace(token))
	if err != nil {
		return "", false
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", false
	}
	if c.Issuer != s.TokenURL || c.Audience != s.TokenURL || c.Subject == "" || s.now().Unix() >= c.Expiry {
		return "", false
	}
	if s.Active != nil && !s.Active(c.Subject) {
		return "", false
	}
	return c.Subject, true
}
