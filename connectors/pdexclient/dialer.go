package pdexclient

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"

	"github.com/go-jose/go-jose/v4"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/internal/egress"
)

// Dialer builds, and keeps, the clients that pull from each partner of the
// registry: a member-match Client and a bulkdata.Client sharing the
// partner's authentication. A partner whose registry entry changed gets
// new clients. It is safe for concurrent use.
type Dialer struct {
	// TrustHeader, if set, is sent to partners with auth none (loopback
	// only, see connectors.AuthNone) carrying auth.client_id: how a dev
	// stack (P2P_FHIR_TRUST_HEADER) learns who calls.
	TrustHeader string
	// MaxResponseBytes caps every answer read from a partner, a Bulk Data
	// file included (the import's per-file cap); 0:
	// egress.DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Resolver resolves partners' host names; nil: the system's. Tests
	// map names to the addresses they want refused.
	Resolver egress.Resolver

	mu    sync.Mutex
	cache map[string]dialed
}

type dialed struct {
	p    connectors.Partner
	mm   *Client
	bulk *bulkdata.Client
	hc   *http.Client
}

// MemberMatcher returns p's member-match client.
func (d *Dialer) MemberMatcher(p connectors.Partner) (MemberMatcher, error) {
	c, err := d.dial(p)
	if err != nil {
		return nil, err
	}
	return c.mm, nil
}

// BulkExporter returns p's Bulk Data client.
func (d *Dialer) BulkExporter(p connectors.Partner) (bulkdata.Exporter, error) {
	c, err := d.dial(p)
	if err != nil {
		return nil, err
	}
	return c.bulk, nil
}

func (d *Dialer) dial(p connectors.Partner) (dialed, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.cache[p.ID]; ok && reflect.DeepEqual(c.p, p) {
		return c, nil
	}
	if p.FHIRBaseURL == "" {
		return dialed{}, fmt.Errorf("partner %s has no fhir_base_url", p.ID)
	}
	// Every call goes through the partner's egress policy: its hosts, its
	// token to its FHIR origin (and token_hosts) only, private addresses
	// only with allow_private_network. The Bulk Data client follows GET
	// redirects within the policy; the member-match client none.
	pol := p.Egress()
	pol.FollowRedirects = true
	pol.MaxResponseBytes = d.MaxResponseBytes
	pol.Resolver = d.Resolver
	var tokens bulkdata.TokenSource
	header := http.Header{}
	switch p.Auth.Type {
	case "", connectors.AuthNone:
		if d.TrustHeader != "" && p.Auth.ClientID != "" {
			header.Set(d.TrustHeader, p.Auth.ClientID)
		}
	case connectors.AuthSMARTBackend: // its token source needs the client: below
	case connectors.AuthMTLS:
		cfg, err := tlsConfig(p.Auth)
		if err != nil {
			return dialed{}, fmt.Errorf("partner %s: %w", p.ID, err)
		}
		pol.TLS = cfg
	default:
		return dialed{}, fmt.Errorf("partner %s: auth type %q", p.ID, p.Auth.Type)
	}
	hc := egress.NewClient(pol)
	switch p.Auth.Type {
	case connectors.AuthSMARTBackend:
		key, kid, err := loadJWK(p.Auth.KeyFile)
		if err != nil {
			return dialed{}, fmt.Errorf("partner %s: %w", p.ID, err)
		}
		bs, err := bulkdata.NewBackendServices(bulkdata.BackendServicesConfig{
			Partner: p.ID, ClientID: p.Auth.ClientID, Key: key, KeyID: kid, Scope: p.Auth.Scope,
			TokenURL: p.Auth.TokenURL, FHIRBaseURL: p.FHIRBaseURL, AllowedHosts: p.AllowedHosts, HTTPClient: hc,
		})
		if err != nil {
			return dialed{}, fmt.Errorf("partner %s: %w", p.ID, err)
		}
		tokens = bs
	}
	if len(header) > 0 {
		hc.Transport = headerTransport{base: hc.Transport, header: header}
	}
	mm, err := New(Config{Partner: p.ID, BaseURL: p.FHIRBaseURL, Tokens: tokens, HTTPClient: hc, Timeout: p.Timeout})
	if err != nil {
		return dialed{}, err
	}
	bulk, err := bulkdata.New(bulkdata.Config{Partner: p.ID, BaseURL: p.FHIRBaseURL, AllowedHosts: slices.Concat(p.AllowedHosts, p.TokenHosts),
		Tokens: tokens, HTTPClient: hc, Timeout: p.Timeout})
	if err != nil {
		return dialed{}, err
	}
	c := dialed{p: p, mm: mm, bulk: bulk, hc: hc}
	if old, ok := d.cache[p.ID]; ok {
		old.hc.CloseIdleConnections() // the partner changed: its old connections go
	}
	if d.cache == nil {
		d.cache = map[string]dialed{}
	}
	d.cache[p.ID] = c
	return c, nil
}

// headerTransport adds header to every request.
type headerTransport struct {
	base   http.RoundTripper
	header http.Header
}

// CloseIdleConnections reaches the wrapped transport.
func (t headerTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range t.header {
		r.Header[k] = vs
	}
	return t.base.RoundTrip(r)
}

// loadJWK reads a private JWK (our client assertion key).
func loadJWK(path string) (crypto.Signer, string, error) {
	if path == "" {
		return nil, "", errors.New("smart-backend: key_file is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("smart-backend: key_file: %w", err)
	}
	var k jose.JSONWebKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, "", fmt.Errorf("smart-backend: key_file is not a JWK: %w", err)
	}
	s, ok := k.Key.(crypto.Signer)
	if !ok || k.IsPublic() {
		return nil, "", errors.New("smart-backend: key_file holds no private key")
	}
	return s, k.KeyID, nil
}

func tlsConfig(a connectors.Auth) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mtls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mtls: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("mtls: ca_file holds no certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
