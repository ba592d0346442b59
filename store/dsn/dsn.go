// Package dsn opens the store a P2P_DATABASE_URL names: postgres:// or
// postgresql:// is PostgreSQL (store/postgres), anything else is the path
// of a SQLite file (store/sqlite), with an optional sqlite: prefix. It is
// what `p2p migrate`, `p2p api` and `p2p worker` call.
package dsn

import (
	"context"
	"errors"
	"strings"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/postgres"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// Kinds of database a DSN can name.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// Parse returns the kind of database dsn names and what to open it with:
// the URL itself for Postgres, the file path for SQLite.
func Parse(dsn string) (kind, target string, err error) {
	dsn = strings.TrimSpace(dsn)
	lower := strings.ToLower(dsn)
	switch {
	case dsn == "":
		return "", "", errors.New("empty database URL")
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return Postgres, dsn, nil
	case strings.HasPrefix(lower, "sqlite://"):
		// sqlite:///var/p2p.db is /var/p2p.db; sqlite://p2p.db is p2p.db.
		target = dsn[len("sqlite://"):]
	case strings.HasPrefix(lower, "sqlite:"):
		target = dsn[len("sqlite:"):]
	default:
		target = dsn
	}
	if target == "" {
		return "", "", errors.New("empty SQLite path")
	}
	return SQLite, target, nil
}

// Open opens the store dsn names. A SQLite store is migrated as it opens
// (it is the embedded one); a Postgres store is not: run Migrate first.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	kind, target, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	if kind == Postgres {
		return postgres.Open(ctx, target)
	}
	return sqlite.Open(ctx, target)
}

// Migrate brings the schema of the store dsn names up to date. It is
// idempotent.
func Migrate(ctx context.Context, dsn string) error {
	kind, target, err := Parse(dsn)
	if err != nil {
		return err
	}
	if kind == Postgres {
		return postgres.Migrate(ctx, target)
	}
	return sqlite.Migrate(ctx, target)
}
