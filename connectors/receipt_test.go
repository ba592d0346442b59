package connectors

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/signing"
)

func TestVerifyReceipt(t *testing.T) {
	partnerKey, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := signing.Generate()
	jwks, _ := partnerKey.PublicJWKS()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	defer srv.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer down.Close()

	claims := ReceiptClaims{ReceiptID: "r1", TransferID: "t1", ManifestSHA256: "m1", IdempotencyKey: "k1", ReceivedAt: time.Now().UTC()}
	sign := func(s *signing.Signer, c ReceiptClaims) string {
		b, _ := json.Marshal(c)
		jws, err := s.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		return jws
	}
	with := func(f func(*ReceiptClaims)) ReceiptClaims { c := claims; f(&c); return c }
	withKeys := Partner{ID: "p", JWKSURL: srv.URL}
	tests := []struct {
		name    string
		p       Partner
		r       Receipt
		wantKID string
		class   fault.Class // "" = no error
	}{
		{"partner without keys", Partner{ID: "p"}, Receipt{ReceiptID: "r1"}, "", ""},
		{"signed and matching", withKeys, Receipt{ReceiptID: "r1", Signed: sign(partnerKey, claims)}, partnerKey.KID(), ""},
		{"unsigned from a partner with keys", withKeys, Receipt{ReceiptID: "r1"}, "", fault.Validation},
		{"signed by another key", withKeys, Receipt{ReceiptID: "r1", Signed: sign(otherKey, claims)}, "", fault.Validation},
		{"not a JWS", withKeys, Receipt{ReceiptID: "r1", Signed: "nonsense"}, "", fault.Validation},
		{"other transfer", withKeys, Receipt{ReceiptID: "r1", Signed: sign(partnerKey, with(func(c *ReceiptClaims) { c.TransferID = "t2" }))}, "", fault.Validation},
		{"other manifest", withKeys, Receipt{ReceiptID: "r1", Signed: sign(partnerKey, with(func(c *ReceiptClaims) { c.ManifestSHA256 = "m2" }))}, "", fault.Validation},
		{"other delivery", withKeys, Receipt{ReceiptID: "r1", Signed: sign(partnerKey, with(func(c *ReceiptClaims) { c.IdempotencyKey = "k2" }))}, "", fault.Validation},
		{"other receipt id", withKeys, Receipt{ReceiptID: "r9", Signed: sign(partnerKey, claims)}, "", fault.Validation},
		{"JWKS down", Partner{ID: "p", JWKSURL: down.URL}, Receipt{ReceiptID: "r1", Signed: sign(partnerKey, claims)}, "", fault.Downstream},
	}
	// The partners' JWKS are on loopback: their registry entries allow it.
	keys := signing.RemoteKeys{Egress: JWKSEgress(func() []Partner {
		return []Partner{{ID: "p", JWKSURL: srv.URL, AllowPrivateNetwork: true}, {ID: "p", JWKSURL: down.URL, AllowPrivateNetwork: true}}
	})}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kid, err := VerifyReceipt(context.Background(), &keys, tt.p, "t1", "m1", "k1", tt.r)
			if tt.class == "" {
				if err != nil || kid != tt.wantKID {
					t.Fatalf("kid %q err %v, want %q", kid, err, tt.wantKID)
				}
				return
			}
			f, ok := fault.As(err)
			if !ok || f.Class != tt.class || kid != "" {
				t.Fatalf("kid %q err %v, want a %s fault", kid, err, tt.class)
			}
		})
	}
}
