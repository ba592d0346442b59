package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
)

// testTimelinePage: pages of a timeline are its events in seq order within
// the range asked, each with the audit-log place the log holds for it,
// and Last bounds what a walk of pages shows even while events are added.
func testTimelinePage(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "k1", "sandbox", base))
	create(t, s, newTransfer("t2", "c", "k2", "sandbox", base))
	var as []store.Access
	for i := range 9 { // t1: seqs 2..10 after its first event
		as = append(as, access("t1", fmt.Sprintf("read:%d", i), base.Add(time.Duration(i)*time.Second)))
	}
	as = append(as, access("t2", "read:x", base))
	if _, err := s.RecordAccess(ctx, as); err != nil {
		t.Fatal(err)
	}
	logged := map[int64]store.AuditEvent{}
	for _, ae := range auditEvents(t, s, store.AuditFilter{TransferID: "t1"}) {
		logged[ae.Event.Seq] = ae
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil || len(tl) != 10 {
		t.Fatalf("Timeline = %d events, %v", len(tl), err)
	}

	tests := []struct {
		r    store.TimelineRange
		want []int64
	}{
		{store.TimelineRange{}, seqs(1, 10)},
		{store.TimelineRange{Limit: 3}, seqs(1, 3)},
		{store.TimelineRange{After: 3, Limit: 3}, seqs(4, 6)},
		{store.TimelineRange{After: 8, Limit: 3}, seqs(9, 10)},
		{store.TimelineRange{After: 10, Limit: 3}, nil},
		{store.TimelineRange{After: 2, Until: 5}, seqs(3, 5)},
		{store.TimelineRange{After: 2, Until: 50, Limit: 2}, seqs(3, 4)},
		{store.TimelineRange{Limit: 5000}, seqs(1, 10)}, // above the cap of 1000: the cap
		{store.TimelineRange{Limit: -1}, seqs(1, 10)},
	}
	for _, tc := range tests {
		page, err := s.TimelinePage(ctx, "t1", tc.r)
		if err != nil {
			t.Fatalf("TimelinePage(%+v): %v", tc.r, err)
		}
		if page.Last != 10 {
			t.Errorf("TimelinePage(%+v).Last = %d, want 10", tc.r, page.Last)
		}
		var got []int64
		for _, e := range page.Entries {
			got = append(got, e.Event.Seq)
			want := tl[e.Event.Seq-1]
			if e.Event.Key != want.Key || e.Event.Actor != want.Actor || !e.Event.At.Equal(want.At) || e.Event.Type != want.Type {
				t.Errorf("entry %d = %+v, want %+v", e.Event.Seq, e.Event, want)
			}
			ae := logged[e.Event.Seq]
			if !e.Logged || e.Position != ae.Position || e.LeafHash != ae.LeafHash {
				t.Errorf("entry %d in the log at %v %d %x, want %d %x", e.Event.Seq, e.Logged, e.Position, e.LeafHash, ae.Position, ae.LeafHash)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("TimelinePage(%+v) = seqs %v, want %v", tc.r, got, tc.want)
		}
	}

	// An event recorded after Until stays out of a bounded page.
	if _, err := s.RecordAccess(ctx, []store.Access{access("t1", "read:late", base.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	page, err := s.TimelinePage(ctx, "t1", store.TimelineRange{After: 8, Until: 10})
	if err != nil || len(page.Entries) != 2 || page.Last != 11 {
		t.Errorf("bounded page after a new event = %d entries, last %d, %v; want 2, 11", len(page.Entries), page.Last, err)
	}

	if _, err := s.TimelinePage(ctx, "nope", store.TimelineRange{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TimelinePage of an unknown transfer: %v, want ErrNotFound", err)
	}
	if page, err := s.TimelinePage(ctx, "t2", store.TimelineRange{}); err != nil || len(page.Entries) != 2 || page.Last != 2 {
		t.Errorf("TimelinePage(t2) = %+v, %v; want its 2 events only", page, err)
	}
}

// seqs is from..to.
func seqs(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
