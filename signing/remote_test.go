package signing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestRemoteKeysVerifyFor: a partner checking our manifests takes only
// manifest signatures, and picks up a rotated key on its first use.
func TestRemoteKeysVerifyFor(t *testing.T) {
	ks := mustKeySet(t, Manifest)
	before := mustSigner(t, ks, 0)
	cp := mustSigner(t, mustKeySet(t, Checkpoint), 0)
	var current atomic.Pointer[Signer]
	current.Store(before)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		b, _ := PublicKeySet{current.Load(), cp}.PublicJWKS()
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	keys := &RemoteKeys{TTL: time.Hour}
	ctx := context.Background()

	sig, _ := before.Sign(manifest)
	cpSig, _ := cp.Sign(manifest)
	if _, kid, err := keys.VerifyFor(ctx, Manifest, srv.URL, sig); err != nil || kid != before.KID() {
		t.Fatalf("manifest: kid %s err %v", kid, err)
	}
	if _, _, err := keys.VerifyFor(ctx, Manifest, srv.URL, cpSig); !errors.Is(err, ErrType) {
		t.Fatalf("a checkpoint as a manifest: %v", err)
	}
	if _, err := ks.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	after := mustSigner(t, ks, 0)
	current.Store(after)
	newSig, _ := after.Sign(manifest)
	n := fetches.Load()
	if _, kid, err := keys.VerifyFor(ctx, Manifest, srv.URL, newSig); err != nil || kid != after.KID() {
		t.Fatalf("after rotation: kid %s err %v", kid, err)
	}
	if fetches.Load() != n+1 {
		t.Fatalf("%d fetches for an unknown kid, want 1", fetches.Load()-n)
	}
	if _, _, err := keys.VerifyFor(ctx, Manifest, srv.URL, sig); err != nil {
		t.Fatalf("the retired key's signature: %v", err)
	}
}
