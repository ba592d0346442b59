package prodstack

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/signing"
)

// AdminClientID is the /v1 API client the stack registers for its caller,
// with scope admin.
const AdminClientID = "prodstack-admin"

// TokenSource hands out a valid bearer token, fetching a new one before
// the current expires.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// AdminTokens registers AdminClientID once (p2p clients add, its key in
// DIR/clients) and returns its tokens from the api at base, obtained as
// any client gets them: a signed client assertion posted to /oauth/token.
func (s *Stack) AdminTokens(ctx context.Context, base string) (TokenSource, error) {
	key, kid, err := s.adminClient(ctx)
	if err != nil {
		return nil, err
	}
	return bulkdata.NewBackendServices(bulkdata.BackendServicesConfig{
		Partner: "prodstack", ClientID: AdminClientID, Key: key, KeyID: kid,
		TokenURL: strings.TrimRight(base, "/") + app.V1TokenPath,
		// The api is on loopback: a plain client, not the partner-facing
		// one that refuses private addresses.
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
	})
}

func (s *Stack) adminClient(ctx context.Context) (*ecdsa.PrivateKey, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pk, kid, err := signing.ClientKey(filepath.Join(s.Dir, "clients", AdminClientID+".jwk"))
	if err != nil || s.client {
		return pk, kid, err
	}
	k := jose.JSONWebKey{Key: pk.Public(), KeyID: kid, Algorithm: string(jose.ES384), Use: "sig"}
	pub, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}})
	if err != nil {
		return nil, "", err
	}
	jwks := filepath.Join(s.Dir, "clients", AdminClientID+"-jwks.json")
	if err := os.WriteFile(jwks, pub, 0o600); err != nil {
		return nil, "", err
	}
	if _, err := s.P2P(ctx, "clients", "add", "--id", AdminClientID, "--scope", "admin", "--jwks-file", jwks); err != nil {
		return nil, "", err
	}
	s.client = true
	return pk, kid, nil
}
