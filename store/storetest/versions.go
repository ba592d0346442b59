package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
)

// changeIDs is the "id@version" of each change.
func changeIDs(cs []store.MemberChange) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s@%d", c.ID, c.Version)
	}
	return out
}

func testMemberVersions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if v, err := s.MemberVersion(ctx); err != nil || v != 0 {
		t.Fatalf("MemberVersion(empty) = %d, %v; want 0", v, err)
	}
	if cs, err := s.MemberChanges(ctx, 0, "", 10); err != nil || len(cs) != 0 {
		t.Fatalf("MemberChanges(empty) = %v, %v", changeIDs(cs), err)
	}
	if err := s.UpsertMembers(ctx, []member.Record{mem("b", "1980-01-01"), mem("a", "1980-01-01")}); err != nil {
		t.Fatal(err)
	}
	a2 := mem("a", "1980-01-01")
	a2.Family = "Renamed"
	if err := s.UpsertMembers(ctx, []member.Record{a2}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertMembers(ctx, []member.Record{mem("c", "1980-01-01")}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.MemberVersion(ctx); err != nil || v != 3 {
		t.Fatalf("MemberVersion = %d, %v; want 3", v, err)
	}
	tests := []struct {
		version int64
		id      string
		limit   int
		want    []string
	}{
		{0, "", 10, []string{"b@1", "a@2", "c@3"}}, // a rewritten: once, at its latest version
		{1, "", 10, []string{"a@2", "c@3"}},        // "": after all of version 1
		{1, "a", 10, []string{"b@1", "a@2", "c@3"}},
		{1, "b", 10, []string{"a@2", "c@3"}},
		{0, "", 1, []string{"b@1"}},
		{2, "a", 10, []string{"c@3"}},
		{3, "c", 10, nil},
	}
	for _, tc := range tests {
		cs, err := s.MemberChanges(ctx, tc.version, tc.id, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !equalStrings(changeIDs(cs), tc.want) {
			t.Errorf("MemberChanges(%d, %q, %d) = %v, want %v", tc.version, tc.id, tc.limit, changeIDs(cs), tc.want)
		}
	}
	cs, _ := s.MemberChanges(ctx, 1, "b", 1)
	if len(cs) != 1 || cs[0].Family != "Renamed" {
		t.Errorf("the change carries the record as last written: %+v", cs)
	}
}

// testMemberVersionsConcurrent: while writers write concurrently, a reader
// that follows MemberChanges from its cursor, as an in-memory index does,
// sees every write. A version taken before an earlier one commits would
// let the reader step over the earlier one for good.
func testMemberVersionsConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const writers, writes = 6, 15
	seen := map[string]bool{}
	var version int64
	var id string
	follow := func() {
		for {
			cs, err := s.MemberChanges(ctx, version, id, 100)
			if err != nil {
				t.Error(err)
				return
			}
			for _, c := range cs {
				seen[c.ID] = true
				version, id = c.Version, c.ID
			}
			if len(cs) < 100 {
				return
			}
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				batch := []member.Record{mem(fmt.Sprintf("w%d-%02d", w, i), "1990-01-01"), mem(fmt.Sprintf("w%d-%02d-b", w, i), "1990-01-01")}
				if err := s.UpsertMembers(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	// The reader follows the writes as they commit; a member it stepped
	// over lies behind its cursor and is never seen.
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		follow()
	}
	follow()
	if len(seen) != writers*writes*2 {
		t.Fatalf("the reader saw %d of %d members written", len(seen), writers*writes*2)
	}
	if v, err := s.MemberVersion(ctx); err != nil || v != writers*writes {
		t.Fatalf("MemberVersion = %d, %v; want %d (one per write)", v, err, writers*writes)
	}
}
