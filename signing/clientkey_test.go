package signing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientKey: created on first use (0600), the same key after, and a
// file that is not a private P-384 JWK refused.
func TestClientKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients", "c.jwk")
	pk, kid, err := ClientKey(path)
	if err != nil || pk == nil || kid == "" {
		t.Fatalf("ClientKey = %v, %q, %v", pk, kid, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v; want mode 0600", fi, err)
	}
	again, kid2, err := ClientKey(path)
	if err != nil || !again.Equal(pk) || kid2 != kid {
		t.Errorf("second ClientKey gave another key (%q vs %q), %v", kid2, kid, err)
	}
	for _, body := range []string{"not json", `{"kty":"oct","k":"c2VjcmV0"}`} {
		bad := filepath.Join(t.TempDir(), "bad.jwk")
		if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ClientKey(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ClientKey(%s) = %v; want an error naming the file", body, err)
		}
	}
}
