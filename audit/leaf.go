package audit

import (
	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/internal/auditleaf"
	"github.com/p2p-payer/p2p/store"
)

// timeLayout is RFC 3339 in UTC with exactly six fractional digits.
const timeLayout = auditleaf.TimeLayout

// LeafOf is what the leaf of a stored entry encodes: its event, transfer
// and, from leaf version 2 on, partner, in the version it was written
// with.
func LeafOf(ae store.AuditEvent) auditleaf.Leaf {
	return auditleaf.Leaf{Version: ae.LeafVersion, TransferID: ae.TransferID, PartnerID: ae.PartnerID, Event: ae.Event}
}

// LeafData is the canonical encoding of an entry, the record whose
// tlog.RecordHash is its leaf; see auditleaf.Leaf.Data.
func LeafData(ae store.AuditEvent) ([]byte, error) { return LeafOf(ae).Data() }

// LeafHash is tlog.RecordHash(LeafData(ae)).
func LeafHash(ae store.AuditEvent) (tlog.Hash, error) { return LeafOf(ae).Hash() }
