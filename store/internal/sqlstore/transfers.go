package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func scanIdem(r scanner) (store.IdempotencyRecord, error) {
	var rec store.IdempotencyRecord
	err := r.Scan(&rec.ClientID, &rec.Key, &rec.Fingerprint, &rec.TransferID, &rec.Status,
		&rec.ResponseStatus, &rec.ResponseBody, timeCol{&rec.CreatedAt})
	if rec.Status == store.IdempotencyComplete && rec.ResponseBody == nil {
		rec.ResponseBody = []byte{} // an empty body replays as empty, not absent
	}
	return rec, err
}

// CreateTransfer implements store.Transfers. On PostgreSQL a concurrent
// claim of the same key waits on the unique index until the first
// transaction ends, then finds the key taken (or free again, if the first
// rolled back).
func (s *Store) CreateTransfer(ctx context.Context, nt store.NewTransfer) (store.CreateResult, error) {
	const op = "create transfer"
	e, err := s.d.encodeNew(nt)
	if err != nil {
		return store.CreateResult{}, s.wrap(op, err)
	}
	tr := e.Transfer
	var res store.CreateResult
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		rec, err := scanIdem(tx.QueryRowContext(ctx, s.sql("ClaimIdempotency"),
			e.ClientID, e.IdempotencyKey, e.Fingerprint, tr.ID, s.d.time(tr.CreatedAt)))
		if errors.Is(err, sql.ErrNoRows) {
			res.Record, err = scanIdem(tx.QueryRowContext(ctx, s.sql("GetIdempotency"), e.ClientID, e.IdempotencyKey))
			return err
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, s.sql("InsertTransfer"), e.transfer...)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, s.sql("InsertTransferRequest"), tr.ID, e.request)
		}
		if err == nil { // the new row is ours until commit: no lock to take
			_, err = s.applyEncoded(ctx, tx, map[string]int64{tr.ID: 0}, e.events)
		}
		if err != nil {
			return err
		}
		res = store.CreateResult{Created: true, Record: rec}
		return nil
	})
	return res, err
}

// insertEvent appends ev with its Seq unless its key is already recorded,
// appends it to the audit log, and reports whether it did. Callers call it
// after taking their other locks (see appendAudit).
func (s *Store) insertEvent(ctx context.Context, tx *sql.Tx, transferID string, ev transfer.Event, detail any) (bool, error) {
	var id int64
	var partnerID sql.NullString // NULL only if the transfer is not stored
	err := tx.QueryRowContext(ctx, s.sql("InsertEvent"), transferID, ev.Seq, ev.Key, s.d.time(ev.At),
		string(ev.State), ev.Actor, ev.Type, detail).Scan(&id, &partnerID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, s.appendAudit(ctx, tx, id, transferID, partnerID.String, ev)
}

// CompleteIdempotency implements store.Idempotency. On PostgreSQL a
// concurrent completion waits on the row lock, then finds the record no
// longer pending.
func (s *Store) CompleteIdempotency(ctx context.Context, clientID, key string, status int, body []byte) (store.IdempotencyRecord, error) {
	if body == nil {
		body = []byte{}
	}
	var rec store.IdempotencyRecord
	err := s.write(ctx, "complete idempotency", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.sql("CompleteIdempotency"), clientID, key, status, body)
		if err == nil {
			rec, err = scanIdem(tx.QueryRowContext(ctx, s.sql("GetIdempotency"), clientID, key))
		}
		return err
	})
	return rec, err
}

// GetIdempotency implements store.Idempotency.
func (s *Store) GetIdempotency(ctx context.Context, clientID, key string) (store.IdempotencyRecord, error) {
	rec, err := scanIdem(s.r.QueryRowContext(ctx, s.sql("GetIdempotency"), clientID, key))
	return rec, s.wrap("get idempotency", err)
}

// PendingIdempotency implements store.Idempotency, oldest first, after
// the record after when it is not nil. A limit of zero or less means 100.
func (s *Store) PendingIdempotency(ctx context.Context, olderThan time.Time, after *store.IdempotencyRecord, limit int) ([]store.IdempotencyRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	paged, at, client, key := 0, olderThan, "", ""
	if after != nil {
		paged, at, client, key = 1, after.CreatedAt, after.ClientID, after.Key
	}
	out, err := all(ctx, s.r, scanIdem, s.sql("PendingIdempotency"), s.d.time(olderThan), paged, s.d.time(at), client, key, limit)
	return out, s.wrap("pending idempotency", err)
}

func scanTransfer(r scanner) (transfer.Transfer, error) {
	var tr transfer.Transfer
	err := r.Scan(&tr.ID, &tr.ClientID, &tr.PartnerID, &tr.Direction, &tr.CorrelationID, &tr.State,
		timeCol{&tr.CreatedAt}, timeCol{&tr.UpdatedAt},
		jsonCol{&tr.Identity}, jsonCol{&tr.Consent}, jsonCol{&tr.Export}, jsonCol{&tr.Error})
	return tr, err
}

// GetTransfer implements store.Transfers.
func (s *Store) GetTransfer(ctx context.Context, id string) (transfer.Transfer, error) {
	tr, err := scanTransfer(s.r.QueryRowContext(ctx, s.sql("GetTransfer"), id))
	return tr, s.wrap("get transfer", err)
}

// GetTransferRequest implements store.Transfers.
func (s *Store) GetTransferRequest(ctx context.Context, id string) (transfer.Request, error) {
	var req transfer.Request
	err := s.r.QueryRowContext(ctx, s.sql("GetTransferRequest"), id).Scan(jsonCol{&req})
	return req, s.wrap("get transfer request", err)
}

// ListTransfers implements store.Transfers: newest first (created_at, then
// id, both descending), one page at a time.
func (s *Store) ListTransfers(ctx context.Context, f store.ListFilter) (store.TransferPage, error) {
	limit := 50 // f.Limit within 1..200; zero or less means 50
	if f.Limit > 0 {
		limit = min(f.Limit, 200)
	}
	fs := filters{args: []any{limit + 1}} // one row more tells whether another page follows
	fs.add(f.State != "", "state = ?", string(f.State))
	fs.add(f.PartnerID != "", "partner_id = ?", f.PartnerID)
	fs.add(f.ClientID != "", "client_id = ?", f.ClientID)
	fs.add(f.Direction != "", "direction = ?", string(f.Direction))
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return store.TransferPage{}, err
		}
		fs.add(true, "(created_at, id) < (?, ?)", s.d.time(at), id)
	}
	q, args := s.d.withFilters(s.sql("ListTransfers"), fs)
	items, err := all(ctx, s.r, scanTransfer, q, args...)
	if err != nil {
		return store.TransferPage{}, s.wrap("list transfers", err)
	}
	page := store.TransferPage{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		last := items[limit-1]
		page.NextCursor = encodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}

// ApplyChange implements store.Transfers.
func (s *Store) ApplyChange(ctx context.Context, transferID string, ch store.Change) (bool, error) {
	applied, err := s.applyChanges(ctx, "apply change", transferID, []store.Change{ch})
	return err == nil && applied[0], err
}

// ApplyChanges implements store.Transfers.
func (s *Store) ApplyChanges(ctx context.Context, transferID string, chs []store.Change) ([]bool, error) {
	return s.applyChanges(ctx, "apply changes", transferID, chs)
}

func (s *Store) applyChanges(ctx context.Context, op, transferID string, chs []store.Change) ([]bool, error) {
	if len(chs) == 0 {
		return []bool{}, nil
	}
	encoded, err := s.d.encodeChanges(transferID, chs)
	if err != nil {
		return nil, s.wrap(op, err)
	}
	return s.appendEvents(ctx, op, encoded)
}

// appendEvents applies events in one write transaction, after it has
// taken the dialect's lock on each of their transfers, in id order (the
// lock order of every writer), and read the seq of its last event.
func (s *Store) appendEvents(ctx context.Context, op string, events []encodedChange) ([]bool, error) {
	var applied []bool
	err := s.write(ctx, op, func(tx *sql.Tx) (err error) {
		last := map[string]int64{}
		for _, e := range events {
			last[e.transferID] = 0
		}
		for _, id := range slices.Sorted(maps.Keys(last)) {
			var one, seq int64
			err = tx.QueryRowContext(ctx, s.sql("LockTransfer"), id).Scan(&one) // no row: store.ErrNotFound
			if err == nil {
				err = tx.QueryRowContext(ctx, s.sql("LastSeq"), id).Scan(&seq)
			}
			if err != nil {
				return err
			}
			last[id] = seq
		}
		applied, err = s.applyEncoded(ctx, tx, last, events)
		return err
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// applyEncoded appends events in tx to transfers whose rows the caller
// has locked (or created) and whose last events have the seqs of last,
// which it advances: each new event takes the next seq of its transfer,
// is appended to the audit log, and updates the projection and writes the
// change's link, review and grant; an event whose key is recorded is
// skipped.
func (s *Store) applyEncoded(ctx context.Context, tx *sql.Tx, last map[string]int64, events []encodedChange) ([]bool, error) {
	applied := make([]bool, len(events))
	for i, e := range events {
		ev := e.Event
		ev.Seq = last[e.transferID] + 1
		ok, err := s.insertEvent(ctx, tx, e.transferID, ev, e.detail)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // recorded before: a retry
		}
		last[e.transferID] = ev.Seq
		if e.params != nil {
			_, err = tx.ExecContext(ctx, s.sql("UpdateTransfer"), append([]any{e.transferID}, e.params...)...)
		}
		if e.Link != nil && err == nil {
			_, err = s.appendLink(ctx, tx, *e.Link)
		}
		if e.Review != nil && err == nil {
			_, err = s.appendReview(ctx, tx, *e.Review)
		}
		if e.Grant != nil && err == nil {
			_, err = s.appendGrant(ctx, tx, *e.Grant)
		}
		if err != nil {
			return nil, err
		}
		applied[i] = true
	}
	return applied, nil
}

// RecordAccess implements store.Timelines.
func (s *Store) RecordAccess(ctx context.Context, as []store.Access) (int, error) {
	const op = "record access"
	encoded, err := s.d.encodeAccess(as)
	if err != nil || len(encoded) == 0 {
		return 0, s.wrap(op, err)
	}
	applied, err := s.appendEvents(ctx, op, encoded)
	n := 0
	for _, ok := range applied {
		if ok {
			n++
		}
	}
	return n, err
}

// scanEvent reads the columns of a timeline event after those of prefix.
func scanEvent(r scanner, prefix ...any) (transfer.Event, error) {
	var ev transfer.Event
	err := r.Scan(append(prefix, &ev.Seq, &ev.Key, timeCol{&ev.At}, &ev.State, &ev.Actor, &ev.Type, jsonCol{&ev.Detail})...)
	return ev, err
}

// Timeline implements store.Timelines.
func (s *Store) Timeline(ctx context.Context, transferID string) ([]transfer.Event, error) {
	out, err := all(ctx, s.r, func(r scanner) (transfer.Event, error) { return scanEvent(r) }, s.sql("Timeline"), transferID)
	if err == nil && len(out) == 0 {
		// Every transfer has its first event, so none means no transfer.
		err = store.ErrNotFound
	}
	return out, s.wrap("timeline", err)
}

// TimelinePage implements store.Timelines. The last seq is read first, so
// that a page bounded by it never shows an event recorded after it.
func (s *Store) TimelinePage(ctx context.Context, transferID string, r store.TimelineRange) (store.TimelinePage, error) {
	const op = "timeline page"
	limit := 100 // r.Limit within 1..1000; zero or less means 100
	if r.Limit > 0 {
		limit = min(r.Limit, 1000)
	}
	var page store.TimelinePage
	if err := s.r.QueryRowContext(ctx, s.sql("LastSeq"), transferID).Scan(&page.Last); err != nil {
		return page, s.wrap(op, err)
	}
	if page.Last == 0 {
		// Every transfer has its first event, so none means no transfer.
		return page, s.wrap(op, store.ErrNotFound)
	}
	until := page.Last
	if r.Until > 0 {
		until = min(r.Until, until)
	}
	var err error
	page.Entries, err = all(ctx, s.r, func(row scanner) (store.TimelineEntry, error) {
		var e store.TimelineEntry
		var pos sql.NullInt64
		var leaf []byte
		ev, err := scanEvent(row, &pos, &leaf)
		e.Event, e.Logged, e.Position = ev, pos.Valid, pos.Int64
		copy(e.LeafHash[:], leaf)
		return e, err
	}, s.sql("TimelinePage"), transferID, r.After, until, limit)
	return page, s.wrap(op, err)
}
