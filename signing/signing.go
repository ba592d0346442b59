// Package signing signs what p2p vouches for (export manifests, audit
// checkpoints, access tokens) with ECDSA P-256 keys (JWS, ES256) and
// publishes the public halves as a JWKS, so that a partner can check that
// an export came from us and was not altered on the way.
//
// Each Purpose has its own key set (KeySet: one active key, retired public
// keys kept for as long as their signatures must verify) and its own JWS
// typ, which verifiers check (VerifyFor), so that a signature made for one
// purpose never verifies as another.
//
// All JOSE work is done by github.com/go-jose/go-jose/v4; this package only
// manages the key files and fixes the choices: one algorithm (ES256), kid =
// RFC 7638 thumbprint, compact serialisation, protected header
// {alg, kid, typ, cty} with typ and cty from the Purpose.
package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Algorithm is the only JWS algorithm we sign with and accept.
const Algorithm = jose.ES256

// Header values of a JWS signed without a purpose (Generate, Load): the
// single key of p2p before keys were split by purpose, and receipts.
const (
	HeaderType        = "JOSE"
	HeaderContentType = "application/json"
)

// Errors Verify returns; callers switch on them with errors.Is.
var (
	// ErrMalformed: the input is not a compact JWS or the JWKS is not JSON.
	ErrMalformed = errors.New("signing: malformed JWS or JWKS")
	// ErrAlgorithm: the JWS or the key names an algorithm other than ES256.
	ErrAlgorithm = errors.New("signing: algorithm not allowed")
	// ErrUnknownKID: no key in the JWKS has the JWS's kid (refetch the JWKS).
	ErrUnknownKID = errors.New("signing: unknown kid")
	// ErrBadSignature: the signature does not verify with the named key.
	ErrBadSignature = errors.New("signing: signature does not verify")
	// ErrType: the JWS's typ is not the one of the purpose it is checked
	// for (a signature made for something else).
	ErrType = errors.New("signing: JWS typ not allowed for this purpose")
)

// Signer signs with one private key and publishes its public key, plus any
// extra public keys still in rotation. It is immutable and safe for
// concurrent use.
type Signer struct {
	key       jose.JSONWebKey // private; KeyID, Algorithm and Use set
	purpose   Purpose         // "": typ JOSE
	signer    jose.Signer
	published []publishedKey // extra public keys, never our own
}

// publishedKey is a public key the Signer publishes beside its own, until
// a time (zero: for ever).
type publishedKey struct {
	key   jose.JSONWebKey
	until time.Time
}

// Generate returns a Signer with a fresh P-256 key that lives only in
// memory (tests, ephemeral dev runs).
func Generate() (*Signer, error) {
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signing: generate key: %w", err)
	}
	return newSigner(jose.JSONWebKey{Key: pk}, "")
}

// GenerateFor returns a Signer for p with a fresh P-256 key that lives
// only in memory (tests).
func GenerateFor(p Purpose) (*Signer, error) {
	ks, err := NewKeySet(p)
	if err != nil {
		return nil, err
	}
	return ks.Signer(0)
}

// Load reads a private JWK (JSON) from path. It never creates the file,
// and refuses one that group or others may read (CheckPrivateFile).
func Load(path string) (*Signer, error) {
	b, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	return parsePrivate(b)
}

// LoadOrCreate reads the private JWK at path, or, if there is none,
// generates one and writes it with mode 0600 (its directory 0700). The file
// appears atomically: a reader never sees half a key, and when two
// processes race, both end up using the key that won.
func LoadOrCreate(path string) (*Signer, error) {
	s, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	s, err = Generate()
	if err != nil {
		return nil, err
	}
	b, err := s.privateJSON()
	if err != nil {
		return nil, err
	}
	switch err := writeFile(path, b, false); {
	case errors.Is(err, fs.ErrExist):
		return Load(path) // another process created it first: use theirs
	case err != nil:
		return nil, err
	}
	return s, nil
}

// writeFile writes data to path via a temporary file in the same
// directory, fsynced, then renamed into place when replace, else
// hard-linked so an existing file is never replaced (fs.ErrExist instead).
func writeFile(path string, data []byte, replace bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("signing: create key dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".jwk-*.tmp") // created 0600
	if err != nil {
		return fmt.Errorf("signing: create key file: %w", err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // a spare name after Link, gone after Rename: best effort
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close() // the error returned is the one that matters
		return fmt.Errorf("signing: chmod key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close() // the error returned is the one that matters
		return fmt.Errorf("signing: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the error returned is the one that matters
		return fmt.Errorf("signing: sync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("signing: close key file: %w", err)
	}
	if replace {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("signing: install key file: %w", err)
		}
	} else if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		// Some filesystems have no hard links; rename is still atomic.
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("signing: install key file: %w", err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()  // make the new name durable; best effort
		_ = d.Close() // opened read-only: nothing to lose
	}
	return nil
}

func parsePrivate(b []byte) (*Signer, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("signing: parse key: %w", err)
	}
	return newSigner(k, "")
}

// newSigner checks that k is a private P-256 key, fixes its kid, alg and
// use, and signs with the typ and cty of p. A kid in the file is ignored:
// the kid is always the thumbprint.
func newSigner(k jose.JSONWebKey, p Purpose) (*Signer, error) {
	k, err := privateKey(k)
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(p.Type()))
	if cty := p.contentType(); cty != "" {
		opts = opts.WithContentType(jose.ContentType(cty))
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: Algorithm, Key: k}, opts)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return &Signer{key: k, purpose: p, signer: sg}, nil
}

// privateKey checks that k is a private P-256 key and returns it with its
// kid (the thumbprint), alg and use set.
func privateKey(k jose.JSONWebKey) (jose.JSONWebKey, error) {
	pk, ok := k.Key.(*ecdsa.PrivateKey)
	if !ok || pk.Curve != elliptic.P256() {
		return k, errors.New("signing: key is not a private ECDSA P-256 key")
	}
	k.Algorithm = string(Algorithm)
	k.Use = "sig"
	kid, err := Thumbprint(k)
	if err != nil {
		return k, err
	}
	k.KeyID = kid
	return k, nil
}

// WithPurpose returns a Signer with s's key and published keys that
// signs with the typ of p: how a caller given one key for everything
// still types each signature. Prefer a key set per purpose (KeySet).
func (s *Signer) WithPurpose(p Purpose) (*Signer, error) {
	c, err := newSigner(s.key, p)
	if err != nil {
		return nil, err
	}
	c.published = s.published
	return c, nil
}

// Purpose is what s signs for ("" for a Signer without one: typ JOSE).
func (s *Signer) Purpose() Purpose { return s.purpose }

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of k, base64url
// without padding: the kid we give every key.
func Thumbprint(k jose.JSONWebKey) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("signing: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// KID returns the key id that every signature names in its header.
func (s *Signer) KID() string { return s.key.KeyID }

// PublicKey returns our public JWK (kid, alg, use set), for example to keep
// publishing it from the next Signer after a rotation.
func (s *Signer) PublicKey() jose.JSONWebKey { return s.key.Public() }

// Sign returns payload signed as a compact JWS with protected header alg
// ES256, our kid, and the typ and cty of s's purpose. ECDSA signatures
// are randomised: signing the same payload twice gives different strings
// that both verify.
func (s *Signer) Sign(payload []byte) (string, error) {
	obj, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: sign: %w", err)
	}
	c, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("signing: serialize: %w", err)
	}
	return c, nil
}

// WithPublished returns a copy of s that also publishes keys in its JWKS
// (public halves only), typically the previous key during a rotation so
// that signatures made with it still verify. Keys without a kid get their
// thumbprint; a key with our own kid is ignored.
func (s *Signer) WithPublished(keys ...jose.JSONWebKey) (*Signer, error) {
	return s.withPublished(time.Time{}, keys...)
}

// withPublished is WithPublished for keys published until a time (zero:
// for ever).
func (s *Signer) withPublished(until time.Time, keys ...jose.JSONWebKey) (*Signer, error) {
	c := *s
	c.published = append([]publishedKey(nil), s.published...)
	for _, k := range keys {
		pub := k.Public()
		if !pub.Valid() {
			return nil, errors.New("signing: published key is not a valid public key")
		}
		if pub.KeyID == "" {
			kid, err := Thumbprint(pub)
			if err != nil {
				return nil, err
			}
			pub.KeyID = kid
		}
		if pub.Use == "" {
			pub.Use = "sig"
		}
		if pub.Algorithm == "" {
			pub.Algorithm = string(Algorithm)
		}
		if pub.KeyID == s.key.KeyID || c.hasKID(pub.KeyID) {
			continue
		}
		c.published = append(c.published, publishedKey{key: pub, until: until})
	}
	return &c, nil
}

func (s *Signer) hasKID(kid string) bool {
	for _, k := range s.published {
		if k.key.KeyID == kid {
			return true
		}
	}
	return false
}

// PublicKeys returns the public keys s publishes at now: its own first,
// then the extra ones whose time has not passed.
func (s *Signer) PublicKeys(now time.Time) []jose.JSONWebKey {
	keys := []jose.JSONWebKey{s.key.Public()}
	for _, p := range s.published {
		if p.until.IsZero() || now.Before(p.until) {
			keys = append(keys, p.key)
		}
	}
	return keys
}

// PublicJWKS returns {"keys":[...]}: our public key first, then the extra
// published keys still in their retention. It never holds private
// material.
func (s *Signer) PublicJWKS() ([]byte, error) { return marshalJWKS(s.PublicKeys(time.Now())) }

// Verify checks a compact JWS made for s's purpose against the keys s
// publishes now (VerifyFor): how we check what we signed ourselves, our
// access tokens for one.
func (s *Signer) Verify(compact string) (payload []byte, kid string, err error) {
	return verifyKeys(compact, jose.JSONWebKeySet{Keys: s.PublicKeys(time.Now())}, s.purpose, true)
}

// PublicKeySet is the key sets of several signers published as one JWKS
// (/.well-known/jwks.json): each signer's keys, the first of a kid only.
type PublicKeySet []*Signer

// PublicJWKS returns the JWK Set of every signer's published keys.
func (p PublicKeySet) PublicJWKS() ([]byte, error) {
	now := time.Now()
	var keys []jose.JSONWebKey
	seen := map[string]bool{}
	for _, s := range p {
		if s == nil {
			continue
		}
		for _, k := range s.PublicKeys(now) {
			if !seen[k.KeyID] {
				seen[k.KeyID] = true
				keys = append(keys, k)
			}
		}
	}
	return marshalJWKS(keys)
}

func marshalJWKS(keys []jose.JSONWebKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: keys}
	if set.Keys == nil {
		set.Keys = []jose.JSONWebKey{}
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, errors.New("signing: refusing to publish a private key")
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("signing: marshal JWKS: %w", err)
	}
	return b, nil
}

func (s *Signer) privateJSON() ([]byte, error) {
	b, err := s.key.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("signing: marshal key: %w", err)
	}
	return b, nil
}

// Verify checks a compact JWS against the keys of a JWKS and returns its
// payload and the kid that signed it, whatever its typ: for JWS others
// sign (partners' receipts). What p2p signs is checked with VerifyFor.
// Only ES256 is accepted (never "none" or HMAC); the key is chosen by the
// header's kid, and a key that says it is for another algorithm or for
// encryption is refused. Errors wrap ErrMalformed, ErrAlgorithm,
// ErrUnknownKID or ErrBadSignature.
func Verify(compact string, jwks []byte) (payload []byte, kid string, err error) {
	set, err := parseJWKS(jwks)
	if err != nil {
		return nil, "", err
	}
	return verifyKeys(compact, set, "", false)
}

// VerifyFor is Verify for a JWS made for purpose p: its typ must be p's
// (compared as RFC 7515 says: case-insensitively, "application/"
// optional), else the error wraps ErrType. A checkpoint may also carry
// typ JOSE: those signed before keys were split by purpose, whose payload
// (its "v") tells them from anything else.
func VerifyFor(p Purpose, compact string, jwks []byte) (payload []byte, kid string, err error) {
	set, err := parseJWKS(jwks)
	if err != nil {
		return nil, "", err
	}
	return verifyKeys(compact, set, p, true)
}

func parseJWKS(jwks []byte) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return set, fmt.Errorf("%w: JWKS: %v", ErrMalformed, err)
	}
	return set, nil
}

// verifyKeys verifies compact against set, and its typ against p's when
// typed.
func verifyKeys(compact string, set jose.JSONWebKeySet, p Purpose, typed bool) (payload []byte, kid string, err error) {
	obj, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{Algorithm})
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, "", fmt.Errorf("%w: %v", ErrAlgorithm, err)
		}
		return nil, "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(obj.Signatures) != 1 {
		return nil, "", fmt.Errorf("%w: want one signature", ErrMalformed)
	}
	h := obj.Signatures[0].Protected
	kid = h.KeyID
	if typed {
		typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
		if !p.accepts(typ) {
			return nil, kid, fmt.Errorf("%w: typ %q, want %q", ErrType, typ, p.Type())
		}
	}
	if kid == "" {
		return nil, "", fmt.Errorf("%w: no kid in header", ErrUnknownKID)
	}
	keys := set.Key(kid)
	if len(keys) == 0 {
		return nil, kid, fmt.Errorf("%w %q", ErrUnknownKID, kid)
	}
	k := keys[0].Public()
	if k.Algorithm != "" && k.Algorithm != string(Algorithm) {
		return nil, kid, fmt.Errorf("%w: key %q is for %s", ErrAlgorithm, kid, k.Algorithm)
	}
	if k.Use != "" && k.Use != "sig" {
		return nil, kid, fmt.Errorf("%w: key %q is not a signing key", ErrBadSignature, kid)
	}
	if _, ok := k.Key.(*ecdsa.PublicKey); !ok {
		return nil, kid, fmt.Errorf("%w: key %q is not an ECDSA key", ErrAlgorithm, kid)
	}
	payload, err = obj.Verify(k)
	if err != nil {
		return nil, kid, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return payload, kid, nil
}
