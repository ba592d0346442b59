package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jws"
)

func mustKeySet(t *testing.T, p Purpose) *KeySet {
	t.Helper()
	ks, err := NewKeySet(p)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func mustSigner(t *testing.T, ks *KeySet, retention time.Duration) *Signer {
	t.Helper()
	s, err := ks.Signer(retention)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kids(keys []jose.JSONWebKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.KeyID)
	}
	return out
}

// TestTypeSeparation: a signature made for one purpose verifies only as
// that purpose, even when the verifier holds every key (our JWKS does).
func TestTypeSeparation(t *testing.T) {
	signers := map[Purpose]*Signer{}
	var all PublicKeySet
	for _, p := range Purposes {
		signers[p] = mustSigner(t, mustKeySet(t, p), 0)
		all = append(all, signers[p])
	}
	legacy := mustGenerate(t)
	all = append(all, legacy)
	jwks, err := all.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	for _, signed := range append(slices.Clone(Purposes), "") {
		s := signers[signed]
		if signed == "" {
			s = legacy // typ JOSE: what p2p signed before keys were split
		}
		compact, err := s.Sign(manifest)
		if err != nil {
			t.Fatal(err)
		}
		for _, as := range Purposes {
			t.Run(string(orLegacy(signed))+" as "+string(as), func(t *testing.T) {
				payload, _, err := VerifyFor(as, compact, jwks)
				ok := signed == as || (signed == "" && as == Checkpoint)
				switch {
				case ok && err != nil:
					t.Fatalf("refused: %v", err)
				case ok && string(payload) != string(manifest):
					t.Fatalf("payload %s", payload)
				case !ok && !errors.Is(err, ErrType):
					t.Fatalf("err = %v, want ErrType", err)
				}
			})
		}
	}
}

func orLegacy(p Purpose) Purpose {
	if p == "" {
		return "legacy JOSE"
	}
	return p
}

// TestTypeHeaders: the typ and cty each purpose signs with, read by an
// independent JOSE implementation, and the spellings of a typ VerifyFor
// takes as the same (RFC 7515 §4.1.9).
func TestTypeHeaders(t *testing.T) {
	tests := []struct {
		purpose  Purpose
		typ, cty string
	}{
		{Manifest, "p2p-manifest+jws", "application/json"},
		{Checkpoint, "p2p-checkpoint+jws", "application/json"},
		{Token, "at+jwt", ""},
		{"", "JOSE", "application/json"},
	}
	for _, tt := range tests {
		t.Run(string(orLegacy(tt.purpose)), func(t *testing.T) {
			s, err := mustGenerate(t).WithPurpose(tt.purpose)
			if err != nil {
				t.Fatal(err)
			}
			compact, _ := s.Sign(manifest)
			msg, err := jws.Parse([]byte(compact))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Signatures()[0].ProtectedHeaders()
			typ, _ := h.Type()
			cty, _ := h.ContentType()
			if typ != tt.typ || cty != tt.cty || tt.purpose.Type() != tt.typ {
				t.Fatalf("typ %q cty %q, want %q %q", typ, cty, tt.typ, tt.cty)
			}
		})
	}
	for _, typ := range []string{"at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"} {
		if !Token.accepts(typ) {
			t.Errorf("typ %q refused for tokens", typ)
		}
	}
	for _, typ := range []string{"", "JOSE", "JWT", "at+jwt2", "application/jwt"} {
		if Token.accepts(typ) {
			t.Errorf("typ %q accepted for tokens", typ)
		}
	}
}

func TestSignerVerify(t *testing.T) {
	tok := mustSigner(t, mustKeySet(t, Token), time.Hour)
	other := mustSigner(t, mustKeySet(t, Token), time.Hour)
	man := mustSigner(t, mustKeySet(t, Manifest), time.Hour)
	good, _ := tok.Sign([]byte(`{"sub":"a"}`))
	foreign, _ := other.Sign([]byte(`{"sub":"a"}`))
	manifestSig, _ := man.Sign([]byte(`{"sub":"a"}`))
	tests := []struct {
		name, compact string
		want          error
	}{
		{"ours", good, nil},
		{"another token key", foreign, ErrUnknownKID},
		{"a manifest signature", manifestSig, ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, kid, err := tok.Verify(tt.compact)
			if !errors.Is(err, tt.want) || (err == nil && kid != tok.KID()) {
				t.Fatalf("kid %q err %v, want %v", kid, err, tt.want)
			}
		})
	}
}

func pemOf(t *testing.T, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestParseKeySet(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	rsa8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384sec1, _ := x509.MarshalECPrivateKey(p384)
	pubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	wantKID, _ := Thumbprint(jose.JSONWebKey{Key: &ec.PublicKey})
	jwk, _ := jose.JSONWebKey{Key: ec}.MarshalJSON()
	pubJWK, _ := jose.JSONWebKey{Key: &ec.PublicKey}.MarshalJSON()

	// A key set file with a retired key stored with its private half: it
	// is read as public only.
	set := mustKeySet(t, Checkpoint)
	retired := mustKeySet(t, Checkpoint).Active
	setFile := filepath.Join(t.TempDir(), "set.json")
	if err := set.Save(setFile); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	b, _ := os.ReadFile(setFile)
	_ = json.Unmarshal(b, &doc)
	privRetired, _ := retired.MarshalJSON()
	var pr any
	_ = json.Unmarshal(privRetired, &pr)
	doc["retired"] = []any{map[string]any{"key": pr, "retired_at": "2026-01-02T03:04:05Z"}}
	withPrivRetired, _ := json.Marshal(doc)

	tests := []struct {
		name, data string
		purpose    Purpose
		kid        string // "" with wantErr
		retired    int
		wantErr    string
	}{
		{"private JWK", string(jwk), Manifest, wantKID, 0, ""},
		{"PEM PKCS #8", pemOf(t, "PRIVATE KEY", pkcs8), Manifest, wantKID, 0, ""},
		{"PEM SEC 1 with blanks around", "\n  " + pemOf(t, "EC PRIVATE KEY", sec1) + "\n", Token, wantKID, 0, ""},
		{"key set file", string(b), Checkpoint, set.Active.KeyID, 0, ""},
		{"key set with a private retired key", string(withPrivRetired), Checkpoint, set.Active.KeyID, 1, ""},
		{"key set of another purpose", string(b), Token, "", 0, `for "checkpoint", not "token"`},
		{"public JWK", string(pubJWK), Manifest, "", 0, "not a private ECDSA P-256 key"},
		{"public PEM", pemOf(t, "PUBLIC KEY", pubDER), Manifest, "", 0, "not a private key"},
		{"RSA PEM", pemOf(t, "PRIVATE KEY", rsa8), Manifest, "", 0, "not a private ECDSA P-256 key"},
		{"P-384 PEM", pemOf(t, "EC PRIVATE KEY", p384sec1), Manifest, "", 0, "not a private ECDSA P-256 key"},
		{"garbage", "hunter2", Manifest, "", 0, "neither JSON"},
		{"broken PEM", "-----BEGIN PRIVATE KEY-----\nAAAA", Manifest, "", 0, "does not decode"},
		{"empty", "", Manifest, "", 0, "neither JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := ParseKeySet(tt.purpose, []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ks.Active.KeyID != tt.kid || ks.Purpose != tt.purpose || len(ks.Retired) != tt.retired {
				t.Fatalf("kid %q purpose %q retired %d", ks.Active.KeyID, ks.Purpose, len(ks.Retired))
			}
			for _, r := range ks.Retired {
				if !r.Key.IsPublic() || r.RetiredAt.IsZero() {
					t.Fatalf("retired key private or undated: %+v", r)
				}
			}
		})
	}
}

func TestLoadKeySetPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes on Windows")
	}
	dir := t.TempDir()
	ks := mustKeySet(t, Manifest)
	tests := []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o660, false},
		{0o644, false},
		{0o620, false}, // writable by the group: it could swap our key
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := filepath.Join(dir, tt.mode.String()+".json")
			if err := ks.Save(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKeySet(Manifest, path)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok && !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Fatalf("error does not say how to fix it: %v", err)
			}
			// The single-key loader of before checks as well.
			if _, err := Load(path); !tt.ok && err == nil {
				t.Fatal("Load took an open key file")
			}
		})
	}
	if _, err := LoadKeySet(Manifest, filepath.Join(dir, "missing.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := LoadKeySet(Manifest, dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
}

// TestRotation walks a key set through prepare, rotate and prune, checking
// at each step which key signs and which keys the JWKS holds when.
func TestRotation(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "keys", KeySetFile(Manifest))
	ks := mustKeySet(t, Manifest)
	first := ks.Active.KeyID
	if err := ks.Create(path); err != nil {
		t.Fatal(err)
	}
	if err := ks.Create(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing set: %v", err)
	}
	oldSig, _ := mustSigner(t, ks, 0).Sign(manifest)

	next, err := ks.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ks.Prepare(); again != next {
		t.Fatal("a second Prepare replaced the prepared key")
	}
	if s := mustSigner(t, ks, 0); s.KID() != first || !slices.Equal(kids(s.PublicKeys(t0)), []string{first, next}) {
		t.Fatalf("prepared: signs with %s, publishes %v", s.KID(), kids(s.PublicKeys(t0)))
	}
	active, err := ks.Rotate(t0)
	if err != nil || active != next || ks.Next != nil {
		t.Fatalf("rotate: active %s err %v, want the prepared %s", active, err, next)
	}
	if err := ks.Save(path); err != nil {
		t.Fatal(err)
	}
	ks, err = LoadKeySet(Manifest, path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved with mode %v", fi.Mode().Perm())
	}
	day := 24 * time.Hour
	tests := []struct {
		name      string
		retention time.Duration
		at        time.Time
		want      []string
	}{
		{"within retention", 2 * day, t0.Add(day), []string{next, first}},
		{"retention passed", 2 * day, t0.Add(2 * day), []string{next}},
		{"for ever", 0, t0.Add(100 * 365 * day), []string{next, first}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSigner(t, ks, tt.retention)
			if s.KID() != next {
				t.Fatalf("signs with %s, want %s", s.KID(), next)
			}
			if got := kids(s.PublicKeys(tt.at)); !slices.Equal(got, tt.want) {
				t.Fatalf("JWKS kids %v, want %v", got, tt.want)
			}
		})
	}
	// The old signature verifies against the JWKS of now (retention 0).
	jwks, _ := mustSigner(t, ks, 0).PublicJWKS()
	if _, kid, err := VerifyFor(Manifest, oldSig, jwks); err != nil || kid != first {
		t.Fatalf("old signature after rotation: kid %s err %v", kid, err)
	}
	// A rotation without a prepared key makes a fresh one.
	third, _ := ks.Rotate(t0.Add(day))
	if third == next || third == first || len(ks.Retired) != 2 {
		t.Fatalf("second rotation: active %s, %d retired", third, len(ks.Retired))
	}
	if dropped := ks.Prune(0, t0.Add(1000*day)); dropped != nil || len(ks.Retired) != 2 {
		t.Fatal("retention 0 pruned")
	}
	dropped := ks.Prune(36*time.Hour, t0.Add(2*day))
	if len(dropped) != 1 || dropped[0].Key.KeyID != first || len(ks.Retired) != 1 || ks.Retired[0].Key.KeyID != next {
		t.Fatalf("prune dropped %v, kept %v", dropped, ks.Retired)
	}
}

func TestCreateKeySets(t *testing.T) {
	dir := t.TempDir()
	legacy := mustGenerate(t)
	t0 := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	created, err := CreateKeySets(dir, legacy, t0)
	if err != nil || !slices.Equal(created, Purposes) {
		t.Fatalf("created %v err %v", created, err)
	}
	again, err := CreateKeySets(dir, nil, t0)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run created %v err %v", again, err)
	}
	seen := map[string]Purpose{}
	for _, p := range Purposes {
		ks, err := LoadKeySet(p, filepath.Join(dir, KeySetFile(p)))
		if err != nil {
			t.Fatal(err)
		}
		if q, dup := seen[ks.Active.KeyID]; dup {
			t.Fatalf("%s and %s share a key", p, q)
		}
		seen[ks.Active.KeyID] = p
		wantLegacy := p != Token
		if got := len(ks.Retired) == 1 && ks.Retired[0].Key.KeyID == legacy.KID() && ks.Retired[0].RetiredAt.Equal(t0); got != wantLegacy {
			t.Errorf("%s: legacy key retired %v, want %v", p, got, wantLegacy)
		}
	}
}

func TestPublicKeySet(t *testing.T) {
	a := mustGenerate(t)
	b := mustGenerate(t)
	m, _ := a.WithPurpose(Manifest)
	c, _ := a.WithPurpose(Checkpoint) // the same key under two purposes
	jwks, err := PublicKeySet{m, c, nil, b}.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	if got := kids(set.Keys); !slices.Equal(got, []string{a.KID(), b.KID()}) {
		t.Fatalf("kids %v", got)
	}
	if empty, _ := (PublicKeySet{}).PublicJWKS(); string(empty) != `{"keys":[]}` {
		t.Fatalf("empty set: %s", empty)
	}
}

// TestVerifyForChecksTypeBeforeKey: a JWS typed for something else is
// refused as such even when its kid is unknown, so an error never hints
// at which keys we hold for another purpose.
func TestVerifyForChecksTypeBeforeKey(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	compact := b64([]byte(`{"alg":"ES256","kid":"nope","typ":"JWT"}`)) + "." + b64([]byte(`{}`)) + "." + b64([]byte("sig"))
	if _, _, err := VerifyFor(Token, compact, []byte(`{"keys":[]}`)); !errors.Is(err, ErrType) {
		t.Fatalf("err = %v", err)
	}
}
