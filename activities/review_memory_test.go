package activities

import (
	"context"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store/storetest"
	"github.com/p2p-payer/p2p/transfer"
)

// TestReviewDecisionRemembered: a reviewer's approval, recorded by the
// workflow's review_decision step, links the presentation to the member
// in the step's transaction, and the same presentation (however it is
// cased or spaced) later resolves at once; a rejection is remembered too.
func TestReviewDecisionRemembered(t *testing.T) {
	eachStore(t, testReviewDecisionRemembered)
}

func testReviewDecisionRemembered(t *testing.T, f *fixture) {
	ctx := context.Background()
	twins := transfer.Demographics{Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08"}
	f.create(t, "t1", twins, activeConsent)
	o, err := f.acts.ResolveIdentity(ctx, "t1")
	if err != nil || o.Status != transfer.IdentityAmbiguous {
		t.Fatalf("first presentation: %+v, %v; want a review", o, err)
	}
	approved := transfer.IdentityOutcome{Status: transfer.IdentityResolved, MemberID: "M3", ReviewedBy: "r1", Candidates: o.Candidates}
	rec := RecordInput{TransferID: "t1", Type: transfer.EventReviewDecision, Key: "review:decision", Actor: "reviewer:r1", Identity: &approved}
	for i := 0; i < 2; i++ { // a retried activity records once
		if _, err := f.rec.RecordState(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	req, err := f.st.GetTransferRequest(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	pres, err := f.acts.key.presentation(ctx, f.st, req)
	if err != nil {
		t.Fatal(err)
	}
	links, err := f.st.IdentityLinks(ctx, "sandbox", pres)
	if err != nil || len(links) != 1 || links[0].MemberID != "M3" || links[0].Provenance.TransferID != "t1" ||
		links[0].MadeBy.Kind != graph.MadeByReviewer || links[0].MadeBy.Reviewer != "r1" || links[0].MadeBy.Rule != "" ||
		links[0].Provenance.Presentation != pres || links[0].Provenance.Note != "manual review" {
		t.Fatalf("links after the review = %+v, %v", links, err)
	}
	if rs, err := f.st.IdentityReviews(ctx, "sandbox", pres); err != nil || len(rs) != 1 || rs[0].Decision != transfer.DecisionApprove {
		t.Fatalf("reviews = %+v, %v", rs, err)
	}

	f.create(t, "t2", transfer.Demographics{Given: " JORDAN", Family: "lee", BirthDate: "1995-03-08"}, activeConsent)
	o, err = f.acts.ResolveIdentity(ctx, "t2")
	if err != nil || o.Status != transfer.IdentityResolved || o.MemberID != "M3" || o.ReviewedBy != "r1" ||
		o.Rationale == nil || o.Rationale.Rule != identity.RuleRememberedReview {
		t.Fatalf("same presentation again = %+v, %v; want M3 from the remembered review", o, err)
	}
	// It is linked already, by the review itself: nothing is repeated.
	if links, err := f.st.IdentityLinks(ctx, "sandbox", pres); err != nil || len(links) != 1 || links[0].Provenance.TransferID != "t1" {
		t.Fatalf("links after the remembered review = %+v, %v; want the review's link only", links, err)
	}

	// Another presentation of the twins (with a phone) is reviewed afresh,
	// and its rejection remembered.
	other := twins
	other.Phone = "217-555-0199"
	f.create(t, "t3", other, activeConsent)
	if o, err = f.acts.ResolveIdentity(ctx, "t3"); err != nil || o.Status != transfer.IdentityAmbiguous {
		t.Fatalf("another presentation: %+v, %v; want a review", o, err)
	}
	rejected := transfer.IdentityOutcome{Status: transfer.IdentityNoMatch, ReviewedBy: "r2"}
	if _, err := f.rec.RecordState(ctx, RecordInput{TransferID: "t3", State: transfer.StateFailed, Identity: &rejected,
		Error: &transfer.ErrorInfo{Type: transfer.ErrorReviewRejected}}); err != nil {
		t.Fatal(err)
	}
	f.create(t, "t4", other, activeConsent)
	o, err = f.acts.ResolveIdentity(ctx, "t4")
	if err != nil || o.Status != transfer.IdentityNoMatch || o.Rationale == nil || o.Rationale.Rule != identity.RuleRememberedReview {
		t.Fatalf("rejected presentation again = %+v, %v; want no_match from the remembered review", o, err)
	}
	// Steps that are not a review's decision write nothing to the graph.
	if _, err := f.rec.RecordState(ctx, RecordInput{TransferID: "t2", State: transfer.StateConsentVerified, Identity: &o}); err != nil {
		t.Fatal(err)
	}
	if links, _ := f.st.IdentityLinks(ctx, "sandbox", pres); len(links) != 1 {
		t.Errorf("links = %d after other steps, want 1", len(links))
	}

	// A link ended since (a person unlinked it) while the approval stands:
	// the remembered review links the presentation again, naming the
	// reviewer and the rule, once however often the activity runs.
	later := t0.Add(time.Hour)
	g := graph.Graph{Store: storetest.GraphStore{Store: f.st}, Now: func() time.Time { return later }}
	if err := g.Unlink(ctx, "sandbox", pres, graph.Maker{Kind: graph.MadeByReviewer, Reviewer: "ops"}, graph.Provenance{Note: "disputed"}); err != nil {
		t.Fatal(err)
	}
	f.acts.Now = func() time.Time { return later.Add(time.Minute) }
	f.create(t, "t5", twins, activeConsent)
	for i := 0; i < 2; i++ {
		if o, err := f.acts.ResolveIdentity(ctx, "t5"); err != nil || o.MemberID != "M3" || o.Rationale.Rule != identity.RuleRememberedReview {
			t.Fatalf("after the unlink: %+v, %v", o, err)
		}
	}
	links, err = f.st.IdentityLinks(ctx, "sandbox", pres)
	if err != nil || len(links) != 3 {
		t.Fatalf("links after the unlink and a remembered review = %+v, %v; want link, end, link", links, err)
	}
	want := graph.Maker{Kind: graph.MadeByReviewer, Reviewer: "r1", Rule: identity.RuleRememberedReview}
	if l := links[2]; l.MemberID != "M3" || l.MadeBy != want || l.Provenance.TransferID != "t5" || !l.ValidFrom.Equal(later.Add(time.Minute)) {
		t.Errorf("relink %+v, want M3 made by %+v in t5", l, want)
	}
}
