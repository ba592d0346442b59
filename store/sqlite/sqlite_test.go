package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/storetest"
	"github.com/p2p-payer/p2p/transfer"
)

func openFile(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	storetest.CloseAtEnd(t, s)
	return s
}

func TestContractFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openFile(t, filepath.Join(t.TempDir(), "p2p.db"))
	})
}

func TestContractMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openFile(t, Memory) })
}

// TestPragmas checks the settings are really in effect, on a path that
// needs escaping in a file: URI.
func TestPragmas(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "odd?name#with%chars.db"))
	ctx := context.Background()
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "1"}, // NORMAL
		{"foreign_keys", "1"},
		{"busy_timeout", fmt.Sprint(busyTimeoutMS)},
	}
	for _, tc := range tests {
		var got string
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("writer PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
	var mode string
	if err := s.r.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("reader journal_mode = %q, %v; want wal", mode, err)
	}
	if _, err := s.r.ExecContext(ctx, "DELETE FROM members"); err == nil {
		t.Error("the read pool accepted a write")
	}
}

// TestReopen checks that migrating twice is harmless and data survives.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p2p.db")
	if err := Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	m := member.Record{ID: "m1", Family: "Test", BirthDate: "1990-01-01"}
	if err := s.UpsertMembers(ctx, []member.Record{m}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, path); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	s = openFile(t, path)
	if got, err := s.GetMember(ctx, "m1"); err != nil || got != m {
		t.Errorf("after reopen GetMember = %+v, %v", got, err)
	}
}

// TestTwoStoresOneFile stands in for two processes on one file (`p2p
// members import` beside `p2p dev`): their writes wait for each other
// instead of failing with SQLITE_BUSY.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2p.db")
	stores := []*Store{openFile(t, path), openFile(t, path)}
	ctx := context.Background()
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[i%2]
			id := fmt.Sprintf("t%02d", i)
			_, err := s.CreateTransfer(ctx, store.NewTransfer{
				ClientID: "c", IdempotencyKey: "key-" + id, Fingerprint: "fp",
				Transfer: transfer.Transfer{ID: id, PartnerID: "p", State: transfer.StateInitiated, CreatedAt: at},
			})
			if err == nil {
				_, err = s.ApplyChange(ctx, id, store.Change{
					Event: transfer.Event{State: transfer.StateIdentityPending}, State: transfer.StateIdentityPending,
				})
			}
			if err == nil {
				err = s.UpsertMembers(ctx, []member.Record{{ID: "m" + id, Family: "F", BirthDate: "1990-01-01"}})
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	page, err := stores[0].ListTransfers(ctx, store.ListFilter{State: transfer.StateIdentityPending, Limit: 200})
	if err != nil || len(page.Items) != 2*n {
		t.Errorf("ListTransfers = %d items, %v; want %d", len(page.Items), err, 2*n)
	}
}

func TestDatabaseFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2p.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	storetest.CloseAtEnd(t, s)
	for _, f := range []string{path, path + "-wal"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: the store holds PHI, want owner-only", f, fi.Mode().Perm())
		}
	}
}

// TestIdentityGraphAppendOnly: the identity graph's tables refuse updates
// and deletes, whatever code runs against them.
func TestIdentityGraphAppendOnly(t *testing.T) {
	s := openFile(t, Memory)
	storetest.CheckIdentityGraphAppendOnly(t, s, func(ctx context.Context, q string) error {
		_, err := s.w.ExecContext(ctx, q)
		return err
	}, "")
}

// TestSeedAudit checks the benchmarks' bulk loader: what it writes is a
// valid log the store goes on appending to.
func TestSeedAudit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2p.db")
	s := openFile(t, path)
	if err := storetest.SeedAuditSQLite(context.Background(), path, 2020, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	storetest.CheckSeeded(t, s, 2020)
}
