// Package postgres is the production store.Store, on PostgreSQL through
// pgx (pgxpool). Open connects; Migrate, run once per deploy by `p2p
// migrate`, brings the schema up to date from the embedded migrations.
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
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/p2p-payer/p2p/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
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
	s := &Store{pool: pool}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
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
	defer db.Close()
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
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
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

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close releases the store's connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// dbtx is the pool or a transaction: queries run on either.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// write runs fn in one transaction.
func (s *Store) write(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, fn)
	return wrap(op, err)
}

// wrap names the operation in err, except for the contract's sentinel
// errors, which callers compare with errors.Is and print as they are.
// Postgres errors print their message, never the row values of their
// Detail field, so they carry no PHI.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrNotFound
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrWithdrawn), errors.Is(err, store.ErrBadCursor):
		return err
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}
