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

// Version names the encoding of Data; it is its first element, so a later
// encoding can never collide with this one.
const Version = "p2p-audit/1"

// TimeLayout is RFC 3339 in UTC with exactly six fractional digits.
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Data is the canonical encoding of a transfer's event, the record whose
// tlog.RecordHash is its leaf: the compact JSON array
//
//	["p2p-audit/1", transfer_id, seq, at, state, actor, type, key, detail]
//
// with at in RFC 3339 UTC with microseconds and detail as canonical JSON
// (keys sorted, numbers as float64 print them, no HTML escaping) or null.
// The stores call it with the event as they write it and the verifier with
// the event as it was read back: both give the same bytes.
func Data(transferID string, ev transfer.Event) ([]byte, error) {
	detail, err := canonicalDetail(ev.Detail)
	if err != nil {
		return nil, fmt.Errorf("audit: event detail: %w", err)
	}
	at := ev.At.UTC().Truncate(time.Microsecond).Format(TimeLayout)
	return marshal([]any{Version, transferID, ev.Seq, at, string(ev.State), ev.Actor, ev.Type, ev.Key, detail})
}

// Hash is tlog.RecordHash(Data(transferID, ev)).
func Hash(transferID string, ev transfer.Event) (tlog.Hash, error) {
	data, err := Data(transferID, ev)
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
