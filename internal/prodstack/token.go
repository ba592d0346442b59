package prodstack

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	path := filepath.Join(s.Dir, "clients", AdminClientID+".jwk")
	if s.client {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, "", err
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(b); err != nil {
			return nil, "", err
		}
		return k.Key.(*ecdsa.PrivateKey), k.KeyID, nil
	}
	pk, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	k := jose.JSONWebKey{Key: pk, Algorithm: string(jose.ES384), Use: "sig"}
	if k.KeyID, err = signing.Thumbprint(k); err != nil {
		return nil, "", err
	}
	priv, err := k.MarshalJSON()
	if err != nil {
		return nil, "", err
	}
	pub, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(path, priv, 0o600); err != nil {
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
	return pk, k.KeyID, nil
}
