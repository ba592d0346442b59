package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/smartauth"
	"github.com/p2p-payer/p2p/store"
)

// V1TokenPath is where /v1 clients get access tokens, on the API's
// (internal) address: outside /v1, so that the spec's request validator
// and the /v1 authentication never see it.
const V1TokenPath = "/oauth/token"

// V1Scopes are the scopes the /v1 token endpoint grants: caller.Scopes.
func V1Scopes() []string {
	out := make([]string, len(caller.Scopes))
	for i, s := range caller.Scopes {
		out[i] = string(s)
	}
	return out
}

// impliesV1 reports whether a registered /v1 scope covers a requested
// one: itself, or any scope when it is admin.
func impliesV1(registered, requested string) bool {
	return registered == string(caller.Admin) && caller.Scope(requested).Valid()
}

// activeClient is the registered, enabled /v1 client with id as
// smartauth sees it.
func activeClient(ctx context.Context, st store.Clients, id string) (smartauth.Client, error) {
	return enabled(st.GetClient(ctx, id))
}

// enabled is the client a registry lookup found, as smartauth sees it:
// an unknown or disabled one is smartauth.ErrUnknownClient.
func enabled(c store.Client, err error) (smartauth.Client, error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return smartauth.Client{}, smartauth.ErrUnknownClient
	case err != nil:
		return smartauth.Client{}, err
	case c.Disabled:
		return smartauth.Client{}, smartauth.ErrUnknownClient
	}
	return toSMART(c), nil
}

func toSMART(c store.Client) smartauth.Client {
	scopes := c.Scopes
	if scopes == nil {
		scopes = []string{} // registered with none: granted none (nil would be every one)
	}
	return smartauth.Client{ID: c.ID, JWKSURL: c.JWKSURL, JWKS: c.JWKS, Scopes: scopes, Person: c.Person}
}

// V1Auth is the /v1 side of authentication: the token endpoint's server
// and the Authenticator the API checks requests with.
type V1Auth struct {
	Tokens        *smartauth.Server
	Authenticator *smartauth.Authenticator
}

// NewV1Auth builds the /v1 authorization server over the store's clients
// and replay cache: tokens at publicURL+V1TokenPath, for audience
// publicURL+"/v1", signed by signer. Client certificates authenticate by
// their registered fingerprint; with client CAs configured
// (verifiedCerts), only once TLS verified them.
func NewV1Auth(publicURL string, signer *signing.Signer, st store.Store, lifetime time.Duration, verifiedCerts bool, log *zap.Logger) V1Auth {
	base := strings.TrimRight(publicURL, "/")
	byID := func(ctx context.Context, id string) (smartauth.Client, error) { return activeClient(ctx, st, id) }
	tokens := &smartauth.Server{
		Surface: "v1", TokenURL: base + V1TokenPath, Audience: base + "/v1", Signer: signer,
		Clients: byID, Active: byID, Scopes: V1Scopes(), Implies: impliesV1, DefaultScopes: true,
		Replay: st, Logger: log, TokenLifetime: lifetime,
	}
	return V1Auth{Tokens: tokens, Authenticator: &smartauth.Authenticator{
		Tokens: tokens, VerifiedOnly: verifiedCerts,
		ByCert: func(ctx context.Context, fp string) (smartauth.Client, error) {
			return enabled(st.ClientByCert(ctx, fp))
		},
	}}
}

// ClientSpec is one client of a clients file (P2P_CLIENTS_FILE) or of
// `p2p clients add`: what the store registers, with keys and
// certificates given as files.
type ClientSpec struct {
	ID     string   `yaml:"id"`
	Name   string   `yaml:"name,omitempty"`
	Scopes []string `yaml:"scopes"`
	// JWKSURL or JWKSFile: the client's assertion keys (public JWKS).
	JWKSURL  string `yaml:"jwks_url,omitempty"`
	JWKSFile string `yaml:"jwks_file,omitempty"`
	// CertSHA256 (hex SHA-256 of the DER certificate) or CertFile (PEM):
	// the client certificates it may present.
	CertSHA256 []string `yaml:"cert_sha256,omitempty"`
	CertFile   []string `yaml:"cert_file,omitempty"`
	Person     string   `yaml:"person,omitempty"`
	Disabled   bool     `yaml:"disabled,omitempty"`
}

// Client checks s and reads its files (relative to dir) into the client
// the store registers.
func (s ClientSpec) Client(dir string) (store.Client, error) {
	c := store.Client{ID: s.ID, Name: s.Name, JWKSURL: s.JWKSURL, Person: s.Person, Disabled: s.Disabled, Scopes: []string{}}
	fail := func(format string, args ...any) (store.Client, error) {
		return store.Client{}, fmt.Errorf("client %q: "+format, append([]any{s.ID}, args...)...)
	}
	if s.ID == "" || strings.ContainsAny(s.ID, " \t\n") {
		return fail("id is required, without spaces")
	}
	for _, sc := range s.Scopes {
		if !caller.Scope(sc).Valid() {
			return fail("scope %q is not one of %v", sc, caller.Scopes)
		}
		c.Scopes = append(c.Scopes, sc)
	}
	if len(c.Scopes) == 0 {
		return fail("at least one scope is required (one of %v)", caller.Scopes)
	}
	if s.JWKSURL != "" && !strings.HasPrefix(s.JWKSURL, "https://") && !strings.HasPrefix(s.JWKSURL, "http://127.0.0.1") &&
		!strings.HasPrefix(s.JWKSURL, "http://localhost") {
		return fail("jwks_url must be https (or http on loopback)")
	}
	if s.JWKSFile != "" {
		b, err := os.ReadFile(rel(dir, s.JWKSFile))
		if err != nil {
			return fail("jwks_file: %v", err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
			return fail("jwks_file %s is not a JWKS with keys", s.JWKSFile)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || k.KeyID == "" {
				return fail("jwks_file %s: every key must be public and have a kid", s.JWKSFile)
			}
		}
		c.JWKS = bytes.TrimSpace(b)
	}
	for _, fp := range s.CertSHA256 {
		fp = strings.ToLower(strings.ReplaceAll(fp, ":", ""))
		if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size {
			return fail("cert_sha256 %q is not a hex SHA-256", fp)
		}
		c.CertSHA256 = append(c.CertSHA256, fp)
	}
	for _, f := range s.CertFile {
		fp, err := CertFileFingerprint(rel(dir, f))
		if err != nil {
			return fail("cert_file: %v", err)
		}
		c.CertSHA256 = append(c.CertSHA256, fp)
	}
	if c.JWKSURL == "" && c.JWKS == nil && len(c.CertSHA256) == 0 {
		return fail("no credential: give jwks_url, jwks_file, cert_sha256 or cert_file")
	}
	return c, nil
}

func rel(dir, path string) string {
	if dir == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// CertFileFingerprint is the fingerprint (hex SHA-256 of the DER) of the
// first certificate of a PEM file, as clients register certificates.
func CertFileFingerprint(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return "", fmt.Errorf("%s holds no PEM certificate", path)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return smartauth.CertFingerprint(cert), nil
	}
}

// clientsFile is the YAML of P2P_CLIENTS_FILE.
type clientsFile struct {
	Clients []ClientSpec `yaml:"clients"`
}

// ApplyClientsFile registers every client of the YAML file at path
// (UpsertClient: a listed client is replaced, a disabled one stays
// disabled, one not listed is left as it is) and returns how many. Files
// it names are relative to its directory. All are checked before any is
// written.
func ApplyClientsFile(ctx context.Context, st store.Clients, path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("clients file: %w", err)
	}
	var f clientsFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return 0, fmt.Errorf("clients file %s: %w", path, err)
	}
	seen := map[string]bool{}
	var cs []store.Client
	for _, s := range f.Clients {
		c, err := s.Client(filepath.Dir(path))
		if err != nil {
			return 0, fmt.Errorf("clients file %s: %w", path, err)
		}
		if seen[c.ID] {
			return 0, fmt.Errorf("clients file %s: client %q is listed twice", path, c.ID)
		}
		seen[c.ID] = true
		cs = append(cs, c)
	}
	for _, c := range cs {
		if err := st.UpsertClient(ctx, c); err != nil {
			return 0, fmt.Errorf("clients file %s: client %q: %w", path, c.ID, err)
		}
	}
	return len(cs), nil
}
