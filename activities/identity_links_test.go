package activities

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/postgres"
	"github.com/p2p-payer/p2p/store/postgres/pgtest"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/store/storetest"
	"github.com/p2p-payer/p2p/transfer"
)

// eachStore runs test over a fixture on each store: SQLite, and
// PostgreSQL at $P2P_TEST_DATABASE_URL (skipped when it is unset, failed
// when it is set and PostgreSQL does not answer).
func eachStore(t *testing.T, test func(t *testing.T, f *fixture)) {
	onEachStore(t, func(t *testing.T, st store.Store) { test(t, newFixtureOn(t, st)) })
}

// onEachStore runs test on each store, new: SQLite, and PostgreSQL as
// eachStore says.
func onEachStore(t *testing.T, test func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p2p.db"))
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, st)
		test(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		u := pgtest.Schema(t)
		ctx := context.Background()
		if err := postgres.Migrate(ctx, u); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		st, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		closeAtEnd(t, st)
		test(t, st)
	})
}

// matcherFunc is a Matcher that decides as told.
type matcherFunc func(q transfer.Demographics) identity.Decision

func (m matcherFunc) Resolve(_ context.Context, q transfer.Demographics) (identity.Decision, error) {
	return m(q), nil
}

// scored is a probabilistic match of member with score, its fields adding
// up to it.
func scored(member string, score float64) matcherFunc {
	return func(transfer.Demographics) identity.Decision {
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: member, Score: score,
			Rationale: transfer.Rationale{Rule: identity.RuleProbabilistic, Summary: "score above the match threshold",
				Fields: []transfer.FieldContribution{{Field: "prior", Level: "prior", Weight: -8}, {Field: "family", Level: "exact", Weight: score + 8}}}}
	}
}

// presentationOf is the presentation digest of transfer id's request.
func (f *fixture) presentationOf(t *testing.T, id string) string {
	t.Helper()
	req, err := f.st.GetTransferRequest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	pres, err := f.acts.key.presentation(context.Background(), f.st, req)
	if err != nil {
		t.Fatal(err)
	}
	return pres
}

// links is the identity graph's history of what transfer id presented.
func (f *fixture) links(t *testing.T, id string) []graph.Link {
	t.Helper()
	hist, err := f.st.IdentityLinks(context.Background(), "sandbox", f.presentationOf(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return hist
}

// countEvents is how many events of type typ transfer id's timeline holds.
func (f *fixture) countEvents(t *testing.T, id, typ string) int {
	t.Helper()
	evs, err := f.st.Timeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestResolutionLinks: an identity resolved automatically (an exact rule,
// the score) links the presentation to the member in the transaction of
// the identity decision, naming the rule or the score and the transfer; a
// retried activity links once, the same presentation later adds nothing,
// another member ends the old link; what resolves nothing links nothing.
func TestResolutionLinks(t *testing.T) {
	eachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		for i, c := range []struct {
			name    string
			q       transfer.Demographics
			matcher Matcher
			member  string
			by      graph.Maker
		}{
			{"member id rule", transfer.Demographics{MemberID: "M1", BirthDate: "1985-04-12"}, nil, "M1",
				graph.Maker{Kind: graph.MadeByRule, Rule: identity.RuleMemberID}},
			{"exact name rule", transfer.Demographics{Given: "ALICE", Family: "nguyen", BirthDate: "1985-04-12"}, nil, "M1",
				graph.Maker{Kind: graph.MadeByRule, Rule: identity.RuleExactNameDOB}},
			{"score", transfer.Demographics{Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08", Phone: "217-555-0100"}, scored("M2", 17.25), "M2",
				graph.Maker{Kind: graph.MadeByScore, Rule: identity.RuleProbabilistic, Score: 17.25}},
		} {
			t.Run(c.name, func(t *testing.T) {
				id := fmt.Sprintf("auto-%d", i)
				f.acts.Matcher = c.matcher
				f.create(t, id, c.q, activeConsent)
				pres := f.presentationOf(t, id)
				for attempt := 1; attempt <= 2; attempt++ { // a retried activity
					o, err := f.acts.ResolveIdentity(ctx, id)
					if err != nil || o.Status != transfer.IdentityResolved || o.MemberID != c.member || o.Presentation != pres {
						t.Fatalf("attempt %d: %+v, %v; want %s resolved, presentation %s", attempt, o, err, c.member, pres)
					}
				}
				hist := f.links(t, id)
				if len(hist) != 1 {
					t.Fatalf("history %+v: want one link", hist)
				}
				l := hist[0]
				if l.MemberID != c.member || l.MadeBy != c.by || l.Ends != 0 || !l.ValidFrom.Equal(t0) || !l.ValidTo.IsZero() ||
					l.Provenance.TransferID != id || l.Provenance.Presentation != pres ||
					!strings.HasPrefix(l.Provenance.Note, "identity resolution: ") {
					t.Errorf("link %+v, want %s made by %+v from %v, provenance %s", l, c.member, c.by, t0, id)
				}
				if n := f.countEvents(t, id, transfer.EventIdentityDecision); n != 1 {
					t.Errorf("%d identity decisions, want 1", n)
				}
				tr, err := f.st.GetTransfer(ctx, id)
				if err != nil || tr.Identity == nil || tr.Identity.Presentation != pres {
					t.Errorf("projection identity %+v, %v: want the presentation", tr.Identity, err)
				}

				// The same presentation in another transfer: the link
				// stands, not repeated.
				f.create(t, id+"-again", c.q, activeConsent)
				if o, err := f.acts.ResolveIdentity(ctx, id+"-again"); err != nil || o.MemberID != c.member {
					t.Fatalf("again: %+v, %v", o, err)
				}
				if again := f.links(t, id); len(again) != 1 || again[0].Seq != l.Seq {
					t.Errorf("history after the same presentation again: %+v, want the one link", again)
				}
			})
		}
		f.acts.Matcher = nil

		t.Run("no member, several members: no link", func(t *testing.T) {
			for _, q := range []transfer.Demographics{
				{Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08"},
				{Given: "Nobody", Family: "Known", BirthDate: "1960-01-01"},
			} {
				id := "none-" + q.Given
				f.create(t, id, q, activeConsent)
				if o, err := f.acts.ResolveIdentity(ctx, id); err != nil || o.Status == transfer.IdentityResolved {
					t.Fatalf("%s: %+v, %v", q.Given, o, err)
				}
				if hist := f.links(t, id); len(hist) != 0 {
					t.Errorf("%s: links %+v", q.Given, hist)
				}
			}
		})

		t.Run("another member ends the link", func(t *testing.T) {
			q := transfer.Demographics{Given: "Sam", Family: "Stone", BirthDate: "1970-01-01"}
			f.acts.Matcher = scored("M1", 15)
			f.create(t, "move-1", q, activeConsent)
			if _, err := f.acts.ResolveIdentity(ctx, "move-1"); err != nil {
				t.Fatal(err)
			}
			later := t0.Add(time.Hour)
			f.acts.Matcher, f.acts.Now = scored("M2", 16), func() time.Time { return later }
			defer func() { f.acts.Matcher, f.acts.Now = nil, func() time.Time { return t0 } }()
			f.create(t, "move-2", q, activeConsent)
			if _, err := f.acts.ResolveIdentity(ctx, "move-2"); err != nil {
				t.Fatal(err)
			}
			hist := f.links(t, "move-1")
			if len(hist) != 3 || hist[0].MemberID != "M1" || hist[1].Ends != hist[0].Seq || !hist[1].ValidTo.Equal(later) ||
				hist[2].MemberID != "M2" || hist[2].Provenance.TransferID != "move-2" || hist[2].MadeBy.Score != 16 {
				t.Fatalf("history %+v: want the link to M1, its end at %v, the link to M2", hist, later)
			}
			g := graph.Graph{Store: storetest.GraphStore{Store: f.st}}
			pres := f.presentationOf(t, "move-1")
			if cur, err := g.Current(ctx, "sandbox", pres, later.Add(time.Minute)); err != nil || cur.MemberID != "M2" {
				t.Errorf("current link %+v, %v; want M2", cur, err)
			}
			if past, err := g.Current(ctx, "sandbox", pres, t0.Add(time.Minute)); err != nil || past.MemberID != "M1" || !past.ValidTo.Equal(later) {
				t.Errorf("link before the move %+v, %v; want M1 until %v", past, err, later)
			}
		})
	})
}

// TestResolveIdentityRetryKeepsRecordedDecision: a retry of ResolveIdentity
// after the first attempt committed its decision (the reply lost) returns
// the recorded decision, not a new one the refreshed index would make, so
// that the workflow, the timeline and the identity link agree.
func TestResolveIdentityRetryKeepsRecordedDecision(t *testing.T) {
	eachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		q := transfer.Demographics{Given: "Ada", Family: "Byron", BirthDate: "1980-12-10"}
		f.acts.Matcher = scored("M1", 15)
		f.create(t, "retry-1", q, activeConsent)
		first, err := f.acts.ResolveIdentity(ctx, "retry-1")
		if err != nil || first.MemberID != "M1" {
			t.Fatalf("first attempt %+v, %v", first, err)
		}
		f.acts.Matcher = scored("M2", 20)
		again, err := f.acts.ResolveIdentity(ctx, "retry-1")
		if err != nil {
			t.Fatal(err)
		}
		if again.MemberID != "M1" || again.Score != 15 || again.Status != transfer.IdentityResolved {
			t.Fatalf("retry returned %+v, want the recorded decision for M1", again)
		}
		if n := f.countEvents(t, "retry-1", transfer.EventIdentityDecision); n != 1 {
			t.Errorf("%d identity decisions recorded, want 1", n)
		}
		if hist := f.links(t, "retry-1"); len(hist) != 1 || hist[0].MemberID != "M1" {
			t.Errorf("links %+v, want one to M1", hist)
		}
	})
}
