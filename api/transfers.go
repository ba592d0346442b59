package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// CreateTransfer accepts a transfer under an Idempotency-Key: it creates
// the transfer (or finds the one the key already names), starts its
// workflow and answers the stored 202, byte for byte the same for every
// request with that key and body.
func (s *Server) CreateTransfer(ctx context.Context, req CreateTransferRequestObject) (CreateTransferResponseObject, error) {
	key := req.Params.IdempotencyKey
	if key == "" {
		return nil, missingKey()
	}
	if n := utf8.RuneCountInString(key); n < minKeyLen || n > maxKeyLen {
		return nil, badKey()
	}
	if req.Body == nil {
		return nil, fieldInvalid("body", "is required")
	}
	body := *req.Body
	if p := checkNewTransfer(body); p != nil {
		return nil, p
	}
	fp, err := fingerprint(body)
	if err != nil {
		return nil, err
	}
	client := clientID(ctx)
	dir, partnerID := directionOf(body), partnerOf(body)

	if unknown := s.unknownPartner(dir, partnerID); unknown != nil {
		// Only a new key is refused: a replay must not depend on the
		// registry of today.
		rec, err := s.store.GetIdempotency(ctx, client, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, unknown
		}
		if err != nil {
			return nil, fmt.Errorf("get idempotency record: %w", err)
		}
		return s.answer(ctx, rec, fp, false)
	}

	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("new transfer id: %w", err)
	}
	now := s.now().UTC().Truncate(time.Microsecond) // what every store keeps
	t := transfer.Transfer{
		ID: id.String(), ClientID: client, PartnerID: partnerID, Direction: dir, CorrelationID: deref(body.CorrelationId),
		State: transfer.StateInitiated, CreatedAt: now, UpdatedAt: now,
	}
	tokenKey, err := s.tokenKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	detail := receivedDetail(ctx, t, tokenKey, key, body)
	res, err := s.store.CreateTransfer(ctx, store.NewTransfer{
		ClientID: client, IdempotencyKey: key, Fingerprint: fp,
		Transfer: t,
		Request:  toRequest(body),
		Event:    transfer.RequestReceived(client, detail).Stamped(now),
	})
	if err != nil {
		return nil, fmt.Errorf("create transfer: %w", err)
	}
	rec := res.Record
	if res.Created {
		// What this request created, whatever the store echoes.
		rec = store.IdempotencyRecord{
			ClientID: client, Key: key, Fingerprint: fp, TransferID: t.ID,
			Status: store.IdempotencyPending, CreatedAt: now,
		}
	}
	return s.answer(ctx, rec, fp, res.Created)
}

// answer answers a request whose key names rec: 422 for another body, the
// stored bytes once complete, else completes the acceptance first (the
// first request, a concurrent twin, or a retry after a crash or a failed
// start all get here).
func (s *Server) answer(ctx context.Context, rec store.IdempotencyRecord, fp string, created bool) (CreateTransferResponseObject, error) {
	if rec.Fingerprint != fp {
		return nil, newProblem(http.StatusUnprocessableEntity, ProblemIdempotencyKeyReused, "Idempotency-Key reused",
			"this Idempotency-Key was used with a different request body")
	}
	noteTransfer(ctx, rec.TransferID)
	if rec.Status != store.IdempotencyComplete {
		done, err := s.accept(ctx, rec)
		var se *startError
		if errors.As(err, &se) {
			s.logFor(ctx).Warn("starting transfer workflow failed", zap.Error(se.err))
			return nil, unavailable("the transfer was recorded but its workflow could not be started; retry with the same Idempotency-Key")
		}
		if err != nil {
			return nil, err
		}
		rec = done
	}
	return storedResponse{
		status: rec.ResponseStatus, body: rec.ResponseBody, replayed: !created, self: s.link(rec.TransferID),
	}, nil
}

// unknownPartner is the 422 for a partner the registry does not have in
// the role the direction needs, or nil.
func (s *Server) unknownPartner(dir transfer.Direction, partnerID string) *problemError {
	if dir == transfer.DirectionImport {
		if s.pullers == nil || s.pullers.Has(partnerID) {
			return nil
		}
		return newProblem(http.StatusUnprocessableEntity, ProblemUnknownPartner, "Unknown partner",
			"coverage_to_match.payer names no registered partner we pull from",
			FieldProblem{Field: "coverage_to_match.payer", Reason: "is not a registered partner with role pull"})
	}
	if s.partners == nil || s.partners.Has(partnerID) {
		return nil
	}
	return newProblem(http.StatusUnprocessableEntity, ProblemUnknownPartner, "Unknown partner",
		"partner_id names no registered partner",
		FieldProblem{Field: "partner_id", Reason: "is not a registered partner"})
}

// directionOf is the body's direction: export unless it says import.
func directionOf(b NewTransfer) transfer.Direction {
	if b.Direction != nil && *b.Direction == DirectionImport {
		return transfer.DirectionImport
	}
	return transfer.DirectionExport
}

// partnerOf is the transfer's partner: partner_id, or for an import the
// old payer of coverage_to_match (checkNewTransfer makes them agree).
func partnerOf(b NewTransfer) string {
	if directionOf(b) == transfer.DirectionImport && b.CoverageToMatch != nil {
		return b.CoverageToMatch.Payer
	}
	return deref(b.PartnerId)
}

// checkNewTransfer checks what the schema cannot say: the request's rules
// (transfer.Request.Problems), and what only the body shows (an export
// with an old card, a partner_id beside the old card of an import, a
// subscriber id sent blank). Reasons
// name the rule, never the value.
func checkNewTransfer(b NewTransfer) *problemError {
	var fields []FieldProblem
	for _, p := range toRequest(b).Problems() {
		fields = append(fields, FieldProblem{Field: p.Field, Reason: p.Reason})
	}
	if b.CoverageToMatch != nil && directionOf(b) != transfer.DirectionImport {
		fields = append(fields, FieldProblem{Field: "coverage_to_match", Reason: "is for imports only"}) // toRequest drops it
	}
	if c := b.CoverageToMatch; c != nil && directionOf(b) == transfer.DirectionImport {
		if strings.TrimSpace(c.Payer) != "" && b.PartnerId != nil && *b.PartnerId != c.Payer {
			fields = append(fields, FieldProblem{Field: "partner_id", Reason: "must equal coverage_to_match.payer (or be left out) for an import"})
		}
		if c.SubscriberId != nil && strings.TrimSpace(*c.SubscriberId) == "" {
			fields = append(fields, FieldProblem{Field: "coverage_to_match.subscriber_id", Reason: "must not be blank when given"})
		}
	}
	if len(fields) > 0 {
		return invalid("the request has invalid fields; see errors", fields...)
	}
	return nil
}

func blank(s *string) bool { return s == nil || strings.TrimSpace(*s) == "" }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

// nonEmpty is a pointer to s, or nil for "": optional fields stay absent.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// toRequest is what the store keeps of the request (PHI).
func toRequest(b NewTransfer) transfer.Request {
	m := b.Member
	r := transfer.Request{
		PartnerID: partnerOf(b),
		Member: transfer.Demographics{
			MemberID: deref(m.MemberId), Given: deref(m.Given), Family: deref(m.Family),
			BirthDate: m.BirthDate.String(), Phone: deref(m.Phone),
		},
		Consent: transfer.Consent{
			ID: b.Consent.Id, Status: string(b.Consent.Status), Scope: string(b.Consent.Scope),
			PeriodStart: b.Consent.Period.Start.UTC(),
		},
		CorrelationID: deref(b.CorrelationId),
	}
	if m.Sex != nil {
		r.Member.Sex = string(*m.Sex)
	}
	if directionOf(b) == transfer.DirectionImport {
		r.Direction = transfer.DirectionImport
		if c := b.CoverageToMatch; c != nil {
			r.CoverageToMatch = &transfer.CoverageToMatch{Payer: c.Payer, MemberID: c.MemberId, SubscriberID: deref(c.SubscriberId)}
			if p := c.Period; p != nil {
				if p.Start != nil {
					r.CoverageToMatch.PeriodStart = p.Start.String()
				}
				if p.End != nil {
					r.CoverageToMatch.PeriodEnd = p.End.String()
				}
			}
		}
	}
	if a := m.Address; a != nil {
		r.Member.Address = transfer.Address{
			Street: deref(a.Street), City: deref(a.City), State: deref(a.State), PostalCode: deref(a.PostalCode),
		}
	}
	if e := b.Consent.Period.End; e != nil {
		r.Consent.PeriodEnd = e.UTC()
	}
	if g := b.Consent.GrantedAt; g != nil {
		r.Consent.GrantedAt = g.UTC()
	}
	if ds := b.DataScope; ds != nil {
		if ds.ResourceTypes != nil {
			for _, rt := range *ds.ResourceTypes {
				r.DataScope.ResourceTypes = append(r.DataScope.ResourceTypes, string(rt))
			}
		}
		r.DataScope.Since = utcPtr(ds.Since)
	}
	return r
}

// link is the URL of a transfer, absolute when Deps.BaseURL is set.
func (s *Server) link(id string, sub ...string) string {
	l := s.baseURL + "/v1/transfers/" + id
	for _, p := range sub {
		l += "/" + p
	}
	return l
}

// transferView is the API resource of t.
func (s *Server) transferView(t transfer.Transfer) Transfer {
	v := Transfer{
		Id: t.ID, State: TransferState(t.State), PartnerId: t.PartnerID, Direction: Direction(t.Direction.OrExport()),
		CorrelationId: nonEmpty(t.CorrelationID),
		CreatedAt:     t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC(),
		Links: TransferLinks{Self: s.link(t.ID), Timeline: s.link(t.ID, "timeline")},
	}
	if t.State == transfer.StateManualReview {
		v.Links.Review = ptr(s.link(t.ID, "review"))
	}
	if i := t.Identity; i != nil {
		v.Identity = &IdentityOutcome{
			Status: IdentityStatus(i.Status), MemberId: nonEmpty(i.MemberID), Score: i.Score,
			ReviewedBy: nonEmpty(i.ReviewedBy),
		}
		if len(i.Candidates) > 0 {
			v.Identity.Candidates = ptr(append([]string(nil), i.Candidates...))
		}
		if r := i.Rationale; r != nil {
			ra := &Rationale{Rule: r.Rule, Summary: r.Summary}
			if len(r.Fields) > 0 {
				fs := make([]FieldContribution, len(r.Fields))
				for k, f := range r.Fields {
					fs[k] = FieldContribution{Field: f.Field, Level: f.Level, Weight: f.Weight}
				}
				ra.Fields = &fs
			}
			if ru := r.RunnerUp; ru != nil {
				ra.RunnerUp = &RunnerUp{MemberId: ru.MemberID, Score: ru.Score}
			}
			v.Identity.Rationale = ra
		}
	}
	if c := t.Consent; c != nil {
		v.Consent = &ConsentOutcome{
			Status: ConsentCheckStatus(c.Status), Reason: nonEmpty(c.Reason), ConsentId: nonEmpty(c.ConsentID),
			Scope: nonEmpty(c.Scope), CheckedAt: c.CheckedAt.UTC(),
		}
	}
	if e := t.Export; e != nil {
		files := make([]ExportFile, len(e.Files))
		for k, f := range e.Files {
			files[k] = ExportFile{Type: f.Type, Count: f.Count, Sha256: f.SHA256, Bytes: f.Bytes}
		}
		v.Export = &ExportInfo{
			ManifestSha256: e.ManifestSHA256, Kid: e.KID, Files: files, ExcludedSensitive: e.ExcludedSensitive,
			ReceiptId: nonEmpty(e.ReceiptID), TransactionTime: e.TransactionTime,
		}
		if e.Partial {
			v.Export.Partial = ptr(true)
		}
		if e.Withdrawn {
			v.Export.Withdrawn = ptr(true)
		}
	}
	if e := t.Error; e != nil {
		v.Error = &TransferError{Type: e.Type, Detail: e.Detail}
	}
	return v
}

// GetTransfer answers the transfer's current projection, once the read is
// recorded.
func (s *Server) GetTransfer(ctx context.Context, req GetTransferRequestObject) (GetTransferResponseObject, error) {
	t, err := s.readTransfer(ctx, routeTransfer, req.Id)
	if err != nil {
		return nil, err
	}
	v := s.transferView(t)
	if v.Identity != nil {
		if v.Identity.LinkHistory, err = s.linkHistory(ctx, t); err != nil {
			return nil, err
		}
	}
	return GetTransfer200JSONResponse(v), nil
}

// linkHistory is every record of the identity graph for the external
// identity transfer t presented (its partner and presentation digest),
// oldest first; nil when t presented none.
func (s *Server) linkHistory(ctx context.Context, t transfer.Transfer) (*[]IdentityLink, error) {
	if t.Identity == nil || t.Identity.Presentation == "" {
		return nil, nil
	}
	hist, err := s.store.IdentityLinks(ctx, t.PartnerID, t.Identity.Presentation)
	if err != nil {
		return nil, fmt.Errorf("identity links: %w", err)
	}
	out := make([]IdentityLink, len(hist))
	for i, l := range hist {
		v := IdentityLink{Seq: l.Seq, MemberId: l.MemberID, ValidFrom: l.ValidFrom.UTC(),
			MadeBy: LinkMaker{Kind: LinkMakerKind(l.MadeBy.Kind), Rule: nonEmpty(l.MadeBy.Rule), Reviewer: nonEmpty(l.MadeBy.Reviewer)}}
		if l.MadeBy.Score != 0 || l.MadeBy.Kind == graph.MadeByScore {
			v.MadeBy.Score = ptr(l.MadeBy.Score)
		}
		if l.Ends != 0 {
			v.Ends, v.ValidTo = ptr(l.Ends), ptr(l.ValidTo.UTC())
		}
		if p := l.Provenance; p.TransferID != "" || p.Note != "" {
			v.Provenance = &LinkProvenance{TransferId: nonEmpty(p.TransferID), Note: nonEmpty(p.Note)}
		}
		out[i] = v
	}
	return &out, nil
}

// readTransfer records that the caller reads transfer id through route,
// then returns it: a read is on record before anything is answered.
func (s *Server) readTransfer(ctx context.Context, route, id string) (transfer.Transfer, error) {
	noteTransfer(ctx, id)
	if err := s.visible(ctx, id); err != nil {
		return transfer.Transfer{}, err
	}
	if err := s.recordReads(ctx, route, id); errors.Is(err, store.ErrNotFound) {
		return transfer.Transfer{}, notFound("the transfer")
	} else if err != nil {
		return transfer.Transfer{}, err
	}
	t, err := s.store.GetTransfer(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return transfer.Transfer{}, notFound("the transfer")
	}
	if err != nil {
		return transfer.Transfer{}, fmt.Errorf("get transfer: %w", err)
	}
	return t, nil
}

// visible answers 404 when the caller may see only its own transfers and
// id is not one of them, before anything of it is recorded or shown: the
// answer is the one for a transfer that does not exist.
func (s *Server) visible(ctx context.Context, id string) error {
	own := owner(ctx)
	if own == "" {
		return nil
	}
	t, err := s.store.GetTransfer(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.ClientID != own) {
		return notFound("the transfer")
	}
	if err != nil {
		return fmt.Errorf("get transfer: %w", err)
	}
	return nil
}

// ListTransfers answers a page of transfers, newest first: only the
// caller's own when it may see no others.
func (s *Server) ListTransfers(ctx context.Context, req ListTransfersRequestObject) (ListTransfersResponseObject, error) {
	p := req.Params
	f := store.ListFilter{Limit: defaultLimit, PartnerID: deref(p.PartnerId), Cursor: deref(p.Cursor), ClientID: owner(ctx)}
	if p.Direction != nil {
		f.Direction = transfer.Direction(*p.Direction)
	}
	if p.State != nil {
		f.State = transfer.State(*p.State)
	}
	if p.Limit != nil {
		f.Limit = *p.Limit
	}
	page, err := s.store.ListTransfers(ctx, f)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, fieldInvalid("cursor", "is not a cursor this API returned")
	}
	if err != nil {
		return nil, fmt.Errorf("list transfers: %w", err)
	}
	out := TransferPage{Items: make([]Transfer, len(page.Items)), NextCursor: nonEmpty(page.NextCursor)}
	ids := make([]string, len(page.Items))
	for k, t := range page.Items {
		out.Items[k], ids[k] = s.transferView(t), t.ID
	}
	if err := s.recordReads(ctx, routeList, ids...); err != nil {
		return nil, err
	}
	return ListTransfers200JSONResponse(out), nil
}

// defaultLimit is the page size when the client names none (as in openapi.yaml).
const defaultLimit = 50

// Timeline page sizes (as in openapi.yaml).
const (
	defaultTimelineLimit = 100
	maxTimelineLimit     = 1000
)

// GetTransferTimeline answers a page of the transfer's events in order,
// this read recorded first. A walk of pages shows the timeline up to the
// read of its first page: its cursor carries that bound, so a walk ends
// however many reads its own pages add.
func (s *Server) GetTransferTimeline(ctx context.Context, req GetTransferTimelineRequestObject) (GetTransferTimelineResponseObject, error) {
	noteTransfer(ctx, req.Id)
	rng := store.TimelineRange{Limit: defaultTimelineLimit}
	if l := req.Params.Limit; l != nil {
		rng.Limit = *l
	}
	if c := req.Params.Cursor; c != nil {
		var ok bool
		if rng.After, rng.Until, ok = decodeTimelineCursor(*c); !ok {
			return nil, fieldInvalid("cursor", "is not a cursor this API returned")
		}
	}
	if err := s.visible(ctx, req.Id); err != nil {
		return nil, err
	}
	if err := s.recordReads(ctx, routeTimeline, req.Id); errors.Is(err, store.ErrNotFound) {
		return nil, notFound("the transfer")
	} else if err != nil {
		return nil, err
	}
	page, err := s.store.TimelinePage(ctx, req.Id, rng)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("the transfer")
	}
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	until := rng.Until
	if until == 0 {
		until = page.Last // the first page: this read is the walk's last event
	}
	out := Timeline{Events: make([]TimelineEvent, len(page.Entries))}
	for k, te := range page.Entries {
		e := te.Event
		ev := TimelineEvent{Seq: e.Seq, At: e.At.UTC(), Actor: e.Actor, Type: e.Type}
		if te.Logged {
			ev.Position, ev.Hash = ptr(te.Position), ptr(te.LeafHash[:])
		}
		if e.State != "" {
			ev.State = ptr(TransferState(e.State))
		}
		if len(e.Detail) > 0 {
			ev.Detail = ptr(e.Detail)
		}
		out.Events[k] = ev
	}
	if n := len(page.Entries); n > 0 && page.Entries[n-1].Event.Seq < until {
		out.NextCursor = ptr(encodeTimelineCursor(page.Entries[n-1].Event.Seq, until))
	}
	return GetTransferTimeline200JSONResponse(out), nil
}

// encodeTimelineCursor is the cursor of the page after seq after of a
// walk that ends at seq until: opaque to clients, so that its form may
// change.
func encodeTimelineCursor(after, until int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(after, 10) + "." + strconv.FormatInt(until, 10)))
}

// decodeTimelineCursor reads a cursor encodeTimelineCursor wrote.
func decodeTimelineCursor(c string) (after, until int64, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, 0, false
	}
	a, u, found := strings.Cut(string(b), ".")
	if !found {
		return 0, 0, false
	}
	after, errA := strconv.ParseInt(a, 10, 64)
	until, errU := strconv.ParseInt(u, 10, 64)
	if errA != nil || errU != nil || after < 1 || until <= after {
		return 0, 0, false
	}
	return after, until, true
}

// ReviewTransfer delivers a review decision to a transfer in manual review
// and answers the transfer once the workflow has taken it.
func (s *Server) ReviewTransfer(ctx context.Context, req ReviewTransferRequestObject) (ReviewTransferResponseObject, error) {
	noteTransfer(ctx, req.Id)
	if req.Body == nil {
		return nil, fieldInvalid("body", "is required")
	}
	b := *req.Body
	if b.Decision == ReviewDecisionDecisionApprove && blank(b.MemberId) {
		return nil, fieldInvalid("member_id", "is required to approve")
	}
	if strings.TrimSpace(b.Reason) == "" {
		return nil, fieldInvalid("reason", "must not be blank")
	}
	if err := s.visible(ctx, req.Id); err != nil {
		return nil, err
	}
	if _, err := s.store.GetTransfer(ctx, req.Id); errors.Is(err, store.ErrNotFound) {
		return nil, notFound("the transfer")
	} else if err != nil {
		return nil, fmt.Errorf("get transfer: %w", err)
	}
	d := transfer.ReviewDecision{
		Decision: string(b.Decision), Reason: b.Reason, Reviewer: reviewer(principal(ctx)),
	}
	if b.Decision == ReviewDecisionDecisionApprove {
		d.MemberID = deref(b.MemberId)
	}
	switch err := s.engine.Review(ctx, req.Id, d); {
	case errors.Is(err, transfer.ErrNotInReview):
		return nil, newProblem(http.StatusConflict, ProblemNotInReview, "Not in review",
			"the transfer is not waiting in manual_review")
	case errors.Is(err, transfer.ErrInvalidDecision):
		return nil, newProblem(http.StatusUnprocessableEntity, ProblemInvalidDecision, "Invalid decision",
			"the decision does not fit the transfer; to approve, member_id must be one of identity.candidates")
	case err != nil:
		// The reason may hold PHI: log the error only.
		s.logFor(ctx).Warn("review failed", zap.Error(err))
		return nil, unavailable("the workflow engine did not take the decision; retry later")
	}
	// The answer shows the transfer, so it is a read too: the one event
	// that names the client through which the reviewer decided.
	t, err := s.readTransfer(ctx, routeReview, req.Id)
	if err != nil {
		return nil, fmt.Errorf("get reviewed transfer: %w", err)
	}
	return ReviewTransfer202JSONResponse(s.transferView(t)), nil
}

// GetTransferManifest answers the signed manifest of the transfer's export,
// as sent: kept after the files are gone, as the evidence of what was.
func (s *Server) GetTransferManifest(ctx context.Context, req GetTransferManifestRequestObject) (GetTransferManifestResponseObject, error) {
	t, err := s.readTransfer(ctx, routeManifest, req.Id)
	if err != nil {
		return nil, err
	}
	if t.Export == nil {
		return nil, notFound("a signed manifest of this transfer")
	}
	digest := t.Export.SignatureSHA256
	if digest == "" {
		// Exports prepared before the projection named their signature:
		// any signature artifact of the transfer signs the same manifest.
		arts, err := s.store.ListArtifacts(ctx, req.Id)
		if err != nil {
			return nil, fmt.Errorf("list artifacts: %w", err)
		}
		for _, a := range arts {
			if a.ContentType == "application/jose" { // a signed manifest (activities.PrepareExport)
				digest = a.Digest
				break
			}
		}
	}
	if digest == "" {
		return nil, notFound("a signed manifest of this transfer")
	}
	a, err := s.store.GetArtifact(ctx, digest)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("a signed manifest of this transfer")
	}
	if err != nil {
		return nil, fmt.Errorf("get signed manifest: %w", err)
	}
	return GetTransferManifest200ApplicationjoseResponse{Body: bytes.NewReader(a.Data), ContentLength: int64(len(a.Data))}, nil
}

// AcknowledgeTransfer takes a partner's later, signed acknowledgement of a
// delivery: the signature against the partner's published keys is the
// proof, so the caller needs no other credential.
func (s *Server) AcknowledgeTransfer(ctx context.Context, req AcknowledgeTransferRequestObject) (AcknowledgeTransferResponseObject, error) {
	noteTransfer(ctx, req.Id)
	if req.Body == nil || strings.TrimSpace(req.Body.ReceiptJws) == "" {
		return nil, fieldInvalid("receipt_jws", "is required")
	}
	t, err := s.store.GetTransfer(ctx, req.Id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("the transfer")
	}
	if err != nil {
		return nil, fmt.Errorf("get transfer: %w", err)
	}
	if s.acks == nil {
		return nil, newProblem(http.StatusUnprocessableEntity, ProblemReceiptInvalid, "Receipt not accepted",
			"this server takes no later acknowledgements")
	}
	switch t.State {
	case transfer.StateSent, transfer.StateAcknowledged, transfer.StateComplete:
	default:
		return nil, newProblem(http.StatusConflict, ProblemNotAwaitingAck, "Not awaiting an acknowledgement",
			"the transfer is in "+string(t.State)+", not sent")
	}
	receiptID, signedBy, err := s.acks.VerifyAck(ctx, t, req.Body.ReceiptJws)
	if err != nil {
		if f, ok := fault.As(err); ok && f.Class.Retryable() {
			s.logFor(ctx).Warn("acknowledgement: partner keys unavailable", zap.Error(err))
			return nil, unavailable("the partner's keys could not be fetched; retry later")
		}
		return nil, newProblem(http.StatusUnprocessableEntity, ProblemReceiptInvalid, "Receipt not accepted", err.Error())
	}
	if t.State != transfer.StateSent {
		// Taken before: the same receipt again is answered as it is now.
		if t.Export != nil && t.Export.ReceiptID == receiptID {
			return AcknowledgeTransfer202JSONResponse(s.transferView(t)), nil
		}
		return nil, newProblem(http.StatusConflict, ProblemNotAwaitingAck, "Not awaiting an acknowledgement",
			"the transfer was acknowledged with another receipt")
	}
	switch err := s.engine.Acknowledge(ctx, req.Id, receiptID, signedBy); {
	case errors.Is(err, transfer.ErrNotAwaitingAck):
		// The workflow ended meanwhile (the wait timed out): a final
		// answer, not one the partner should retry.
		return nil, newProblem(http.StatusConflict, ProblemNotAwaitingAck, "Not awaiting an acknowledgement",
			"the transfer no longer waits for an acknowledgement")
	case err != nil:
		s.logFor(ctx).Warn("acknowledgement not delivered", zap.Error(err))
		return nil, unavailable("the workflow engine did not take the acknowledgement; retry later")
	}
	t, err = s.store.GetTransfer(ctx, req.Id)
	if err != nil {
		return nil, fmt.Errorf("get acknowledged transfer: %w", err)
	}
	return AcknowledgeTransfer202JSONResponse(s.transferView(t)), nil
}
