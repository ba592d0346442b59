// Package pgtest gives tests a PostgreSQL schema of their own in the
// database at $P2P_TEST_DATABASE_URL, so that tests (and helpers running
// them in parallel) never see each other's rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable that holds the test database's URL; .ci/run
// sets it.
const EnvURL = "P2P_TEST_DATABASE_URL"

// Schema creates a fresh schema, dropped when tb ends, and returns the
// database URL with that schema as its search path. It skips tb when
// EnvURL is unset and fails it when EnvURL is set but PostgreSQL does not
// answer: a configured database is never skipped silently.
func Schema(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv(EnvURL)
	if base == "" {
		tb.Skipf("%s is not set: skipping a PostgreSQL test", EnvURL)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("%s is set but PostgreSQL does not answer: %v", EnvURL, err)
	}
	defer func() { _ = conn.Close(ctx) }() // only read: nothing to lose
	b := make([]byte, 6)
	rand.Read(b)
	schema := "p2ptest_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer func() { _ = conn.Close(context.Background()) }() // the DROP's error is reported
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("%s: %v", EnvURL, err)
	}
	q := u.Query()
	q.Set("options", "-csearch_path="+schema)
	u.RawQuery = q.Encode()
	return u.String()
}
