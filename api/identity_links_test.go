package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
)

// population is a member index in which the sample's member is one of
// many: strangers for the matcher to estimate chance agreement from.
func population() []member.Record {
	given := []string{"James", "Mary", "John", "Patricia", "Michael", "Linda", "David", "Barbara", "Robert", "Jennifer"}
	family := []string{"Smith", "Jones", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Moore", "Taylor", "Clark"}
	recs := []member.Record{{ID: "M-ZQ", Given: "Zelphina", Family: "Quarrington", BirthDate: "1984-07-19", Sex: "F",
		Street: "17 Larkspur Lane", City: "Springfield", State: "IL", PostalCode: "62701", Phone: "555-0199"}}
	for i := range 400 {
		recs = append(recs, member.Record{ID: fmt.Sprintf("S%03d", i), Given: given[i%10], Family: family[i/40],
			BirthDate: fmt.Sprintf("19%02d-%02d-%02d", 40+i%60, 1+i%12, 1+i%28), Sex: []string{"M", "F"}[i%2],
			Street: fmt.Sprintf("%d Elm Street", 100+i/3), City: "Springfield", State: "IL", PostalCode: fmt.Sprintf("627%02d", i%50),
			Phone: fmt.Sprintf("217-555-%04d", 1000+i/3)})
	}
	return recs
}

// TestTransferShowsIdentityRationaleAndLinks: a transfer resolved by the
// real matcher shows, through GET /v1/transfers/{id}, a rationale whose
// field weights add up to the score, and the identity graph's history of
// what it presented: the link the resolution made, by score, naming the
// transfer. Another transfer presenting the same shows the same history.
func TestTransferShowsIdentityRationaleAndLinks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.store.UpsertMembers(ctx, population()); err != nil {
		t.Fatal(err)
	}
	acts := &activities.Transfer{Store: e.store, Matcher: &activities.IndexMatcher{Store: e.store}}
	first := decode[Transfer](t, e.post("key-links-1", body("sandbox"))).Id
	if o, err := acts.ResolveIdentity(ctx, first); err != nil || o.MemberID != "M-ZQ" {
		t.Fatalf("ResolveIdentity = %+v, %v", o, err)
	}

	w := e.do(http.MethodGet, "/v1/transfers/"+first, "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET = %d %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), "presentation") {
		t.Errorf("the answer shows the presentation digest: %s", w.Body)
	}
	id := decode[Transfer](t, w).Identity
	if id == nil || id.Status != IdentityStatusResolved || deref(id.MemberId) != "M-ZQ" || id.Rationale == nil {
		t.Fatalf("identity %+v", id)
	}
	if id.Rationale.Rule != identity.RuleProbabilistic {
		t.Fatalf("rule %q (%s): the sample must be matched by score", id.Rationale.Rule, id.Rationale.Summary)
	}
	fields := deref(id.Rationale.Fields)
	sum := 0.0
	for _, f := range fields {
		sum += f.Weight
	}
	if len(fields) < 2 || math.Abs(sum-id.Score) > 1e-9 {
		t.Errorf("%d fields add up to %v, score %v", len(fields), sum, id.Score)
	}

	hist := deref(id.LinkHistory)
	if len(hist) != 1 {
		t.Fatalf("link history %+v, want one link", hist)
	}
	l := hist[0]
	if l.MemberId != "M-ZQ" || l.Ends != nil || l.ValidTo != nil || l.MadeBy.Kind != LinkMakerKindScore ||
		deref(l.MadeBy.Rule) != identity.RuleProbabilistic || deref(l.MadeBy.Score) != id.Score || l.MadeBy.Reviewer != nil ||
		l.Provenance == nil || deref(l.Provenance.TransferId) != first || !strings.HasPrefix(deref(l.Provenance.Note), "identity resolution: ") {
		t.Errorf("link %+v made by %+v provenance %+v", l, l.MadeBy, l.Provenance)
	}

	// Before its identity is decided a transfer shows no identity; the
	// same presentation decided later shows the link the first made.
	second := decode[Transfer](t, e.post("key-links-2", body("sandbox"))).Id
	if got := decode[Transfer](t, e.do(http.MethodGet, "/v1/transfers/"+second, "")); got.Identity != nil {
		t.Errorf("undecided identity %+v", got.Identity)
	}
	if _, err := acts.ResolveIdentity(ctx, second); err != nil {
		t.Fatal(err)
	}
	again := decode[Transfer](t, e.do(http.MethodGet, "/v1/transfers/"+second, "")).Identity
	if h := deref(again.LinkHistory); len(h) != 1 || h[0].Seq != l.Seq || deref(h[0].Provenance.TransferId) != first {
		t.Errorf("second transfer's link history %+v, want the first's link", h)
	}
	// Another partner's presentation of the same person is another
	// external identity, with a history of its own.
	third := decode[Transfer](t, e.post("key-links-3", body("acme"))).Id
	if _, err := acts.ResolveIdentity(ctx, third); err != nil {
		t.Fatal(err)
	}
	other := decode[Transfer](t, e.do(http.MethodGet, "/v1/transfers/"+third, "")).Identity
	if h := deref(other.LinkHistory); len(h) != 1 || deref(h[0].Provenance.TransferId) != third {
		t.Errorf("another partner's link history %+v, want its own link", h)
	}
}
