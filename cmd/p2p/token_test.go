package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/p2p-payer/p2p/devstack"
	"github.com/p2p-payer/p2p/signing"
)

// devToken is the ready-made token of dev client name (e.g. "admin") that
// p2p dev wrote to the data directory's tokens.env.
func devToken(t *testing.T, dataDir, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, devstack.TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read only
	prefix := "export " + devstack.DevClient{Name: name}.EnvVar() + "="
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return v
		}
	}
	t.Fatalf("no %s token in %s", name, devstack.TokensFile)
	return ""
}

// registerAPIClient registers, as an operator would with `p2p clients
// add`, a /v1 client named dev-<name> with scope and a new key kept where
// devstack.ClientToken finds it, and returns a token the API at base issues
// it through /oauth/token.
func registerAPIClient(t *testing.T, dir, dbURL, base, name, scope string) string {
	t.Helper()
	pk, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := jose.JSONWebKey{Key: pk, Algorithm: string(jose.ES384), Use: "sig"}
	if k.KeyID, err = signing.Thumbprint(k); err != nil {
		t.Fatal(err)
	}
	priv, err := k.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "clients"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "clients", name+".jwk"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(dir, name+"-jwks.json")
	if err := os.WriteFile(jwks, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	id := devstack.DevClient{Name: name}.ID()
	var out bytes.Buffer
	if err := dispatch(context.Background(), []string{"clients", "add", "--database-url", dbURL, "--id", id,
		"--scope", scope, "--jwks-file", jwks}, &out, &out); err != nil {
		t.Fatalf("clients add: %v %s", err, out.String())
	}
	tok, err := devstack.ClientToken(context.Background(), dir, base, name, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authorized returns req with the bearer token set.
func authorized(req *http.Request, token string) *http.Request {
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
