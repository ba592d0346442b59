package smartauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"

	"github.com/p2p-payer/p2p/caller"
)

// Authenticator authenticates /v1 requests (caller.Authenticator): by a
// bearer access token of Tokens, or by a client certificate registered
// with a client (mutual TLS, RFC 8705's fingerprint). A request with both
// is the token's client, and refused when the certificate names another
// client.
type Authenticator struct {
	// Tokens verifies bearer access tokens. Required.
	Tokens *Server
	// ByCert finds the active client that registered a certificate, by
	// CertFingerprint (ErrUnknownClient for none); nil: certificates
	// authenticate no one.
	ByCert func(ctx context.Context, sha256 string) (Client, error)
	// VerifiedOnly counts a certificate only when TLS verified its chain
	// against our client CAs; without client CAs a certificate is
	// authenticated by its pinned fingerprint alone (RFC 8705 §2.2:
	// possession of its key is proven by the TLS handshake).
	VerifiedOnly bool
}

var _ caller.Authenticator = (*Authenticator)(nil)

// CertFingerprint is the lower-case hex SHA-256 of a certificate's DER:
// how clients register their certificates (RFC 8705's x5t#S256, in hex).
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Authenticate implements caller.Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (caller.Principal, error) {
	ctx := r.Context()
	certClient, hasCert, err := a.certClient(r)
	if err != nil {
		return caller.Principal{}, err
	}
	token, present := Bearer(r)
	if present {
		if token == "" {
			return caller.Principal{}, fmt.Errorf("%w: the Authorization header is not a bearer token", caller.ErrInvalidCredentials)
		}
		t, err := a.Tokens.Verify(ctx, token)
		if errors.Is(err, ErrInvalidToken) {
			return caller.Principal{}, errors.Join(caller.ErrInvalidCredentials, err)
		} else if err != nil {
			return caller.Principal{}, err
		}
		if hasCert && certClient.ID != t.Subject {
			return caller.Principal{}, fmt.Errorf("%w: the client certificate and the token name different clients", caller.ErrInvalidCredentials)
		}
		return caller.Principal{ClientID: t.Subject, Scopes: scopes(t.Scopes), Person: t.Person, Method: "bearer"}, nil
	}
	if hasCert {
		return caller.Principal{ClientID: certClient.ID, Scopes: scopes(certClient.Scopes), Person: certClient.Person, Method: "mtls"}, nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && a.ByCert != nil {
		return caller.Principal{}, fmt.Errorf("%w: the client certificate is not registered", caller.ErrInvalidCredentials)
	}
	return caller.Principal{}, caller.ErrNoCredentials
}

// certClient is the client the request's certificate names: hasCert
// false when there is none, or it names no active client (a token may
// still name one).
func (a *Authenticator) certClient(r *http.Request) (c Client, hasCert bool, err error) {
	if a.ByCert == nil || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return Client{}, false, nil
	}
	if a.VerifiedOnly && len(r.TLS.VerifiedChains) == 0 {
		return Client{}, false, fmt.Errorf("%w: the client certificate was not verified", caller.ErrInvalidCredentials)
	}
	c, err = a.ByCert(r.Context(), CertFingerprint(r.TLS.PeerCertificates[0]))
	switch {
	case errors.Is(err, ErrUnknownClient):
		return Client{}, false, nil
	case err != nil:
		return Client{}, false, err
	}
	return c, true, nil
}

// scopes keeps the /v1 scopes of ss.
func scopes(ss []string) []caller.Scope {
	var out []caller.Scope
	for _, s := range ss {
		if sc := caller.Scope(s); sc.Valid() {
			out = append(out, sc)
		}
	}
	return out
}
