package activities

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func TestCombine(t *testing.T) {
	byID := func(id string) identity.Decision {
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: id, Rationale: transfer.Rationale{Rule: identity.RuleMemberID}}
	}
	byName := func(id string) identity.Decision {
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: id, Rationale: transfer.Rationale{Rule: identity.RuleExactNameDOB}}
	}
	scoredMatch := func(id string) identity.Decision {
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: id, Rationale: transfer.Rationale{Rule: identity.RuleProbabilistic}}
	}
	review := func(ids ...string) identity.Decision {
		return identity.Decision{Outcome: identity.OutcomeReview, MemberID: ids[0], Candidates: ids}
	}
	none := identity.Decision{Outcome: identity.OutcomeNoMatch}
	for _, tc := range []struct {
		name           string
		d, exact       identity.Decision
		wantOutcome    string
		wantMember     string
		wantCandidates []string
	}{
		{"index finds nothing, one member has the name and birth date", none, byName("M9"), identity.OutcomeMatch, "M9", nil},
		{"index hesitates over the one candidate the name rule finds", review("M1"), byName("M1"), identity.OutcomeMatch, "M1", nil},
		{"index hesitates over another candidate than the name rule's", review("M2"), byName("M1"), identity.OutcomeReview, "M2", []string{"M2"}},
		{"member id and birth date beat a single other candidate", review("M2"), byID("M1"), identity.OutcomeMatch, "M1", nil},
		{"member id and birth date beat several candidates", review("M2", "M3"), byID("M1"), identity.OutcomeMatch, "M1", nil},
		{"member id and birth date beat a scored match", scoredMatch("M2"), byID("M1"), identity.OutcomeMatch, "M1", nil},
		{"index sees two candidates: a person decides", review("M1", "M2"), byName("M1"), identity.OutcomeReview, "M1", []string{"M1", "M2"}},
		{"name rule finds nothing", review("M1"), none, identity.OutcomeReview, "M1", []string{"M1"}},
		{"nothing anywhere", none, none, identity.OutcomeNoMatch, "", nil},
		{"several members have the name and birth date: review, never no_match", none, review("M1", "M2"), identity.OutcomeReview, "M1", []string{"M1", "M2"}},
		{"both reviews: the reviewer sees both lists", review("M3"), review("M1", "M2"), identity.OutcomeReview, "M3", []string{"M3", "M1", "M2"}},
		{"a confident score is not undone by namesakes", scoredMatch("M1"), review("M1", "M2"), identity.OutcomeMatch, "M1", nil},
	} {
		got := combine(tc.d, tc.exact)
		if got.Outcome != tc.wantOutcome || got.MemberID != tc.wantMember || !slices.Equal(got.Candidates, tc.wantCandidates) {
			t.Errorf("%s: got %s %s %v, want %s %s %v", tc.name, got.Outcome, got.MemberID, got.Candidates, tc.wantOutcome, tc.wantMember, tc.wantCandidates)
		}
	}
}

// laggingStore is a member store whose change feed shows nothing: an
// index over it stays as it was loaded, as a stale copy would.
type laggingStore struct{ store.Store }

func (laggingStore) MemberChanges(context.Context, int64, string, int) ([]store.MemberChange, error) {
	return nil, nil
}

// TestExactMemberIDBeatsAStaleCandidate: even over an index that missed a
// write, the member named by an exact member id and birth date is the
// answer, not an older look-alike the index offers alone for review.
func TestExactMemberIDBeatsAStaleCandidate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	mary := member.Record{ID: "G1", Given: "Mary", Family: "Garcia", BirthDate: "1971-03-14", Sex: "F", Street: "40 Birch Lane", City: "Peoria", State: "IL", PostalCode: "61602"}
	if err := f.st.UpsertMembers(ctx, []member.Record{mary}); err != nil {
		t.Fatal(err)
	}
	m := &IndexMatcher{Store: laggingStore{f.st}}
	if err := m.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	maria := mary
	maria.ID, maria.Given = "G2", "Maria"
	if err := f.st.UpsertMembers(ctx, []member.Record{maria}); err != nil {
		t.Fatal(err)
	}
	q := transfer.Demographics{MemberID: "G2", Given: "Maria", Family: "Garcia", BirthDate: "1971-03-14", Sex: "F",
		Address: transfer.Address{Street: "40 Birch Lane", City: "Peoria", State: "IL", PostalCode: "61602"}}
	ix, _ := m.current(ctx)
	if d := ix.Match(q); d.MemberID != "G1" {
		t.Fatalf("the stale index should offer the older member: %+v", d)
	}
	d, err := m.Resolve(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != identity.OutcomeMatch || d.MemberID != "G2" || d.Rationale.Rule != identity.RuleMemberID {
		t.Fatalf("got %s %s (%s), want a match to G2 by member id", d.Outcome, d.MemberID, d.Rationale.Rule)
	}
}

// TestIndexMatcherSeesEveryWriteBeforeTheRequest: members written after
// the index was loaded are in the very next decision, through the index
// itself (the change feed), not only through the exact rules.
func TestIndexMatcherSeesEveryWriteBeforeTheRequest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := &IndexMatcher{Store: f.st}
	if err := m.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	twin := member.Record{Given: "Casey", Family: "Okafor", BirthDate: "1988-11-23", Sex: "F", Street: "7 Elm Street", City: "Duluth", State: "MN", PostalCode: "55802"}
	a, b := twin, twin
	a.ID, b.ID = "T1", "T2"
	if err := f.st.UpsertMembers(ctx, []member.Record{a}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.UpsertMembers(ctx, []member.Record{b}); err != nil {
		t.Fatal(err)
	}
	q := transfer.Demographics{Given: "Casey", Family: "Okafor", BirthDate: "1988-11-23", Sex: "F"}
	d, err := m.Resolve(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != identity.OutcomeReview || !slices.Contains(d.Candidates, "T1") || !slices.Contains(d.Candidates, "T2") {
		t.Fatalf("two identical members: got %s %v, want review of T1 and T2", d.Outcome, d.Candidates)
	}
	ix, _ := m.current(ctx)
	if got := ix.Match(q); !slices.Contains(got.Candidates, "T1") || !slices.Contains(got.Candidates, "T2") {
		t.Fatalf("the index itself: %s %v", got.Outcome, got.Candidates)
	}

	// A new family name: found by it in the next request, not by the old.
	r := member.Record{ID: "R1", Given: "Imogen", Family: "Bramwell", BirthDate: "1966-02-19", Sex: "F", Street: "3 Quarry Road", City: "Bangor", State: "ME", PostalCode: "04401"}
	if err := f.st.UpsertMembers(ctx, []member.Record{r}); err != nil {
		t.Fatal(err)
	}
	old := transfer.Demographics{Given: "Imogen", Family: "Bramwell", BirthDate: "1966-02-19", Sex: "F"}
	if d, err := m.Resolve(ctx, old); err != nil || d.Outcome != identity.OutcomeMatch || d.MemberID != "R1" {
		t.Fatalf("before the change: %+v %v", d, err)
	}
	r.Family = "Lindqvist"
	if err := f.st.UpsertMembers(ctx, []member.Record{r}); err != nil {
		t.Fatal(err)
	}
	d, err = m.Resolve(ctx, transfer.Demographics{Given: "Imogen", Family: "Lindqvist", BirthDate: "1966-02-19", Sex: "F"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != identity.OutcomeMatch || d.MemberID != "R1" {
		t.Fatalf("by the new name: got %s %s %v, want a match to R1", d.Outcome, d.MemberID, d.Candidates)
	}
	d, err = m.Resolve(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome == identity.OutcomeMatch {
		t.Fatalf("by the old name: got a match to %s, want none", d.MemberID)
	}
}

func TestIndexMatcherSeesMembersAddedAfterLoading(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := &IndexMatcher{Store: f.st}
	if err := m.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.st.UpsertMembers(ctx, []member.Record{{ID: "M4", Given: "Dana", Family: "Whitfield", BirthDate: "1979-06-02", Sex: "F"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q      transfer.Demographics
		want   string
		member string
	}{
		{transfer.Demographics{Given: "Dana", Family: "Whitfield", BirthDate: "1979-06-02"}, identity.OutcomeMatch, "M4"},
		{transfer.Demographics{Given: "Alice", Family: "Nguyen", BirthDate: "1985-04-12", Sex: "F"}, identity.OutcomeMatch, "M1"},
		{transfer.Demographics{Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08"}, identity.OutcomeReview, ""},
		{transfer.Demographics{Given: "Nobody", Family: "Known", BirthDate: "1960-01-01"}, identity.OutcomeNoMatch, ""},
	} {
		d, err := m.Resolve(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if d.Outcome != tc.want || (tc.member != "" && d.MemberID != tc.member) {
			t.Errorf("%s %s: got %s %s, want %s %s", tc.q.Given, tc.q.Family, d.Outcome, d.MemberID, tc.want, tc.member)
		}
		if d.Outcome == identity.OutcomeReview && len(d.Candidates) < 2 {
			t.Errorf("%s: review with candidates %v, want both relatives", tc.q.Given, d.Candidates)
		}
	}
}

// TestIndexMatcherConcurrentWritesAndDecisions: callers that each write a
// member and at once ask for it, concurrently, all find their own (the
// shared catch-up never serves a caller a read older than its write).
func TestIndexMatcherConcurrentWritesAndDecisions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := &IndexMatcher{Store: f.st}
	if err := m.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				rec := benchMember("C", 1000*g+i)
				if err := f.st.UpsertMembers(ctx, []member.Record{rec}); err != nil {
					t.Error(err)
					return
				}
				d, err := m.Resolve(ctx, transfer.Demographics{Given: rec.Given, Family: rec.Family, BirthDate: rec.BirthDate, Sex: rec.Sex})
				if err != nil {
					t.Error(err)
					return
				}
				if d.Outcome != identity.OutcomeMatch || d.MemberID != rec.ID {
					t.Errorf("%s: got %s %s", rec.ID, d.Outcome, d.MemberID)
				}
			}
		}()
	}
	wg.Wait()
}

// TestIndexMatcherModelInForce: the first start stores its estimate, and a
// model retrained since is taken by the running matcher.
func TestIndexMatcherModelInForce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var ms []member.Record
	for i := range MinModelMembers + 200 {
		ms = append(ms, benchMember("Q", i))
	}
	if err := f.st.UpsertMembers(ctx, ms); err != nil {
		t.Fatal(err)
	}
	m := &IndexMatcher{Store: f.st, By: "test"}
	if err := m.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	id, stored, err := f.st.LatestIdentityModel(ctx)
	if err != nil || m.model != id || id == 0 {
		t.Fatalf("after Warm: matcher model %d, store %d %v", m.model, id, err)
	}
	retrained := stored
	retrained.Method, retrained.TrainedAt = identity.MethodTrained, time.Now()
	retrained.M = map[string]map[string]float64{}
	for f, levels := range stored.M {
		retrained.M[f] = map[string]float64{}
		for l, v := range levels {
			retrained.M[f][l] = v
		}
	}
	retrained.M["given"]["exact"] = 0.5
	newID, err := f.st.SaveIdentityModel(ctx, retrained, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.follow(ctx); err != nil {
		t.Fatal(err)
	}
	if m.model != newID {
		t.Fatalf("after follow: model %d, want %d", m.model, newID)
	}
	if got := m.ix.Model().Params(identity.MethodTrained, 0, time.Now()).M["given"]["exact"]; got != 0.5 {
		t.Fatalf("the index decides with m(given exact) = %v, want the retrained 0.5", got)
	}
}
