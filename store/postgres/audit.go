package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/internal/auditleaf"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
	"github.com/p2p-payer/p2p/transfer"
)

// appendAudit gives the event just inserted (row eventID) the next
// position of the audit log and appends its leaf to the tree, in tx.
// UPDATE … RETURNING locks the one row of audit_head until the transaction
// ends, so appenders take positions one at a time, in commit order; each
// statement after the lock sees the hashes the previous holder committed
// (READ COMMITTED). Callers append last, after their other row locks, so
// the lock order is always the same and the wait is short.
func appendAudit(ctx context.Context, tx pgx.Tx, eventID int64, transferID string, ev transfer.Event) error {
	var pos int64
	if err := tx.QueryRow(ctx, "UPDATE audit_head SET size = size + 1 RETURNING size - 1").Scan(&pos); err != nil {
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
	if _, err := tx.Exec(ctx, "INSERT INTO audit_log (position, event_id, leaf_hash) VALUES ($1, $2, $3)",
		pos, eventID, hashes[0][:]); err != nil {
		return err
	}
	idx := tlog.StoredHashIndex(0, pos)
	idxs := make([]int64, len(hashes))
	hs := make([][]byte, len(hashes))
	for i := range hashes {
		idxs[i], hs[i] = idx+int64(i), hashes[i][:]
	}
	_, err = tx.Exec(ctx, "INSERT INTO audit_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])", idxs, hs)
	return err
}

// txHashes is a tlog.HashReader on the pool or in a transaction.
type txHashes struct {
	ctx context.Context
	q   dbtx
}

func (r txHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return readHashes(r.ctx, r.q, indexes)
}

func readHashes(ctx context.Context, q dbtx, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, "SELECT idx, hash FROM audit_hashes WHERE idx = ANY($1)", indexes)
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
	err := s.pool.QueryRow(ctx, "SELECT size FROM audit_head").Scan(&n)
	return n, wrap("audit size", err)
}

// ReadAuditHashes returns the tree's stored hashes at indexes.
func (s *Store) ReadAuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	hs, err := readHashes(ctx, s.pool, indexes)
	return hs, wrap("read audit hashes", err)
}

// AuditEvents calls fn for every entry f selects, in position order, as
// the rows arrive (pgx streams a query's rows).
func (s *Store) AuditEvents(ctx context.Context, f store.AuditFilter, fn func(store.AuditEvent) error) error {
	args := []any{f.FromPosition}
	where := []string{"a.position >= $1"}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !f.Since.IsZero() {
		add("e.occurred_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("e.occurred_at < ?", f.Until)
	}
	if f.TransferID != "" {
		add("e.transfer_id = ?", f.TransferID)
	}
	if f.PartnerID != "" {
		add("t.partner_id = ?", f.PartnerID)
	}
	if f.Type != "" {
		add("e.event_type = ?", f.Type)
	}
	rows, err := s.pool.Query(ctx, `SELECT a.position, a.leaf_hash, e.transfer_id, t.partner_id,
		e.seq, e.event_key, e.occurred_at, e.state, e.actor, e.event_type, e.detail
		FROM audit_log a
		JOIN timeline_events e ON e.id = a.event_id
		JOIN transfers t ON t.id = e.transfer_id
		WHERE `+strings.Join(where, " AND ")+` ORDER BY a.position`+limit(f.Limit), args...)
	if err != nil {
		return wrap("audit events", err)
	}
	defer rows.Close()
	var leaf, detail []byte
	for rows.Next() {
		var ae store.AuditEvent
		ev := &ae.Event
		if err := rows.Scan(&ae.Position, &leaf, &ae.TransferID, &ae.PartnerID,
			&ev.Seq, &ev.Key, &ev.At, &ev.State, &ev.Actor, &ev.Type, &detail); err != nil {
			return wrap("audit events", err)
		}
		copy(ae.LeafHash[:], leaf)
		ev.At = ev.At.UTC()
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
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_checkpoints (size, root_hash, signed_at, kid, jws)
		VALUES ($1, $2, $3, $4, $5)`, c.Size, c.Root[:], storeutil.Time(c.At), c.KID, c.JWS)
	return wrap("put checkpoint", err)
}

const checkpointColumns = "size, root_hash, signed_at, kid, jws"

func scanCheckpoint(r pgx.Row) (store.Checkpoint, error) {
	var c store.Checkpoint
	var root []byte
	if err := r.Scan(&c.Size, &root, &c.At, &c.KID, &c.JWS); err != nil {
		return c, err
	}
	copy(c.Root[:], root)
	c.At = c.At.UTC()
	return c, nil
}

// Checkpoints returns every stored checkpoint, oldest first.
func (s *Store) Checkpoints(ctx context.Context) ([]store.Checkpoint, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+checkpointColumns+" FROM audit_checkpoints ORDER BY id")
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
	c, err := scanCheckpoint(s.pool.QueryRow(ctx, "SELECT "+checkpointColumns+" FROM audit_checkpoints ORDER BY id DESC LIMIT 1"))
	return c, wrap("latest checkpoint", err)
}
