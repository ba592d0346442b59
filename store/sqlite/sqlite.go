// Package sqlite is the embedded store.Store: one SQLite file on
// modernc.org/sqlite (pure Go, no cgo), migrated when it is opened, under
// the store of store/internal/sqlstore in its SQLite dialect. It is what
// `p2p dev` and single-node installs run on.
//
// Writes go through one connection, so they serialize inside the process
// instead of failing with SQLITE_BUSY; each write transaction begins
// IMMEDIATE with a busy timeout, so a second process on the same file
// (`p2p members import` beside `p2p dev`) waits its turn. Reads use their
// own small pool, which WAL lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/sqlstore"
)

// Memory is the path that opens a private in-memory database, for tests.
// It lives as long as the Store and is not shared with other Stores.
const Memory = ":memory:"

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeoutMS is how long a write waits for another process's write
// transaction before it fails.
const busyTimeoutMS = 10000

// readConns bounds the read pool; the machine this runs on is small.
const readConns = 4

// Store is store.Store on SQLite.
type Store struct {
	*sqlstore.Store
	w *sql.DB // the one write connection
	r *sql.DB // readers; the same pool as w for an in-memory database
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it if needed) the database file at path and brings
// its schema up to date. path may be Memory.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	name := "file::memory:?"
	if path != Memory {
		// The file holds PHI: create it readable by its owner only (SQLite
		// gives its -wal and -shm files the same mode).
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("sqlite: create %s: %w", path, err)
		}
		_ = f.Close() // created empty: nothing written to lose
		name = "file:" + escapePath(path) + "?"
	}
	w, err := sql.Open("sqlite", name+params(true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// One connection, never closed (database/sql's default): every
	// connection to :memory: is a database of its own, so it also serves
	// the reads.
	w.SetMaxOpenConns(1)
	s := &Store{w: w, r: w}
	if err = sqlstore.Migrate(ctx, goose.DialectSQLite3, w, migrations); err != nil {
		err = fmt.Errorf("sqlite: migrate: %w", err)
	} else if path != Memory {
		// Opened after the migration so readers see the schema, and after
		// the writer switched the file to WAL (a persistent setting).
		if s.r, err = sql.Open("sqlite", name+params(false)); err != nil {
			_ = w.Close() // the open's error is the one to report
			return nil, fmt.Errorf("sqlite: open: %w", err)
		}
		s.r.SetMaxOpenConns(readConns)
		s.r.SetMaxIdleConns(readConns)
	}
	s.Store = sqlstore.New(sqlstore.SQLite, s.w, s.r)
	if err == nil {
		err = s.Ping(ctx)
	}
	if err != nil {
		_ = s.Close() // the migration's or ping's error is the one to report
		return nil, err
	}
	return s, nil
}

// Migrate brings the schema of the database file at path up to date. Open
// does the same; Migrate is for `p2p migrate`, which only migrates.
func Migrate(ctx context.Context, path string) error {
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	return s.Close()
}

// params are the DSN parameters of the write or the read connections.
// modernc applies busy_timeout first, so the pragmas after it wait too.
func params(write bool) string {
	p := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMS),
		"_pragma=foreign_keys(1)",
	}
	if write {
		p = append(p,
			"_pragma=journal_mode(wal)",
			// NORMAL in WAL mode survives a killed process; only a power
			// cut can lose the last transactions.
			"_pragma=synchronous(normal)",
			// IMMEDIATE takes the write lock at BEGIN, so a transaction
			// never has to upgrade a read lock, which cannot wait.
			"_txlock=immediate",
		)
	} else {
		// Long reads (the audit export) map the file instead of copying
		// its pages through a small per-connection cache.
		p = append(p, "_pragma=query_only(1)", "_pragma=mmap_size(268435456)")
	}
	return strings.Join(p, "&")
}

// escapePath makes a file path safe inside a file: URI, whose ? and #
// would otherwise end the path.
func escapePath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}
