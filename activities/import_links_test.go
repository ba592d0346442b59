package activities

import (
	"context"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// TestImportLinks: the old payer's $member-match answer links its
// identifier for the member (a keyed digest, never the value) to our
// member, with the member_match event: once on retry; a later import of
// the same member from the same payer adds nothing; another identifier of
// the same member appends a link; a member not yet numbered, or no match,
// links nothing.
func TestImportLinks(t *testing.T) {
	const system = "https://old.example/member" // the old payer's MemberIDSystem
	onEachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		f := newImportFixtureOn(t, st)
		key, err := st.PresentationKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		links := func(value string) []graph.Link {
			t.Helper()
			hist, err := st.IdentityLinks(ctx, "oldco", graph.ExternalID(key, "oldco", system, value))
			if err != nil {
				t.Fatal(err)
			}
			return hist
		}
		match := func(id string) Matched {
			t.Helper()
			m, err := f.acts.MatchAtPartner(ctx, ImportInput{TransferID: id, PartnerID: "oldco"})
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			return m
		}
		phi := []string{"OLD-1", "OLD-3", "Ada", "Lovelace", "1990-01-02"}

		f.createFor(t, "t1", "NEW-77", "OLD-1", t0)
		for attempt := 1; attempt <= 2; attempt++ { // a retried activity
			if m := match("t1"); m.Status != transfer.IdentityResolved || m.MemberID != "M1" {
				t.Fatalf("attempt %d: %+v", attempt, m)
			}
		}
		hist := links("M1")
		if len(hist) != 1 {
			t.Fatalf("history %+v: want one link", hist)
		}
		want := graph.Link{Seq: hist[0].Seq, Partner: "oldco", ExternalRef: graph.ExternalID(key, "oldco", system, "M1"), MemberID: "NEW-77",
			ValidFrom: t0, MadeBy: graph.Maker{Kind: graph.MadeByRule, Rule: RulePartnerMemberMatch},
			Provenance: graph.Provenance{TransferID: "t1", Note: "$member-match answered by oldco"}}
		if !hist[0].ValidFrom.Equal(t0) {
			t.Errorf("link from %v, want the member_match event's time %v", hist[0].ValidFrom, t0)
		}
		hist[0].ValidFrom = t0
		if hist[0] != want {
			t.Errorf("link %+v\nwant %+v", hist[0], want)
		}
		// The old payer's member id ("M1") is never in the link: only its
		// digest, and our member id.
		if hist[0].ExternalRef == "M1" || len(hist[0].ExternalRef) != 64 {
			t.Errorf("external ref %q is not a digest", hist[0].ExternalRef)
		}
		noPHI(t, hist, phi...)
		if n := (&fixture{st: st}).countEvents(t, "t1", transfer.EventMemberMatch); n != 1 {
			t.Errorf("%d member_match events, want 1", n)
		}

		// A later import of the same member from the same payer: nothing.
		f.createFor(t, "t2", "NEW-77", "OLD-1", t0.Add(time.Hour))
		match("t2")
		if again := links("M1"); len(again) != 1 || again[0].Seq != want.Seq {
			t.Errorf("history after a later import %+v, want the one link", again)
		}

		// Another identifier at the old payer for the same member: a new
		// link; the first stands.
		f.createFor(t, "t3", "NEW-77", "OLD-3", t0.Add(2*time.Hour))
		if m := match("t3"); m.MemberID != "M3" {
			t.Fatalf("t3: %+v", m)
		}
		other := links("M3")
		if len(other) != 1 || other[0].MemberID != "NEW-77" || other[0].Provenance.TransferID != "t3" || other[0].Seq == want.Seq {
			t.Errorf("history of the other identifier %+v, want one link to NEW-77 from t3", other)
		}
		noPHI(t, other, phi...)
		if again := links("M1"); len(again) != 1 {
			t.Errorf("the first identifier's history %+v, want its one link", again)
		}

		// A member not yet numbered (the transfer stands in for it in the
		// match request): no link, so the first one is not ended.
		f.createFor(t, "t4", "", "OLD-1", t0.Add(3*time.Hour))
		match("t4")
		if again := links("M1"); len(again) != 1 || again[0].MemberID != "NEW-77" {
			t.Errorf("a member without an id linked: %+v", again)
		}
		// No match: the event, no link.
		f.createFor(t, "t5", "NEW-78", "OLD-9", t0.Add(4*time.Hour))
		if m := match("t5"); m.Status != transfer.ErrorNoMatch {
			t.Fatalf("t5: %+v", m)
		}
		for _, v := range []string{"", "OLD-9"} {
			if h := links(v); len(h) != 0 {
				t.Errorf("no match linked %+v", h)
			}
		}
	})
}
