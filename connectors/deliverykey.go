package connectors

import "fmt"

// DeliveryKey is the Idempotency-Key of the push of a transfer's export
// (Delivery.IdempotencyKey): the same for every retry of the same export,
// so that the partner stores it once, and what a partner's later signed
// receipt must name (VerifySignedReceipt).
func DeliveryKey(transferID, manifestSHA256 string) string {
	return fmt.Sprintf("p2p-%s-%s", transferID, manifestSHA256[:min(32, len(manifestSHA256))])
}
