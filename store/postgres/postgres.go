// Package postgres is the production store.Store, on PostgreSQL through
// pgx (pgxpool, through its database/sql adapter): the store of
// store/internal/sqlstore in its PostgreSQL dialect. Open connects;
// Migrate, run once per deploy by `p2p migrate`, brings the schema up to
// date from the embedded migrations.
//
// The schema is the first one on the connection's search_path, so one
// database can hold several stores (tests give each its own schema, with
// options=-csearch_path=NAME in the URL).
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is store.Store on PostgreSQL.
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (postgres://…) and checks that it
// answers. It does not migrate: see Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err) // pgx redacts the password
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	// The pool keeps its connections; database/sql borrows one per query
	// or transaction and gives it back.
	db := stdlib.OpenDBFromPool(pool)
	s := &Store{Store: sqlstore.New(sqlstore.Postgres, db, db), pool: pool}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close() // the ping's error is the one to report
		return nil, err
	}
	return s, nil
}

// Close releases the store's connections.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	return err
}

// Migrate brings the schema at url up to date. It is idempotent, and safe
// to run from several processes at once: they take turns on an advisory
// lock named after the schema.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer func() { _ = db.Close() }() // a migration's outcome is its own error
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if !schema.Valid {
		return errors.New("postgres: migrate: no schema on the search_path exists")
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID(schema.String)), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if err := sqlstore.Migrate(ctx, goose.DialectPostgres, db, migrations, goose.WithSessionLocker(locker)); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// lockID is the advisory lock of migrations into schema: stores in other
// schemas of the database migrate without waiting for this one.
func lockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("p2p/store/postgres:" + schema))
	return int64(h.Sum64())
}
