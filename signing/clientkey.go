package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"
)

// ClientKey returns the private P-384 key of an API client kept at path
// (a JWK, mode 0600, its kid the RFC 7638 thumbprint), creating it on
// first use: the key with which a client of our own (p2p dev's, a test
// harness's) signs its token assertions.
func ClientKey(path string) (*ecdsa.PrivateKey, string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		pk, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			return nil, "", err
		}
		k := jose.JSONWebKey{Key: pk, Algorithm: string(jose.ES384), Use: "sig"}
		if k.KeyID, err = Thumbprint(k); err != nil {
			return nil, "", err
		}
		if b, err = k.MarshalJSON(); err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, "", err
		}
	} else if err != nil {
		return nil, "", err
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return nil, "", fmt.Errorf("client key %s: %w", path, err)
	}
	pk, ok := k.Key.(*ecdsa.PrivateKey)
	if !ok || pk.Curve != elliptic.P384() {
		return nil, "", fmt.Errorf("client key %s is not a private P-384 key", path)
	}
	return pk, k.KeyID, nil
}
