package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func testIdentityLinks(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rule := graph.Maker{Kind: graph.MadeByRule, Rule: "exact_member_id_birth_date"}
	reviewer := graph.Maker{Kind: graph.MadeByReviewer, Reviewer: "r@example.org"}
	l1, err := s.AppendIdentityLink(ctx, graph.Link{Partner: "acme", ExternalRef: "P1", MemberID: "M1", ValidFrom: base,
		MadeBy: rule, Provenance: graph.Provenance{TransferID: "t1", Presentation: "P1"}})
	if err != nil || l1.Seq == 0 {
		t.Fatalf("AppendIdentityLink: %+v, %v", l1, err)
	}
	again, err := s.AppendIdentityLink(ctx, graph.Link{Partner: "acme", ExternalRef: "P1", MemberID: "M1", ValidFrom: base.Add(time.Hour), MadeBy: rule})
	if err != nil || again.Seq != l1.Seq || !again.ValidFrom.Equal(base) {
		t.Errorf("linking the same member again = %+v, %v; want the current link kept", again, err)
	}
	moved := base.Add(2 * time.Hour)
	l2, err := s.AppendIdentityLink(ctx, graph.Link{Partner: "acme", ExternalRef: "P1", MemberID: "M2", ValidFrom: moved,
		MadeBy: graph.Maker{Kind: graph.MadeByScore, Rule: "fellegi_sunter", Score: 12.5}, Provenance: graph.Provenance{TransferID: "t2"}})
	if err != nil || l2.Seq <= l1.Seq || l2.MemberID != "M2" {
		t.Fatalf("relinking to another member = %+v, %v", l2, err)
	}
	hist, err := s.IdentityLinks(ctx, "acme", "P1")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("history has %d records, want link, end, link: %+v", len(hist), hist)
	}
	if h := hist[0]; h.Seq != l1.Seq || h.MemberID != "M1" || !h.ValidFrom.Equal(base) || !h.ValidTo.IsZero() || h.MadeBy != rule ||
		h.Provenance != (graph.Provenance{TransferID: "t1", Presentation: "P1"}) || h.ValidFrom.Location() != time.UTC {
		t.Errorf("first record = %+v: the original link must be kept as written", h)
	}
	if end := hist[1]; end.Ends != l1.Seq || end.MemberID != "M1" || !end.ValidTo.Equal(moved) {
		t.Errorf("second record = %+v, want the end of link %d at %v", end, l1.Seq, moved)
	}
	if h := hist[2]; h.Seq != l2.Seq || h.MadeBy.Score != 12.5 || h.Ends != 0 {
		t.Errorf("third record = %+v", h)
	}
	// The graph over the store sees the time bounds.
	g := &graph.Graph{Store: GraphStore{Store: s}, Now: func() time.Time { return moved.Add(time.Hour) }}
	if cur, err := g.Current(ctx, "acme", "P1", moved.Add(time.Minute)); err != nil || cur.MemberID != "M2" {
		t.Errorf("Current after the move = %+v, %v", cur, err)
	}
	if past, err := g.Current(ctx, "acme", "P1", base.Add(time.Minute)); err != nil || past.MemberID != "M1" || !past.ValidTo.Equal(moved) {
		t.Errorf("Current before the move = %+v, %v", past, err)
	}
	if err := g.Unlink(ctx, "acme", "P1", reviewer, graph.Provenance{Note: "member disputes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Current(ctx, "acme", "P1", moved.Add(2*time.Hour)); !errors.Is(err, graph.ErrNotFound) {
		t.Errorf("Current after Unlink: %v, want graph.ErrNotFound", err)
	}
	if other, err := s.IdentityLinks(ctx, "acme", "P2"); err != nil || len(other) != 0 {
		t.Errorf("another external identity has records: %+v, %v", other, err)
	}
	for _, bad := range []graph.Link{
		{Partner: "acme", ExternalRef: "P3"},                                 // no member
		{ExternalRef: "P3", MemberID: "M1"},                                  // no partner
		{Partner: "acme", ExternalRef: "P3", MemberID: "M1", ValidTo: moved}, // ends itself
		{Partner: "acme", ExternalRef: "P3", MemberID: "M1", Ends: l1.Seq},   // an end without its time
	} {
		if _, err := s.AppendIdentityLink(ctx, bad); err == nil {
			t.Errorf("AppendIdentityLink(%+v) accepted", bad)
		}
	}
	if hist, _ := s.IdentityLinks(ctx, "acme", "P3"); len(hist) != 0 {
		t.Errorf("a refused link left records: %+v", hist)
	}
}

// testIdentityLinksConcurrent: links of one external identity made at
// once to different members leave one current link, each earlier one
// ended exactly once.
func testIdentityLinksConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := s.AppendIdentityLink(ctx, graph.Link{Partner: "acme", ExternalRef: "P1", MemberID: string(rune('A' + i)),
				ValidFrom: base.Add(time.Duration(i) * time.Second), MadeBy: graph.Maker{Kind: graph.MadeByRule, Rule: "r"}})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	hist, err := s.IdentityLinks(ctx, "acme", "P1")
	if err != nil {
		t.Fatal(err)
	}
	ended := map[int64]int{}
	links := 0
	for _, l := range hist {
		if l.Ends != 0 {
			ended[l.Ends]++
		} else {
			links++
		}
	}
	if links != n || len(ended) != n-1 {
		t.Fatalf("%d links and %d ended, want %d and %d: %+v", links, len(ended), n, n-1, hist)
	}
	for seq, k := range ended {
		if k != 1 {
			t.Errorf("link %d ended %d times", seq, k)
		}
	}
}

func testIdentityReviews(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if rs, err := s.IdentityReviews(ctx, "acme", "P1"); err != nil || len(rs) != 0 {
		t.Fatalf("IdentityReviews of an empty store = %+v, %v", rs, err)
	}
	approve := graph.Review{Partner: "acme", Presentation: "P1", Decision: transfer.DecisionApprove, MemberID: "M1", Reviewer: "r1", At: base, TransferID: "t1"}
	reject := graph.Review{Partner: "acme", Presentation: "P1", Decision: transfer.DecisionReject, Reviewer: "r2", At: base.Add(time.Hour), TransferID: "t2"}
	for _, r := range []graph.Review{approve, reject, {Partner: "other", Presentation: "P1", Decision: transfer.DecisionReject, Reviewer: "r3", At: base}} {
		if err := s.AppendIdentityReview(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := s.IdentityReviews(ctx, "acme", "P1")
	if err != nil {
		t.Fatal(err)
	}
	approve.At, reject.At = approve.At.UTC(), reject.At.UTC()
	if len(rs) != 2 || rs[0] != approve || rs[1] != reject {
		t.Errorf("IdentityReviews = %+v, want %+v then %+v", rs, approve, reject)
	}
	for _, bad := range []graph.Review{
		{Partner: "acme", Presentation: "P1", Decision: "maybe", Reviewer: "r"},
		{Partner: "acme", Presentation: "P1", Decision: transfer.DecisionApprove, Reviewer: "r"}, // approve without member
		{Partner: "acme", Decision: transfer.DecisionReject, Reviewer: "r"},
		{Partner: "acme", Presentation: "P1", Decision: transfer.DecisionReject},
	} {
		if err := s.AppendIdentityReview(ctx, bad); err == nil {
			t.Errorf("AppendIdentityReview(%+v) accepted", bad)
		}
	}
}

func testPresentationKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	keys := make([][]byte, 4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k, err := s.PresentationKey(ctx)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}(i)
	}
	wg.Wait()
	if len(keys[0]) != 32 || bytes.Equal(keys[0], make([]byte, 32)) {
		t.Fatalf("PresentationKey = %x, want 32 random bytes", keys[0])
	}
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatalf("PresentationKey differs between calls: %x, %x", keys[0], k)
		}
	}
	again, err := s.PresentationKey(ctx)
	if err != nil || !bytes.Equal(again, keys[0]) {
		t.Errorf("PresentationKey later = %x, %v", again, err)
	}
}

// testChangeLink: a transfer step carries a link and a review decision
// into its transaction; a retried step adds neither again, and a step with
// an invalid link records nothing.
func testChangeLink(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-link", "acme", base))
	link := graph.Link{Partner: "acme", ExternalRef: "P1", MemberID: "M1",
		MadeBy: graph.Maker{Kind: graph.MadeByReviewer, Reviewer: "r1"}, Provenance: graph.Provenance{TransferID: "t1", Presentation: "P1"}}
	review := graph.Review{Partner: "acme", Presentation: "P1", Decision: transfer.DecisionApprove, MemberID: "M1", Reviewer: "r1", TransferID: "t1"}
	at := base.Add(time.Minute)
	ch := store.Change{
		Event:    transfer.Event{At: at, Actor: "reviewer:r1", Type: "review_decision", Key: "review:decision"},
		Identity: &transfer.IdentityOutcome{Status: transfer.IdentityResolved, MemberID: "M1", ReviewedBy: "r1"},
		Link:     &link, Review: &review,
	}
	for i := 0; i < 2; i++ {
		ok, err := s.ApplyChange(ctx, "t1", ch)
		if err != nil || ok != (i == 0) {
			t.Fatalf("ApplyChange #%d = %v, %v", i+1, ok, err)
		}
	}
	hist, err := s.IdentityLinks(ctx, "acme", "P1")
	if err != nil || len(hist) != 1 || hist[0].MemberID != "M1" || !hist[0].ValidFrom.Equal(at) || hist[0].MadeBy.Reviewer != "r1" {
		t.Fatalf("links after the step = %+v, %v; want one, from the event's time", hist, err)
	}
	rs, err := s.IdentityReviews(ctx, "acme", "P1")
	if err != nil || len(rs) != 1 || !rs[0].At.Equal(at) || rs[0].MemberID != "M1" {
		t.Fatalf("reviews after the step = %+v, %v", rs, err)
	}
	bad := ch
	bad.Event.Key = "review:again"
	bad.Link = &graph.Link{Partner: "acme", ExternalRef: "P1"}
	if _, err := s.ApplyChange(ctx, "t1", bad); err == nil {
		t.Fatal("a step with a link without member was applied")
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil || len(tl) != 2 {
		t.Fatalf("timeline = %d events, %v; the refused step must record nothing", len(tl), err)
	}
}

// CheckIdentityGraphAppendOnly writes a link, a review and the
// presentation key through s, then checks that the database itself
// refuses to change or delete them, whatever code runs against it: exec
// runs a statement on s's database outside the Store. truncate is the
// engine's TRUNCATE statement of a table, "" if it has none.
func CheckIdentityGraphAppendOnly(t *testing.T, s store.Store, exec func(ctx context.Context, q string) error, truncate string) {
	ctx := ctxT(t)
	if _, err := s.AppendIdentityLink(ctx, graph.Link{Partner: "p", ExternalRef: "r", MemberID: "m", MadeBy: graph.Maker{Kind: graph.MadeByRule}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendIdentityReview(ctx, graph.Review{Partner: "p", Presentation: "r", Decision: "reject", Reviewer: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PresentationKey(ctx); err != nil {
		t.Fatal(err)
	}
	qs := []string{
		"UPDATE identity_links SET member_id = 'x'",
		"DELETE FROM identity_links",
		"UPDATE identity_reviews SET decision = 'approve'",
		"DELETE FROM identity_reviews",
		"UPDATE identity_key SET key = key",
		"DELETE FROM identity_key",
	}
	if truncate != "" {
		qs = append(qs, truncate+" identity_links")
	}
	for _, q := range qs {
		if err := exec(ctx, q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
}

// GraphStore is a store's IdentityGraph as the identity graph's store
// (graph.Store), for tests that run a graph.Graph over a store.
type GraphStore struct{ Store store.IdentityGraph }

var _ graph.Store = GraphStore{}

// AppendLink appends a link record as it is: graph.Graph decides what to
// append.
func (g GraphStore) AppendLink(ctx context.Context, l graph.Link) (graph.Link, error) {
	return g.Store.AppendIdentityLink(ctx, l)
}

// Links implements graph.Store.
func (g GraphStore) Links(ctx context.Context, partner, externalRef string) ([]graph.Link, error) {
	return g.Store.IdentityLinks(ctx, partner, externalRef)
}

// AppendReview implements graph.Store.
func (g GraphStore) AppendReview(ctx context.Context, r graph.Review) error {
	return g.Store.AppendIdentityReview(ctx, r)
}

// Reviews implements graph.Store.
func (g GraphStore) Reviews(ctx context.Context, partner, presentation string) ([]graph.Review, error) {
	return g.Store.IdentityReviews(ctx, partner, presentation)
}
