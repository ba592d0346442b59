package pdex

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// familyMatcher decides by the family name asked for; "Broken" fails.
type familyMatcher map[string]identity.Decision

func (m familyMatcher) Resolve(_ context.Context, q transfer.Demographics) (identity.Decision, error) {
	if q.Family == "Broken" {
		return identity.Decision{}, errors.New("index unavailable")
	}
	return m[q.Family], nil
}

// fakeBulk stands in for workflows.BulkMatchEngine: it keeps the batches
// and, on run, decides them as the workflow does, with the real activities;
// a delete cancels a batch not yet run with the real CancelBulkMatch.
type fakeBulk struct {
	mu        sync.Mutex
	batches   []BulkMatch
	failed    []BulkMatch // started with startErr set
	startErr  error
	acts      *activities.BulkMatch // for deletes
	deleted   []string              // batch ids DeleteBulkMatch was called with
	deleteErr error
}

func (f *fakeBulk) DeleteBulkMatch(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, id)
	if f.deleteErr != nil {
		return f.deleteErr
	}
	for _, b := range f.batches {
		if b.ID == id {
			return f.acts.CancelBulkMatch(ctx, activities.CancelBulkInput{BatchID: id, RequestOwner: BulkMatchRequestOwner(b.Requester, id),
				Members: len(b.Members), Reason: activities.BulkDeleted, Actor: "partner:" + b.Requester})
		}
	}
	return nil
}

func (f *fakeBulk) StartBulkMatch(_ context.Context, b BulkMatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		f.failed = append(f.failed, b)
		return f.startErr
	}
	f.batches = append(f.batches, b)
	return nil
}

// run decides the last batch: each member by MatchBulkMember (a failure is
// an error outcome, as the workflow records it), then FinishBulkMatch.
func (b *bulkMatchHarness) run() {
	b.t.Helper()
	b.bulk.mu.Lock()
	batch := b.bulk.batches[len(b.bulk.batches)-1]
	b.bulk.mu.Unlock()
	acts := &activities.BulkMatch{Env: activities.Env{Now: b.clock.now}, Store: b.st, Matcher: b.h.match}
	res := transfer.BulkMatchResult{BatchID: batch.ID, Requester: batch.Requester}
	for i, d := range batch.Members {
		o, err := acts.MatchBulkMember(context.Background(), activities.BulkMemberInput{BatchID: batch.ID, Requester: batch.Requester, Index: i, Digest: d})
		if err != nil {
			o = transfer.BulkMemberOutcome{Index: i, Outcome: OutcomeError, Why: "the member could not be matched"}
		}
		res.Members = append(res.Members, o)
	}
	if _, err := acts.FinishBulkMatch(context.Background(), activities.FinishBulkInput{Result: res,
		ResultOwner: BulkMatchResultOwner(batch.Requester, batch.ID), RequestOwner: BulkMatchRequestOwner(batch.Requester, batch.ID)}); err != nil {
		b.t.Fatal(err)
	}
}

type bulkMatchHarness struct {
	*bulkHarness
	bulk *fakeBulk
}

func newBulkMatchHarness(t *testing.T, edit func(*Deps)) *bulkMatchHarness {
	t.Helper()
	bulk := &fakeBulk{}
	b := newBulkHarness(t, func(d *Deps) {
		d.BulkMatches = bulk
		d.Matcher = familyMatcher{
			"Lovelace": {Outcome: identity.OutcomeMatch, MemberID: "M1"},
			"Turing":   {Outcome: identity.OutcomeMatch, MemberID: "M2"},
			"Twin":     {Outcome: identity.OutcomeReview, Candidates: []string{"M1", "M2"}},
		}
		if edit != nil {
			edit(d)
		}
	})
	bulk.acts = &activities.BulkMatch{Env: activities.Env{Now: b.clock.now}, Store: b.st}
	return &bulkMatchHarness{bulkHarness: b, bulk: bulk}
}

// bundle is the official example's parameters as one MemberBundle, for
// a member of family name family, with f applied to its parameters.
func bundle(t *testing.T, family string, f func(ps []any) []any) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(exampleBody(t), &p); err != nil {
		t.Fatal(err)
	}
	ps := p["parameter"].([]any)
	resourceOf(ps, 0)["name"].([]any)[0].(map[string]any)["family"] = family
	if f != nil {
		ps = f(ps)
	}
	return map[string]any{"name": ParamMemberBundle, "part": ps}
}

func bulkBody(t *testing.T, params ...any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var fhirAsync = map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"}

// submit posts body as partner and returns the batch id.
func (b *bulkMatchHarness) submit(partner string, body []byte) string {
	b.t.Helper()
	a := b.do("POST", "/Group/$bulk-member-match", partner, fhirAsync, body)
	if a.status != http.StatusAccepted {
		b.t.Fatalf("kick-off: %d %s", a.status, a.body)
	}
	id, ok := strings.CutPrefix(a.header.Get("Content-Location"), "http://example.com/bulk-member-match-status/")
	if !ok || id == "" {
		b.t.Fatalf("Content-Location %q", a.header.Get("Content-Location"))
	}
	return id
}

// groups reads the three Groups of a completed status answer.
func groups(t *testing.T, a answer) map[string]group {
	t.Helper()
	var p fhir.Parameters
	if err := json.Unmarshal(a.body, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("not Parameters: %v %s", err, a.body)
	}
	out := map[string]group{}
	for _, prm := range p.Parameter {
		var g group
		if err := json.Unmarshal(prm.Resource, &g); err != nil || g.ResourceType != "Group" {
			t.Fatalf("%s is not a Group: %v", prm.Name, err)
		}
		if g.Quantity != len(g.Member) {
			t.Errorf("%s: quantity %d of %d members", prm.Name, g.Quantity, len(g.Member))
		}
		out[prm.Name] = g
	}
	if len(out) != 3 {
		t.Fatalf("want the three Groups, got %v", p.Parameter)
	}
	return out
}

// entries names each member of g by its part and outcome codes.
func entries(g group) []string {
	var out []string
	for _, m := range g.Member {
		s := m.Entity.Display
		if m.Entity.Identifier != nil {
			s += "=" + m.Entity.Identifier.Value + "@" + m.Entity.Reference
		}
		for _, e := range m.Extension {
			var cc fhir.CodeableConcept
			if e.URL == OutcomeExtension {
				if _, err := e.Value.Decode("CodeableConcept", &cc); err == nil {
					for _, c := range cc.Coding {
						s += " " + c.Code
					}
				}
			}
		}
		out = append(out, s)
	}
	return out
}

func TestBulkMemberMatchMixedBatch(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	inactive := func(ps []any) []any { resourceOf(ps, 3)["status"] = "inactive"; return ps }
	noBirthDate := func(ps []any) []any { delete(resourceOf(ps, 0), "birthDate"); return ps }
	body := bulkBody(t,
		bundle(t, "Lovelace", nil),         // 0 matched
		bundle(t, "Nobody", nil),           // 1 no match
		bundle(t, "Turing", inactive),      // 2 consent refused
		bundle(t, "Twin", nil),             // 3 several candidates
		bundle(t, "Broken", nil),           // 4 the matcher fails
		bundle(t, "Lovelace", noBirthDate), // 5 a part we cannot read
		bundle(t, "Turing", nil),           // 6 matched
	)
	id := b.submit("new-payer", body)

	// Before the batch is decided: 202 with progress; another partner
	// does not see it.
	a := b.do("GET", "/bulk-member-match-status/"+id, "new-payer", nil, nil)
	if a.status != http.StatusAccepted || a.header.Get("X-Progress") == "" || a.header.Get("Retry-After") == "" {
		t.Fatalf("status while running: %d %v", a.status, a.header)
	}
	if a := b.do("GET", "/bulk-member-match-status/"+id, "stranger", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("another partner's status: %d", a.status)
	}
	// Only digests reach the workflow.
	for _, d := range b.bulk.batches[0].Members {
		if len(d) != 64 {
			t.Errorf("member %q is not a digest", d)
		}
	}

	b.run()
	a = b.do("GET", "/bulk-member-match-status/"+id, "new-payer", nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("status when done: %d %s", a.status, a.body)
	}
	gs := groups(t, a)
	check := func(name string, want ...string) {
		t.Helper()
		got := entries(gs[name])
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
	check(ParamMatchedMembers, "MemberBundle[0]=M1@Patient/pat-M1", "MemberBundle[6]=M2@Patient/pat-M2")
	check(ParamNonMatchedMembers, "MemberBundle[1] no_match", "MemberBundle[3] multiple_matches",
		"MemberBundle[4] error", "MemberBundle[5] invalid_request")
	check(ParamConsentConstrainedMembers, "MemberBundle[2] consent_denied consent_inactive")
	if g := gs[ParamMatchedMembers]; g.ID != BulkMatchedGroupID(id) || g.Code.Coding[0].Code != "match" {
		t.Errorf("MatchedMembers: id %q code %v", g.ID, g.Code)
	}
	for _, s := range []string{"Patricia", "1974-12-25", "DH10001235", "Lovelace", "Turing", "Nobody"} {
		if strings.Contains(string(a.body), s) {
			t.Errorf("the result holds PHI %q", s)
		}
	}

	// The members as received are withdrawn once decided.
	arts, err := b.st.ListArtifacts(context.Background(), BulkMatchRequestOwner("new-payer", id))
	if err != nil || len(arts) != 7 {
		t.Fatalf("request artifacts: %v %d", err, len(arts))
	}
	for _, art := range arts {
		if art.WithdrawnAt == nil {
			t.Errorf("%s not withdrawn", art.Name)
		}
	}

	// The matches are grants like $member-match's, and the MatchedMembers
	// Group exports exactly its members.
	gr, err := b.st.MatchGrants(context.Background(), "new-payer")
	if err != nil {
		t.Fatal(err)
	}
	// The batch's grants replace the harness's (c1, c2) for M1 and M2.
	if len(gr) != 2 || gr[0].ConsentID == "c1" || gr[1].ConsentID == "c2" || gr[0].ConsentID != gr[1].ConsentID {
		t.Errorf("grants: %+v", gr)
	}
	b.kickoff("/Group/" + BulkMatchedGroupID(id) + "/$davinci-data-export")
	if k := b.ex.kickoffs[len(b.ex.kickoffs)-1]; strings.Join(k.MemberIDs, ",") != "M1,M2" {
		t.Errorf("export of the Group: members %v", k.MemberIDs)
	}
	if a := b.do("GET", "/Group/"+BulkMatchedGroupID(id)+"/$davinci-data-export", "stranger", async, nil); a.status != http.StatusNotFound {
		t.Errorf("another partner exporting the Group: %d", a.status)
	}
	if a := b.do("GET", "/Group/bulk-match-nope/$davinci-data-export", "new-payer", async, nil); a.status != http.StatusNotFound {
		t.Errorf("unknown Group: %d", a.status)
	}
}

func TestBulkMemberMatchOnlyNonMatched(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Nobody", nil)))
	b.run()
	gs := groups(t, b.do("GET", "/bulk-member-match-status/"+id, "new-payer", nil, nil))
	if len(gs[ParamMatchedMembers].Member) != 0 || len(gs[ParamNonMatchedMembers].Member) != 1 {
		t.Errorf("groups %+v", gs)
	}
	// A batch that matched nobody exports nothing.
	if a := b.do("GET", "/Group/"+BulkMatchedGroupID(id)+"/$davinci-data-export", "new-payer", async, nil); a.status != http.StatusForbidden {
		t.Errorf("export of an empty Group: %d %s", a.status, a.body)
	}
}

func TestBulkMemberMatchBadRequests(t *testing.T) {
	b := newBulkMatchHarness(t, func(d *Deps) { d.MaxBulkMembers = 2 })
	good := bundle(t, "Lovelace", nil)
	for name, tc := range map[string]struct {
		header map[string]string
		body   []byte
		status int
		param  string // in the diagnostics and expression
	}{
		"not parameters":  {fhirAsync, []byte(`{"resourceType":"Patient"}`), 400, ""},
		"no members":      {fhirAsync, bulkBody(t), 400, "MemberBundle"},
		"other parameter": {fhirAsync, bulkBody(t, good, map[string]any{"name": "Consent", "resource": map[string]any{"resourceType": "Consent"}}), 400, "Consent"},
		"resource, not parts": {fhirAsync, bulkBody(t, good, map[string]any{"name": "MemberBundle", "resource": map[string]any{"resourceType": "Patient"}}),
			400, "MemberBundle[1]"},
		"too many":  {fhirAsync, bulkBody(t, good, good, good), 400, "MemberBundle"},
		"not async": {map[string]string{"Content-Type": "application/fhir+json"}, bulkBody(t, good), 400, ""},
		"not json":  {map[string]string{"Prefer": "respond-async", "Content-Type": "text/plain"}, bulkBody(t, good), 415, ""},
	} {
		t.Run(name, func(t *testing.T) {
			a := b.do("POST", "/Group/$bulk-member-match", "new-payer", tc.header, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			is := outcomeOf(t, a)
			if tc.param != "" && !strings.HasPrefix(is.Diagnostics, tc.param+":") {
				t.Errorf("diagnostics %q do not name %s", is.Diagnostics, tc.param)
			}
			if tc.param == "MemberBundle[1]" && (len(is.Expression) != 1 || is.Expression[0] != "Parameters.parameter.where(name='MemberBundle')[1]") {
				t.Errorf("expression %v", is.Expression)
			}
		})
	}
	if len(b.bulk.batches) != 0 {
		t.Errorf("a refused request started %d batches", len(b.bulk.batches))
	}
	if a := b.do("POST", "/Group/$bulk-member-match", "", fhirAsync, bulkBody(t, good)); a.status != http.StatusUnauthorized {
		t.Errorf("unauthenticated: %d", a.status)
	}
}

// The batch's members count against the same failed-match cap as single
// calls: past it, members are not matched, and new batches are refused.
func TestBulkMemberMatchFailedMatchCap(t *testing.T) {
	for _, mode := range throttleModes {
		t.Run(mode.name, func(t *testing.T) {
			b := newBulkMatchHarness(t, mode.edit(t, 2, DefaultFailureWindow))
			id := b.submit("new-payer", bulkBody(t, bundle(t, "Nobody", nil), bundle(t, "Twin", nil), bundle(t, "Lovelace", nil)))
			b.run()
			gs := groups(t, b.do("GET", "/bulk-member-match-status/"+id, "new-payer", nil, nil))
			if got := entries(gs[ParamNonMatchedMembers]); strings.Join(got, "|") != "MemberBundle[0] no_match|MemberBundle[1] multiple_matches|MemberBundle[2] too_many_failures" {
				t.Errorf("non-matched: %q", got)
			}
			if len(gs[ParamMatchedMembers].Member) != 0 {
				t.Error("a member was matched past the cap")
			}
			if a := b.match("new-payer", exampleBody(t)); a.status != http.StatusTooManyRequests {
				t.Errorf("single $member-match past the cap: %d", a.status)
			}
			if a := b.do("POST", "/Group/$bulk-member-match", "new-payer", fhirAsync, bulkBody(t, bundle(t, "Lovelace", nil))); a.status != http.StatusTooManyRequests {
				t.Errorf("new batch past the cap: %d", a.status)
			}
		})
	}
}

func TestBulkMemberMatchStartFails(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	b.bulk.startErr = errors.New("temporal down")
	a := b.do("POST", "/Group/$bulk-member-match", "new-payer", fhirAsync, bulkBody(t, bundle(t, "Lovelace", nil)))
	if a.status != http.StatusInternalServerError || len(b.bulk.failed) != 1 {
		t.Fatalf("status %d, %d failed starts", a.status, len(b.bulk.failed))
	}
	// Nothing will decide the members: their demographics are withdrawn,
	// and the batch is unknown.
	id := b.bulk.failed[0].ID
	arts, err := b.st.ListArtifacts(context.Background(), BulkMatchRequestOwner("new-payer", id))
	if err != nil || len(arts) != 1 || arts[0].WithdrawnAt == nil {
		t.Errorf("request artifacts: %v %+v", err, arts)
	}
	if a := b.do("GET", "/bulk-member-match-status/"+id, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("status of a batch never started: %d", a.status)
	}
}

// A matched member's outcome and grant are one write; a retried member
// records neither again; a batch without a transfer still grants.
func TestBulkMemberGrantWithItsEvent(t *testing.T) {
	ctx := context.Background()
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Lovelace", nil)))
	cs := &countingStore{Store: b.st}
	acts := &activities.BulkMatch{Env: activities.Env{Now: b.clock.now}, Store: cs, Matcher: b.h.match}
	in := activities.BulkMemberInput{BatchID: id, Requester: "new-payer", Index: 0, Digest: b.bulk.batches[0].Members[0]}
	grantOfM1 := func() store.MatchGrant {
		t.Helper()
		gs, err := b.st.MatchGrants(ctx, "new-payer")
		if err != nil || len(gs) != 2 || gs[0].MemberID != "M1" {
			t.Fatalf("grants %+v, %v", gs, err)
		}
		return gs[0]
	}
	before := grantOfM1()
	var first store.MatchGrant
	for i := range 2 {
		o, err := acts.MatchBulkMember(ctx, in)
		if err != nil || o.Outcome != OutcomeMatched {
			t.Fatalf("attempt %d: %+v, %v", i+1, o, err)
		}
		g := grantOfM1()
		if i == 0 {
			first = g
			if g.Seq == before.Seq || g.TransferID != "" {
				t.Errorf("the match gave no new grant: %+v", g)
			}
		} else if g.Seq != first.Seq {
			t.Errorf("the retry granted again: %+v after %+v", g, first)
		}
	}
	if want := map[string]int{"ApplyChange": 2}; !reflect.DeepEqual(cs.writes, want) {
		t.Errorf("writes %v, want %v (the grant within the event's)", cs.writes, want)
	}
	evs, _ := b.st.Timeline(ctx, id)
	n := 0
	for _, e := range evs {
		if e.Type == transfer.EventMemberDecided {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d member events, want 1", n)
	}

	// A batch accepted before batches were transfers has none: the grant
	// is recorded on its own.
	in.BatchID = "no-such-batch"
	if _, err := acts.MatchBulkMember(ctx, in); err != nil {
		t.Fatal(err)
	}
	if g := grantOfM1(); g.Seq == first.Seq {
		t.Errorf("no grant recorded for a batch without a transfer")
	}
}

// decide decides member i of the last batch, as the workflow would.
func (b *bulkMatchHarness) decide(i int) transfer.BulkMemberOutcome {
	b.t.Helper()
	batch := b.bulk.batches[len(b.bulk.batches)-1]
	acts := &activities.BulkMatch{Env: activities.Env{Now: b.clock.now}, Store: b.st, Matcher: b.h.match}
	o, err := acts.MatchBulkMember(context.Background(), activities.BulkMemberInput{BatchID: batch.ID, Requester: batch.Requester,
		Index: i, Digest: batch.Members[i]})
	if err != nil {
		b.t.Fatal(err)
	}
	return o
}

// X-Progress counts the members decided, from the batch's transfer.
func TestBulkMemberMatchProgress(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Lovelace", nil), bundle(t, "Nobody", nil), bundle(t, "Turing", nil)))
	status := "/bulk-member-match-status/" + id
	for i, want := range []string{"0 of 3 members decided", "1 of 3 members decided", "2 of 3 members decided"} {
		if i > 0 {
			b.decide(i - 1)
		}
		a := b.do("GET", status, "new-payer", nil, nil)
		if a.status != http.StatusAccepted || a.header.Get("X-Progress") != want {
			t.Errorf("after %d decided: %d, X-Progress %q, want %q", i, a.status, a.header.Get("X-Progress"), want)
		}
	}
	b.decide(2)
	b.run()
	if a := b.do("GET", status, "new-payer", nil, nil); a.status != http.StatusOK {
		t.Errorf("decided: %d", a.status)
	}
}

// DELETE of a batch being decided cancels it: 202, then 404; its members'
// PHI is withdrawn; its transfer fails cancelled, saying how far it got;
// what was decided (a grant) stays.
func TestBulkMemberMatchDeleteRunning(t *testing.T) {
	ctx := context.Background()
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Lovelace", nil), bundle(t, "Nobody", nil), bundle(t, "Turing", nil)))
	status := "/bulk-member-match-status/" + id
	b.decide(0)
	if a := b.do("DELETE", status, "stranger", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("DELETE by another partner: %d", a.status)
	}
	if a := b.do("DELETE", status, "", nil, nil); a.status != http.StatusUnauthorized {
		t.Errorf("DELETE unauthenticated: %d", a.status)
	}
	if len(b.bulk.deleted) != 0 {
		t.Fatalf("deleted %v by strangers", b.bulk.deleted)
	}
	if a := b.do("DELETE", status, "new-payer", nil, nil); a.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", a.status, a.body)
	}
	if strings.Join(b.bulk.deleted, ",") != id {
		t.Errorf("engine deletes %v, want %s", b.bulk.deleted, id)
	}
	if a := b.do("GET", status, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("status after DELETE: %d", a.status)
	}
	if a := b.do("DELETE", status, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("DELETE again: %d", a.status)
	}
	arts, err := b.st.ListArtifacts(ctx, BulkMatchRequestOwner("new-payer", id))
	if err != nil || len(arts) != 3 {
		t.Fatalf("request artifacts %+v, %v", arts, err)
	}
	for _, a := range arts {
		if a.WithdrawnAt == nil {
			t.Errorf("%s not withdrawn", a.Name)
		}
	}
	tr, err := b.st.GetTransfer(ctx, id)
	if err != nil || tr.State != transfer.StateFailed || tr.Error == nil || tr.Error.Type != transfer.ErrorCancelled {
		t.Fatalf("transfer %+v, %v; want failed cancelled", tr, err)
	}
	evs, _ := b.st.Timeline(ctx, id)
	last := evs[len(evs)-1]
	if last.State != transfer.StateFailed || last.Actor != "partner:new-payer" || last.Detail["reason"] != activities.BulkDeleted ||
		last.Detail["decided"] != float64(1) || last.Detail["members"] != float64(3) {
		t.Errorf("cancellation event %+v", last)
	}
	if gs, _ := b.st.MatchGrants(ctx, "new-payer"); len(gs) != 2 || gs[0].ConsentID == "c1" {
		t.Errorf("grants %+v: member 0's match must stay", gs)
	}
	if a := b.do("GET", "/Group/"+BulkMatchedGroupID(id)+"/$davinci-data-export", "new-payer", async, nil); a.status != http.StatusNotFound {
		t.Errorf("export of a deleted batch's Group: %d", a.status)
	}
}

// DELETE of a decided batch removes its result (and its Group): 202,
// then 404; the transfer stays complete and says it was deleted.
func TestBulkMemberMatchDeleteDone(t *testing.T) {
	ctx := context.Background()
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Lovelace", nil)))
	b.run()
	status := "/bulk-member-match-status/" + id
	if a := b.do("DELETE", status, "new-payer", nil, nil); a.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", a.status, a.body)
	}
	if len(b.bulk.deleted) != 0 {
		t.Errorf("a decided batch was sent to the engine: %v", b.bulk.deleted)
	}
	if a := b.do("GET", status, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("status after DELETE: %d", a.status)
	}
	if a := b.do("GET", "/Group/"+BulkMatchedGroupID(id)+"/$davinci-data-export", "new-payer", async, nil); a.status != http.StatusNotFound {
		t.Errorf("export of a deleted batch's Group: %d", a.status)
	}
	arts, _ := b.st.ListArtifacts(ctx, BulkMatchResultOwner("new-payer", id))
	if len(arts) != 1 || arts[0].WithdrawnAt == nil {
		t.Errorf("result %+v, want withdrawn", arts)
	}
	tr, _ := b.st.GetTransfer(ctx, id)
	evs, _ := b.st.Timeline(ctx, id)
	last := evs[len(evs)-1]
	if tr.State != transfer.StateComplete || last.Type != transfer.EventBulkMatchDeleted || last.Actor != "partner:new-payer" ||
		last.Detail["result_sha256"] != arts[0].Digest {
		t.Errorf("transfer %s, last event %+v", tr.State, last)
	}
}

// The engine failing to cancel answers 500 and the batch goes on.
func TestBulkMemberMatchDeleteFails(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Lovelace", nil)))
	b.bulk.deleteErr = errors.New("temporal down")
	status := "/bulk-member-match-status/" + id
	if a := b.do("DELETE", status, "new-payer", nil, nil); a.status != http.StatusInternalServerError {
		t.Errorf("DELETE: %d", a.status)
	}
	if a := b.do("GET", status, "new-payer", nil, nil); a.status != http.StatusAccepted {
		t.Errorf("status: %d", a.status)
	}
}

// TestBulkMemberLinksAsMemberMatch: a member matched in a batch links the
// requester's presentation to our member exactly as a single $member-match
// of the same member does: the same keyed digest (the single match then
// adds no link), the batch's transfer as provenance, no PHI; a member not
// matched links nothing.
func TestBulkMemberLinksAsMemberMatch(t *testing.T) {
	ctx := context.Background()
	b := newBulkMatchHarness(t, nil)
	id := b.submit("new-payer", bulkBody(t, bundle(t, "Lovelace", nil), bundle(t, "Nobody", nil)))
	var members [][]byte
	for _, d := range b.bulk.batches[0].Members {
		art, err := b.st.GetArtifact(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, art.Data)
	}
	b.run()

	key, err := b.st.PresentationKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	linksOf := func(member []byte) []graph.Link {
		t.Helper()
		req, perr := ParseMemberMatch(member)
		if perr != nil {
			t.Fatal(perr)
		}
		hist, err := b.st.IdentityLinks(ctx, "new-payer", graph.Presentation(key, "new-payer", req.Demographics()))
		if err != nil {
			t.Fatal(err)
		}
		return hist
	}
	hist := linksOf(members[0])
	if len(hist) != 1 || hist[0].MemberID != "M1" || hist[0].Provenance.TransferID != id ||
		hist[0].Provenance.Presentation != hist[0].ExternalRef || hist[0].MadeBy.Kind != graph.MadeByRule {
		t.Fatalf("links of the matched member %+v: want one to M1 from batch %s", hist, id)
	}
	if h := linksOf(members[1]); len(h) != 0 {
		t.Errorf("a member not matched linked %+v", h)
	}
	raw, _ := json.Marshal(hist)
	for _, s := range append(examplePHI, "Lovelace") {
		if strings.Contains(string(raw), s) {
			t.Errorf("the link holds PHI %q: %s", s, raw)
		}
	}

	// The same member as a single $member-match: its presentation is the
	// link's, which stands.
	if a := b.match("new-payer", members[0]); a.status != http.StatusOK {
		t.Fatalf("member-match: %d %s", a.status, a.body)
	}
	var single string
	for _, tr := range matchTransfers(t, b.st, "new-payer") {
		evs, _ := b.st.Timeline(ctx, tr.ID)
		if len(evs) > 0 && evs[0].Detail["operation"] == OperationMemberMatch {
			single, _ = evs[0].Detail["presentation"].(string)
		}
	}
	if single == "" || single != hist[0].ExternalRef {
		t.Errorf("single $member-match presentation %q, the batch's link %q: want the same", single, hist[0].ExternalRef)
	}
	if again := linksOf(members[0]); len(again) != 1 || again[0].Seq != hist[0].Seq {
		t.Errorf("links after the single match %+v, want the batch's one", again)
	}
}
