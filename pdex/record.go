package pdex

// Every $member-match we answer is a transfer (direction export, client
// ClientID(requester)), like the exports we serve: a partner probing our
// member index leaves a trace that the API, the timeline and the audit log
// show. Its steps:
//
//	initiated (the request, parsed) → identity_pending →
//	  consent refused:  failed (consent_denied, with the Consent* reason)
//	  identity_decision (the matcher's rationale, as the push workflow records it) →
//	    no member, or several: failed (no_match)
//	    one member:             consent_verified → (the grant) → complete
//
// The events name the requester, our member id, the consent by id, scope
// and expiry, and what was presented only as a keyed digest
// (graph.Presentation under the store's PresentationKey): never a name, a
// birth date, an address or the requester's member number. Each request
// is a new transfer (its idempotency key is a fresh request id): HRex
// $member-match is not idempotent by key. The store writes one event per
// transaction (CreateTransfer, then ApplyChange per step), and the
// idempotency record is completed last, so that api.ResumePending closes
// a transfer whose request died half-way.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// OperationMemberMatch is the "operation" in the initiated event's detail
// of a $member-match transfer.
const OperationMemberMatch = "member-match"

// matchRecord is one $member-match being recorded as a transfer.
type matchRecord struct {
	st        store.Store
	id        string // the transfer's id, and the request's
	requester string
	clientID  string
	key       string // idempotency key
	pres      string // the presentation's keyed digest (graph.Presentation)
	at        time.Time
	state     transfer.State // the latest state recorded
}

// presentationKey returns the store's presentation key, read once.
func (h *Handler) presentationKey(ctx context.Context) ([]byte, error) {
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	if h.key == nil {
		k, err := h.d.Store.PresentationKey(ctx)
		if err != nil {
			return nil, err
		}
		h.key = k
	}
	return h.key, nil
}

// beginMatch records the transfer of a parsed $member-match, initiated.
// Without a Store nothing is recorded (nil, nil).
func (h *Handler) beginMatch(ctx context.Context, requester string, req *MemberMatchRequest, now time.Time) (*matchRecord, error) {
	if h.d.Store == nil {
		return nil, nil
	}
	key, err := h.presentationKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("presentation key: %w", err)
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	now = now.UTC().Truncate(time.Microsecond)
	rec := &matchRecord{st: h.d.Store, id: uid.String(), requester: requester, clientID: ClientID(requester),
		key: "member-match:" + uid.String(), at: now, state: transfer.StateInitiated}
	pres := graph.Presentation(key, requester, req.Demographics())
	rec.pres = pres
	fp := sha256.Sum256([]byte(OperationMemberMatch + "\x00" + pres + "\x00" + rec.id))
	detail := map[string]any{"operation": OperationMemberMatch, "request_id": rec.id, "requester": requester,
		"presentation": pres, "consent_id": consentID(req.ConsentJSON), "coverage_to_link": req.CoverageToLink != nil}
	res, err := rec.st.CreateTransfer(ctx, store.NewTransfer{
		ClientID: rec.clientID, IdempotencyKey: rec.key, Fingerprint: hex.EncodeToString(fp[:]),
		Transfer: transfer.Transfer{ID: rec.id, ClientID: rec.clientID, PartnerID: requester, Direction: transfer.DirectionExport,
			State: transfer.StateInitiated, CreatedAt: now, UpdatedAt: now},
		Request: transfer.Request{PartnerID: requester, Direction: transfer.DirectionExport},
		Event: transfer.Event{At: now, State: transfer.StateInitiated, Actor: "partner:" + requester, Type: transfer.EventState,
			Key: transfer.StateKey(transfer.StateInitiated), Detail: detail},
	})
	if err != nil {
		return nil, fmt.Errorf("create member-match transfer: %w", err)
	}
	if !res.Created {
		return nil, fmt.Errorf("member-match transfer %s exists already", rec.id)
	}
	return rec, nil
}

// apply records one step.
func (r *matchRecord) apply(ctx context.Context, ch store.Change) error {
	ch.Event.At = r.at
	if ch.Event.Actor == "" {
		ch.Event.Actor = "pdex"
	}
	if ch.State != "" {
		ch.Event.Type, ch.Event.State, ch.Event.Key = transfer.EventState, ch.State, transfer.StateKey(ch.State)
	}
	if _, err := r.st.ApplyChange(ctx, r.id, ch); err != nil {
		return fmt.Errorf("record member-match %s: %w", ch.Event.Key, err)
	}
	if ch.State != "" {
		r.state = ch.State
	}
	return nil
}

// pending records identity_pending and, if the matcher ran, its decision.
func (r *matchRecord) pending(ctx context.Context, id *identity.Decision) error {
	if err := r.apply(ctx, store.Change{State: transfer.StateIdentityPending,
		Event: transfer.Event{Detail: map[string]any{"basis": "member-match"}}}); err != nil {
		return err
	}
	if id == nil {
		return nil
	}
	o := id.IdentityOutcome()
	o.Presentation = r.pres
	return r.apply(ctx, store.Change{Identity: &o,
		Event: transfer.Event{Type: transfer.EventIdentityDecision, Key: "identity:decision", Detail: transfer.IdentityDetail(o)}})
}

// matched records a match, with the grant that onMatch records (if set)
// between consent_verified and complete: a transfer complete holds its
// grant.
func (r *matchRecord) matched(ctx context.Context, m Match, onMatch func(context.Context, Match) error) error {
	if err := r.pending(ctx, &m.Identity); err != nil {
		return err
	}
	m.TransferID = r.id
	g := m.Grant()
	consent := transfer.ConsentOutcome{Status: transfer.ConsentVerified, ConsentID: g.ConsentID, Scope: g.ConsentScope, CheckedAt: r.at}
	// The requester's presentation is an external identity of our member
	// from now on: linked with the match, in its transaction.
	o := m.Identity.IdentityOutcome()
	o.Presentation = r.pres
	if err := r.apply(ctx, store.Change{State: transfer.StateConsentVerified, Consent: &consent,
		Link: identity.LinkOf(r.requester, r.id, o, "$member-match answered to "+r.requester),
		Event: transfer.Event{Detail: map[string]any{"member_id": m.MemberID, "consent_id": g.ConsentID, "scope": g.ConsentScope,
			"expires": rfc3339(g.ConsentExpires), "result": transfer.ConsentVerified}}}); err != nil {
		return err
	}
	if onMatch != nil {
		if err := onMatch(ctx, m); err != nil {
			return err
		}
	}
	return r.apply(ctx, store.Change{State: transfer.StateComplete, Event: transfer.Event{Detail: map[string]any{
		"outcome": OutcomeMatched, "member_id": m.MemberID, "consent_id": g.ConsentID, "scope": g.ConsentScope,
		"expires": rfc3339(g.ConsentExpires),
		"grant": map[string]any{"requester": g.Requester, "member_id": g.MemberID, "consent_id": g.ConsentID,
			"scope": g.ConsentScope, "expires": rfc3339(g.ConsentExpires), "granted_at": rfc3339(g.GrantedAt)},
	}}})
}

// refused records a refusal: failed with consent_denied (the consent
// reason) or no_match (no member, or several).
func (r *matchRecord) refused(ctx context.Context, dec Decision) error {
	if err := r.pending(ctx, dec.Identity); err != nil {
		return err
	}
	ch := store.Change{State: transfer.StateFailed}
	detail := map[string]any{"outcome": dec.Outcome, "after_state": string(transfer.StateIdentityPending)}
	switch dec.Outcome {
	case OutcomeConsentDenied:
		ch.Error = &transfer.ErrorInfo{Type: transfer.ErrorConsentDenied, Detail: dec.ConsentReason}
		ch.Consent = &transfer.ConsentOutcome{Status: transfer.ConsentDenied, Reason: dec.ConsentReason, CheckedAt: r.at}
		detail["reason"] = dec.ConsentReason
	default: // no member, or several: the requester learns no_match either way
		ch.Error = &transfer.ErrorInfo{Type: transfer.ErrorNoMatch, Detail: dec.Outcome}
		if dec.Outcome == OutcomeMultipleMatches {
			detail["candidates"] = dec.Candidates
		}
	}
	detail["error_type"] = ch.Error.Type
	ch.Event.Detail = detail
	return r.apply(ctx, ch)
}

// abort records that the match could not be performed or recorded
// (failed internal, unless the transfer had ended) and that it was
// answered 500, as far as the store lets it: the request is answered 500
// whatever.
func (r *matchRecord) abort(ctx context.Context, why string) error {
	if !r.state.Terminal() {
		if err := r.apply(ctx, store.Change{State: transfer.StateFailed, Error: &transfer.ErrorInfo{Type: transfer.ErrorInternal, Detail: why},
			Event: transfer.Event{Detail: map[string]any{"error_type": transfer.ErrorInternal, "reason": why,
				"after_state": string(r.state)}}}); err != nil {
			return err
		}
	}
	return r.finish(ctx, http.StatusInternalServerError, OutcomeError)
}

// finish completes the transfer's idempotency record with the answer's
// status: nothing is left for api.ResumePending to close.
func (r *matchRecord) finish(ctx context.Context, status int, outcome string) error {
	b, _ := json.Marshal(map[string]any{"id": r.id, "outcome": outcome})
	_, err := r.st.CompleteIdempotency(ctx, r.clientID, r.key, status, b)
	return err
}

// consentID names a consent as received: its resource id, else the
// SHA-256 of its JSON.
func consentID(raw json.RawMessage) string {
	var c struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &c) == nil && c.ID != "" {
		return "Consent/" + c.ID
	}
	return "sha256:" + export.Digest(raw)
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// statusOf is the HTTP status a Decision is answered with.
func statusOf(outcome string) int {
	if outcome == OutcomeMatched {
		return http.StatusOK
	}
	return http.StatusUnprocessableEntity
}

// OperationBulkMemberMatch is the "operation" in the initiated event's
// detail of a $bulk-member-match batch's transfer.
const OperationBulkMemberMatch = "bulk-member-match"

// beginBulkMatch records the transfer of an accepted $bulk-member-match
// batch: one transfer per batch (the batch is one request of the
// requester, answered as one result), its id the batch's, initiated then
// identity_pending; each member's outcome is an event of it
// (activities.MatchBulkMember), and FinishBulkMatch completes it.
func (h *Handler) beginBulkMatch(ctx context.Context, b BulkMatch, now time.Time) (*matchRecord, error) {
	now = now.UTC().Truncate(time.Microsecond)
	rec := &matchRecord{st: h.d.Store, id: b.ID, requester: b.Requester, clientID: ClientID(b.Requester),
		key: "bulk-member-match:" + b.ID, at: now, state: transfer.StateInitiated}
	fp := sha256.Sum256([]byte(OperationBulkMemberMatch + "\x00" + b.ID))
	res, err := rec.st.CreateTransfer(ctx, store.NewTransfer{
		ClientID: rec.clientID, IdempotencyKey: rec.key, Fingerprint: hex.EncodeToString(fp[:]),
		Transfer: transfer.Transfer{ID: b.ID, ClientID: rec.clientID, PartnerID: b.Requester, Direction: transfer.DirectionExport,
			State: transfer.StateInitiated, CreatedAt: now, UpdatedAt: now},
		Request: transfer.Request{PartnerID: b.Requester, Direction: transfer.DirectionExport},
		Event: transfer.Event{At: now, State: transfer.StateInitiated, Actor: "partner:" + b.Requester, Type: transfer.EventState,
			Key: transfer.StateKey(transfer.StateInitiated), Detail: map[string]any{"operation": OperationBulkMemberMatch,
				"batch_id": b.ID, "requester": b.Requester, "members": len(b.Members)}},
	})
	if err != nil {
		return nil, fmt.Errorf("create bulk-member-match transfer: %w", err)
	}
	if !res.Created {
		return nil, fmt.Errorf("bulk-member-match transfer %s exists already", b.ID)
	}
	if err := rec.apply(ctx, store.Change{State: transfer.StateIdentityPending,
		Event: transfer.Event{Detail: map[string]any{"basis": "bulk-member-match", "members": len(b.Members)}}}); err != nil {
		return rec, err
	}
	return rec, nil
}
