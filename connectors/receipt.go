package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/signing"
)

// ErrTypeBadReceipt is the fault type of a signed receipt that does not
// verify or does not match the delivery: the partner's acknowledgement is
// not proven.
const ErrTypeBadReceipt = "partner_bad_receipt"

// ReceiptClaims is what a partner signs in a receipt: that it received
// this export, under this delivery key.
type ReceiptClaims struct {
	ReceiptID      string    `json:"receipt_id"`
	TransferID     string    `json:"transfer_id"`
	ManifestSHA256 string    `json:"manifest_sha256"`
	IdempotencyKey string    `json:"idempotency_key"`
	ReceivedAt     time.Time `json:"received_at"`
}

// VerifyReceipt checks a partner's signed receipt against its JWKS and
// against what we delivered, and returns the kid that signed it. A partner
// without a jwks_url does not sign receipts: kid is "" and err nil. A
// partner with one must sign every acknowledgement; a missing, forged or
// mismatched receipt is a fault.Validation (the acknowledgement is not
// proven, so the transfer must not be marked acknowledged), a JWKS that
// cannot be fetched a fault.Downstream (retry).
func VerifyReceipt(ctx context.Context, keys *signing.RemoteKeys, p Partner, transferID, manifestSHA256, deliveryKey string, r Receipt) (kid string, err error) {
	if p.JWKSURL == "" {
		return "", nil
	}
	if r.Signed == "" {
		return "", fault.New(fault.Validation, ErrTypeBadReceipt, fmt.Sprintf("partner %s: receipt is not signed, but the partner publishes keys", p.ID))
	}
	c, kid, err := VerifySignedReceipt(ctx, keys, p, transferID, manifestSHA256, deliveryKey, r.Signed)
	if err == nil && r.ReceiptID != "" && c.ReceiptID != r.ReceiptID {
		return "", fault.New(fault.Validation, ErrTypeBadReceipt, fmt.Sprintf("partner %s: receipt id differs from the answer's", p.ID))
	}
	return kid, err
}

// VerifySignedReceipt checks a partner's signed receipt (compact JWS of
// ReceiptClaims) against its JWKS and against the delivery, and returns
// its claims and the kid that signed it; errors as VerifyReceipt's. A
// partner without keys cannot sign: its receipts are refused here.
func VerifySignedReceipt(ctx context.Context, keys *signing.RemoteKeys, p Partner, transferID, manifestSHA256, deliveryKey, compact string) (ReceiptClaims, string, error) {
	bad := func(why string) (ReceiptClaims, string, error) {
		return ReceiptClaims{}, "", fault.New(fault.Validation, ErrTypeBadReceipt, fmt.Sprintf("partner %s: receipt %s", p.ID, why))
	}
	if p.JWKSURL == "" {
		return bad("cannot be verified: the partner publishes no keys (jwks_url)")
	}
	payload, kid, err := keys.Verify(ctx, p.JWKSURL, compact)
	switch {
	case errors.Is(err, signing.ErrJWKSUnavailable):
		return ReceiptClaims{}, "", fault.Wrap(fault.Downstream, ErrTypeUnavailable, "partner "+p.ID+": its JWKS", err)
	case err != nil:
		return bad("signature does not verify: " + err.Error())
	}
	var c ReceiptClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return bad("payload is not a receipt")
	}
	switch {
	case c.ReceiptID == "":
		return bad("has no receipt id")
	case c.TransferID != transferID:
		return bad("is for another transfer")
	case c.ManifestSHA256 != manifestSHA256:
		return bad("is for another manifest")
	case c.IdempotencyKey != deliveryKey:
		return bad("is for another delivery")
	}
	return c, kid, nil
}
