package transfer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// KeyedDigest is HMAC-SHA256 of text under key, hex: how the audit log
// records free text and callers' own ids (an Idempotency-Key, a
// correlation id, a reviewer's reason) that might carry PHI. The key is
// the store's token key (store.IdentityGraph.PresentationKey), kept with
// the data it protects: anyone with the database can check a guess, and
// no one with only the log, an export of it or a workflow history can.
func KeyedDigest(key []byte, text string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(text))
	return hex.EncodeToString(m.Sum(nil))
}
