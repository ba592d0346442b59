package app

import (
	"context"
	"fmt"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/transfer"
)

// AckVerifier verifies partners' later acknowledgements (api.AckVerifier)
// against the keys their registry entries publish.
type AckVerifier struct {
	Partners PartnerLookup
	// Keys fetches partners' JWKS; nil: a fetcher of its own, public
	// addresses only.
	Keys *signing.RemoteKeys

	own signing.RemoteKeys
}

// VerifyAck checks that receiptJWS is the transfer's partner's signed
// receipt of the transfer's delivery.
func (v *AckVerifier) VerifyAck(ctx context.Context, t transfer.Transfer, receiptJWS string) (string, string, error) {
	p, ok := v.Partners.Get(t.PartnerID)
	if !ok {
		return "", "", fault.New(fault.Validation, connectors.ErrTypeBadReceipt, fmt.Sprintf("partner %s is not in the registry", t.PartnerID))
	}
	if t.Export == nil || t.Export.ManifestSHA256 == "" {
		return "", "", fault.New(fault.Validation, connectors.ErrTypeBadReceipt, "the transfer has no delivered export")
	}
	m := t.Export.ManifestSHA256
	keys := v.Keys
	if keys == nil {
		keys = &v.own
	}
	c, kid, err := connectors.VerifySignedReceipt(ctx, keys, p, t.ID, m, connectors.DeliveryKey(t.ID, m), receiptJWS)
	return c.ReceiptID, kid, err
}
