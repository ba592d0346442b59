// Package auditleaf is the canonical encoding of an audit leaf: the bytes
// of a timeline event whose tlog.RecordHash is its leaf in the audit log's
// Merkle tree. The stores hash events with it as they write them, and
// package audit as it verifies them; it is a package of its own so that
// neither has to import the other.
package auditleaf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/transfer"
)

// Leaf versions, as audit_log.leaf_version stores them. Each is the first
// element of its encoding ("p2p-audit/N"), so no two versions' bytes can
// ever be equal. Leaves are never re-encoded: an entry keeps the version
// it was written with, and verifiers encode it with that version.
const (
	// V1: ["p2p-audit/1", transfer_id, seq, at, state, actor, type, key,
	// detail]. The partner was read from the transfer, outside the leaf.
	V1 = 1
	// V2 adds the transfer's partner, as the event recorded it:
	// ["p2p-audit/2", transfer_id, partner_id, seq, at, state, actor, type,
	// key, detail].
	V2 = 2
	// Current is the version of every entry written now.
	Current = V2
)

// TimeLayout is RFC 3339 in UTC with exactly six fractional digits.
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Leaf is what one entry's leaf encodes.
type Leaf struct {
	Version    int // V1 or V2
	TransferID string
	PartnerID  string // encoded from V2 on
	Event      transfer.Event
}

// Data is the canonical encoding of the leaf, the record whose
// tlog.RecordHash is its leaf hash: a compact JSON array (see V1 and V2)
// with at in RFC 3339 UTC with microseconds and detail as canonical JSON
// (keys sorted, numbers as float64 print them, no HTML escaping) or null.
// The stores call it with the event as they write it and the verifier with
// the event as it was read back: both give the same bytes.
func (l Leaf) Data() ([]byte, error) {
	ev := l.Event
	detail, err := canonicalDetail(ev.Detail)
	if err != nil {
		return nil, fmt.Errorf("audit: event detail: %w", err)
	}
	at := ev.At.UTC().Truncate(time.Microsecond).Format(TimeLayout)
	switch l.Version {
	case V1:
		return marshal([]any{"p2p-audit/1", l.TransferID, ev.Seq, at, string(ev.State), ev.Actor, ev.Type, ev.Key, detail})
	case V2:
		return marshal([]any{"p2p-audit/2", l.TransferID, l.PartnerID, ev.Seq, at, string(ev.State), ev.Actor, ev.Type, ev.Key, detail})
	}
	return nil, fmt.Errorf("audit: unknown leaf version %d", l.Version)
}

// Hash is tlog.RecordHash(l.Data()).
func (l Leaf) Hash() (tlog.Hash, error) {
	data, err := l.Data()
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.RecordHash(data), nil
}

// canonicalDetail round-trips d through JSON, so that what a caller passed
// (ints, structs) and what a store gives back (float64, maps; Postgres
// jsonb reorders keys and rewrites numbers) encode alike.
func canonicalDetail(d map[string]any) (json.RawMessage, error) {
	if d == nil {
		return json.RawMessage("null"), nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	b, err = marshal(v)
	return json.RawMessage(b), err
}

// marshal is json.Marshal without HTML escaping and without the trailing
// newline of an Encoder.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
