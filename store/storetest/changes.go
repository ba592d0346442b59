package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// matchSteps are the steps of a $member-match decision as package pdex
// records them in one ApplyChanges: identity_pending, the matcher's
// decision, consent_verified, and complete with the grant it gives.
func matchSteps(at time.Time, transferID string) []store.Change {
	exp := at.Add(30 * 24 * time.Hour)
	return []store.Change{
		{State: transfer.StateIdentityPending, Event: transfer.Event{At: at, State: transfer.StateIdentityPending, Actor: "pdex", Type: transfer.EventState}},
		{Identity: &transfer.IdentityOutcome{Status: transfer.IdentityResolved, MemberID: "M1", Score: 12},
			Event: transfer.Event{At: at, Actor: "pdex", Type: transfer.EventIdentityDecision, Key: "identity:decision", Detail: map[string]any{"rule": "exact"}}},
		{State: transfer.StateConsentVerified, Consent: &transfer.ConsentOutcome{Status: transfer.ConsentVerified, ConsentID: "c1", Scope: transfer.ScopeRegular, CheckedAt: at},
			Event: transfer.Event{At: at, State: transfer.StateConsentVerified, Actor: "pdex", Type: transfer.EventState}},
		{State: transfer.StateComplete,
			Event: transfer.Event{At: at, State: transfer.StateComplete, Actor: "pdex", Type: transfer.EventState, Detail: map[string]any{"outcome": "matched"}},
			Grant: &store.MatchGrant{Requester: "acme", MemberID: "M1", ConsentID: "c1", ConsentScope: transfer.ScopeRegular, ConsentExpires: exp, TransferID: transferID}},
	}
}

// testApplyChanges records a decision and its outcome in one call: every
// event in order with consecutive seqs and audit positions, the
// projection as the changes leave it, the grant given with its event; a
// retry records nothing again; a key repeated within one call is recorded
// once.
func testApplyChanges(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-many", "acme", base))
	at := base.Add(time.Minute)
	steps := matchSteps(at, "t1")
	applied, err := s.ApplyChanges(ctx, "t1", steps)
	if err != nil || !reflect.DeepEqual(applied, []bool{true, true, true, true}) {
		t.Fatalf("ApplyChanges = %v, %v; want all applied", applied, err)
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil || len(tl) != 5 {
		t.Fatalf("timeline = %d events, %v; want 5", len(tl), err)
	}
	wantKeys := []string{transfer.StateKey(transfer.StateInitiated), transfer.StateKey(transfer.StateIdentityPending), "identity:decision",
		transfer.StateKey(transfer.StateConsentVerified), transfer.StateKey(transfer.StateComplete)}
	for i, ev := range tl {
		if ev.Seq != int64(i+1) || ev.Key != wantKeys[i] {
			t.Errorf("event %d = seq %d key %q, want seq %d key %q", i, ev.Seq, ev.Key, i+1, wantKeys[i])
		}
	}
	tr, err := s.GetTransfer(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if tr.State != transfer.StateComplete || tr.Identity == nil || tr.Identity.MemberID != "M1" || tr.Consent == nil ||
		tr.Consent.ConsentID != "c1" || !tr.UpdatedAt.Equal(at) {
		t.Errorf("projection = %+v", tr)
	}
	gs, err := s.MatchGrants(ctx, "acme")
	if err != nil || len(gs) != 1 || gs[0].TransferID != "t1" || !gs[0].GrantedAt.Equal(at) || gs[0].Seq == 0 {
		t.Fatalf("grants = %+v, %v; want one, given at the event's time", gs, err)
	}
	// Every event is in the audit log, in order, with its leaf.
	evs := checkAuditLog(t, s, 5)
	for i, e := range evs {
		if e.TransferID != "t1" || e.Event.Seq != int64(i+1) {
			t.Errorf("audit entry %d = transfer %s seq %d", i, e.TransferID, e.Event.Seq)
		}
	}

	// The same decision again (a retry) and one new step: only the new
	// step is recorded; no second grant.
	again := append(matchSteps(at.Add(time.Hour), "t1"), store.Change{Event: transfer.Event{At: at.Add(time.Hour), Actor: "pdex", Type: "note", Key: "note:1"}})
	applied, err = s.ApplyChanges(ctx, "t1", again)
	if err != nil || !reflect.DeepEqual(applied, []bool{false, false, false, false, true}) {
		t.Fatalf("retried ApplyChanges = %v, %v; want only the new step", applied, err)
	}
	if gs2, _ := s.MatchGrants(ctx, "acme"); len(gs2) != 1 || gs2[0].Seq != gs[0].Seq {
		t.Errorf("grants after the retry = %+v, want the first only", gs2)
	}
	if tl, _ := s.Timeline(ctx, "t1"); len(tl) != 6 || tl[5].Key != "note:1" || tl[5].Seq != 6 {
		t.Errorf("timeline after the retry = %+v", tl)
	}
	// A key twice in one call: the first is recorded, the second skipped,
	// and what follows still gets the next seq.
	dup := store.Change{Event: transfer.Event{At: at.Add(2 * time.Hour), Actor: "a", Type: "note", Key: "note:2"}}
	dup2 := dup
	dup2.Event.Actor = "b"
	applied, err = s.ApplyChanges(ctx, "t1", []store.Change{dup, dup2,
		{Event: transfer.Event{At: at.Add(2 * time.Hour), Actor: "c", Type: "note", Key: "note:3"}}})
	if err != nil || !reflect.DeepEqual(applied, []bool{true, false, true}) {
		t.Fatalf("ApplyChanges with a repeated key = %v, %v", applied, err)
	}
	tl, _ = s.Timeline(ctx, "t1")
	if len(tl) != 8 || tl[6].Actor != "a" || tl[7].Key != "note:3" || tl[7].Seq != 8 {
		t.Errorf("timeline = %+v", tl)
	}
	checkAuditLog(t, s, 8)

	if applied, err := s.ApplyChanges(ctx, "t1", nil); err != nil || len(applied) != 0 {
		t.Errorf("ApplyChanges(none) = %v, %v", applied, err)
	}
	if _, err := s.ApplyChanges(ctx, "nope", matchSteps(at, "nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ApplyChanges on no transfer = %v, want ErrNotFound", err)
	}
}

// testApplyChangesAtomic: a change that fails, in the database or before,
// records none of the changes of its call: no event, no audit entry, no
// projection change, no grant, link or review.
func testApplyChangesAtomic(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-atomic", "acme", base))
	before, err := s.GetTransfer(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	at := base.Add(time.Minute)
	review := graph.Review{Partner: "acme", Presentation: "P1", Decision: transfer.DecisionReject, Reviewer: "r1", TransferID: "t1"}
	link := graph.Link{Partner: "acme", ExternalRef: "P1", MemberID: "M1",
		MadeBy: graph.Maker{Kind: graph.MadeByReviewer, Reviewer: "r1"}, Provenance: graph.Provenance{TransferID: "t1", Presentation: "P1"}}
	withReview := store.Change{Event: transfer.Event{At: at, Actor: "r1", Type: "review_decision", Key: "review:decision"}, Review: &review, Link: &link}
	// An end record of a link that does not exist: only the database can
	// refuse it (the reference), after the steps before it were written.
	badEnd := graph.Link{Partner: "acme", ExternalRef: "P2", MemberID: "M2", Ends: 1 << 40, ValidTo: at,
		MadeBy: graph.Maker{Kind: graph.MadeByReviewer, Reviewer: "r1"}}
	cases := []struct {
		name string
		chs  []store.Change
	}{
		{"the database refuses the last", append(matchSteps(at, "t1"), withReview,
			store.Change{Event: transfer.Event{At: at, Actor: "r1", Type: "note", Key: "end"}, Link: &badEnd})},
		{"the database refuses the first", append([]store.Change{{Event: transfer.Event{At: at, Actor: "r1", Type: "note", Key: "end"}, Link: &badEnd}},
			matchSteps(at, "t1")...)},
		{"invalid before the database", append(matchSteps(at, "t1"), store.Change{Event: transfer.Event{At: at, Actor: "x", Type: "note"}})},
		{"an invalid grant", append(matchSteps(at, "t1")[:3], store.Change{State: transfer.StateComplete,
			Event: transfer.Event{At: at, State: transfer.StateComplete, Type: transfer.EventState},
			Grant: &store.MatchGrant{Requester: "acme", MemberID: "M1", ConsentScope: "everything", ConsentExpires: at}})},
	}
	for _, tc := range cases {
		applied, err := s.ApplyChanges(ctx, "t1", tc.chs)
		if err == nil {
			t.Errorf("%s: ApplyChanges = %v, nil; want an error", tc.name, applied)
		}
		if tl, err := s.Timeline(ctx, "t1"); err != nil || len(tl) != 1 {
			t.Errorf("%s: timeline has %d events, %v; want the first only", tc.name, len(tl), err)
		}
		if n, err := s.AuditSize(ctx); err != nil || n != 1 {
			t.Errorf("%s: audit size %d, %v; want 1", tc.name, n, err)
		}
		if after, _ := s.GetTransfer(ctx, "t1"); !reflect.DeepEqual(after, before) {
			t.Errorf("%s: projection %+v, want %+v", tc.name, after, before)
		}
		if gs, err := s.MatchGrants(ctx, "acme"); err != nil || len(gs) != 0 {
			t.Errorf("%s: grants %+v, %v; want none", tc.name, gs, err)
		}
		if rs, err := s.IdentityReviews(ctx, "acme", "P1"); err != nil || len(rs) != 0 {
			t.Errorf("%s: reviews %+v, %v; want none", tc.name, rs, err)
		}
		if ls, err := s.IdentityLinks(ctx, "acme", "P1"); err != nil || len(ls) != 0 {
			t.Errorf("%s: links %+v, %v; want none", tc.name, ls, err)
		}
	}
	// The same steps without the one at fault are recorded, seqs from 2.
	applied, err := s.ApplyChanges(ctx, "t1", append(matchSteps(at, "t1"), withReview))
	if err != nil || len(applied) != 5 || !applied[4] {
		t.Fatalf("ApplyChanges = %v, %v", applied, err)
	}
	tl, _ := s.Timeline(ctx, "t1")
	for i, ev := range tl {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d after a rolled back call", i, ev.Seq)
		}
	}
	checkAuditLog(t, s, 6)
}

// testCreateWithChanges: a transfer created with its first steps, in one
// transaction; a taken key applies none of them; a change at fault
// creates nothing, not even the idempotency record.
func testCreateWithChanges(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	pending := store.Change{State: transfer.StateIdentityPending,
		Event: transfer.Event{At: base, State: transfer.StateIdentityPending, Actor: "pdex", Type: transfer.EventState, Detail: map[string]any{"members": float64(3)}}}
	nt := newTransfer("t1", "c", "key-create-changes", "acme", base)
	nt.Changes = []store.Change{pending}
	create(t, s, nt)
	tr, err := s.GetTransfer(ctx, "t1")
	if err != nil || tr.State != transfer.StateIdentityPending {
		t.Fatalf("created transfer = %+v, %v; want identity_pending", tr, err)
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil || len(tl) != 2 || tl[1].Seq != 2 || tl[1].Key != transfer.StateKey(transfer.StateIdentityPending) || tl[1].Detail["members"] != float64(3) {
		t.Fatalf("timeline = %+v, %v", tl, err)
	}
	checkAuditLog(t, s, 2)

	// The key is taken: nothing is created or applied.
	other := newTransfer("t2", "c", "key-create-changes", "acme", base)
	other.Changes = []store.Change{{Event: transfer.Event{At: base, Actor: "x", Type: "note", Key: "note"}}}
	if res, err := s.CreateTransfer(ctx, other); err != nil || res.Created || res.Record.TransferID != "t1" {
		t.Fatalf("CreateTransfer on a taken key = %+v, %v", res, err)
	}
	if tl, _ := s.Timeline(ctx, "t1"); len(tl) != 2 {
		t.Errorf("a taken key's changes were applied: %+v", tl)
	}

	// A change the database refuses: no transfer, no key, no audit entry.
	bad := newTransfer("t3", "c", "key-create-bad", "acme", base)
	bad.Changes = []store.Change{pending, {Event: transfer.Event{At: base, Actor: "x", Type: "note", Key: "end"},
		Link: &graph.Link{Partner: "acme", ExternalRef: "P9", MemberID: "M9", Ends: 1 << 40, ValidTo: base,
			MadeBy: graph.Maker{Kind: graph.MadeByReviewer, Reviewer: "r1"}}}}
	if _, err := s.CreateTransfer(ctx, bad); err == nil {
		t.Fatal("CreateTransfer with a refused change succeeded")
	}
	if _, err := s.GetTransfer(ctx, "t3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTransfer(t3) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetIdempotency(ctx, "c", "key-create-bad"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetIdempotency(key-create-bad) = %v, want ErrNotFound", err)
	}
	checkAuditLog(t, s, 2)
}
