package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/internal/auditleaf"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// auditEvents returns every entry f selects.
func auditEvents(t *testing.T, s store.Store, f store.AuditFilter) []store.AuditEvent {
	t.Helper()
	var out []store.AuditEvent
	if err := s.AuditEvents(ctxT(t), f, func(ae store.AuditEvent) error {
		out = append(out, ae)
		return nil
	}); err != nil {
		t.Fatalf("AuditEvents(%+v): %v", f, err)
	}
	return out
}

// checkAuditLog checks that the log holds want entries at positions
// 0..want-1, that each entry's leaf is the hash of its event, and that
// every stored hash of the tree (and so its root) equals the one
// recomputed from the events alone.
func checkAuditLog(t *testing.T, s store.Store, want int) []store.AuditEvent {
	t.Helper()
	ctx := ctxT(t)
	n, err := s.AuditSize(ctx)
	if err != nil {
		t.Fatalf("AuditSize: %v", err)
	}
	if n != int64(want) {
		t.Fatalf("AuditSize = %d, want %d", n, want)
	}
	evs := auditEvents(t, s, store.AuditFilter{})
	if len(evs) != want {
		t.Fatalf("AuditEvents gave %d entries, want %d", len(evs), want)
	}
	// The tree recomputed in memory from the events.
	var mem []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = mem[x]
		}
		return out, nil
	})
	for i, ae := range evs {
		if ae.Position != int64(i) {
			t.Fatalf("entry %d has position %d: not gapless", i, ae.Position)
		}
		data, err := auditleaf.Leaf{Version: ae.LeafVersion, TransferID: ae.TransferID, PartnerID: ae.PartnerID, Event: ae.Event}.Data()
		if err != nil {
			t.Fatal(err)
		}
		if tlog.RecordHash(data) != ae.LeafHash {
			t.Fatalf("entry %d: leaf hash is not the hash of its event", i)
		}
		hs, err := tlog.StoredHashes(int64(i), data, r)
		if err != nil {
			t.Fatal(err)
		}
		mem = append(mem, hs...)
	}
	// Every stored hash, in pages, against the recomputed tree.
	for from := int64(0); from < int64(len(mem)); from += 1024 {
		idx := make([]int64, min(1024, int64(len(mem))-from))
		for i := range idx {
			idx[i] = from + int64(i)
		}
		stored, err := s.ReadAuditHashes(ctx, idx)
		if err != nil {
			t.Fatalf("ReadAuditHashes: %v", err)
		}
		for i, h := range stored {
			if h != mem[idx[i]] {
				t.Fatalf("stored hash %d differs from the recomputed tree", idx[i])
			}
		}
	}
	// Out of order and repeated, as asked; one past the end is missing.
	if len(mem) > 1 {
		last := int64(len(mem) - 1)
		stored, err := s.ReadAuditHashes(ctx, []int64{last, 0, last})
		if err != nil || len(stored) != 3 || stored[0] != mem[last] || stored[1] != mem[0] || stored[2] != mem[last] {
			t.Fatalf("ReadAuditHashes(%d, 0, %d) = %d hashes, %v; want them in the order asked", last, last, len(stored), err)
		}
	}
	// Many at once (more than SQLite's 32,766 variables would allow in one
	// statement), in the order asked.
	if len(mem) > 1 {
		idx := make([]int64, 40000)
		for i := range idx {
			idx[i] = int64((i * 7) % len(mem))
		}
		stored, err := s.ReadAuditHashes(ctx, idx)
		if err != nil || len(stored) != len(idx) {
			t.Fatalf("ReadAuditHashes of %d indexes = %d hashes, %v", len(idx), len(stored), err)
		}
		for i, h := range stored {
			if h != mem[idx[i]] {
				t.Fatalf("ReadAuditHashes of %d indexes: hash %d is not stored hash %d", len(idx), i, idx[i])
			}
		}
	}
	if _, err := s.ReadAuditHashes(ctx, []int64{0, int64(len(mem))}); err == nil {
		t.Fatal("ReadAuditHashes of an index past the tree: no error")
	}
	want32, err := tlog.TreeHash(n, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tlog.TreeHash(n, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		return s.ReadAuditHashes(ctx, idx)
	}))
	if err != nil {
		t.Fatalf("stored tree hash: %v", err)
	}
	if got != want32 {
		t.Fatalf("stored tree hash %x, recomputed %x", got, want32)
	}
	return evs
}

// testAuditLog: creations and changes are entries in commit order, the
// filters select them, retries add nothing.
func testAuditLog(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	checkAuditLog(t, s, 0)
	create(t, s, newTransfer("t1", "c", "k1", "sandbox", base))
	create(t, s, newTransfer("t2", "c", "k2", "other", base.Add(time.Second)))
	if _, err := s.ApplyChange(ctx, "t1", store.Change{State: transfer.StateIdentityPending,
		Event: transfer.Event{At: base.Add(2 * time.Second), State: transfer.StateIdentityPending, Actor: "worker", Type: "state",
			Detail: map[string]any{"n": 3, "nested": map[string]any{"z": 1.5, "a": "<&>"}}}}); err != nil {
		t.Fatal(err)
	}
	// A retry of the same step records nothing.
	if ok, err := s.ApplyChange(ctx, "t1", store.Change{State: transfer.StateIdentityPending,
		Event: transfer.Event{At: base.Add(3 * time.Second), State: transfer.StateIdentityPending, Actor: "worker", Type: "state"}}); err != nil || ok {
		t.Fatalf("retry: %v, %v", ok, err)
	}
	if _, err := s.ApplyChange(ctx, "t2", store.Change{
		Event: transfer.Event{At: base.Add(4 * time.Second), Actor: "ops", Type: "note", Key: "note:1"}}); err != nil {
		t.Fatal(err)
	}
	evs := checkAuditLog(t, s, 4)
	order := []string{"t1/1", "t2/1", "t1/2", "t2/2"}
	for i, ae := range evs {
		if got := fmt.Sprintf("%s/%d", ae.TransferID, ae.Event.Seq); got != order[i] {
			t.Errorf("position %d is %s, want %s", i, got, order[i])
		}
	}
	if evs[1].PartnerID != "other" || evs[2].Event.Actor != "worker" || evs[3].Event.Key != "note:1" {
		t.Errorf("entries do not carry their partner, actor, key: %+v", evs)
	}
	positions := func(f store.AuditFilter) []int64 {
		var out []int64
		for _, ae := range auditEvents(t, s, f) {
			out = append(out, ae.Position)
		}
		return out
	}
	for _, tc := range []struct {
		f    store.AuditFilter
		want []int64
	}{
		{store.AuditFilter{TransferID: "t1"}, []int64{0, 2}},
		{store.AuditFilter{PartnerID: "other"}, []int64{1, 3}},
		{store.AuditFilter{Type: "note"}, []int64{3}},
		{store.AuditFilter{Since: base.Add(time.Second), Until: base.Add(4 * time.Second)}, []int64{1, 2}},
		{store.AuditFilter{FromPosition: 2}, []int64{2, 3}},
		{store.AuditFilter{FromPosition: 1, Limit: 2}, []int64{1, 2}},
		{store.AuditFilter{TransferID: "none"}, nil},
	} {
		if got := positions(tc.f); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("AuditEvents(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
	// fn's error stops the walk and is returned.
	stop := errors.New("stop")
	calls := 0
	if err := s.AuditEvents(ctx, store.AuditFilter{}, func(store.AuditEvent) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("AuditEvents with a failing fn: %v after %d calls", err, calls)
	}
}

// testAuditConcurrent: 50 concurrent appenders, on transfers of their own
// and on a shared one, take positions 0..n-1 with no gap or duplicate.
func testAuditConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("shared", "c", "k-shared", "sandbox", base))
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i%2 == 0 {
				id := fmt.Sprintf("t%02d", i)
				_, errs[i] = s.CreateTransfer(ctx, newTransfer(id, "c", "k-"+id, "sandbox", base.Add(time.Duration(i)*time.Millisecond)))
				return
			}
			_, errs[i] = s.ApplyChange(ctx, "shared", store.Change{Event: transfer.Event{
				At: base.Add(time.Duration(i) * time.Millisecond), Actor: "w", Type: "note", Key: fmt.Sprintf("note:%d", i),
				Detail: map[string]any{"i": i}}})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("appender %d: %v", i, err)
		}
	}
	evs := checkAuditLog(t, s, n+1)
	seen := map[string]bool{}
	for _, ae := range evs {
		k := fmt.Sprintf("%s/%d", ae.TransferID, ae.Event.Seq)
		if seen[k] {
			t.Fatalf("event %s has two positions", k)
		}
		seen[k] = true
	}
}

// testAuditCheckpoints: checkpoints are stored as given, the latest last.
func testAuditCheckpoints(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestCheckpoint on an empty store: %v, want ErrNotFound", err)
	}
	if cs, err := s.Checkpoints(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Checkpoints on an empty store: %v, %v", cs, err)
	}
	var want []store.Checkpoint
	for i := range 3 {
		c := store.Checkpoint{Size: int64(i * 10), At: base.Add(time.Duration(i) * time.Hour), KID: "kid-1", JWS: fmt.Sprintf("jws.%d.sig", i)}
		c.Root[0], c.Root[31] = byte(i+1), 0xff
		if err := s.PutCheckpoint(ctx, c); err != nil {
			t.Fatalf("PutCheckpoint: %v", err)
		}
		c.At = c.At.UTC()
		want = append(want, c)
	}
	got, err := s.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Checkpoints = %+v, want %+v", got, want)
	}
	last, err := s.LatestCheckpoint(ctx)
	if err != nil || fmt.Sprint(last) != fmt.Sprint(want[2]) {
		t.Errorf("LatestCheckpoint = %+v, %v; want %+v", last, err, want[2])
	}
}
