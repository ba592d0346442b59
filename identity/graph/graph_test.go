package graph

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/transfer"
)

func TestGraphLinks(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := &Graph{Store: NewMemoryStore(), Now: func() time.Time { clock = clock.Add(time.Hour); return clock }}
	rule := Maker{Kind: MadeByRule, Rule: "exact_member_id_birth_date"}

	l1, err := g.Link(ctx, "acme", "X1", "M1", rule, Provenance{TransferID: "t1"})
	if err != nil || l1.Seq == 0 {
		t.Fatalf("Link: %v %+v", err, l1)
	}
	if again, _ := g.Link(ctx, "acme", "X1", "M1", rule, Provenance{TransferID: "t2"}); again.Seq != l1.Seq {
		t.Errorf("relinking the same member appended a record")
	}
	reviewer := Maker{Kind: MadeByReviewer, Reviewer: "r@example.org"}
	l2, err := g.Link(ctx, "acme", "X1", "M2", reviewer, Provenance{TransferID: "t3"})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := g.Current(ctx, "acme", "X1", clock)
	if err != nil || cur.MemberID != "M2" || cur.Seq != l2.Seq {
		t.Fatalf("Current = %+v, %v", cur, err)
	}
	past, err := g.Current(ctx, "acme", "X1", l1.ValidFrom)
	if err != nil || past.MemberID != "M1" || past.ValidTo.IsZero() {
		t.Fatalf("Current in the past = %+v, %v", past, err)
	}
	hist, _ := g.History(ctx, "acme", "X1")
	if len(hist) != 3 || hist[1].Ends != l1.Seq {
		t.Fatalf("History = %+v", hist)
	}
	if err := g.Unlink(ctx, "acme", "X1", reviewer, Provenance{Note: "member disputes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Current(ctx, "acme", "X1", clock.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Unlink: %v", err)
	}
	if _, err := g.Link(ctx, "", "X1", "M1", rule, Provenance{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty partner: %v", err)
	}
}

func TestReviewMemory(t *testing.T) {
	ctx := context.Background()
	g := &Graph{Store: NewMemoryStore()}
	q := transfer.Demographics{Given: "Ann", Family: "Lee", BirthDate: "1980-02-03"}
	key := []byte("k1")
	fp := Presentation(key, "acme", q)
	same := Presentation(key, "acme", transfer.Demographics{Given: " ANN", Family: "lee", BirthDate: "1980-02-03"})
	if fp != same {
		t.Error("normalisation changed the presentation digest")
	}
	for _, other := range []string{
		Presentation(key, "other", q),
		Presentation([]byte("k2"), "acme", q),
		Presentation(key, "acme", transfer.Demographics{Given: "Ann", Family: "Lee", BirthDate: "1980-02-04"}),
	} {
		if other == fp {
			t.Error("a different presentation or key has the same digest")
		}
	}
	if _, ok, _ := g.RecallReview(ctx, "acme", fp); ok {
		t.Fatal("recalled a review never made")
	}
	if err := g.RememberReview(ctx, "acme", fp, transfer.ReviewDecision{Decision: "maybe"}); err == nil {
		t.Error("invalid decision accepted")
	}
	if err := g.RememberReview(ctx, "acme", fp, transfer.ReviewDecision{Decision: transfer.DecisionApprove, MemberID: "M1", Reviewer: "r"}); err != nil {
		t.Fatal(err)
	}
	r, ok, err := g.RecallReview(ctx, "acme", fp)
	if err != nil || !ok || r.MemberID != "M1" || r.Decision != transfer.DecisionApprove {
		t.Fatalf("RecallReview = %+v %v %v", r, ok, err)
	}
}

// TestExternalID: the digest of a partner's identifier is stable under
// spacing, differs with the partner, system, value or key, never equals
// the presentation digest of the same strings, and does not hold the value.
func TestExternalID(t *testing.T) {
	key := []byte("k1")
	id := ExternalID(key, "oldco", "https://old.example/member", "OLD-1")
	if len(id) != 64 || strings.Contains(id, "OLD-1") {
		t.Fatalf("ExternalID = %q: want a hex SHA-256 without the value", id)
	}
	if same := ExternalID(key, "oldco", " https://old.example/member", "OLD-1 "); same != id {
		t.Error("spacing changed the digest")
	}
	for name, other := range map[string]string{
		"partner":      ExternalID(key, "otherco", "https://old.example/member", "OLD-1"),
		"system":       ExternalID(key, "oldco", "https://other.example/member", "OLD-1"),
		"value":        ExternalID(key, "oldco", "https://old.example/member", "OLD-2"),
		"case":         ExternalID(key, "oldco", "https://old.example/member", "old-1"),
		"key":          ExternalID([]byte("k2"), "oldco", "https://old.example/member", "OLD-1"),
		"presentation": Presentation(key, "oldco", transfer.Demographics{MemberID: "OLD-1"}),
	} {
		if other == id {
			t.Errorf("another %s gives the same digest", name)
		}
	}
}
