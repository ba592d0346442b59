package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.temporal.io/sdk/client"

	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// TestDevSignersMigratesTheOldKey: a dev data directory from before keys
// were split starts with a key per purpose, its old checkpoints still
// verify, the old private key is gone, and the next start keeps the keys.
func TestDevSignersMigratesTheOldKey(t *testing.T) {
	data := t.TempDir()
	old, err := signing.LoadOrCreate(filepath.Join(data, "signing-key.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	oldCheckpoint, _ := old.Sign([]byte(`{"v":"p2p-audit-checkpoint/1"}`))
	oldToken, _ := old.Sign([]byte(`{"sub":"x"}`))

	s, err := DevSigners(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "signing-key.jwk")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the old private key is still there: %v", err)
	}
	seen := map[string]bool{old.KID(): true}
	for _, p := range signing.Purposes {
		sg := s.Of(p)
		if sg == nil || sg.Purpose() != p || seen[sg.KID()] {
			t.Fatalf("%s: signer %v shares a key or is missing", p, sg)
		}
		seen[sg.KID()] = true
	}
	cpJWKS, _ := s.Checkpoint.PublicJWKS()
	if _, kid, err := signing.VerifyFor(signing.Checkpoint, oldCheckpoint, cpJWKS); err != nil || kid != old.KID() {
		t.Fatalf("old checkpoint after migration: kid %s err %v", kid, err)
	}
	if _, _, err := s.Token.Verify(oldToken); err == nil {
		t.Fatal("a token the old key signed still verifies")
	}
	again, err := DevSigners(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range signing.Purposes {
		if again.Of(p).KID() != s.Of(p).KID() {
			t.Fatalf("%s: a second start changed the key", p)
		}
	}
	if _, err := DevSigners(t.TempDir(), nil); err != nil {
		t.Fatalf("a fresh data directory: %v", err)
	}
}

func TestKeysLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := signing.CreateKeySets(dir, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	onDisk, err := signing.LoadKeySet(signing.Token, filepath.Join(dir, signing.KeySetFile(signing.Token)))
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	envKID, _ := signing.Thumbprint(jose.JSONWebKey{Key: &ec.PublicKey})
	empty := t.TempDir()

	tests := []struct {
		name     string
		keys     Keys
		env      map[string]string
		dataDirs []string
		wantKID  string // of the token signer
		wantErr  string
	}{
		{"from the directory", Keys{Dir: dir}, nil, nil, onDisk.Active.KeyID, ""},
		{"PEM in the environment wins", Keys{Dir: dir}, map[string]string{"P2P_TOKEN_KEY": pemKey}, nil, envKID, ""},
		{"environment only", Keys{}, map[string]string{"P2P_TOKEN_KEY": pemKey, "P2P_MANIFEST_KEY": pemKey, "P2P_CHECKPOINT_KEY": pemKey}, nil, envKID, ""},
		{"an empty directory", Keys{Dir: empty}, nil, nil, "", "no manifest signing key in " + empty},
		{"nothing", Keys{}, nil, nil, "", "no manifest signing key: set P2P_KEYS_DIR"},
		{"the data directory itself", Keys{Dir: dir}, nil, []string{dir}, "", "lies in the data directory"},
		{"below the data directory", Keys{Dir: dir}, nil, []string{filepath.Dir(dir)}, "", "lies in the data directory"},
		{"holding the data directory", Keys{Dir: dir}, nil, []string{filepath.Join(dir, "data")}, "", "lies in the data directory"},
		{"beside the data directory", Keys{Dir: dir}, nil, []string{dir + "-data", ""}, onDisk.Active.KeyID, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			s, err := tt.keys.Load(getenv, tt.dataDirs, signing.Purposes...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Token.KID() != tt.wantKID || s.Token.Purpose() != signing.Token {
				t.Fatalf("token kid %s purpose %s, want %s", s.Token.KID(), s.Token.Purpose(), tt.wantKID)
			}
		})
	}
}

func TestKeysValidate(t *testing.T) {
	tests := []struct {
		name string
		keys Keys
		ok   bool
	}{
		{"defaults", Keys{ManifestRetention: DefaultManifestKeyRetention, TokenRetention: DefaultTokenKeyRetention}, true},
		{"for ever", Keys{}, true},
		{"manifests shorter than the file TTL", Keys{ManifestRetention: time.Hour}, false},
		{"tokens shorter than their lifetime", Keys{TokenRetention: time.Minute}, false},
		{"negative", Keys{CheckpointRetention: -time.Hour}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.keys.Validate(); (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// TestAPIPublishesEveryPurpose: /.well-known/jwks.json holds the keys of
// every purpose, retired ones included; a single Signer stands in for all
// three (one key, typed per purpose); without either the API does not
// start.
func TestAPIPublishesEveryPurpose(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() }) // a test store: nothing to lose
	temporal, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(temporal.Close)

	data := t.TempDir()
	legacy, err := signing.LoadOrCreate(filepath.Join(data, "signing-key.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	split, err := DevSigners(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	one, _ := signing.Generate()
	tests := []struct {
		name    string
		deps    Deps
		want    []string
		wantErr string
	}{
		{"a key per purpose", Deps{ManifestSigner: split.Manifest, AuditSigner: split.Checkpoint, TokenSigner: split.Token},
			[]string{split.Manifest.KID(), legacy.KID(), split.Checkpoint.KID(), split.Token.KID()}, ""},
		{"one key for everything", Deps{Signer: one}, []string{one.KID()}, ""},
		{"a purpose without a key", Deps{ManifestSigner: split.Manifest, AuditSigner: split.Checkpoint}, nil, "needs the token signing key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.deps
			d.Store, d.Temporal = st, temporal
			a, err := NewAPI(ctx, Config{Addr: "127.0.0.1:0"}, d)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			a.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			var got []string
			for _, k := range set.Keys {
				if !k.IsPublic() {
					t.Fatal("a private key published")
				}
				got = append(got, k.KeyID)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("kids %v, want %v", got, tt.want)
			}
		})
	}
}
