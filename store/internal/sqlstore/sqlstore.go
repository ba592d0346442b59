// Package sqlstore is the one implementation of store.Store, on
// database/sql, for PostgreSQL and SQLite alike. Its queries are written
// once, in queries/common.sql; a Dialect and a file of queries per engine
// carry what truly differs: placeholders, the statements that lock (a row
// lock or an advisory lock in PostgreSQL, nothing under SQLite's one
// writer), bulk insert (unnest or multi-row VALUES) and the encoding of
// times and JSON (timestamptz and jsonb, or fixed-width UTC TEXT and TEXT
// in STRICT tables).
//
// PostgreSQL is reached through pgx's database/sql adapter (pgx/v5/stdlib
// on a pgxpool): pgx still speaks the wire protocol, prepares and caches
// statements and encodes arrays, and the store has one code path, one
// transaction type and one "no rows" instead of two copies that drift
// apart. store/postgres and store/sqlite open the connections and migrate;
// New puts the store on them.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/p2p-payer/p2p/store"
)

//go:embed queries/*.sql
var queryFiles embed.FS

// Store is store.Store on a database/sql connection pool.
type Store struct {
	d       Dialect
	w, r    *sql.DB           // writes and reads; one pool but for a SQLite file
	queries map[string]string // by name, placeholders rewritten but in {{…}} queries
}

var _ store.Store = (*Store)(nil)

// commentRE matches a full-line SQL comment.
var commentRE = regexp.MustCompile(`(?m)^[ \t]*--.*\n?`)

// New is the store on w (writes) and r (reads), which may be one pool,
// with a migrated schema.
func New(d Dialect, w, r *sql.DB) *Store {
	s := &Store{d: d, w: w, r: r, queries: map[string]string{}}
	for _, file := range []string{"common", d.name} {
		b, err := queryFiles.ReadFile("queries/" + file + ".sql")
		if err != nil {
			panic(err) // embedded: a build without it is broken
		}
		// Named blocks; full-line comments go.
		for _, block := range strings.Split(string(b), "-- name:")[1:] {
			name, body, _ := strings.Cut(block, "\n")
			text := strings.TrimSpace(commentRE.ReplaceAllString(body, ""))
			if !strings.Contains(text, "{{") {
				text = d.placeholders(text)
			}
			s.queries[strings.TrimSpace(name)] = text
		}
	}
	return s
}

// Migrate brings the schema of db up to date from fsys's migrations
// directory, with goose's dialect and options.
func Migrate(ctx context.Context, dialect goose.Dialect, db *sql.DB, fsys fs.FS, opts ...goose.ProviderOption) error {
	sub, err := fs.Sub(fsys, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(dialect, db, sub, append(opts, goose.WithDisableGlobalRegistry(true))...)
	if err == nil {
		_, err = p.Up(ctx)
	}
	return err
}

// sql is the text of the query name; "" means the dialect has nothing to
// run.
func (s *Store) sql(name string) string {
	q, ok := s.queries[name]
	if !ok {
		panic("sqlstore: no query " + name) // a typo, which any test catches
	}
	return q
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	err := s.w.PingContext(ctx)
	if err == nil && s.r != s.w {
		err = s.r.PingContext(ctx)
	}
	return s.wrap("ping", err)
}

// Close releases the store's connections.
func (s *Store) Close() error {
	if s.r == s.w {
		return s.w.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// querier is the pool or a transaction: queries run on either.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// all runs query on q and reads every row with scan.
func all[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// write runs fn in one write transaction: on SQLite it holds the write
// lock from BEGIN IMMEDIATE (the DSN's _txlock); on PostgreSQL it is READ
// COMMITTED and fn takes the row locks it needs.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.wrap(op, err)
	}
	return s.wrap(op, tx.Commit())
}

// appendAlone prepares v, its times defaulting to now, and appends it
// with add in a write transaction of its own.
func appendAlone[T any](ctx context.Context, s *Store, op string, v T,
	prepare func(T, time.Time) (T, error), add func(context.Context, *sql.Tx, T) (T, error)) (T, error) {
	var zero T
	v, err := prepare(v, time.Now())
	if err != nil {
		return zero, s.wrap(op, err)
	}
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		v, err = add(ctx, tx, v)
		return err
	})
	if err != nil {
		return zero, err
	}
	return v, nil
}

// exec runs one write statement by itself and returns how many rows it
// changed.
func (s *Store) exec(ctx context.Context, op, name string, args ...any) (int, error) {
	r, err := s.w.ExecContext(ctx, s.sql(name), args...)
	if err != nil {
		return 0, s.wrap(op, err)
	}
	n, err := r.RowsAffected()
	return int(n), s.wrap(op, err)
}

// wrap names the operation in err, except for the contract's sentinel
// errors, which callers compare with errors.Is and print as they are.
// PostgreSQL errors print their message, never the row values of their
// Detail field, and SQLite's name the constraint, so they carry no PHI.
func (s *Store) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrWithdrawn), errors.Is(err, store.ErrBadCursor), errors.Is(err, store.ErrExists):
		return err
	}
	return fmt.Errorf("%s: %s: %w", s.d.name, op, err)
}
