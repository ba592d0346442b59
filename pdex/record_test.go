package pdex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// matchTransfers are the $member-match transfers of requester, newest
// first.
func matchTransfers(t *testing.T, st store.Store, requester string) []transfer.Transfer {
	t.Helper()
	page, err := st.ListTransfers(context.Background(), store.ListFilter{Direction: transfer.DirectionExport, PartnerID: requester})
	if err != nil {
		t.Fatal(err)
	}
	return page.Items
}

// states are the states a timeline enters, in order.
func states(evs []transfer.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == transfer.EventState {
			out = append(out, string(e.State))
		}
	}
	return out
}

func TestMemberMatchRecorded(t *testing.T) {
	expired := func(d *Deps) { d.Now = func() time.Time { return day("2023-01-01T00:00:00Z") } }
	cases := []struct {
		name     string
		deps     func(*Deps)
		dec      identity.Decision
		status   int
		states   string
		errType  string
		errWhy   string
		decision bool // an identity_decision event
	}{
		{name: "match", status: 200, states: "initiated identity_pending consent_verified complete", decision: true,
			dec: identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M100001", Score: 14.5,
				Rationale: transfer.Rationale{Rule: identity.RuleProbabilistic, Summary: "fields agree",
					Fields: []transfer.FieldContribution{{Field: "family", Level: "exact", Weight: 6.1}}}}},
		{name: "no match", status: 422, states: "initiated identity_pending failed", errType: transfer.ErrorNoMatch, errWhy: OutcomeNoMatch, decision: true,
			dec: identity.Decision{Outcome: identity.OutcomeNoMatch, Rationale: transfer.Rationale{Rule: identity.RuleNone}}},
		{name: "several candidates", status: 422, states: "initiated identity_pending failed", errType: transfer.ErrorNoMatch,
			errWhy: OutcomeMultipleMatches, decision: true,
			dec: identity.Decision{Outcome: identity.OutcomeReview, MemberID: "M100001", Candidates: []string{"M100001", "M100002"}}},
		{name: "consent denied", deps: expired, status: 422, states: "initiated identity_pending failed",
			errType: transfer.ErrorConsentDenied, errWhy: ConsentPeriod},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := openStore(t)
			hs := newHarness(t, func(d *Deps) {
				d.Store = st
				if c.deps != nil {
					c.deps(d)
				}
			})
			hs.m.dec = c.dec
			if a := hs.match("new-payer", exampleBody(t)); a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			ts := matchTransfers(t, st, "new-payer")
			if len(ts) != 1 {
				t.Fatalf("%d export transfers of new-payer, want 1", len(ts))
			}
			tr := ts[0]
			if tr.ClientID != ClientID("new-payer") || tr.Direction != transfer.DirectionExport {
				t.Errorf("transfer %+v", tr)
			}
			evs, err := st.Timeline(context.Background(), tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(states(evs), " "); got != c.states {
				t.Errorf("states %q, want %q", got, c.states)
			}
			if c.errType == "" {
				if tr.State != transfer.StateComplete || tr.Error != nil {
					t.Errorf("state %s, error %+v", tr.State, tr.Error)
				}
			} else if tr.State != transfer.StateFailed || tr.Error == nil || tr.Error.Type != c.errType || tr.Error.Detail != c.errWhy {
				t.Errorf("state %s, error %+v, want failed %s (%s)", tr.State, tr.Error, c.errType, c.errWhy)
			}
			var decided *transfer.Event
			for i, e := range evs {
				if e.Type == transfer.EventIdentityDecision {
					decided = &evs[i]
				}
			}
			if (decided != nil) != c.decision {
				t.Fatalf("identity decision recorded: %v, want %v", decided != nil, c.decision)
			}
			if decided != nil && decided.Detail["rule"] != c.dec.Rationale.Rule {
				t.Errorf("identity decision %v, want rule %q", decided.Detail, c.dec.Rationale.Rule)
			}
			init := evs[0].Detail
			if init["operation"] != OperationMemberMatch || init["requester"] != "new-payer" || len(init["presentation"].(string)) != 64 {
				t.Errorf("initiated detail %v", init)
			}
			// A match links what the requester presented to our member in
			// the identity graph, with the consent_verified step; a
			// refusal links nothing.
			pres, _ := init["presentation"].(string)
			links, err := st.IdentityLinks(context.Background(), "new-payer", pres)
			if err != nil {
				t.Fatal(err)
			}
			if c.errType != "" && len(links) != 0 {
				t.Errorf("a refused match linked %+v", links)
			}
			if c.errType == "" && len(links) != 1 {
				t.Fatalf("links %+v after a match, want one", links)
			}
			if c.errType == "" {
				want := graph.Link{Seq: links[0].Seq, Partner: "new-payer", ExternalRef: pres, MemberID: "M100001",
					ValidFrom: links[0].ValidFrom, MadeBy: graph.Maker{Kind: graph.MadeByScore, Rule: identity.RuleProbabilistic, Score: 14.5},
					Provenance: graph.Provenance{TransferID: tr.ID, Presentation: pres, Note: "$member-match answered to new-payer"}}
				if links[0] != want {
					t.Errorf("links %+v, want %+v", links, want)
				}
				verified := evs[len(evs)-2]
				if verified.State != transfer.StateConsentVerified || !links[0].ValidFrom.Equal(verified.At) {
					t.Errorf("link from %v, consent_verified event %+v: want the link from the step's time", links[0].ValidFrom, verified)
				}
				if tr.Identity.Presentation != pres {
					t.Errorf("projection identity presentation %q, want %q", tr.Identity.Presentation, pres)
				}
			}
			if c.errType == "" {
				last := evs[len(evs)-1].Detail
				g, _ := last["grant"].(map[string]any)
				if last["member_id"] != "M100001" || g == nil || g["member_id"] != "M100001" || g["scope"] != transfer.ScopeRegular ||
					last["consent_id"] == "" || last["expires"] == nil {
					t.Errorf("complete detail %v", last)
				}
				if tr.Consent == nil || tr.Consent.Status != transfer.ConsentVerified || tr.Identity == nil || tr.Identity.MemberID != "M100001" {
					t.Errorf("projection consent %+v identity %+v", tr.Consent, tr.Identity)
				}
				gs, err := st.MatchGrants(context.Background(), "new-payer")
				if err != nil || len(gs) != 1 || gs[0].TransferID != tr.ID {
					t.Errorf("grants %+v, %v: want one naming transfer %s", gs, err, tr.ID)
				}
			}
			if c.errType == transfer.ErrorConsentDenied && (tr.Consent == nil || tr.Consent.Reason != ConsentPeriod) {
				t.Errorf("consent %+v", tr.Consent)
			}
			// No PHI of the request anywhere in the timeline (the audit log).
			b, _ := json.Marshal(evs)
			for _, s := range examplePHI {
				if strings.Contains(string(b), s) {
					t.Errorf("timeline holds PHI %q: %s", s, b)
				}
			}
			// Answered: nothing is pending for api.ResumePending.
			if p, err := st.PendingIdempotency(context.Background(), time.Now().Add(time.Hour), nil, 10); err != nil || len(p) != 0 {
				t.Errorf("pending idempotency %+v, %v", p, err)
			}
			// A retried request is a new transfer with the same presentation.
			hs.match("new-payer", exampleBody(t))
			again := matchTransfers(t, st, "new-payer")
			if len(again) != 2 || again[0].ID == tr.ID {
				t.Fatalf("after a retry: %d transfers", len(again))
			}
			evs2, _ := st.Timeline(context.Background(), again[0].ID)
			if evs2[0].Detail["presentation"] != init["presentation"] {
				t.Errorf("same request, presentations %v and %v", evs2[0].Detail["presentation"], init["presentation"])
			}
			// ... linked once: the link of the first stands.
			if again, _ := st.IdentityLinks(context.Background(), "new-payer", pres); len(again) != len(links) ||
				len(again) == 1 && again[0].Provenance.TransferID != tr.ID {
				t.Errorf("links after the same request again %+v, want %+v", again, links)
			}
		})
	}
}

// countingStore counts the store's writes by method and fails the
// methods named in fail (once each).
type countingStore struct {
	store.Store
	mu     sync.Mutex
	writes map[string]int
	fail   map[string]bool
}

func (c *countingStore) count(method string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writes == nil {
		c.writes = map[string]int{}
	}
	c.writes[method]++
	if c.fail[method] {
		c.fail[method] = false
		return errors.New("store down")
	}
	return nil
}

func (c *countingStore) CreateTransfer(ctx context.Context, nt store.NewTransfer) (store.CreateResult, error) {
	if err := c.count("CreateTransfer"); err != nil {
		return store.CreateResult{}, err
	}
	return c.Store.CreateTransfer(ctx, nt)
}

func (c *countingStore) ApplyChange(ctx context.Context, id string, ch store.Change) (bool, error) {
	if err := c.count("ApplyChange"); err != nil {
		return false, err
	}
	return c.Store.ApplyChange(ctx, id, ch)
}

func (c *countingStore) ApplyChanges(ctx context.Context, id string, chs []store.Change) ([]bool, error) {
	if err := c.count("ApplyChanges"); err != nil {
		return nil, err
	}
	return c.Store.ApplyChanges(ctx, id, chs)
}

func (c *countingStore) AppendMatchGrant(ctx context.Context, g store.MatchGrant) (store.MatchGrant, error) {
	if err := c.count("AppendMatchGrant"); err != nil {
		return store.MatchGrant{}, err
	}
	return c.Store.AppendMatchGrant(ctx, g)
}

func (c *countingStore) CompleteIdempotency(ctx context.Context, clientID, key string, status int, body []byte) (store.IdempotencyRecord, error) {
	if err := c.count("CompleteIdempotency"); err != nil {
		return store.IdempotencyRecord{}, err
	}
	return c.Store.CompleteIdempotency(ctx, clientID, key, status, body)
}

// A $member-match is three writes whatever its outcome: the transfer
// (initiated), the decision with its outcome (and a match's grant), the
// answer.
func TestMemberMatchTransactions(t *testing.T) {
	for _, c := range []struct {
		name string
		dec  identity.Decision
	}{
		{"match", identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M100001"}},
		{"no match", identity.Decision{Outcome: identity.OutcomeNoMatch}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := openStore(t)
			cs := &countingStore{Store: st}
			hs := newHarness(t, func(d *Deps) { d.Store = cs })
			hs.m.dec = c.dec
			hs.match("new-payer", exampleBody(t))
			want := map[string]int{"CreateTransfer": 1, "ApplyChanges": 1, "CompleteIdempotency": 1}
			if !reflect.DeepEqual(cs.writes, want) {
				t.Errorf("writes %v, want %v", cs.writes, want)
			}
		})
	}
}

func TestMemberMatchNotRecordedNotAnswered(t *testing.T) {
	// The decision's transaction fails: nothing of it is recorded (no
	// step, no grant), the failure is (failed internal, answered 500).
	st := openStore(t)
	cs := &countingStore{Store: st, fail: map[string]bool{"ApplyChanges": true}}
	hs := newHarness(t, func(d *Deps) { d.Store = cs })
	a := hs.match("new-payer", exampleBody(t))
	if a.status != http.StatusInternalServerError || strings.Contains(string(a.body), "M100001") {
		t.Errorf("%d %s", a.status, a.body)
	}
	if gs, _ := st.MatchGrants(context.Background(), "new-payer"); len(gs) != 0 {
		t.Errorf("grants %+v", gs)
	}
	ts := matchTransfers(t, st, "new-payer")
	if len(ts) != 1 || ts[0].State != transfer.StateFailed || ts[0].Error == nil || ts[0].Error.Type != transfer.ErrorInternal {
		t.Fatalf("transfers %+v", ts)
	}
	evs, _ := st.Timeline(context.Background(), ts[0].ID)
	if got := strings.Join(states(evs), " "); got != "initiated failed" || len(evs) != 2 || evs[1].Detail["after_state"] != "initiated" {
		t.Errorf("timeline %q (%d events): the decision was half recorded", got, len(evs))
	}
	// No link either: it is made in the decision's transaction.
	pres, _ := evs[0].Detail["presentation"].(string)
	if links, err := st.IdentityLinks(context.Background(), "new-payer", pres); err != nil || pres == "" || len(links) != 0 {
		t.Errorf("links %+v, %v (presentation %q)", links, err, pres)
	}
	if p, _ := st.PendingIdempotency(context.Background(), time.Now().Add(time.Hour), nil, 10); len(p) != 0 {
		t.Errorf("pending %+v", p)
	}
}

func TestExportNamesMatchTransfers(t *testing.T) {
	b := newBulkHarness(t)
	if a := b.match("new-payer", exampleBody(t)); a.status != 200 {
		t.Fatalf("match: %d %s", a.status, a.body)
	}
	ts := matchTransfers(t, b.st, "new-payer")
	if len(ts) != 1 {
		t.Fatalf("%d transfers", len(ts))
	}
	b.kickoff("/Patient/$export")
	k := b.ex.kickoffs[0]
	if len(k.MatchTransfers) != 1 || k.MatchTransfers["M100001"] != ts[0].ID {
		t.Errorf("kick-off MatchTransfers %v, want M100001 → %s (M1 and M2 were granted without one)", k.MatchTransfers, ts[0].ID)
	}
}

// A $bulk-member-match batch is one transfer: an event per member, then
// complete with the counts; no PHI of its members.
func TestBulkMemberMatchRecorded(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Lovelace", nil), bundle(t, "Twin", nil), bundle(t, "Nobody", nil)))
	tr, err := b.st.GetTransfer(context.Background(), id)
	if err != nil || tr.State != transfer.StateIdentityPending || tr.PartnerID != "new-payer" || tr.ClientID != ClientID("new-payer") {
		t.Fatalf("batch transfer before running: %+v, %v", tr, err)
	}
	if p, _ := b.st.PendingIdempotency(context.Background(), time.Now().Add(time.Hour), nil, 10); len(p) != 0 {
		t.Errorf("pending idempotency %+v", p)
	}
	b.run()
	if tr, _ = b.st.GetTransfer(context.Background(), id); tr.State != transfer.StateComplete {
		t.Errorf("batch transfer %s, want complete", tr.State)
	}
	evs, err := b.st.Timeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(states(evs), " "); got != "initiated identity_pending complete" {
		t.Errorf("states %q", got)
	}
	var members []string
	for _, e := range evs {
		if e.Type == transfer.EventMemberDecided {
			members = append(members, fmt.Sprint(e.Detail["index"], " ", e.Detail["outcome"], " ", e.Detail["member_id"]))
		}
	}
	if got := strings.Join(members, "|"); got != "0 matched M1|1 multiple_matches <nil>|2 no_match <nil>" {
		t.Errorf("member events %q", got)
	}
	bs, _ := json.Marshal(evs)
	for _, s := range append(examplePHI, "Lovelace", "Twin", "Nobody") {
		if strings.Contains(string(bs), s) {
			t.Errorf("timeline holds PHI %q: %s", s, bs)
		}
	}
}

func TestBulkMemberMatchStartFailsRecorded(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	b.bulk.startErr = errors.New("temporal down")
	if a := b.do("POST", "/Group/$bulk-member-match", "new-payer", fhirAsync, bulkBody(t, bundle(t, "Lovelace", nil))); a.status != 500 {
		t.Fatalf("status %d", a.status)
	}
	ts := matchTransfers(t, b.st, "new-payer")
	if len(ts) != 1 || ts[0].State != transfer.StateFailed || ts[0].Error.Type != transfer.ErrorInternal {
		t.Errorf("transfers %+v", ts)
	}
}
