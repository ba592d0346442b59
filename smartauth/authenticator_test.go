package smartauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/caller"
)

func selfSigned(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAuthenticator: bearer tokens and registered certificates make
// Principals; anything invalid is refused and never read as no
// credentials; a certificate and a token naming different clients are
// refused.
func TestAuthenticator(t *testing.T) {
	f := newFixture(t)
	v1, fhir := f.v1(t), f.fhir(t)
	ctx := context.Background()
	intakeCert, reviewerCert, strangerCert := selfSigned(t, "intake"), selfSigned(t, "reviewer"), selfSigned(t, "stranger")
	byCert := map[string]string{CertFingerprint(intakeCert): "intake", CertFingerprint(reviewerCert): "reviewer"}
	a := &Authenticator{Tokens: v1, ByCert: func(ctx context.Context, fp string) (Client, error) {
		if id, ok := byCert[fp]; ok {
			return f.reg.get(ctx, id)
		}
		return Client{}, ErrUnknownClient
	}}
	intake, _ := f.reg.get(ctx, "intake")
	reviewer, _ := f.reg.get(ctx, "reviewer")
	intakeToken, _ := v1.Issue(intake, []string{"transfers:read"}, 0)
	reviewerToken, _ := v1.Issue(reviewer, []string{"review"}, 0)
	fhirToken, _ := fhir.Issue(Client{ID: "client-np", Subject: "new-payer"}, []string{"system/*.rs"}, 0)

	tests := []struct {
		name     string
		auth     string
		cert     *x509.Certificate
		verified bool
		want     caller.Principal
		err      error
	}{
		{name: "nothing", err: caller.ErrNoCredentials},
		{name: "bearer", auth: "Bearer " + intakeToken, want: caller.Principal{ClientID: "intake", Scopes: []caller.Scope{caller.TransfersRead}, Method: "bearer"}},
		{name: "bearer, lower-case scheme", auth: "bearer " + reviewerToken,
			want: caller.Principal{ClientID: "reviewer", Scopes: []caller.Scope{caller.Review}, Person: "Pat Reviewer", Method: "bearer"}},
		{name: "not a bearer token", auth: "Basic aW50YWtlOng=", err: caller.ErrInvalidCredentials},
		{name: "an empty bearer", auth: "Bearer ", err: caller.ErrInvalidCredentials},
		{name: "a forged token", auth: "Bearer " + intakeToken[:len(intakeToken)-6] + "AAAAAA", err: caller.ErrInvalidCredentials},
		{name: "a /fhir token", auth: "Bearer " + fhirToken, err: caller.ErrInvalidCredentials},
		{name: "a registered certificate", cert: intakeCert,
			want: caller.Principal{ClientID: "intake", Scopes: []caller.Scope{caller.TransfersWrite, caller.TransfersRead}, Method: "mtls"}},
		{name: "a reviewer's certificate", cert: reviewerCert,
			want: caller.Principal{ClientID: "reviewer", Scopes: []caller.Scope{caller.Review, caller.MembersRead}, Person: "Pat Reviewer", Method: "mtls"}},
		{name: "an unregistered certificate", cert: strangerCert, err: caller.ErrInvalidCredentials},
		{name: "certificate and token of one client", cert: intakeCert, auth: "Bearer " + intakeToken,
			want: caller.Principal{ClientID: "intake", Scopes: []caller.Scope{caller.TransfersRead}, Method: "bearer"}},
		{name: "certificate and token of two clients", cert: reviewerCert, auth: "Bearer " + intakeToken, err: caller.ErrInvalidCredentials},
		{name: "an unregistered certificate and a token", cert: strangerCert, auth: "Bearer " + intakeToken,
			want: caller.Principal{ClientID: "intake", Scopes: []caller.Scope{caller.TransfersRead}, Method: "bearer"}},
		{name: "a registered certificate and a forged token", cert: intakeCert, auth: "Bearer x.y.z", err: caller.ErrInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/transfers", nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			if tt.cert != nil {
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tt.cert}}
			}
			p, err := a.Authenticate(r)
			if !errors.Is(err, tt.err) || p.ClientID != tt.want.ClientID || !slices.Equal(p.Scopes, tt.want.Scopes) ||
				p.Person != tt.want.Person || p.Method != tt.want.Method {
				t.Fatalf("Authenticate = %+v, %v; want %+v, %v", p, err, tt.want, tt.err)
			}
		})
	}

	// With client CAs, a certificate counts only when TLS verified it.
	a.VerifiedOnly = true
	r := httptest.NewRequest(http.MethodGet, "/v1/transfers", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{intakeCert}}
	if _, err := a.Authenticate(r); !errors.Is(err, caller.ErrInvalidCredentials) {
		t.Errorf("an unverified certificate with client CAs: %v", err)
	}
	r.TLS.VerifiedChains = [][]*x509.Certificate{{intakeCert}}
	if p, err := a.Authenticate(r); err != nil || p.ClientID != "intake" || p.Method != "mtls" {
		t.Errorf("a verified certificate: %+v, %v", p, err)
	}
	// A disabled client's certificate names no one.
	f.reg.disable("intake")
	if _, err := a.Authenticate(r); !errors.Is(err, caller.ErrInvalidCredentials) {
		t.Errorf("a disabled client's certificate: %v", err)
	}
}
