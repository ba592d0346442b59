package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// hrexMemberMatch is the official HRex $member-match example (Patricia Ann
// Person, born 1974-12-25, old card DH10001235), one member of a batch.
func hrexMemberMatch(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../pdex/testdata/hrex/member-match-in.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hrexPHI are the example's identifying values: none may reach a link.
var hrexPHI = []string{"Patricia", "Person", "1974-12-25", "DH10001235", "234567"}

// noPHI fails if a link of hist holds one of the values, matched
// case-insensitively as a whole word: a hex digest that happens to contain
// "ada" or "234567" is not a leak (it made this test flaky when it
// compared substrings).
func noPHI(t *testing.T, hist []graph.Link, values ...string) {
	t.Helper()
	b, err := json.Marshal(hist)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if regexp.MustCompile(`(?i)(^|[^0-9a-z])` + regexp.QuoteMeta(v) + `([^0-9a-z]|$)`).Match(b) {
			t.Errorf("a link holds %q: %s", v, b)
		}
	}
}

// TestBulkMemberLinks: a member of a $bulk-member-match matched for the
// requester links the requester's presentation (its keyed digest, as a
// single $member-match computes it) to our member, with the member's
// member_decided event: once on retry, not again for the same member in
// another batch; on its own for a batch without a transfer; a member not
// matched links nothing.
func TestBulkMemberLinks(t *testing.T) {
	body := hrexMemberMatch(t)
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	consentDay := time.Date(2022, 1, 15, 12, 0, 0, 0, time.UTC) // within the example consent's period
	eachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		matching := &pdex.Matching{
			Matcher: scored("M1", 14.5),
			Parties: func(id string) (pdex.Party, bool) {
				return pdex.Party{ID: id, Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "0123456789"}}}, true
			},
			Holder:   pdex.Party{Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "9876543210"}}},
			Throttle: pdex.NewThrottle(0, 0, 100, time.Hour),
			Now:      func() time.Time { return consentDay },
		}
		f.bulk.Matcher = matching
		if err := f.st.PutArtifact(ctx, store.Artifact{Digest: digest, TransferID: pdex.BulkMatchRequestOwner("new-payer", "batch-1"),
			Name: "member-0", ContentType: "application/fhir+json", Size: int64(len(body)), Data: body, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		key, err := f.st.PresentationKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req, perr := pdex.ParseMemberMatch(body)
		if perr != nil {
			t.Fatal(perr)
		}
		pres := graph.Presentation(key, "new-payer", req.Demographics())
		history := func(partner string) []graph.Link {
			t.Helper()
			hist, err := f.st.IdentityLinks(ctx, partner, graph.Presentation(key, partner, req.Demographics()))
			if err != nil {
				t.Fatal(err)
			}
			return hist
		}

		f.create(t, "batch-1", transfer.Demographics{}, activeConsent) // the batch's transfer
		in := BulkMemberInput{BatchID: "batch-1", Requester: "new-payer", Index: 0, Digest: digest}
		for attempt := 1; attempt <= 2; attempt++ { // a retried activity
			if o, err := f.bulk.MatchBulkMember(ctx, in); err != nil || o.Outcome != pdex.OutcomeMatched || o.MemberID != "M1" {
				t.Fatalf("attempt %d: %+v, %v", attempt, o, err)
			}
		}
		hist := history("new-payer")
		if len(hist) != 1 {
			t.Fatalf("history %+v: want one link", hist)
		}
		want := graph.Link{Seq: hist[0].Seq, Partner: "new-payer", ExternalRef: pres, MemberID: "M1", ValidFrom: t0,
			MadeBy:     graph.Maker{Kind: graph.MadeByScore, Rule: identity.RuleProbabilistic, Score: 14.5},
			Provenance: graph.Provenance{TransferID: "batch-1", Presentation: pres, Note: "$bulk-member-match answered to new-payer"}}
		if !hist[0].ValidFrom.Equal(t0) {
			t.Errorf("link from %v, want the member_decided event's time %v", hist[0].ValidFrom, t0)
		}
		hist[0].ValidFrom = t0
		if hist[0] != want {
			t.Errorf("link %+v\nwant %+v", hist[0], want)
		}
		noPHI(t, hist, hrexPHI...)
		if n := f.countEvents(t, "batch-1", transfer.EventMemberDecided); n != 1 {
			t.Errorf("%d member_decided events, want 1", n)
		}

		// The same member in another batch: the link stands.
		f.create(t, "batch-2", transfer.Demographics{}, activeConsent)
		in.BatchID = "batch-2"
		if _, err := f.bulk.MatchBulkMember(ctx, in); err != nil {
			t.Fatal(err)
		}
		if again := history("new-payer"); len(again) != 1 || again[0].Seq != want.Seq {
			t.Errorf("history after the same member again %+v, want the one link", again)
		}

		// A batch without a transfer (accepted before batches were
		// transfers), now matched to M2: the link moves, on its own write,
		// once.
		matching.Matcher = scored("M2", 16)
		in.BatchID = "no-such-batch"
		for attempt := 1; attempt <= 2; attempt++ {
			if o, err := f.bulk.MatchBulkMember(ctx, in); err != nil || o.MemberID != "M2" {
				t.Fatalf("no transfer, attempt %d: %+v, %v", attempt, o, err)
			}
		}
		if h := history("new-payer"); len(h) != 3 || h[1].Ends != want.Seq || h[2].MemberID != "M2" ||
			h[2].Provenance.TransferID != "no-such-batch" || h[2].Provenance.Presentation != pres || h[2].MadeBy.Score != 16 {
			t.Errorf("history %+v: want the link to M1, its end, the link to M2", h)
		}

		// Not matched: no link.
		matching.Matcher = matcherFunc(func(transfer.Demographics) identity.Decision {
			return identity.Decision{Outcome: identity.OutcomeNoMatch}
		})
		f.create(t, "batch-3", transfer.Demographics{}, activeConsent)
		if o, err := f.bulk.MatchBulkMember(ctx, BulkMemberInput{BatchID: "batch-3", Requester: "other-payer", Digest: digest}); err != nil ||
			o.Outcome != pdex.OutcomeNoMatch {
			t.Fatalf("no match: %+v, %v", o, err)
		}
		if h := history("other-payer"); len(h) != 0 {
			t.Errorf("a member not matched linked %+v", h)
		}
	})
}
