package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.temporal.io/sdk/client"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/smartauth"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/store/storetest"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	storetest.CloseAtEnd(t, st)
	return st
}

// TestApplyClientsFile: a valid file registers its clients (files read
// relative to it), a second application replaces them but keeps a
// disabled one disabled; an invalid file writes nothing.
func TestApplyClientsFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ca := newCA(t, "clients")
	cert := ca.client(t, "review.example")
	writePEM(t, filepath.Join(dir, "review.pem"), "CERTIFICATE", cert.Certificate[0])
	k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k384.Public(), KeyID: "k1", Algorithm: "ES384"}}})
	if err := os.WriteFile(filepath.Join(dir, "intake.jwks.json"), jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(body string) string {
		p := filepath.Join(dir, "clients.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	st := openStore(t)
	good := write(`clients:
  - id: intake
    name: Intake
    scopes: [transfers:write]
    jwks_file: intake.jwks.json
  - id: review-pat
    scopes: [review, members:read]
    cert_file: [review.pem]
    person: Pat Reviewer
  - id: ops
    scopes: [transfers:read]
    jwks_url: https://ops.example/jwks
    cert_sha256: ["AB:` + strings.Repeat("cd", 31) + `"]
`)
	if n, err := ApplyClientsFile(ctx, st, good); err != nil || n != 3 {
		t.Fatalf("ApplyClientsFile = %d, %v", n, err)
	}
	rev, err := st.GetClient(ctx, "review-pat")
	if err != nil || rev.Person != "Pat Reviewer" || len(rev.CertSHA256) != 1 || rev.CertSHA256[0] != smartauth.CertFingerprint(cert.Leaf) {
		t.Fatalf("review-pat = %+v, %v", rev, err)
	}
	if in, _ := st.GetClient(ctx, "intake"); !strings.Contains(string(in.JWKS), `"kid":"k1"`) {
		t.Errorf("intake's inline JWKS = %s", in.JWKS)
	}
	if ops, _ := st.GetClient(ctx, "ops"); len(ops.CertSHA256) != 1 || ops.CertSHA256[0] != "ab"+strings.Repeat("cd", 31) {
		t.Errorf("ops's fingerprint = %v", ops.CertSHA256)
	}
	if err := st.DisableClient(ctx, "ops", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyClientsFile(ctx, st, good); err != nil {
		t.Fatal(err)
	}
	if ops, _ := st.GetClient(ctx, "ops"); !ops.Disabled {
		t.Error("the file enabled a disabled client again")
	}

	bad := []struct{ name, body, want string }{
		{"unknown key", "clients:\n  - {id: x, scopes: [admin], jwks_url: 'https://x', role: admin}\n", "role"},
		{"unknown scope", "clients:\n  - {id: x, scopes: [root], jwks_url: 'https://x'}\n", "scope \"root\""},
		{"no scope", "clients:\n  - {id: x, jwks_url: 'https://x'}\n", "at least one scope"},
		{"no credential", "clients:\n  - {id: x, scopes: [admin]}\n", "no credential"},
		{"plain http keys", "clients:\n  - {id: x, scopes: [admin], jwks_url: 'http://keys.example'}\n", "https"},
		{"bad fingerprint", "clients:\n  - {id: x, scopes: [admin], cert_sha256: [abc]}\n", "hex SHA-256"},
		{"twice", "clients:\n  - {id: x, scopes: [admin], jwks_url: 'https://x'}\n  - {id: x, scopes: [admin], jwks_url: 'https://x'}\n", "twice"},
		{"missing file", "clients:\n  - {id: x, scopes: [admin], cert_file: [nope.pem]}\n", "nope.pem"},
		{"no id", "clients:\n  - {scopes: [admin], jwks_url: 'https://x'}\n", "id is required"},
	}
	for _, tt := range bad {
		st := openStore(t)
		p := write("clients:\n  - {id: first, scopes: [admin], jwks_url: 'https://first'}\n" + strings.TrimPrefix(tt.body, "clients:\n"))
		if _, err := ApplyClientsFile(ctx, st, p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %q", tt.name, err, tt.want)
		}
		if _, err := st.GetClient(ctx, "first"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the file's valid client was registered before the invalid one was found", tt.name)
		}
	}
}

// lazyTemporal is a Temporal client that never dials: no request here
// starts a workflow.
func lazyTemporal(t *testing.T) client.Client {
	t.Helper()
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestV1AuthOverTLS authenticates requests over real TLS handshakes, as
// p2p api serves them without client CAs: a pinned self-signed
// certificate is its client (mtls, with its scopes and person), a token
// its client, both naming different clients are refused, and an
// unregistered certificate alone is refused.
func TestV1AuthOverTLS(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	serverCA, selfCA := newCA(t, "server"), newCA(t, "self")
	revCert, strangerCert := selfCA.client(t, "review.example"), selfCA.client(t, "nobody.example")
	for _, c := range []store.Client{
		{ID: "review-pat", Scopes: []string{"review"}, CertSHA256: []string{smartauth.CertFingerprint(revCert.Leaf)}, Person: "Pat Reviewer"},
		{ID: "intake", Scopes: []string{"transfers:write"}, JWKS: []byte(`{"keys":[]}`)},
	} {
		if err := st.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	tlsFiles := serverTLSFiles(t, serverCA, selfCA)
	tlsFiles.ClientCAFile = "" // certificates pinned, not chained
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAPI(ctx, Config{TLS: tlsFiles, Addr: "127.0.0.1:0"}, Deps{Store: st, Temporal: lazyTemporal(t), Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	auth := a.V1Auth()
	intakeToken, err := auth.Tokens.Issue(smartauth.Client{ID: "intake"}, []string{"transfers:write"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tlsFiles.Config()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := auth.Authenticator.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(p)
	}))
	srv.TLS = tc
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	do := func(cert *tls.Certificate, token string) (int, caller.Principal) {
		t.Helper()
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var p caller.Principal
		b, _ := io.ReadAll(res.Body)
		_ = json.Unmarshal(b, &p)
		return res.StatusCode, p
	}
	tests := []struct {
		name   string
		cert   *tls.Certificate
		token  string
		status int
		client string
		method string
	}{
		{"pinned certificate", &revCert, "", 200, "review-pat", "mtls"},
		{"token", nil, intakeToken, 200, "intake", "bearer"},
		{"token and an unregistered certificate", &strangerCert, intakeToken, 200, "intake", "bearer"},
		{"certificate and token of two clients", &revCert, intakeToken, 401, "", ""},
		{"unregistered certificate alone", &strangerCert, "", 401, "", ""},
		{"nothing", nil, "", 401, "", ""},
	}
	for _, tt := range tests {
		code, p := do(tt.cert, tt.token)
		if code != tt.status || p.ClientID != tt.client || p.Method != tt.method {
			t.Errorf("%s: %d %+v, want %d %s %s", tt.name, code, p, tt.status, tt.client, tt.method)
		}
		if tt.client == "review-pat" && p.Person != "Pat Reviewer" {
			t.Errorf("%s: person %q", tt.name, p.Person)
		}
	}
}

// TestAddresses: the token endpoint is on the API's address; with a
// partner-facing address /fhir moves there, with the JWKS, the
// acknowledgements and the health checks, and nothing else.
func TestAddresses(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	partners, err := connectors.NewRegistry(connectors.Partner{ID: "acme", Roles: []connectors.Role{connectors.RoleRequester},
		JWKSURL: "https://acme.example/jwks", Auth: connectors.Auth{Type: connectors.AuthSMARTBackend, ClientID: "acme-client"}})
	if err != nil {
		t.Fatal(err)
	}
	build := func(cfg Config) *API {
		a, err := NewAPI(ctx, cfg, Deps{Store: st, Temporal: lazyTemporal(t), Signer: signer, Partners: partners})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	status := func(h http.Handler, method, path string, header ...string) int {
		r := httptest.NewRequest(method, path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	one := build(Config{Addr: "127.0.0.1:8080", FHIRTrustHeader: "X-P2P-Partner"})
	if one.PartnerHandler() != nil {
		t.Error("a partner-facing handler without --fhir-addr")
	}
	split := build(Config{Addr: "127.0.0.1:8080", FHIRAddr: "0.0.0.0:8443", FHIRPublicURL: "https://partners.example"})
	tests := []struct {
		name         string
		h            http.Handler
		method, path string
		want         int
	}{
		{"token endpoint", one.Handler(), "POST", V1TokenPath, http.StatusBadRequest}, // reached: an empty form
		{"/fhir config on one address", one.Handler(), "GET", "/fhir/.well-known/smart-configuration", http.StatusOK},
		{"/fhir gone from the API's address", split.Handler(), "GET", "/fhir/.well-known/smart-configuration", http.StatusNotFound},
		{"token endpoint stays", split.Handler(), "POST", V1TokenPath, http.StatusBadRequest},
		{"/fhir on the partner address", split.PartnerHandler(), "GET", "/fhir/.well-known/smart-configuration", http.StatusOK},
		{"JWKS on the partner address", split.PartnerHandler(), "GET", "/.well-known/jwks.json", http.StatusOK},
		{"health on the partner address", split.PartnerHandler(), "GET", "/healthz", http.StatusOK},
		{"ack reaches the API", split.PartnerHandler(), "POST", "/v1/transfers/0190e4a8-0000-7000-8000-000000000000/ack", http.StatusBadRequest},
		{"no /v1 on the partner address", split.PartnerHandler(), "GET", "/v1/transfers", http.StatusNotFound},
		{"no token endpoint on the partner address", split.PartnerHandler(), "POST", V1TokenPath, http.StatusNotFound},
	}
	for _, tt := range tests {
		if got := status(tt.h, tt.method, tt.path); got != tt.want {
			t.Errorf("%s: %s %s = %d, want %d", tt.name, tt.method, tt.path, got, tt.want)
		}
	}
	// /fhir tokens carry the partner address's audience.
	r := httptest.NewRequest("GET", "/fhir/.well-known/smart-configuration", nil)
	w := httptest.NewRecorder()
	split.PartnerHandler().ServeHTTP(w, r)
	if !strings.Contains(w.Body.String(), `"token_endpoint":"https://partners.example/fhir/auth/token"`) {
		t.Errorf("smart-configuration: %s", w.Body)
	}
	// An invalid bearer token never falls through to the trust header.
	mm := "/fhir/Patient/$member-match"
	if got := status(one.Handler(), "POST", mm, "X-P2P-Partner", "acme", "Authorization", "Bearer forged"); got != http.StatusUnauthorized {
		t.Errorf("invalid token beside the trust header: %d, want 401", got)
	}
	if got := status(one.Handler(), "POST", mm, "X-P2P-Partner", "acme", "Authorization", "Basic eA=="); got != http.StatusUnauthorized {
		t.Errorf("a non-bearer Authorization beside the trust header: %d, want 401", got)
	}
	if got := status(one.Handler(), "POST", mm, "X-P2P-Partner", "acme"); got == http.StatusUnauthorized {
		t.Error("the configured trust header alone was refused")
	}
	if got := status(split.Handler(), "POST", mm, "X-P2P-Partner", "acme"); got != http.StatusNotFound {
		t.Errorf("trust header on an API without one configured: %d", got)
	}
	if got := status(split.PartnerHandler(), "POST", mm, "X-P2P-Partner", "acme"); got != http.StatusUnauthorized {
		t.Errorf("trust header not configured: %d, want 401", got)
	}
}
