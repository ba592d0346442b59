package payloadcodec

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKeySetFile: a key set survives its file (mode 0600), Create keeps
// an existing one, and damaged or foreign files are refused.
func TestKeySetFile(t *testing.T) {
	dir := t.TempDir()
	created, err := CreateKeySet(dir)
	if err != nil || !created {
		t.Fatalf("CreateKeySet: %v, %v", created, err)
	}
	path := filepath.Join(dir, KeySetFile)
	ks, err := LoadKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	if created, err := CreateKeySet(dir); err != nil || created {
		t.Fatalf("CreateKeySet again: %v, %v: want the existing set kept", created, err)
	}
	again, err := LoadKeySet(path)
	if err != nil || again.Active.ID != ks.Active.ID {
		t.Fatalf("after a second CreateKeySet: %v, active %s want %s", err, again.Active.ID, ks.Active.ID)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi.Mode(), err)
	}
	if _, err := ks.Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Rotate(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := ks.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Active.ID != ks.Active.ID || back.Next == nil || back.Next.ID != ks.Next.ID || len(back.Retired) != 1 ||
		back.Retired[0].Key.ID != ks.Retired[0].Key.ID || !back.Retired[0].RetiredAt.Equal(ks.Retired[0].RetiredAt) {
		t.Errorf("loaded %+v, saved %+v", back, ks)
	}
	if err := new(KeySet).Create(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file: %v", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeySet(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a key file the group may read: %v", err)
	}
}

func TestParseKeySet(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString(k.secret)
	short := base64.RawURLEncoding.EncodeToString(k.secret[:16])
	tests := []struct {
		name    string
		data    string
		wantKID string
		wantErr string
	}{
		{"one JWK", `{"kty":"oct","k":"` + b64 + `"}`, k.ID, ""},
		{"one JWK with its kid", `{"kty":"oct","alg":"A256GCM","kid":"` + k.ID + `","k":"` + b64 + `"}`, k.ID, ""},
		{"a key set", `{"purpose":"payload","active":{"kty":"oct","k":"` + b64 + `"}}`, k.ID, ""},
		{"a kid that is not the key's", `{"kty":"oct","kid":"someoneelse","k":"` + b64 + `"}`, "", "does not match the key"},
		{"AES-128", `{"kty":"oct","k":"` + short + `"}`, "", "16 bytes, want 32"},
		{"an EC key", `{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}`, "", `key type "EC"`},
		{"another purpose's set", `{"purpose":"manifest","active":{"kty":"oct","k":"` + b64 + `"}}`, "", `for "manifest"`},
		{"not JSON", b64, "", "not JSON"},
		{"another algorithm", `{"kty":"oct","alg":"A128KW","k":"` + b64 + `"}`, "", "want A256GCM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := ParseKeySet([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ks.Active.ID != tt.wantKID {
				t.Errorf("kid %s, want %s", ks.Active.ID, tt.wantKID)
			}
		})
	}
}

// TestKeyID: the id depends on the key alone, and differs between keys.
func TestKeyID(t *testing.T) {
	a, _ := NewKey()
	b, _ := NewKey()
	if a.ID == b.ID || len(a.ID) != 16 || KeyID(a.secret) != a.ID {
		t.Errorf("ids %q %q", a.ID, b.ID)
	}
}
