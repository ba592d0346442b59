package dsn

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store/postgres"
	"github.com/p2p-payer/p2p/store/postgres/pgtest"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/store/storetest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		dsn, kind, target string
		wantErr           bool
	}{
		{"postgres://u@db:5432/p2p?sslmode=disable", Postgres, "postgres://u@db:5432/p2p?sslmode=disable", false},
		{"postgresql://u@db/p2p", Postgres, "postgresql://u@db/p2p", false},
		{"POSTGRES://u@db/p2p", Postgres, "POSTGRES://u@db/p2p", false},
		{"./.p2p/p2p.db", SQLite, "./.p2p/p2p.db", false},
		{"/var/lib/p2p.db", SQLite, "/var/lib/p2p.db", false},
		{"sqlite:p2p.db", SQLite, "p2p.db", false},
		{"sqlite:///var/lib/p2p.db", SQLite, "/var/lib/p2p.db", false},
		{"sqlite://p2p.db", SQLite, "p2p.db", false},
		{"sqlite::memory:", SQLite, ":memory:", false},
		{"  p2p.db ", SQLite, "p2p.db", false},
		{"", "", "", true},
		{"sqlite:", "", "", true},
	}
	for _, tc := range tests {
		kind, target, err := Parse(tc.dsn)
		if (err != nil) != tc.wantErr || kind != tc.kind || target != tc.target {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q, error %v", tc.dsn, kind, target, err, tc.kind, tc.target, tc.wantErr)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p2p.db")
	if err := Migrate(ctx, "sqlite:"+path); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	storetest.CloseAtEnd(t, s)
	if _, ok := s.(*sqlite.Store); !ok {
		t.Fatalf("Open(%q) is a %T, want *sqlite.Store", path, s)
	}
	if err := s.UpsertMembers(ctx, []member.Record{{ID: "m1", Family: "F", BirthDate: "1990-01-01"}}); err != nil {
		t.Fatal(err)
	}
}

// TestOpenPostgres migrates and opens a schema of its own in the database
// of P2P_TEST_DATABASE_URL, when it is set.
func TestOpenPostgres(t *testing.T) {
	dbURL := pgtest.Schema(t)
	ctx := context.Background()

	if err := Migrate(ctx, dbURL); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	storetest.CloseAtEnd(t, s)
	if _, ok := s.(*postgres.Store); !ok {
		t.Fatalf("Open is a %T, want *postgres.Store", s)
	}
	if err := s.UpsertMembers(ctx, []member.Record{{ID: "m1", Family: "F", BirthDate: "1990-01-01"}}); err != nil {
		t.Fatal(err)
	}
}
