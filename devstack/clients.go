package devstack

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/smartauth"
	"github.com/p2p-payer/p2p/store"
)

// DevClient is a /v1 client p2p dev registers: one per role.
type DevClient struct {
	Name   string // its key file (clients/<Name>.jwk) and P2P_TOKEN_<NAME>
	Scopes []caller.Scope
	Person string
}

// ID is the client id: dev-<name>.
func (c DevClient) ID() string { return "dev-" + c.Name }

// EnvVar is the tokens.env variable of its token.
func (c DevClient) EnvVar() string { return "P2P_TOKEN_" + strings.ToUpper(c.Name) }

// DevClients are the clients of p2p dev, one per role.
var DevClients = []DevClient{
	{Name: "submitter", Scopes: []caller.Scope{caller.TransfersWrite}},
	{Name: "ops", Scopes: []caller.Scope{caller.TransfersRead}},
	{Name: "reviewer", Scopes: []caller.Scope{caller.Review}, Person: "Dev Reviewer"},
	{Name: "members", Scopes: []caller.Scope{caller.MembersWrite, caller.MembersRead}},
	{Name: "auditor", Scopes: []caller.Scope{caller.AuditRead}},
	{Name: "admin", Scopes: []caller.Scope{caller.Admin}},
}

// DevTokenLifetime is how long the ready-made tokens of tokens.env last:
// a working day, dev only (production tokens last minutes).
const DevTokenLifetime = 12 * time.Hour

// TokensFile is where, in the data directory, p2p dev writes its tokens.
const TokensFile = "tokens.env"

// devClientKey is the private key of a dev client, created on first use
// under the data directory (mode 0600).
func devClientKey(dataDir, name string) (*ecdsa.PrivateKey, string, error) {
	return signing.ClientKey(filepath.Join(dataDir, "clients", name+".jwk"))
}

// registerDevClients registers every dev client (its public key inline),
// mints each a DevTokenLifetime token and writes them to tokens.env.
func registerDevClients(ctx context.Context, st store.Clients, dataDir string, tokens *smartauth.Server) (map[string]string, error) {
	out := map[string]string{}
	var env strings.Builder
	env.WriteString("# p2p dev: ready-made /v1 access tokens, one per role, valid " + DevTokenLifetime.String() +
		" from the start of p2p dev.\n# Use: source " + filepath.Join(dataDir, TokensFile) +
		`; curl -H "Authorization: Bearer $P2P_TOKEN_ADMIN" ...` + "\n")
	for _, dc := range DevClients {
		pk, kid, err := devClientKey(dataDir, dc.Name)
		if err != nil {
			return nil, err
		}
		jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pk.Public(), KeyID: kid, Algorithm: string(jose.ES384), Use: "sig"}}})
		if err != nil {
			return nil, err
		}
		scopes := make([]string, len(dc.Scopes))
		for i, s := range dc.Scopes {
			scopes[i] = string(s)
		}
		c := store.Client{ID: dc.ID(), Name: "p2p dev " + dc.Name, Scopes: scopes, JWKS: jwks, Person: dc.Person}
		if err := st.UpsertClient(ctx, c); err != nil {
			return nil, fmt.Errorf("dev client %s: %w", dc.Name, err)
		}
		tok, err := tokens.Issue(smartauth.Client{ID: c.ID, Scopes: scopes, Person: c.Person}, scopes, DevTokenLifetime)
		if err != nil {
			return nil, err
		}
		out[dc.Name] = tok
		fmt.Fprintf(&env, "export %s=%s\n", dc.EnvVar(), tok)
	}
	if err := os.WriteFile(filepath.Join(dataDir, TokensFile), []byte(env.String()), 0o600); err != nil {
		return nil, err
	}
	return out, nil
}

// ClientToken gets a fresh access token for the dev client name from the
// token endpoint of the stack at baseURL, as any client would: a client
// assertion signed with the client's key from dataDir, exchanged at
// baseURL+app.V1TokenPath. scope "" asks for every registered scope.
func ClientToken(ctx context.Context, dataDir, baseURL, name, scope string) (string, error) {
	pk, kid, err := devClientKey(dataDir, name)
	if err != nil {
		return "", err
	}
	tokenURL := strings.TrimRight(baseURL, "/") + app.V1TokenPath
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: pk}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", err
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails
	now := time.Now()
	id := DevClient{Name: name}.ID()
	assertion, err := jwt.Signed(sg).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{tokenURL},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: fmt.Sprintf("%x", jti)}).Serialize()
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {smartauth.GrantType}, "client_assertion_type": {smartauth.ClientAssertionType}, "client_assertion": {assertion}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = res.Body.Close() }() // read to the end below
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return "", err
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || res.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return "", fmt.Errorf("token endpoint %s: %d %s %s", tokenURL, res.StatusCode, tr.Error, tr.Description)
	}
	return tr.AccessToken, nil
}
