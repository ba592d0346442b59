package storetest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/internal/auditleaf"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// SeedEventsPerTransfer is how many events SeedAudit gives each transfer.
const SeedEventsPerTransfer = 10

// seedStates are the states of a seeded transfer's events, in order.
var seedStates = []transfer.State{
	transfer.StateInitiated, transfer.StateIdentityPending, transfer.StateConsentVerified,
	transfer.StatePayloadPrepared, transfer.StateSent, transfer.StateAcknowledged, transfer.StateComplete,
}

// seedEvent is one generated audit entry, with the stored hashes its
// append adds to the tree.
type seedEvent struct {
	transferID string
	ev         transfer.Event
	detail     []byte // JSON or nil
	hashes     []tlog.Hash
}

// seedLog generates n valid audit entries appended to an empty log, in
// position order, for fn; the transfers are "seed-%07d" with partners p1
// and p2 alternating. Every leaf and stored hash is what the stores would
// have written, so the seeded log verifies.
func seedLog(n int, t0 time.Time, fn func(pos int64, e seedEvent) error) error {
	// The tree's stored hashes by tlog.StoredHashIndex: 2n of them.
	all := make([]tlog.Hash, 0, 2*n+64)
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(all)) {
				return nil, fmt.Errorf("stored hash %d not yet written", x)
			}
			out[i] = all[x]
		}
		return out, nil
	})
	for pos := range int64(n) {
		tr, k := pos/SeedEventsPerTransfer, pos%SeedEventsPerTransfer
		e := seedEvent{transferID: fmt.Sprintf("seed-%07d", tr)}
		e.ev = transfer.Event{
			Seq: k + 1, At: t0.Add(time.Duration(pos) * time.Millisecond).UTC().Truncate(time.Microsecond),
			Actor: "workflow", Type: "state",
		}
		if int(k) < len(seedStates) {
			e.ev.State = seedStates[k]
			e.ev.Key = transfer.StateKey(e.ev.State)
		} else {
			e.ev.Type, e.ev.Key = "note", fmt.Sprintf("note:%d", k)
		}
		if k == 0 {
			e.ev.Actor = "client:seed"
		}
		if k == 1 {
			e.ev.Detail = map[string]any{"member_id": fmt.Sprintf("M%07d", tr), "score": 12.5, "rule": "fs"}
		}
		if e.ev.Detail != nil {
			var err error
			if e.detail, err = json.Marshal(e.ev.Detail); err != nil {
				return err
			}
		}
		// Version 1, as logs written before version 2 hold: they must
		// keep verifying.
		data, err := auditleaf.Leaf{Version: auditleaf.V1, TransferID: e.transferID, Event: e.ev}.Data()
		if err != nil {
			return err
		}
		if e.hashes, err = tlog.StoredHashes(pos, data, reader); err != nil {
			return err
		}
		all = append(all, e.hashes...)
		if err := fn(pos, e); err != nil {
			return err
		}
	}
	return nil
}

func partnerOf(pos int64) string {
	if (pos/SeedEventsPerTransfer)%2 == 0 {
		return "p1"
	}
	return "p2"
}

// SeedAuditSQLite bulk-loads n audit entries (n/10 transfers of 10 events)
// into the empty, migrated SQLite store at path, in one transaction, past
// the audit_head trigger (which only lets the head grow by one). It is
// for benchmarks: the seeded log verifies, but rows come far faster than
// through the Store.
func SeedAuditSQLite(ctx context.Context, path string, n int, t0 time.Time) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }() // the seed commits before returning
	db.SetMaxOpenConns(1)
	var trigger string
	if err := db.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_head_grows'").Scan(&trigger); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	prep := func(q string) *sql.Stmt {
		if err == nil {
			var s *sql.Stmt
			s, err = tx.PrepareContext(ctx, q)
			return s
		}
		return nil
	}
	insTransfer := prep(`INSERT INTO transfers (id, client_id, partner_id, correlation_id, state, created_at, updated_at)
		VALUES (?, 'seed', ?, ?, 'complete', ?, ?)`)
	insEvent := prep(`INSERT INTO timeline_events (id, transfer_id, seq, event_key, occurred_at, state, actor, event_type, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	insLog := prep("INSERT INTO audit_log (position, event_id, leaf_hash) VALUES (?, ?, ?)")
	insHash := prep("INSERT INTO audit_hashes (idx, hash) VALUES (?, ?)")
	if err != nil {
		return err
	}
	const layout = "2006-01-02T15:04:05.000000Z"
	err = seedLog(n, t0, func(pos int64, e seedEvent) error {
		at := e.ev.At.Format(layout)
		if e.ev.Seq == 1 {
			if _, err := insTransfer.ExecContext(ctx, e.transferID, partnerOf(pos), e.transferID, at, at); err != nil {
				return err
			}
		}
		var detail any
		if e.detail != nil {
			detail = string(e.detail)
		}
		if _, err := insEvent.ExecContext(ctx, pos+1, e.transferID, e.ev.Seq, e.ev.Key, at, string(e.ev.State), e.ev.Actor, e.ev.Type, detail); err != nil {
			return err
		}
		if _, err := insLog.ExecContext(ctx, pos, pos+1, e.hashes[0][:]); err != nil {
			return err
		}
		idx := tlog.StoredHashIndex(0, pos)
		for i, h := range e.hashes {
			if _, err := insHash.ExecContext(ctx, idx+int64(i), h[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	for _, q := range []string{"DROP TRIGGER audit_head_grows", fmt.Sprintf("UPDATE audit_head SET size = %d", n), trigger} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("seed: %s: %w", q, err)
		}
	}
	return tx.Commit()
}

// SeedAuditPostgres is SeedAuditSQLite for the empty, migrated Postgres
// schema at url: COPY into each table, in one transaction, with the
// audit_head trigger disabled for the jump of the head.
func SeedAuditPostgres(ctx context.Context, url string, n int, t0 time.Time) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }() // the seed commits before returning
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	var transfers, events, logs, hashes [][]any
	flush := func() error {
		for _, c := range []struct {
			table string
			cols  []string
			rows  *[][]any
		}{
			{"transfers", []string{"id", "client_id", "partner_id", "correlation_id", "state", "created_at", "updated_at"}, &transfers},
			{"timeline_events", []string{"id", "transfer_id", "seq", "event_key", "occurred_at", "state", "actor", "event_type", "detail"}, &events},
			{"audit_log", []string{"position", "event_id", "leaf_hash"}, &logs},
			{"audit_hashes", []string{"idx", "hash"}, &hashes},
		} {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(*c.rows)); err != nil {
				return fmt.Errorf("copy %s: %w", c.table, err)
			}
			*c.rows = (*c.rows)[:0]
		}
		return nil
	}
	err = seedLog(n, t0, func(pos int64, e seedEvent) error {
		if e.ev.Seq == 1 {
			transfers = append(transfers, []any{e.transferID, "seed", partnerOf(pos), e.transferID, "complete", e.ev.At, e.ev.At})
		}
		var detail any
		if e.detail != nil {
			detail = string(e.detail)
		}
		events = append(events, []any{pos + 1, e.transferID, e.ev.Seq, e.ev.Key, e.ev.At, string(e.ev.State), e.ev.Actor, e.ev.Type, detail})
		logs = append(logs, []any{pos, pos + 1, e.hashes[0][:]})
		idx := tlog.StoredHashIndex(0, pos)
		for i, h := range e.hashes {
			hashes = append(hashes, []any{idx + int64(i), h[:]})
		}
		// Transfers first, whole: a flush never splits one from its events.
		if (pos+1)%(SeedEventsPerTransfer*5000) == 0 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	for _, q := range []string{
		"SELECT setval(pg_get_serial_sequence('timeline_events', 'id'), " + fmt.Sprint(max(n, 1)) + ")",
		"ALTER TABLE audit_head DISABLE TRIGGER audit_head_grows",
		fmt.Sprintf("UPDATE audit_head SET size = %d", n),
		"ALTER TABLE audit_head ENABLE TRIGGER audit_head_grows",
		"ANALYZE transfers", "ANALYZE timeline_events", "ANALYZE audit_log", "ANALYZE audit_hashes",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("seed: %s: %w", q, err)
		}
	}
	return tx.Commit(ctx)
}

// CheckSeeded checks a store that SeedAudit* loaded with n entries: the
// log verifies (checkAuditLog recomputes every leaf and stored hash), its
// events read back, and the Store appends after them.
func CheckSeeded(t *testing.T, s store.Store, n int) {
	t.Helper()
	ctx := ctxT(t)
	checkAuditLog(t, s, n)
	got := 0
	if err := s.AuditEvents(ctx, store.AuditFilter{PartnerID: "p2"}, func(store.AuditEvent) error { got++; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := n / 2 / SeedEventsPerTransfer * SeedEventsPerTransfer; n%(2*SeedEventsPerTransfer) == 0 && got != want {
		t.Errorf("%d events of partner p2, want %d", got, want)
	}
	create(t, s, newTransfer("after-seed", "client-a", "k-after-seed", "p1", time.Now()))
	if _, err := s.ApplyChange(ctx, "seed-0000000", store.Change{Event: transfer.Event{At: time.Now(), Type: "note", Actor: "ops", Key: "after-seed"}}); err != nil {
		t.Fatal(err)
	}
	checkAuditLog(t, s, n+2)
}
