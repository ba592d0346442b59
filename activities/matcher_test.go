package activities

import (
	"context"
	"testing"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

func TestCombine(t *testing.T) {
	match := func(id string) identity.Decision {
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: id}
	}
	review := func(ids ...string) identity.Decision {
		return identity.Decision{Outcome: identity.OutcomeReview, MemberID: ids[0], Candidates: ids}
	}
	none := identity.Decision{Outcome: identity.OutcomeNoMatch}
	for _, tc := range []struct {
		name        string
		d, exact    identity.Decision
		wantOutcome string
		wantMember  string
	}{
		{"index finds nothing, store has an exact match (member added since load)", none, match("M9"), identity.OutcomeMatch, "M9"},
		{"index hesitates over the one candidate the exact rule finds", review("M1"), match("M1"), identity.OutcomeMatch, "M1"},
		{"index hesitates over another candidate", review("M2"), match("M1"), identity.OutcomeReview, "M2"},
		{"index sees two candidates: a person decides", review("M1", "M2"), match("M1"), identity.OutcomeReview, "M1"},
		{"exact rule finds nothing", review("M1"), none, identity.OutcomeReview, "M1"},
		{"nothing anywhere", none, none, identity.OutcomeNoMatch, ""},
		{"exact rule is itself ambiguous", none, review("M1", "M2"), identity.OutcomeNoMatch, ""},
	} {
		got := combine(tc.d, tc.exact)
		if got.Outcome != tc.wantOutcome || got.MemberID != tc.wantMember {
			t.Errorf("%s: got %s %s, want %s %s", tc.name, got.Outcome, got.MemberID, tc.wantOutcome, tc.wantMember)
		}
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
