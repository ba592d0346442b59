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
// $member-match is not idempotent by key.
//
// Three transactions record it: CreateTransfer (initiated) before the
// decision, so that a request that dies while being decided leaves its
// trace; then the decision and its outcome in one ApplyChanges
// (identity_pending, identity_decision, and consent_verified then
// complete with the grant, or failed), so that no transfer is ever half
// decided and a grant never exists without the event that gives it; then
// the idempotency record is completed, so that api.ResumePending closes a
// transfer whose request died before it was answered.

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
const OperationMemberMatch = transfer.OperationMemberMatch

// matchRecord is one $member-match being recorded as a transfer.
type matchRecord struct {
	st        Store
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
	res, err := rec.st.CreateTransfer(ctx, store.NewTransfer{
		ClientID: rec.clientID, IdempotencyKey: rec.key, Fingerprint: hex.EncodeToString(fp[:]),
		Transfer: transfer.Transfer{ID: rec.id, ClientID: rec.clientID, PartnerID: requester, Direction: transfer.DirectionExport,
			State: transfer.StateInitiated, CreatedAt: now, UpdatedAt: now},
		Request: transfer.Request{PartnerID: requester, Direction: transfer.DirectionExport},
		Event: transfer.MemberMatchReceived(transfer.MemberMatchDetail{RequestID: rec.id, Requester: requester, Presentation: pres,
			ConsentID: consentID(req.ConsentJSON), CoverageToLink: req.CoverageToLink != nil}).Stamped(now),
	})
	if err != nil {
		return nil, fmt.Errorf("create member-match transfer: %w", err)
	}
	if !res.Created {
		return nil, fmt.Errorf("member-match transfer %s exists already", rec.id)
	}
	return rec, nil
}

// step is ch as a step of r: its event at r's time, by pdex unless it
// names its actor; a state event (transfer.Entered) enters its state.
func (r *matchRecord) step(ch store.Change) store.Change {
	ch.Event.At = r.at
	if ch.Event.Actor == "" {
		ch.Event.Actor = "pdex"
	}
	if ch.Event.State != "" {
		ch.State = ch.Event.State
	}
	return ch
}

// record records steps in one transaction: all of them or none.
func (r *matchRecord) record(ctx context.Context, chs ...store.Change) error {
	for i := range chs {
		chs[i] = r.step(chs[i])
	}
	if _, err := r.st.ApplyChanges(ctx, r.id, chs); err != nil {
		return fmt.Errorf("record member-match %s: %w", chs[len(chs)-1].Event.Key, err)
	}
	for _, ch := range chs {
		if ch.State != "" {
			r.state = ch.State
		}
	}
	return nil
}

// decided records dec, in one transaction: identity_pending and, if the
// matcher ran, its decision; then a match's consent_verified and complete
// with its grant, or a refusal's failed.
func (r *matchRecord) decided(ctx context.Context, dec Decision) error {
	chs := r.pending(dec.Identity)
	if dec.Outcome == OutcomeMatched {
		if dec.Match == nil {
			return fmt.Errorf("record member-match: a match without its Match")
		}
		chs = append(chs, r.matched(*dec.Match)...)
	} else {
		chs = append(chs, r.refused(dec))
	}
	return r.record(ctx, chs...)
}

// pending are the steps identity_pending and, if the matcher ran, its
// decision.
func (r *matchRecord) pending(id *identity.Decision) []store.Change {
	chs := []store.Change{{Event: transfer.MemberMatchPending()}}
	if id == nil {
		return chs
	}
	o := id.IdentityOutcome()
	o.Presentation = r.pres
	return append(chs, store.Change{Identity: &o, Event: transfer.IdentityDecided(o)})
}

// matched are the steps of a match: consent_verified, then complete with
// the grant it gives (written with complete: a transfer complete holds
// its grant, and a grant its transfer).
func (r *matchRecord) matched(m Match) []store.Change {
	m.TransferID = r.id
	g := m.Grant()
	consent := transfer.ConsentOutcome{Status: transfer.ConsentVerified, ConsentID: g.ConsentID, Scope: g.ConsentScope, CheckedAt: r.at}
	// The requester's presentation is an external identity of our member
	// from now on: linked with the match, in its transaction.
	o := m.Identity.IdentityOutcome()
	o.Presentation = r.pres
	return []store.Change{
		{Consent: &consent, Link: identity.LinkOf(r.requester, r.id, o, "$member-match answered to "+r.requester),
			Event: transfer.MatchVerified(m.MemberID, g.ConsentID, g.ConsentScope, g.ConsentExpires)},
		{Grant: &g, Event: transfer.MatchComplete(g.Requester, m.MemberID, g.ConsentID, g.ConsentScope, g.ConsentExpires, g.GrantedAt)},
	}
}

// refused is the step of a refusal: failed with consent_denied (the
// consent reason) or no_match (no member, or several).
func (r *matchRecord) refused(dec Decision) store.Change {
	var ch store.Change
	switch dec.Outcome {
	case OutcomeConsentDenied:
		ch.Error = &transfer.ErrorInfo{Type: transfer.ErrorConsentDenied, Detail: dec.ConsentReason}
		ch.Consent = &transfer.ConsentOutcome{Status: transfer.ConsentDenied, Reason: dec.ConsentReason, CheckedAt: r.at}
		ch.Event = transfer.MatchRefused(dec.Outcome, ch.Error.Type, dec.ConsentReason, nil)
	default: // no member, or several: the requester learns no_match either way
		ch.Error = &transfer.ErrorInfo{Type: transfer.ErrorNoMatch, Detail: dec.Outcome}
		var candidates *int
		if dec.Outcome == OutcomeMultipleMatches {
			candidates = &dec.Candidates
		}
		ch.Event = transfer.MatchRefused(dec.Outcome, ch.Error.Type, "", candidates)
	}
	return ch
}

// abort records that the match could not be performed or recorded
// (failed internal, unless the transfer had ended) and that it was
// answered 500, as far as the store lets it: the request is answered 500
// whatever.
func (r *matchRecord) abort(ctx context.Context, why string) error {
	if !r.state.Terminal() {
		if err := r.record(ctx, store.Change{Error: &transfer.ErrorInfo{Type: transfer.ErrorInternal, Detail: why},
			Event: transfer.MatchAborted(why, r.state)}); err != nil {
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

// statusOf is the HTTP status a Decision is answered with.
func statusOf(outcome string) int {
	if outcome == OutcomeMatched {
		return http.StatusOK
	}
	return http.StatusUnprocessableEntity
}

// OperationBulkMemberMatch is the "operation" in the initiated event's
// detail of a $bulk-member-match batch's transfer.
const OperationBulkMemberMatch = transfer.OperationBulkMemberMatch

// beginBulkMatch records the transfer of an accepted $bulk-member-match
// batch: one transfer per batch (the batch is one request of the
// requester, answered as one result), its id the batch's, initiated then
// identity_pending, in one transaction; each member's outcome is an event of it
// (activities.MatchBulkMember), and FinishBulkMatch completes it.
func (h *Handler) beginBulkMatch(ctx context.Context, b BulkMatch, now time.Time) (*matchRecord, error) {
	now = now.UTC().Truncate(time.Microsecond)
	rec := &matchRecord{st: h.d.Store, id: b.ID, requester: b.Requester, clientID: ClientID(b.Requester),
		key: "bulk-member-match:" + b.ID, at: now, state: transfer.StateInitiated}
	fp := sha256.Sum256([]byte(OperationBulkMemberMatch + "\x00" + b.ID))
	pending := rec.step(store.Change{Event: transfer.BulkMatchPending(len(b.Members))})
	res, err := rec.st.CreateTransfer(ctx, store.NewTransfer{
		ClientID: rec.clientID, IdempotencyKey: rec.key, Fingerprint: hex.EncodeToString(fp[:]),
		Transfer: transfer.Transfer{ID: b.ID, ClientID: rec.clientID, PartnerID: b.Requester, Direction: transfer.DirectionExport,
			State: transfer.StateInitiated, CreatedAt: now, UpdatedAt: now},
		Request: transfer.Request{PartnerID: b.Requester, Direction: transfer.DirectionExport},
		Event:   transfer.BulkMatchReceived(b.ID, b.Requester, len(b.Members)).Stamped(now),
		Changes: []store.Change{pending},
	})
	if err != nil {
		return nil, fmt.Errorf("create bulk-member-match transfer: %w", err)
	}
	if !res.Created {
		return nil, fmt.Errorf("bulk-member-match transfer %s exists already", b.ID)
	}
	rec.state = transfer.StateIdentityPending
	return rec, nil
}
