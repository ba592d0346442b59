package postgres

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/postgres/pgtest"
	"github.com/p2p-payer/p2p/store/storetest"
)

// envURL names the database the tests use; CI sets it. Unset, the tests
// skip; set, an unreachable server fails them.
const envURL = "P2P_TEST_DATABASE_URL"

// testSchema creates a schema of its own for t, dropped when t ends, and
// returns the URL of the test database with that schema as search_path.
func testSchema(t *testing.T) string {
	t.Helper()
	return pgtest.Schema(t)
}

// openTest migrates a new schema and opens a store on it.
func openTest(t *testing.T) *Store {
	t.Helper()
	u := testSchema(t)
	ctx := context.Background()
	if err := Migrate(ctx, u); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := Open(ctx, u)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	storetest.CloseAtEnd(t, s)
	return s
}

func TestContract(t *testing.T) {
	if os.Getenv(envURL) == "" {
		t.Skipf("%s is not set: skipping the Postgres store tests", envURL)
	}
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

// TestMigrateTwice runs Migrate again, then concurrently: the schema is
// up to date and nothing fails.
func TestMigrateTwice(t *testing.T) {
	u := testSchema(t)
	ctx := context.Background()
	if err := Migrate(ctx, u); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = Migrate(ctx, u) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
	}
	s, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	storetest.CloseAtEnd(t, s)
	if n, err := s.CountMembers(ctx); err != nil || n != 0 {
		t.Errorf("CountMembers = %d, %v", n, err)
	}
}

// TestTimelineAppendOnly checks the database itself refuses to rewrite
// history, whatever code runs against it.
func TestTimelineAppendOnly(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for _, q := range []string{
		"UPDATE timeline_events SET actor = 'x'",
		"DELETE FROM timeline_events",
		"TRUNCATE timeline_events",
	} {
		// An empty table fires statement triggers only; insert a row first
		// so the row triggers fire too.
		if _, err := s.pool.Exec(ctx, `INSERT INTO transfers (id, client_id, partner_id, correlation_id, state, created_at, updated_at)
			VALUES ('t1', 'c', 'p', '', 'initiated', now(), now()) ON CONFLICT DO NOTHING`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(ctx, `INSERT INTO timeline_events (transfer_id, seq, event_key, occurred_at, state, actor, event_type)
			VALUES ('t1', 1, 'k', now(), '', 'a', 't') ON CONFLICT DO NOTHING`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(ctx, q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	_, err := Open(context.Background(), "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if got := err.Error(); strings.Contains(got, "secret") {
		t.Errorf("error leaks the password: %s", got)
	}
}

// TestIdentityGraphAppendOnly: the identity graph's tables refuse updates
// and deletes, whatever code runs against them.
func TestIdentityGraphAppendOnly(t *testing.T) {
	s := openTest(t)
	storetest.CheckIdentityGraphAppendOnly(t, s, func(ctx context.Context, q string) error {
		_, err := s.pool.Exec(ctx, q)
		return err
	}, "TRUNCATE")
}

// TestSeedAudit checks the benchmarks' bulk loader: what it writes is a
// valid log the store goes on appending to.
func TestSeedAudit(t *testing.T) {
	if os.Getenv(envURL) == "" {
		t.Skipf("%s is not set: skipping the Postgres store tests", envURL)
	}
	u := testSchema(t)
	ctx := context.Background()
	if err := Migrate(ctx, u); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	storetest.CloseAtEnd(t, s)
	if err := storetest.SeedAuditPostgres(ctx, u, 2020, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	storetest.CheckSeeded(t, s, 2020)
}
