package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/p2p-payer/p2p/connectors"
)

// ServerTLS is the API's own TLS: its certificate and, for partners that
// authenticate by mutual TLS, the CAs of their client certificates. Zero:
// the API serves plain HTTP (behind a TLS-terminating proxy, or in dev).
type ServerTLS struct {
	CertFile string // P2P_TLS_CERT_FILE: our server certificate chain (PEM)
	KeyFile  string // P2P_TLS_KEY_FILE: its private key (PEM)
	// ClientCAFile (P2P_TLS_CLIENT_CA_FILE) is the CA bundle (PEM) that
	// client certificates must chain to. Set: client certificates are
	// asked for and, when given, verified; /fhir then names the partner
	// whose registry auth.client_cert_* matches (CertRequester), and /v1
	// the client that registered the certificate. Unset: certificates
	// are asked for but not verified, so /v1 clients authenticate by the
	// pinned fingerprint of a self-signed certificate (RFC 8705 §2.2) and
	// /fhir names no partner by one.
	ClientCAFile string
}

// Enabled reports whether the API serves TLS.
func (t ServerTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" }

// serverCipherSuites are the TLS 1.2 suites we accept: forward-secret
// AEAD only (TLS 1.3's are fixed by crypto/tls and all strong).
var serverCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Config loads the certificate, key and client CAs and returns the
// server's TLS configuration; nil when TLS is not configured. Client
// certificates are asked for, never required (a bearer token also
// authenticates), and verified against the client CAs when there are
// some (tls.VerifyClientCertIfGiven).
func (t ServerTLS) Config() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("tls: P2P_TLS_CERT_FILE and P2P_TLS_KEY_FILE are both required (P2P_TLS_CLIENT_CA_FILE needs them too)")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: server certificate: %w", err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: serverCipherSuites,
		NextProtos:   []string{"h2", "http/1.1"},
		// Asked for, never required: a token authenticates as well. The
		// handshake proves the client holds the certificate's key.
		ClientAuth: tls.RequestClientCert,
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA file %s holds no PEM certificate", t.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// CertRequester names the partner calling /fhir by its verified TLS client
// certificate: the one requester partner with auth type mtls whose
// client_cert_subject and client_cert_sha256 match it. A certificate that
// TLS did not verify against our client CAs names no one, and neither does
// one that two partners match.
func CertRequester(partners PartnerList) func(*http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
			return "", false
		}
		leaf := r.TLS.PeerCertificates[0]
		id := ""
		for _, p := range partners.Partners() {
			if !p.HasRole(connectors.RoleRequester) || !p.Auth.MatchesClientCert(leaf) {
				continue
			}
			if id != "" {
				return "", false
			}
			id = p.ID
		}
		return id, id != ""
	}
}
