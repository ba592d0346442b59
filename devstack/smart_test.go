package devstack

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/fhir"
)

// TestMemberMatchWithSMARTBackendServices: a requester partner registered
// with smart-backend auth gets an access token from our token endpoint
// with a signed client assertion (made by our own SMART client,
// connectors/bulkdata), and its $member-match is answered on that token
// alone; without one, or with a forged one, it is refused.
func TestMemberMatchWithSMARTBackendServices(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "np-1", Use: "sig", Algorithm: "ES384"}}})
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	t.Cleanup(keys.Close)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true, Partners: []connectors.Partner{{
		ID: "new-payer", Roles: []connectors.Role{connectors.RoleRequester}, FHIRBaseURL: keys.URL + "/fhir",
		JWKSURL: keys.URL, Auth: connectors.Auth{Type: connectors.AuthSMARTBackend, ClientID: "client-np"}, AllowPrivateNetwork: true,
		Identifiers: []connectors.Identifier{{System: fhir.SystemNPI, Value: SandboxNPI}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)

	src, err := bulkdata.NewBackendServices(bulkdata.BackendServicesConfig{
		Partner: "us", ClientID: "client-np", Key: key, KeyID: "np-1", Scope: "system/Patient.rs",
		TokenURL: s.URL + "/fhir/auth/token", FHIRBaseURL: s.URL + "/fhir", HTTPClient: http.DefaultClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	token, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	match := func(bearer string) int {
		t.Helper()
		j, _ := json.Marshal(hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001"))
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/fhir/Patient/$member-match", bytes.NewReader(j))
		req.Header.Set("Content-Type", "application/fhir+json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode
	}
	if got := match(token); got != http.StatusOK {
		t.Errorf("with the access token: %d, want 200", got)
	}
	if got := match(""); got != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", got)
	}
	if got := match(token[:len(token)-6] + "AAAAAA"); got != http.StatusUnauthorized {
		t.Errorf("with a forged token: %d, want 401", got)
	}
	// A token of a scope that does not cover $member-match: 403.
	obs, err := bulkdata.NewBackendServices(bulkdata.BackendServicesConfig{
		Partner: "us", ClientID: "client-np", Key: key, KeyID: "np-1", Scope: "system/Coverage.r",
		TokenURL: s.URL + "/fhir/auth/token", FHIRBaseURL: s.URL + "/fhir", HTTPClient: http.DefaultClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	narrow, err := obs.Token(ctx)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	if got := match(narrow); got != http.StatusForbidden {
		t.Errorf("with a system/Coverage.r token: %d, want 403", got)
	}
	// A /v1 token is no /fhir token.
	if got := match(s.Tokens["admin"]); got != http.StatusUnauthorized {
		t.Errorf("with a /v1 token: %d, want 401", got)
	}
	res, err := http.Get(s.URL + "/fhir/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	err = json.NewDecoder(res.Body).Decode(&conf)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if conf["token_endpoint"] != s.URL+"/fhir/auth/token" {
		t.Errorf("smart-configuration %v", conf)
	}
}
