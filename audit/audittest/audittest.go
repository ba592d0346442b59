// Package audittest opens stores for tamper tests: a store, its
// --database-url, and raw SQL access past the append-only triggers, as an
// attacker with access to the database would have.
package audittest

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/postgres"
	"github.com/p2p-payer/p2p/store/postgres/pgtest"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// DB is a store to tamper with.
type DB struct {
	Store store.Store
	URL   string            // its database URL (a file path for SQLite)
	Exec  func(stmt string) // runs stmt past every trigger; fails t on error
}

// OpenSQLite opens a fresh SQLite store. Exec drops the append-only
// triggers before each statement.
func OpenSQLite(t *testing.T) DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p2p.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, st.Close)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, db.Close)
	db.SetMaxOpenConns(1)
	return DB{Store: st, URL: path, Exec: func(stmt string) {
		t.Helper()
		rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'trigger'")
		if err != nil {
			t.Fatal(err)
		}
		var triggers []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			triggers = append(triggers, n)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		for _, tr := range triggers {
			if _, err := db.Exec("DROP TRIGGER IF EXISTS " + tr); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}}
}

// OpenPostgres opens a fresh PostgreSQL store in a schema of its own (see
// pgtest). Exec runs in replica mode, which fires no triggers: neither
// ours nor the foreign keys'.
func OpenPostgres(t *testing.T) DB {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.Schema(t)
	if err := postgres.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, st.Close)
	raw, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, func() error { return raw.Close(context.Background()) })
	if _, err := raw.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		t.Fatal(err)
	}
	return DB{Store: st, URL: dbURL, Exec: func(stmt string) {
		t.Helper()
		if _, err := raw.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}}
}

// closeAtEnd closes what a test opened when it ends, and fails it if that
// fails.
func closeAtEnd(t *testing.T, close func() error) {
	t.Cleanup(func() {
		if err := close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

// Blob is h as a SQL literal of bytes in db's dialect.
func (db DB) Blob(h tlog.Hash) string {
	if strings.HasPrefix(db.URL, "postgres") {
		return "decode('" + hex.EncodeToString(h[:]) + "', 'hex')"
	}
	return "X'" + hex.EncodeToString(h[:]) + "'"
}

// RebuildTree recomputes every leaf and stored hash from the events as
// they now are and writes them over the stored ones, as an attacker who
// knows the scheme would: afterwards every stored hash agrees with the
// events, and only a checkpoint the attacker could not touch tells.
func RebuildTree(t *testing.T, db DB) {
	t.Helper()
	var all []tlog.Hash // by stored hash index
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = all[x]
		}
		return out, nil
	})
	var evs []store.AuditEvent
	if err := db.Store.AuditEvents(context.Background(), store.AuditFilter{}, func(ae store.AuditEvent) error {
		evs = append(evs, ae)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, ae := range evs {
		data, err := audit.LeafData(ae)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := tlog.StoredHashes(ae.Position, data, reader)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, hs...)
		db.Exec(fmt.Sprintf("UPDATE audit_log SET leaf_hash = %s WHERE position = %d", db.Blob(hs[0]), ae.Position))
	}
	for idx, h := range all {
		db.Exec(fmt.Sprintf("UPDATE audit_hashes SET hash = %s WHERE idx = %d", db.Blob(h), idx))
	}
}
