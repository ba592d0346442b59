package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/internal/auditleaf"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// appendAudit gives the event just inserted (row eventID) the next
// position of the audit log and appends its leaf to the tree, in tx.
//
// NextAuditPosition locks the one row of audit_head until the transaction
// ends, so appenders take positions one at a time, in commit order; on
// PostgreSQL each statement after the lock sees the hashes the previous
// holder committed (READ COMMITTED), and on SQLite the write lock already
// serialises them. Callers append after their other row locks, so the
// lock order is always the same and the wait is short.
//
// The leaf is of version auditleaf.Current and covers partnerID, the
// partner the event recorded.
func (s *Store) appendAudit(ctx context.Context, tx *sql.Tx, eventID int64, transferID, partnerID string, ev transfer.Event) error {
	var pos int64
	if err := tx.QueryRowContext(ctx, s.sql("NextAuditPosition")).Scan(&pos); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	leaf := auditleaf.Leaf{Version: auditleaf.Current, TransferID: transferID, PartnerID: partnerID, Event: ev}
	data, err := leaf.Data()
	if err != nil {
		return err
	}
	hashes, err := tlog.StoredHashes(pos, data, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		return s.readHashes(ctx, tx, idx)
	}))
	if err != nil {
		return fmt.Errorf("audit hashes: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.sql("InsertAuditLeaf"), pos, eventID, hashes[0][:], leaf.Version); err != nil {
		return err
	}
	idx := tlog.StoredHashIndex(0, pos)
	rows := make([][]any, len(hashes))
	for i, h := range hashes {
		rows[i] = []any{idx + int64(i), h[:]}
	}
	q, args := s.d.withRows(s.sql("InsertAuditHashes"), nil, rows)
	_, err = tx.ExecContext(ctx, q, args...)
	return err
}

// readHashes returns the stored hashes at indexes, in order, asking for at
// most a bulk statement's rows at a time (SQLite caps a statement's
// variables).
func (s *Store) readHashes(ctx context.Context, q querier, indexes []int64) ([]tlog.Hash, error) {
	var out []tlog.Hash
	for start := 0; start < len(indexes); start += s.d.bulkRows {
		chunk := indexes[start:min(start+s.d.bulkRows, len(indexes))]
		rows := make([][]any, len(chunk))
		for i, x := range chunk {
			rows[i] = []any{int64(i), x}
		}
		text, args := s.d.withRows(s.sql("ReadAuditHashes"), nil, rows)
		hs, err := all(ctx, q, func(r scanner) (h tlog.Hash, err error) {
			var idx int64
			var b []byte
			switch err = r.Scan(&idx, &b); {
			case err != nil:
			case b == nil:
				err = fmt.Errorf("stored hash %d is missing", idx)
			case len(b) != len(h):
				err = fmt.Errorf("stored hash %d has %d bytes", idx, len(b))
			}
			copy(h[:], b)
			return h, err
		}, text, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, hs...)
	}
	return out, nil
}

// AuditSize returns the number of entries in the audit log.
func (s *Store) AuditSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, s.sql("AuditSize")).Scan(&n)
	return n, s.wrap("audit size", err)
}

// ReadAuditHashes returns the tree's stored hashes at indexes.
func (s *Store) ReadAuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	hs, err := s.readHashes(ctx, s.r, indexes)
	return hs, s.wrap("read audit hashes", err)
}

// AuditEvents calls fn for every entry f selects, in position order, as
// the rows arrive (both drivers stream a query's rows).
func (s *Store) AuditEvents(ctx context.Context, f store.AuditFilter, fn func(store.AuditEvent) error) error {
	const op = "audit events"
	limit := int64(math.MaxInt64) // none
	if f.Limit > 0 {
		limit = int64(f.Limit)
	}
	fs := filters{args: []any{f.FromPosition, limit}}
	fs.add(!f.Since.IsZero(), "e.occurred_at >= ?", s.d.time(f.Since))
	fs.add(!f.Until.IsZero(), "e.occurred_at < ?", s.d.time(f.Until))
	fs.add(f.TransferID != "", "e.transfer_id = ?", f.TransferID)
	fs.add(f.PartnerID != "", "coalesce(e.partner_id, t.partner_id) = ?", f.PartnerID)
	fs.add(f.Type != "", "e.event_type = ?", f.Type)
	q, args := s.d.withFilters(s.sql("AuditEvents"), fs)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return s.wrap(op, err)
	}
	defer rows.Close()
	var leaf []byte
	for rows.Next() {
		var ae store.AuditEvent
		if ae.Event, err = scanEvent(rows, &ae.Position, &leaf, &ae.LeafVersion, &ae.TransferID, &ae.PartnerID); err != nil {
			return s.wrap(op, err)
		}
		copy(ae.LeafHash[:], leaf)
		if err := fn(ae); err != nil {
			return err
		}
	}
	return s.wrap(op, rows.Err())
}

// PutCheckpoint stores a signed tree head.
func (s *Store) PutCheckpoint(ctx context.Context, c store.Checkpoint) error {
	_, err := s.exec(ctx, "put checkpoint", "PutCheckpoint", c.Size, c.Root[:], s.d.time(c.At), c.KID, c.JWS)
	return err
}

func scanCheckpoint(r scanner) (store.Checkpoint, error) {
	var c store.Checkpoint
	var root []byte
	err := r.Scan(&c.Size, &root, timeCol{&c.At}, &c.KID, &c.JWS)
	copy(c.Root[:], root)
	return c, err
}

// Checkpoints returns every stored checkpoint, oldest first.
func (s *Store) Checkpoints(ctx context.Context) ([]store.Checkpoint, error) {
	out, err := all(ctx, s.r, scanCheckpoint, s.sql("Checkpoints"))
	return out, s.wrap("checkpoints", err)
}

// LatestCheckpoint implements store.AuditLog.
func (s *Store) LatestCheckpoint(ctx context.Context) (store.Checkpoint, error) {
	c, err := scanCheckpoint(s.r.QueryRowContext(ctx, s.sql("LatestCheckpoint")))
	return c, s.wrap("latest checkpoint", err)
}
