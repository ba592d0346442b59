package signing

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

var manifest = []byte(`{"version":1,"transfer_id":"t-1","files":[]}`)

func mustGenerate(t *testing.T) *Signer {
	t.Helper()
	s, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIndependentVerification checks our JWS and JWKS with a second,
// unrelated JOSE implementation (lestrrat-go/jwx), as a partner would.
func TestIndependentVerification(t *testing.T) {
	s := mustGenerate(t)
	compact, err := s.Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := s.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(jwks)
	if err != nil {
		t.Fatalf("jwx cannot parse our JWKS: %v", err)
	}
	got, err := jws.Verify([]byte(compact), jws.WithKeySet(set))
	if err != nil {
		t.Fatalf("jwx does not verify our JWS: %v", err)
	}
	if string(got) != string(manifest) {
		t.Fatalf("payload = %s", got)
	}

	msg, err := jws.Parse([]byte(compact))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	alg, _ := h.Algorithm()
	kid, _ := h.KeyID()
	typ, _ := h.Type()
	cty, _ := h.ContentType()
	if alg.String() != "ES256" || kid != s.KID() || typ != "JOSE" || cty != "application/json" {
		t.Fatalf("header alg=%v kid=%q typ=%q cty=%q", alg, kid, typ, cty)
	}

	// The kid is the RFC 7638 thumbprint as jwx computes it too.
	k, ok := set.LookupKeyID(s.KID())
	if !ok {
		t.Fatal("kid not in JWKS")
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(tp); want != s.KID() {
		t.Fatalf("kid %q, thumbprint %q", s.KID(), want)
	}
}

func TestPublicJWKSHasNoPrivateMaterial(t *testing.T) {
	s := mustGenerate(t)
	jwks, err := s.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 1 {
		t.Fatalf("%d keys", len(doc.Keys))
	}
	k := doc.Keys[0]
	if _, ok := k["d"]; ok {
		t.Fatal("JWKS holds the private scalar d")
	}
	for field, want := range map[string]string{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": s.KID()} {
		if k[field] != want {
			t.Errorf("%s = %v, want %s", field, k[field], want)
		}
	}
}

func TestVerify(t *testing.T) {
	s := mustGenerate(t)
	other := mustGenerate(t)
	good, err := s.Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := s.PublicJWKS()
	otherJWKS, _ := other.PublicJWKS()
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	// A key published under our kid but belonging to someone else.
	forged := strings.Replace(string(otherJWKS), other.KID(), s.KID(), 1)

	tests := []struct {
		name    string
		compact string
		jwks    string
		want    error
	}{
		{"valid", good, string(jwks), nil},
		{"tampered payload", parts[0] + "." + b64([]byte(`{"version":2}`)) + "." + parts[2], string(jwks), ErrBadSignature},
		{"wrong key under our kid", good, forged, ErrBadSignature},
		{"unknown kid", good, string(otherJWKS), ErrUnknownKID},
		{"alg none", b64([]byte(`{"alg":"none","kid":"`+s.KID()+`"}`)) + "." + parts[1] + ".", string(jwks), ErrAlgorithm},
		{"alg HS256", b64([]byte(`{"alg":"HS256","kid":"`+s.KID()+`"}`)) + "." + parts[1] + "." + parts[2], string(jwks), ErrAlgorithm},
		{"not a JWS", "hello", string(jwks), ErrMalformed},
		{"JWKS not JSON", good, "nope", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, kid, err := Verify(tt.compact, []byte(tt.jwks))
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if string(payload) != string(manifest) || kid != s.KID() {
					t.Fatalf("payload %s kid %q", payload, kid)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if payload != nil {
				t.Fatal("payload returned with an error")
			}
		})
	}
}

func TestRotationPublishesOldKey(t *testing.T) {
	old := mustGenerate(t)
	cur := mustGenerate(t)
	oldSig, _ := old.Sign(manifest)
	rot, err := cur.WithPublished(old.PublicKey(), old.PublicKey(), cur.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := rot.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(jwks)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 2 {
		t.Fatalf("JWKS has %d keys, want 2 (duplicates dropped)", set.Len())
	}
	if _, kid, err := Verify(oldSig, jwks); err != nil || kid != old.KID() {
		t.Fatalf("old signature: kid %q err %v", kid, err)
	}
	if rot.KID() != cur.KID() {
		t.Fatal("rotation changed the signing key")
	}
	if n, _ := cur.PublicJWKS(); strings.Contains(string(n), old.KID()) {
		t.Fatal("WithPublished modified the original signer")
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "signing.jwk")
	s1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("key dir mode %v, want 0700", di.Mode().Perm())
	}
	s2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	s3, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s1.KID() != s2.KID() || s1.KID() != s3.KID() {
		t.Fatalf("kids differ after reload: %s %s %s", s1.KID(), s2.KID(), s3.KID())
	}
	sig, _ := s1.Sign(manifest)
	jwks, _ := s3.PublicJWKS()
	if _, _, err := Verify(sig, jwks); err != nil {
		t.Fatalf("reloaded key does not verify the original's signature: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestLoadOrCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.jwk")
	kids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range kids {
		wg.Go(func() {
			s, err := LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = s.KID()
		})
	}
	wg.Wait()
	onDisk, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		if k != onDisk.KID() {
			t.Fatalf("a racer signs with %s but the file holds %s", k, onDisk.KID())
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	pub := mustGenerate(t).PublicKey()
	pubJSON, _ := pub.MarshalJSON()
	tests := []struct {
		name, content string
	}{
		{"not JSON", "garbage"},
		{"public key only", string(pubJSON)},
		{"symmetric key", `{"kty":"oct","k":"c2VjcmV0"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p); err == nil {
				t.Fatal("want an error")
			}
			if _, err := LoadOrCreate(p); err == nil {
				t.Fatal("LoadOrCreate replaced a bad key file instead of failing")
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Load created a missing key")
	}
}
