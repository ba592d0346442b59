package bulkdata

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/sync/singleflight"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// TokenSource gives the bearer token for requests to a partner.
// Implementations are safe for concurrent use. A source that can also
// Invalidate(token) has that token dropped when the partner answers 401,
// and is asked for a fresh one.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a fixed bearer token (tests; a partner that issues
// long-lived tokens out of band).
type StaticToken string

// Token returns t.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// SMART Backend Services constants.
const (
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime is how long a client assertion is valid: the
	// SMART spec allows at most five minutes.
	assertionLifetime = 5 * time.Minute
	// defaultTokenLifetime is assumed when a token response has no
	// expires_in (SMART requires it; five minutes is its recommended most).
	defaultTokenLifetime = 5 * time.Minute
	// maxRefreshMargin is how long before expiry a cached token is
	// replaced at the latest (a quarter of its lifetime for short tokens).
	maxRefreshMargin  = time.Minute
	tokenFetchTimeout = 30 * time.Second
)

// BackendServicesConfig configures BackendServices.
type BackendServicesConfig struct {
	// Partner names the partner in error messages.
	Partner string
	// ClientID is our client id at the partner's authorisation server.
	ClientID string
	// Key signs client assertions: an *rsa.PrivateKey (2048 bits or more;
	// RS384) or an *ecdsa.PrivateKey on P-384 (ES384). The partner has its
	// public half, usually through our JWKS.
	Key crypto.Signer
	// KeyID is the kid of Key as published; "" is its RFC 7638 thumbprint.
	KeyID string
	// JKU, if set, is put in the assertion header: the URL of our JWKS.
	JKU string
	// Scope is the scope requested, e.g. "system/Patient.rs system/Coverage.rs".
	Scope string
	// TokenURL is the token endpoint; "" discovers it from
	// FHIRBaseURL/.well-known/smart-configuration.
	TokenURL string
	// FHIRBaseURL is the partner's FHIR base, for discovery.
	FHIRBaseURL string
	// AllowedHosts may hold the token endpoint's host when discovery names
	// one other than the FHIR base's (see Config.AllowedHosts).
	AllowedHosts []string
	// HTTPClient makes the calls; nil: NewHTTPClient().
	HTTPClient *http.Client
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// BackendServices is a TokenSource for SMART Backend Services
// (client-credentials grant with a signed JWT client assertion, RS384 or
// ES384). It caches the token until shortly before it expires and fetches
// at most one at a time.
type BackendServices struct {
	cfg    BackendServicesConfig
	alg    jose.SignatureAlgorithm
	signer jose.Signer
	client *http.Client
	hosts  allowList
	flight singleflight.Group

	mu       sync.Mutex
	tokenURL string
	token    string
	refresh  time.Time // fetch a new token from then on
}

var _ TokenSource = (*BackendServices)(nil)

// NewBackendServices checks cfg and returns the token source.
func NewBackendServices(cfg BackendServicesConfig) (*BackendServices, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("bulkdata: backend services: client id is required")
	}
	alg, err := assertionAlgorithm(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("bulkdata: backend services: %w", err)
	}
	if cfg.KeyID == "" {
		tp, err := (&jose.JSONWebKey{Key: cfg.Key.Public()}).Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("bulkdata: backend services: key thumbprint: %w", err)
		}
		cfg.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if cfg.JKU != "" {
		opts = opts.WithHeader("jku", cfg.JKU)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: cfg.Key, KeyID: cfg.KeyID, Algorithm: string(alg)}}, opts)
	if err != nil {
		return nil, fmt.Errorf("bulkdata: backend services: %w", err)
	}
	b := &BackendServices{cfg: cfg, alg: alg, signer: signer, client: cfg.HTTPClient, tokenURL: cfg.TokenURL}
	if b.client == nil {
		b.client = NewHTTPClient()
	}
	if b.cfg.Partner == "" {
		b.cfg.Partner = "?"
	}
	switch {
	case cfg.TokenURL != "":
		if err := checkAbsoluteURL(cfg.TokenURL); err != nil {
			return nil, fmt.Errorf("bulkdata: backend services: token URL: %w", err)
		}
	case cfg.FHIRBaseURL != "":
		base, err := url.Parse(strings.TrimRight(cfg.FHIRBaseURL, "/"))
		if err != nil || checkAbsoluteURL(cfg.FHIRBaseURL) != nil {
			return nil, errors.New("bulkdata: backend services: FHIR base URL: want an absolute http(s) URL")
		}
		if b.hosts, err = newAllowList(base, cfg.AllowedHosts); err != nil {
			return nil, fmt.Errorf("bulkdata: backend services: %w", err)
		}
	default:
		return nil, errors.New("bulkdata: backend services: want a token URL or a FHIR base URL to discover it")
	}
	return b, nil
}

// assertionAlgorithm is the JWS algorithm SMART Backend Services asks for
// with key k.
func assertionAlgorithm(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", errors.New("RSA key shorter than 2048 bits")
		}
		return jose.RS384, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P384() {
			return "", errors.New("EC key not on P-384 (ES384)")
		}
		return jose.ES384, nil
	case nil:
		return "", errors.New("a signing key is required")
	}
	return "", fmt.Errorf("key type %T: want RSA (RS384) or EC P-384 (ES384)", k)
}

// Algorithm returns the JWS algorithm of the client assertions.
func (b *BackendServices) Algorithm() string { return string(b.alg) }

func (b *BackendServices) now() time.Time {
	if b.cfg.Now != nil {
		return b.cfg.Now()
	}
	return time.Now()
}

// Token returns the cached token, or fetches one.
func (b *BackendServices) Token(ctx context.Context) (string, error) {
	b.mu.Lock()
	if b.token != "" && b.now().Before(b.refresh) {
		t := b.token
		b.mu.Unlock()
		return t, nil
	}
	b.mu.Unlock()
	// One fetch for every caller waiting; it runs on its own deadline so
	// that the first caller giving up does not fail the others.
	ch := b.flight.DoChan("token", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenFetchTimeout)
		defer cancel()
		return b.fetch(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+b.cfg.Partner+": token", ctx.Err())
	}
}

// Invalidate drops token if it is the cached one (the partner refused it).
func (b *BackendServices) Invalidate(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token == token {
		b.token = ""
	}
}

// tokenResponse is the token endpoint's answer (RFC 6749 §5.1, §5.2).
type tokenResponse struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"`
	Scope       string      `json:"scope"`
	Error       string      `json:"error"`
}

func (b *BackendServices) fetch(ctx context.Context) (string, error) {
	msg := "partner " + b.cfg.Partner + ": token"
	tokenURL, err := b.endpoint(ctx)
	if err != nil {
		return "", err
	}
	now := b.now()
	assertion, err := b.assertion(tokenURL, now)
	if err != nil {
		return "", fault.Wrap(fault.Validation, ErrTypeBadRequest, msg+": signing the client assertion", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {ClientAssertionType},
		"client_assertion":      {assertion},
	}
	if b.cfg.Scope != "" {
		form.Set("scope", b.cfg.Scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fault.Wrap(fault.Validation, ErrTypeBadRequest, msg, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "p2p")
	resp, err := b.client.Do(req)
	if f, ok := egress.Fault(err); ok {
		return "", f
	}
	if err != nil {
		return "", fault.Wrap(fault.Transport, ErrTypeUnreachable, msg, err)
	}
	defer drain(resp.Body)
	body, err := egress.ReadAll(resp.Body, maxErrorBody, b.cfg.Partner)
	if f, ok := egress.Fault(err); ok {
		return "", f
	}
	if err != nil {
		return "", fault.Wrap(fault.Transport, ErrTypeUnreachable, msg+": reading the answer", err)
	}
	var tr tokenResponse
	_ = json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		// RFC 6749 answers 400 with an error code for a refused client
		// ("invalid_client", "invalid_grant", "invalid_scope"): auth.
		if resp.StatusCode == http.StatusBadRequest {
			return "", fault.Wrap(fault.Auth, ErrTypeAuth, msg+": refused ("+truncate(printable(tr.Error, 40), 40)+")",
				&StatusError{Op: "token", StatusCode: resp.StatusCode})
		}
		return "", classify("token", b.cfg.Partner, resp, body, b.now(), false, fault.Auth, ErrTypeAuth)
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		return "", fault.New(fault.Validation, ErrTypeBadResponse, msg+": answer without a bearer access_token")
	}
	life := defaultTokenLifetime
	if tr.ExpiresIn != "" {
		secs, err := tr.ExpiresIn.Int64()
		if err != nil || secs <= 0 {
			return "", fault.New(fault.Validation, ErrTypeBadResponse, msg+": expires_in is not a positive integer")
		}
		life = time.Duration(min(secs, 24*3600)) * time.Second
	}
	b.mu.Lock()
	b.token = tr.AccessToken
	b.refresh = now.Add(life - min(maxRefreshMargin, life/4))
	b.mu.Unlock()
	return tr.AccessToken, nil
}

// assertion is the signed client assertion JWT (SMART Backend Services):
// iss and sub our client id, aud the token URL, a unique jti, exp five
// minutes ahead.
func (b *BackendServices) assertion(tokenURL string, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	claims := jwt.Claims{
		Issuer:   b.cfg.ClientID,
		Subject:  b.cfg.ClientID,
		Audience: jwt.Audience{tokenURL},
		ID:       hex.EncodeToString(jti[:]),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	return jwt.Signed(b.signer).Claims(claims).Serialize()
}

// smartConfiguration is the part of .well-known/smart-configuration we use.
type smartConfiguration struct {
	TokenEndpoint       string   `json:"token_endpoint"`
	AuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	SigningAlgs         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	GrantTypesSupported []string `json:"grant_types_supported"`
}

// endpoint returns the token URL, discovering it once if not configured.
func (b *BackendServices) endpoint(ctx context.Context) (string, error) {
	b.mu.Lock()
	u := b.tokenURL
	b.mu.Unlock()
	if u != "" {
		return u, nil
	}
	msg := "partner " + b.cfg.Partner + ": discovery"
	wk := strings.TrimRight(b.cfg.FHIRBaseURL, "/") + "/.well-known/smart-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wk, nil)
	if err != nil {
		return "", fault.Wrap(fault.Validation, ErrTypeBadRequest, msg, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "p2p")
	resp, err := b.client.Do(req)
	if f, ok := egress.Fault(err); ok {
		return "", f
	}
	if err != nil {
		return "", fault.Wrap(fault.Transport, ErrTypeUnreachable, msg, err)
	}
	defer drain(resp.Body)
	body, err := egress.ReadAll(resp.Body, maxErrorBody, b.cfg.Partner)
	if f, ok := egress.Fault(err); ok {
		return "", f
	}
	if err != nil {
		return "", fault.Wrap(fault.Transport, ErrTypeUnreachable, msg+": reading the answer", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", classify("discovery", b.cfg.Partner, resp, body, b.now(), false, fault.Validation, ErrTypeBadResponse)
	}
	var sc smartConfiguration
	if err := json.Unmarshal(body, &sc); err != nil {
		return "", fault.Wrap(fault.Validation, ErrTypeBadResponse, msg+": not JSON", err)
	}
	switch {
	case sc.TokenEndpoint == "":
		return "", fault.New(fault.Validation, ErrTypeBadResponse, msg+": no token_endpoint")
	case len(sc.AuthMethods) > 0 && !slices.Contains(sc.AuthMethods, "private_key_jwt"):
		return "", fault.New(fault.Validation, ErrTypeBadResponse, msg+": private_key_jwt not supported")
	case len(sc.SigningAlgs) > 0 && !slices.Contains(sc.SigningAlgs, string(b.alg)):
		return "", fault.New(fault.Validation, ErrTypeBadResponse, msg+": "+string(b.alg)+" not supported")
	}
	tu, err := url.Parse(sc.TokenEndpoint)
	if err != nil {
		return "", fault.New(fault.Validation, ErrTypeBadResponse, msg+": token_endpoint is not a URL")
	}
	if why := b.hosts.check(tu); why != "" {
		return "", egress.Refuse(b.cfg.Partner, tu.Host, "token_endpoint "+why)
	}
	b.mu.Lock()
	b.tokenURL = tu.String()
	b.mu.Unlock()
	return tu.String(), nil
}
