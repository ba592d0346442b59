// Package audit makes the transfer timeline a tamper-evident audit log.
//
// Every timeline event is a leaf of an RFC 6962 Merkle tree
// (golang.org/x/mod/sumdb/tlog): the stores give each event a global
// position and append its leaf hash, tlog.RecordHash(LeafData(event)), in
// the transaction that records it. A Checkpoint is a signed tree head;
// Prove gives inclusion proofs; Verify recomputes every leaf and the tree
// from the stored events and checks every stored checkpoint.
package audit

import (
	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/internal/auditleaf"
	"github.com/p2p-payer/p2p/transfer"
)

// LeafVersion names the encoding of LeafData (auditleaf.Version).
const LeafVersion = auditleaf.Version

// timeLayout is RFC 3339 in UTC with exactly six fractional digits.
const timeLayout = auditleaf.TimeLayout

// LeafData is the canonical encoding of a transfer's event, the record
// whose tlog.RecordHash is its leaf; see auditleaf.Data.
func LeafData(transferID string, ev transfer.Event) ([]byte, error) {
	return auditleaf.Data(transferID, ev)
}

// LeafHash is tlog.RecordHash(LeafData(transferID, ev)).
func LeafHash(transferID string, ev transfer.Event) (tlog.Hash, error) {
	return auditleaf.Hash(transferID, ev)
}
