package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
	"github.com/p2p-payer/p2p/transfer"
)

const idemColumns = "client_id, idempotency_key, fingerprint, transfer_id, status, response_status, response_body, created_at"

func scanIdem(r rowScanner) (store.IdempotencyRecord, error) {
	var rec store.IdempotencyRecord
	var created string
	err := r.Scan(&rec.ClientID, &rec.Key, &rec.Fingerprint, &rec.TransferID, &rec.Status,
		&rec.ResponseStatus, &rec.ResponseBody, &created)
	if err != nil {
		return rec, err
	}
	if rec.Status == store.IdempotencyComplete && rec.ResponseBody == nil {
		rec.ResponseBody = []byte{} // an empty body replays as empty, not absent
	}
	rec.CreatedAt, err = parseTime(created)
	return rec, err
}

func getIdem(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, clientID, key string) (store.IdempotencyRecord, error) {
	return scanIdem(q.QueryRowContext(ctx,
		"SELECT "+idemColumns+" FROM idempotency_keys WHERE client_id = ? AND idempotency_key = ?", clientID, key))
}

// text binds JSON as TEXT, and nil as NULL (the tables are STRICT).
func text(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// CreateTransfer claims (ClientID, IdempotencyKey) and, if it was free,
// creates the transfer, its request and its first event in the same
// transaction; otherwise it returns the existing record, Created false.
func (s *Store) CreateTransfer(ctx context.Context, nt store.NewTransfer) (store.CreateResult, error) {
	nt, err := storeutil.PrepareNew(nt)
	if err != nil {
		return store.CreateResult{}, fmt.Errorf("sqlite: create transfer: %w", err)
	}
	tr, ev := nt.Transfer, nt.Event
	req, err := json.Marshal(nt.Request)
	if err != nil {
		return store.CreateResult{}, fmt.Errorf("sqlite: create transfer: request: %w", err)
	}
	parts, err := storeutil.MarshalParts(tr.Identity, tr.Consent, tr.Export, tr.Error)
	if err != nil {
		return store.CreateResult{}, fmt.Errorf("sqlite: create transfer: %w", err)
	}
	detail, err := storeutil.MarshalDetail(ev.Detail)
	if err != nil {
		return store.CreateResult{}, fmt.Errorf("sqlite: create transfer: event detail: %w", err)
	}
	changes, err := storeutil.EncodeChanges(nt.Changes)
	if err != nil {
		return store.CreateResult{}, fmt.Errorf("sqlite: create transfer: %w", err)
	}
	var res store.CreateResult
	err = s.write(ctx, "create transfer", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys
			(client_id, idempotency_key, fingerprint, transfer_id, status, created_at)
			VALUES (?, ?, ?, ?, 'pending', ?)
			ON CONFLICT (client_id, idempotency_key) DO NOTHING`,
			nt.ClientID, nt.IdempotencyKey, nt.Fingerprint, tr.ID, fmtTime(tr.CreatedAt))
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			res.Record, err = getIdem(ctx, tx, nt.ClientID, nt.IdempotencyKey)
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO transfers
			(id, client_id, partner_id, direction, correlation_id, state, created_at, updated_at, identity, consent, export, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			tr.ID, tr.ClientID, tr.PartnerID, string(tr.Direction.OrExport()), tr.CorrelationID, string(tr.State), fmtTime(tr.CreatedAt), fmtTime(tr.UpdatedAt),
			text(parts.Identity), text(parts.Consent), text(parts.Export), text(parts.Error)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO transfer_requests (transfer_id, request) VALUES (?, ?)", tr.ID, string(req)); err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, tr.ID, ev, detail); err != nil {
			return err
		}
		if _, err := applyEncoded(ctx, tx, tr.ID, ev.Seq, changes); err != nil {
			return err
		}
		res = store.CreateResult{Created: true, Record: store.IdempotencyRecord{
			ClientID: nt.ClientID, Key: nt.IdempotencyKey, Fingerprint: nt.Fingerprint, TransferID: tr.ID,
			Status: store.IdempotencyPending, CreatedAt: tr.CreatedAt,
		}}
		return nil
	})
	return res, err
}

// insertEvent appends ev with its Seq, unless its key is already recorded
// (sql.ErrNoRows then says it was not), and appends it to the audit log.
func insertEvent(ctx context.Context, tx *sql.Tx, transferID string, ev transfer.Event, detail []byte) error {
	r, err := tx.ExecContext(ctx, `INSERT INTO timeline_events
		(transfer_id, seq, event_key, occurred_at, state, actor, event_type, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (transfer_id, event_key) DO NOTHING`,
		transferID, ev.Seq, ev.Key, fmtTime(ev.At), string(ev.State), ev.Actor, ev.Type, text(detail))
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return sql.ErrNoRows
	}
	id, err := r.LastInsertId()
	if err != nil {
		return err
	}
	return appendAudit(ctx, tx, id, transferID, ev)
}

// CompleteIdempotency stores the response of a pending record; the first
// response stored wins and is returned to every caller.
func (s *Store) CompleteIdempotency(ctx context.Context, clientID, key string, status int, body []byte) (store.IdempotencyRecord, error) {
	if body == nil {
		body = []byte{}
	}
	var rec store.IdempotencyRecord
	err := s.write(ctx, "complete idempotency", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE idempotency_keys
			SET status = 'complete', response_status = ?, response_body = ?
			WHERE client_id = ? AND idempotency_key = ? AND status = 'pending'`,
			status, body, clientID, key); err != nil {
			return err
		}
		var err error
		rec, err = getIdem(ctx, tx, clientID, key)
		return err
	})
	return rec, err
}

// GetIdempotency returns the record of (clientID, key), or
// store.ErrNotFound.
func (s *Store) GetIdempotency(ctx context.Context, clientID, key string) (store.IdempotencyRecord, error) {
	rec, err := getIdem(ctx, s.r, clientID, key)
	return rec, wrap("get idempotency", err)
}

// PendingIdempotency returns pending records created before olderThan,
// oldest first. A limit of zero or less means 100.
func (s *Store) PendingIdempotency(ctx context.Context, olderThan time.Time, limit int) ([]store.IdempotencyRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, "SELECT "+idemColumns+` FROM idempotency_keys
		WHERE status = 'pending' AND created_at < ?
		ORDER BY created_at, client_id, idempotency_key LIMIT ?`, fmtTime(olderThan), limit)
	if err != nil {
		return nil, wrap("pending idempotency", err)
	}
	defer rows.Close()
	var out []store.IdempotencyRecord
	for rows.Next() {
		rec, err := scanIdem(rows)
		if err != nil {
			return nil, wrap("pending idempotency", err)
		}
		out = append(out, rec)
	}
	return out, wrap("pending idempotency", rows.Err())
}

const transferColumns = "id, client_id, partner_id, direction, correlation_id, state, created_at, updated_at, identity, consent, export, error"

func scanTransfer(r rowScanner) (transfer.Transfer, error) {
	var tr transfer.Transfer
	var created, updated string
	var p storeutil.Parts
	err := r.Scan(&tr.ID, &tr.ClientID, &tr.PartnerID, &tr.Direction, &tr.CorrelationID, &tr.State, &created, &updated,
		&p.Identity, &p.Consent, &p.Export, &p.Error)
	if err != nil {
		return tr, err
	}
	if tr.CreatedAt, err = parseTime(created); err != nil {
		return tr, err
	}
	if tr.UpdatedAt, err = parseTime(updated); err != nil {
		return tr, err
	}
	if tr.Identity, err = storeutil.UnmarshalPart[transfer.IdentityOutcome](p.Identity); err != nil {
		return tr, fmt.Errorf("identity: %w", err)
	}
	if tr.Consent, err = storeutil.UnmarshalPart[transfer.ConsentOutcome](p.Consent); err != nil {
		return tr, fmt.Errorf("consent: %w", err)
	}
	if tr.Export, err = storeutil.UnmarshalPart[transfer.ExportInfo](p.Export); err != nil {
		return tr, fmt.Errorf("export: %w", err)
	}
	if tr.Error, err = storeutil.UnmarshalPart[transfer.ErrorInfo](p.Error); err != nil {
		return tr, fmt.Errorf("error: %w", err)
	}
	return tr, nil
}

// GetTransfer returns the transfer projection, or store.ErrNotFound.
func (s *Store) GetTransfer(ctx context.Context, id string) (transfer.Transfer, error) {
	tr, err := scanTransfer(s.r.QueryRowContext(ctx, "SELECT "+transferColumns+" FROM transfers WHERE id = ?", id))
	return tr, wrap("get transfer", err)
}

// GetTransferRequest returns what the client sent, or store.ErrNotFound.
func (s *Store) GetTransferRequest(ctx context.Context, id string) (transfer.Request, error) {
	var raw []byte
	var req transfer.Request
	if err := s.r.QueryRowContext(ctx, "SELECT request FROM transfer_requests WHERE transfer_id = ?", id).Scan(&raw); err != nil {
		return req, wrap("get transfer request", err)
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		// json's errors quote no input values, only types and offsets.
		return req, fmt.Errorf("sqlite: get transfer request: %w", err)
	}
	return req, nil
}

// ListTransfers returns transfers newest first (created_at, then id, both
// descending), filtered by state and partner, one page at a time.
func (s *Store) ListTransfers(ctx context.Context, f store.ListFilter) (store.TransferPage, error) {
	limit := storeutil.Limit(f)
	var where []string
	var args []any
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.PartnerID != "" {
		where, args = append(where, "partner_id = ?"), append(args, f.PartnerID)
	}
	if f.Direction != "" {
		where, args = append(where, "direction = ?"), append(args, string(f.Direction))
	}
	if f.Cursor != "" {
		c, err := storeutil.DecodeCursor(f.Cursor)
		if err != nil {
			return store.TransferPage{}, err
		}
		where, args = append(where, "(created_at, id) < (?, ?)"), append(args, fmtTime(c.CreatedAt), c.ID)
	}
	q := "SELECT " + transferColumns + " FROM transfers"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// One row more than the page tells whether another page follows.
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return store.TransferPage{}, wrap("list transfers", err)
	}
	defer rows.Close()
	var page store.TransferPage
	for rows.Next() {
		tr, err := scanTransfer(rows)
		if err != nil {
			return store.TransferPage{}, wrap("list transfers", err)
		}
		page.Items = append(page.Items, tr)
	}
	if err := rows.Err(); err != nil {
		return store.TransferPage{}, wrap("list transfers", err)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.NextCursor = storeutil.EncodeCursor(storeutil.Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	return page, nil
}

// ApplyChange appends the change's event with the next seq and updates
// the non-nil parts of the projection, in one transaction; a key already
// recorded changes nothing and returns false.
func (s *Store) ApplyChange(ctx context.Context, transferID string, ch store.Change) (bool, error) {
	applied, err := s.applyChanges(ctx, "apply change", transferID, []store.Change{ch})
	if err != nil {
		return false, err
	}
	return applied[0], nil
}

// ApplyChanges applies chs in order, as ApplyChange does, in one
// transaction.
func (s *Store) ApplyChanges(ctx context.Context, transferID string, chs []store.Change) ([]bool, error) {
	return s.applyChanges(ctx, "apply changes", transferID, chs)
}

func (s *Store) applyChanges(ctx context.Context, op, transferID string, chs []store.Change) ([]bool, error) {
	if len(chs) == 0 {
		return []bool{}, nil
	}
	encoded, err := storeutil.EncodeChanges(chs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var applied []bool
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		// The write lock is held from BEGIN IMMEDIATE: max(seq)+1 is ours.
		var last int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT max(seq) FROM timeline_events WHERE transfer_id = t.id), 0)
			FROM transfers t WHERE t.id = ?`, transferID).Scan(&last); err != nil {
			return err // no row: store.ErrNotFound
		}
		var err error
		applied, err = applyEncoded(ctx, tx, transferID, last, encoded)
		return err
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// applyEncoded applies changes in tx to a transfer whose last event has
// seq last: each new event takes the next seq, is appended to the audit
// log, and updates the projection and writes the change's link, review
// and grant; an event whose key is recorded is skipped.
func applyEncoded(ctx context.Context, tx *sql.Tx, transferID string, last int64, changes []storeutil.EncodedChange) ([]bool, error) {
	applied := make([]bool, len(changes))
	for i, e := range changes {
		ch := e.Change
		ev := ch.Event
		ev.Seq = last + 1
		if err := insertEvent(ctx, tx, transferID, ev, e.Detail); err == sql.ErrNoRows {
			continue // recorded before: a retry
		} else if err != nil {
			return nil, err
		}
		last = ev.Seq
		if _, err := tx.ExecContext(ctx, `UPDATE transfers SET
			updated_at = ?,
			state = coalesce(?, state),
			identity = coalesce(?, identity),
			consent = coalesce(?, consent),
			export = coalesce(?, export),
			error = coalesce(?, error)
			WHERE id = ?`,
			fmtTime(ev.At), e.State, text(e.Parts.Identity), text(e.Parts.Consent), text(e.Parts.Export), text(e.Parts.Error), transferID); err != nil {
			return nil, err
		}
		if ch.Link != nil {
			if _, err := appendLink(ctx, tx, *ch.Link); err != nil {
				return nil, err
			}
		}
		if ch.Review != nil {
			if err := appendReview(ctx, tx, *ch.Review); err != nil {
				return nil, err
			}
		}
		if ch.Grant != nil {
			if _, err := appendGrant(ctx, tx, *ch.Grant); err != nil {
				return nil, err
			}
		}
		applied[i] = true
	}
	return applied, nil
}

// RecordAccess appends access events without touching any projection,
// in one transaction; keys already recorded are skipped.
func (s *Store) RecordAccess(ctx context.Context, as []store.Access) (int, error) {
	as, err := storeutil.PrepareAccess(as)
	if err != nil || len(as) == 0 {
		return 0, err
	}
	details := make([][]byte, len(as))
	for i, a := range as {
		if details[i], err = storeutil.MarshalDetail(a.Event.Detail); err != nil {
			return 0, fmt.Errorf("sqlite: record access: event detail: %w", err)
		}
	}
	n := 0
	err = s.write(ctx, "record access", func(tx *sql.Tx) error {
		n = 0
		// The write lock is held from BEGIN IMMEDIATE: max(seq)+1 is ours.
		last := map[string]int64{}
		for _, id := range storeutil.AccessTransfers(as) {
			var seq int64
			if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT max(seq) FROM timeline_events WHERE transfer_id = t.id), 0)
				FROM transfers t WHERE t.id = ?`, id).Scan(&seq); err != nil {
				return err // no row: store.ErrNotFound
			}
			last[id] = seq
		}
		for i, a := range as {
			ev := a.Event
			ev.Seq = last[a.TransferID] + 1
			if err := insertEvent(ctx, tx, a.TransferID, ev, details[i]); err == sql.ErrNoRows {
				continue // recorded before
			} else if err != nil {
				return err
			}
			last[a.TransferID] = ev.Seq
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Timeline returns the transfer's events in seq order, or
// store.ErrNotFound.
func (s *Store) Timeline(ctx context.Context, transferID string) ([]transfer.Event, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, event_key, occurred_at, state, actor, event_type, detail
		FROM timeline_events WHERE transfer_id = ? ORDER BY seq`, transferID)
	if err != nil {
		return nil, wrap("timeline", err)
	}
	defer rows.Close()
	var out []transfer.Event
	for rows.Next() {
		var ev transfer.Event
		var at string
		var detail []byte
		if err := rows.Scan(&ev.Seq, &ev.Key, &at, &ev.State, &ev.Actor, &ev.Type, &detail); err != nil {
			return nil, wrap("timeline", err)
		}
		if ev.At, err = parseTime(at); err != nil {
			return nil, wrap("timeline", err)
		}
		if ev.Detail, err = storeutil.UnmarshalDetail(detail); err != nil {
			return nil, wrap("timeline", err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("timeline", err)
	}
	if len(out) == 0 {
		// Every transfer has its first event, so none means no transfer.
		return nil, store.ErrNotFound
	}
	return out, nil
}
