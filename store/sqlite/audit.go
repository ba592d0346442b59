package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/internal/auditleaf"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
	"github.com/p2p-payer/p2p/transfer"
)

// appendAudit gives the event just inserted (row eventID) the next
// position of the audit log and appends its leaf to the tree, in tx. The
// one write connection serialises appenders; audit_head counts them.
func appendAudit(ctx context.Context, tx *sql.Tx, eventID int64, transferID string, ev transfer.Event) error {
	var pos int64
	if err := tx.QueryRowContext(ctx, "UPDATE audit_head SET size = size + 1 RETURNING size - 1").Scan(&pos); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	data, err := auditleaf.Data(transferID, ev)
	if err != nil {
		return err
	}
	hashes, err := tlog.StoredHashes(pos, data, txHashes{ctx, tx})
	if err != nil {
		return fmt.Errorf("audit hashes: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO audit_log (position, event_id, leaf_hash) VALUES (?, ?, ?)",
		pos, eventID, hashes[0][:]); err != nil {
		return err
	}
	idx := tlog.StoredHashIndex(0, pos)
	for i, h := range hashes {
		if _, err := tx.ExecContext(ctx, "INSERT INTO audit_hashes (idx, hash) VALUES (?, ?)", idx+int64(i), h[:]); err != nil {
			return err
		}
	}
	return nil
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// txHashes is a tlog.HashReader inside a transaction.
type txHashes struct {
	ctx context.Context
	q   querier
}

func (r txHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return readHashes(r.ctx, r.q, indexes)
}

func readHashes(ctx context.Context, q querier, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	args := make([]any, len(indexes))
	for i, x := range indexes {
		args[i] = x
	}
	rows, err := q.QueryContext(ctx, "SELECT idx, hash FROM audit_hashes WHERE idx IN (?"+
		strings.Repeat(", ?", len(indexes)-1)+")", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, err
		}
		var h tlog.Hash
		if len(b) != len(h) {
			return nil, fmt.Errorf("stored hash %d has %d bytes", idx, len(b))
		}
		copy(h[:], b)
		got[idx] = h
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := got[x]
		if !ok {
			return nil, fmt.Errorf("stored hash %d is missing", x)
		}
		out[i] = h
	}
	return out, nil
}

// AuditSize returns the number of entries in the audit log.
func (s *Store) AuditSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, "SELECT size FROM audit_head").Scan(&n)
	return n, wrap("audit size", err)
}

// ReadAuditHashes returns the tree's stored hashes at indexes.
func (s *Store) ReadAuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	hs, err := readHashes(ctx, s.r, indexes)
	return hs, wrap("read audit hashes", err)
}

// AuditEvents calls fn for every entry f selects, in position order, as
// the rows are read.
func (s *Store) AuditEvents(ctx context.Context, f store.AuditFilter, fn func(store.AuditEvent) error) error {
	where := []string{"a.position >= ?"}
	args := []any{f.FromPosition}
	if !f.Since.IsZero() {
		where, args = append(where, "e.occurred_at >= ?"), append(args, fmtTime(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "e.occurred_at < ?"), append(args, fmtTime(f.Until))
	}
	if f.TransferID != "" {
		where, args = append(where, "e.transfer_id = ?"), append(args, f.TransferID)
	}
	if f.PartnerID != "" {
		where, args = append(where, "t.partner_id = ?"), append(args, f.PartnerID)
	}
	if f.Type != "" {
		where, args = append(where, "e.event_type = ?"), append(args, f.Type)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT a.position, a.leaf_hash, e.transfer_id, t.partner_id,
		e.seq, e.event_key, e.occurred_at, e.state, e.actor, e.event_type, e.detail
		FROM audit_log a
		JOIN timeline_events e ON e.id = a.event_id
		JOIN transfers t ON t.id = e.transfer_id
		WHERE `+strings.Join(where, " AND ")+` ORDER BY a.position`+limit(f.Limit), args...)
	if err != nil {
		return wrap("audit events", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ae store.AuditEvent
		var leaf, detail []byte
		var at string
		ev := &ae.Event
		if err := rows.Scan(&ae.Position, &leaf, &ae.TransferID, &ae.PartnerID,
			&ev.Seq, &ev.Key, &at, &ev.State, &ev.Actor, &ev.Type, &detail); err != nil {
			return wrap("audit events", err)
		}
		copy(ae.LeafHash[:], leaf)
		if ev.At, err = parseTime(at); err != nil {
			return wrap("audit events", err)
		}
		if ev.Detail, err = storeutil.UnmarshalDetail(detail); err != nil {
			return wrap("audit events", err)
		}
		if err := fn(ae); err != nil {
			return err
		}
	}
	return wrap("audit events", rows.Err())
}

// limit is the LIMIT clause of n, none for 0.
func limit(n int) string {
	if n <= 0 {
		return ""
	}
	return " LIMIT " + strconv.Itoa(n)
}

// PutCheckpoint stores a signed tree head.
func (s *Store) PutCheckpoint(ctx context.Context, c store.Checkpoint) error {
	return s.write(ctx, "put checkpoint", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (size, root_hash, signed_at, kid, jws)
			VALUES (?, ?, ?, ?, ?)`, c.Size, c.Root[:], fmtTime(c.At), c.KID, c.JWS)
		return err
	})
}

const checkpointColumns = "size, root_hash, signed_at, kid, jws"

func scanCheckpoint(r rowScanner) (store.Checkpoint, error) {
	var c store.Checkpoint
	var root []byte
	var at string
	if err := r.Scan(&c.Size, &root, &at, &c.KID, &c.JWS); err != nil {
		return c, err
	}
	copy(c.Root[:], root)
	var err error
	c.At, err = parseTime(at)
	return c, err
}

// Checkpoints returns every stored checkpoint, oldest first.
func (s *Store) Checkpoints(ctx context.Context) ([]store.Checkpoint, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+checkpointColumns+" FROM audit_checkpoints ORDER BY id")
	if err != nil {
		return nil, wrap("checkpoints", err)
	}
	defer rows.Close()
	var out []store.Checkpoint
	for rows.Next() {
		c, err := scanCheckpoint(rows)
		if err != nil {
			return nil, wrap("checkpoints", err)
		}
		out = append(out, c)
	}
	return out, wrap("checkpoints", rows.Err())
}

// LatestCheckpoint returns the checkpoint stored last, or
// store.ErrNotFound.
func (s *Store) LatestCheckpoint(ctx context.Context) (store.Checkpoint, error) {
	c, err := scanCheckpoint(s.r.QueryRowContext(ctx, "SELECT "+checkpointColumns+" FROM audit_checkpoints ORDER BY id DESC LIMIT 1"))
	return c, wrap("latest checkpoint", err)
}
