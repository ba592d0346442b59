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
	"sync"

	"github.com/go-jose/go-jose/v4"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
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

	mu    sync.Mutex
	cache map[string]dialed
}

type dialed struct {
	p    connectors.Partner
	mm   *Client
	bulk *bulkdata.Client
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
	hc := bulkdata.NewHTTPClient()
	var tokens bulkdata.TokenSource
	header := http.Header{}
	switch p.Auth.Type {
	case "", connectors.AuthNone:
		if d.TrustHeader != "" && p.Auth.ClientID != "" {
			header.Set(d.TrustHeader, p.Auth.ClientID)
		}
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
	case connectors.AuthMTLS:
		cfg, err := tlsConfig(p.Auth)
		if err != nil {
			return dialed{}, fmt.Errorf("partner %s: %w", p.ID, err)
		}
		hc.Transport.(*http.Transport).TLSClientConfig = cfg
	default:
		return dialed{}, fmt.Errorf("partner %s: auth type %q", p.ID, p.Auth.Type)
	}
	if len(header) > 0 {
		hc.Transport = headerTransport{base: hc.Transport, header: header}
	}
	mm, err := New(Config{Partner: p.ID, BaseURL: p.FHIRBaseURL, Tokens: tokens, HTTPClient: hc, Timeout: p.Timeout})
	if err != nil {
		return dialed{}, err
	}
	bulk, err := bulkdata.New(bulkdata.Config{Partner: p.ID, BaseURL: p.FHIRBaseURL, AllowedHosts: p.AllowedHosts,
		Tokens: tokens, HTTPClient: hc, Timeout: p.Timeout})
	if err != nil {
		return dialed{}, err
	}
	c := dialed{p: p, mm: mm, bulk: bulk}
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
