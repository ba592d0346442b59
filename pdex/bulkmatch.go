package pdex

// PDex $bulk-member-match (STU 2.1): a new payer matches many members at
// once, asynchronously, as the FHIR asynchronous request pattern and Bulk
// Data do it:
//
//	POST   /fhir/Group/$bulk-member-match         Prefer: respond-async; Parameters of MemberBundle parts → 202, Content-Location
//	GET    /fhir/bulk-member-match-status/{id}    202 (X-Progress "N of M members decided", Retry-After) while matching; 200 with the result
//	DELETE /fhir/bulk-member-match-status/{id}    202: the batch is cancelled (or its result removed); its status is 404 from then
//
// Each MemberBundle holds the parameters of one $member-match
// (MemberPatient, CoverageToMatch, CoverageToLink, Consent) and is decided
// exactly as $member-match decides it (Matching.Decide: consent first,
// then the matcher; a match recorded as a grant; each failed match counted
// against the requester's cap). The result is a Parameters of three
// Groups: MatchedMembers (its id exports exactly those members with
// $davinci-data-export), NonMatchedMembers (no match, several candidates,
// a part we cannot read, the cap reached, or an error) and
// ConsentConstrainedMembers (a consent we cannot honour). One member's
// failure never fails the batch.
//
// The members as received (PHI) are stored, each by digest, until the
// batch is decided (Deps.BulkMatches runs it: workflows.BulkMemberMatch),
// then withdrawn; the result (member ids and codes) is kept.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// BulkMatches runs the batches of $bulk-member-match
// (workflows.BulkMatchEngine).
type BulkMatches interface {
	// StartBulkMatch starts deciding the batch, whose members are stored.
	StartBulkMatch(ctx context.Context, b BulkMatch) error
	// DeleteBulkMatch cancels the batch id if it is still being decided,
	// and returns once it is closed: cancelled (its members withdrawn and
	// the cancellation recorded on its transfer) or, if it was finishing,
	// finished. A batch that has ended is not touched.
	DeleteBulkMatch(ctx context.Context, id string) error
}

// BulkMatch is an accepted batch (transfer.BulkMatch, which the
// workflows share).
type BulkMatch = transfer.BulkMatch

// The parameters of $bulk-member-match (PDex multi-member-match in and out).
const (
	ParamMemberBundle              = "MemberBundle"
	ParamMatchedMembers            = "MatchedMembers"
	ParamNonMatchedMembers         = "NonMatchedMembers"
	ParamConsentConstrainedMembers = "ConsentConstrainedMembers"
)

// PDex codes and profiles of the result Groups.
const (
	SystemMultiMemberMatchResult = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS"
	profileMatchGroup            = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-match-group"
	profileNoMatchGroup          = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-no-match-group"
)

// OutcomeExtension, on a member of NonMatchedMembers or
// ConsentConstrainedMembers, says why (valueCodeableConcept: the Outcome*
// class and, for a refused consent, the Consent* reason, system
// OutcomeSystem; text names the parameter at fault, never a value).
const OutcomeExtension = "https://p2p.example/fhir/StructureDefinition/member-match-outcome"

// DefaultMaxBulkMembers bounds the members of one batch.
const DefaultMaxBulkMembers = 1000

// MaxBulkMemberMatchBody bounds a $bulk-member-match body. A member of
// the HRex example's size with an identifier, two telecoms and an address
// (testdata/member-bundle.json) is 3.6 KB as compact JSON: 1,000 of them
// are 3.6 MB, 8.6 MB indented by two spaces and 13.1 MB by four
// (TestBulkMemberMatchRealisticSize). 16 MiB takes all three; the 1 MiB of
// other requests took about 290 members.
const MaxBulkMemberMatchBody = 16 << 20

// BulkMatchRequestOwner owns (store.Artifact.TransferID) the members of
// requester's batch id as received; BulkMatchResultOwner its result.
// The requester is part of both, so a batch is found only by its own
// requester.
func BulkMatchRequestOwner(requester, id string) string {
	return transfer.BulkMatchRequestOwner(requester, id)
}

// BulkMatchResultOwner: see BulkMatchRequestOwner.
func BulkMatchResultOwner(requester, id string) string {
	return transfer.BulkMatchResultOwner(requester, id)
}

// BulkMatchedGroupID is the id of the MatchedMembers Group of batch id:
// $davinci-data-export on it exports the members the batch matched.
func BulkMatchedGroupID(id string) string { return "bulk-match-" + id }

// ParseBulkMemberMatch reads a $bulk-member-match Parameters resource and
// returns each MemberBundle as a $member-match Parameters resource (JSON),
// to be read by ParseMemberMatch when the member is decided. Only the
// envelope is checked here: a Parameters of 1..max MemberBundle
// parameters, each carrying parts; what a part holds is the member's own
// business and never fails the batch.
func ParseBulkMemberMatch(body []byte, max int) ([][]byte, *InputError) {
	var p fhir.Parameters
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, &InputError{Code: "structure", Msg: "the body is not a FHIR Parameters resource in JSON"}
	}
	if p.ImplicitRules != "" {
		return nil, &InputError{Param: "Parameters.implicitRules", Code: "not-supported", Msg: "implicit rules are not supported"}
	}
	var members [][]byte
	for _, prm := range p.Parameter {
		if prm.Name != ParamMemberBundle {
			return nil, &InputError{Param: prm.Name, Code: "not-supported", Msg: "is not a parameter of $bulk-member-match"}
		}
		at := fmt.Sprintf("%s[%d]", ParamMemberBundle, len(members))
		switch {
		case len(prm.ModifierExtension) > 0:
			return nil, &InputError{Param: at, Code: "not-supported", Msg: "carries a modifierExtension we do not understand"}
		case prm.Value != nil || len(prm.Resource) > 0 || len(prm.Part) == 0:
			return nil, &InputError{Param: at, Code: "invalid", Msg: "must carry the member's parameters as parts"}
		}
		b, err := json.Marshal(fhir.Parameters{ResourceType: "Parameters", Parameter: prm.Part})
		if err != nil {
			return nil, &InputError{Param: at, Code: "invalid", Msg: "could not be read"}
		}
		members = append(members, b)
		if len(members) > max {
			return nil, &InputError{Param: ParamMemberBundle, Code: "too-costly", Msg: fmt.Sprintf("at most %d members per request", max)}
		}
	}
	if len(members) == 0 {
		return nil, &InputError{Param: ParamMemberBundle, Code: "required", Msg: "is required (one per member)"}
	}
	return members, nil
}

// DecideMember decides one member of a batch (activities.MemberMatcher):
// a requester at its failed-match cap is not matched at all; a member
// that is not a valid $member-match is not matched (invalid_request);
// otherwise Decide. A match comes with its grant and its identity link,
// for the caller to record with the member's outcome: the link ties the
// requester's presentation (graph.Presentation under key, as a single
// $member-match records it) to our member, made as the matcher decided.
// Neither names a transfer (TransferID "": the batch's transfer records
// them, not a $member-match's).
func (m *Matching) DecideMember(ctx context.Context, requester string, key, member []byte) (transfer.BulkMemberOutcome, *store.MatchGrant, *graph.Link, error) {
	now := m.now()
	if _, capped, err := m.Throttle.capped(ctx, requester, now); err != nil {
		return transfer.BulkMemberOutcome{}, nil, nil, fmt.Errorf("reading the failed-match count: %w", err)
	} else if capped {
		return transfer.BulkMemberOutcome{Outcome: OutcomeTooManyFailures, Why: "too many failed matches: try again later"}, nil, nil, nil
	}
	req, perr := ParseMemberMatch(member)
	if perr != nil {
		return transfer.BulkMemberOutcome{Outcome: OutcomeInvalid, Why: perr.Error()}, nil, nil, nil
	}
	dec, err := m.Decide(ctx, requester, req, now)
	if err != nil {
		return transfer.BulkMemberOutcome{}, nil, nil, err
	}
	var (
		g    *store.MatchGrant
		link *graph.Link
	)
	if dec.Match != nil {
		mg := dec.Match.Grant()
		g = &mg
		o := dec.Match.Identity.IdentityOutcome()
		o.Presentation = graph.Presentation(key, requester, req.Demographics())
		link = identity.LinkOf(requester, "", o, "$bulk-member-match answered to "+requester)
	}
	return transfer.BulkMemberOutcome{Outcome: dec.Outcome, MemberID: dec.MemberID, Reason: dec.ConsentReason, Why: dec.Why}, g, link, nil
}

func (h *Handler) mountBulkMatch(r chi.Router) {
	r.Post("/Group/$bulk-member-match", h.bulkMemberMatch)
	r.Get("/bulk-member-match-status/{id}", h.bulkMatchStatus)
	r.Delete("/bulk-member-match-status/{id}", h.deleteBulkMatch)
}

func (h *Handler) bulkMemberMatch(w http.ResponseWriter, r *http.Request) {
	requester, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	h.decideBulkMemberMatch(w, r, requester).write(w)
}

// decideBulkMemberMatch decides the reply to requester's
// $bulk-member-match: whether it may ask now, what it asks, then the
// batch stored, recorded as a transfer and started: 202 to poll.
func (h *Handler) decideBulkMemberMatch(w http.ResponseWriter, r *http.Request, requester string) reply {
	now := h.d.Now()
	log := h.d.Logger.With(zap.String("requester", requester), zap.String("op", "bulk-member-match"))
	notAccepted := refuse(http.StatusInternalServerError, issue("exception", OutcomeError, "the request could not be accepted"))
	// The batch is one request against the rate; its members count one by
	// one against the failed-match cap as they are decided.
	if wait, why, err := h.throttle.admit(r.Context(), requester, now); err != nil {
		return notAccepted.logged(log, zapcore.ErrorLevel, "bulk-member-match: reading the failed-match count", zap.Error(err))
	} else if wait > 0 {
		return throttled(log, "bulk-member-match", wait, why)
	}
	if !preferAsync(r.Header.Values("Prefer")) {
		return refuse(http.StatusBadRequest, issue("required", OutcomeInvalid, "$bulk-member-match is asynchronous: send the header Prefer: respond-async"))
	}
	if !fhirJSON(r.Header.Get("Content-Type")) {
		return refuse(http.StatusUnsupportedMediaType, issue("not-supported", OutcomeInvalid, "send application/fhir+json"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBulkMemberMatchBody))
	if err != nil {
		return unreadable(err)
	}
	members, perr := ParseBulkMemberMatch(body, h.d.MaxBulkMembers)
	if perr != nil {
		is := issue(perr.Code, OutcomeInvalid, perr.Error())
		if perr.Param != "" {
			is.Expression = []string{bulkExpression(perr.Param)}
		}
		return refuse(http.StatusBadRequest, is).logged(log, zapcore.InfoLevel, "bulk-member-match refused", zap.String("param", perr.Param))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return notAccepted
	}
	b := BulkMatch{ID: id.String(), Requester: requester, Members: make([]string, len(members))}
	owner := BulkMatchRequestOwner(requester, b.ID)
	failed := func(err error) reply {
		log.Error("bulk-member-match", zap.String("batch_id", b.ID), zap.Error(err))
		// Nothing runs the batch: its members' PHI goes.
		if _, werr := h.d.Store.WithdrawArtifacts(context.WithoutCancel(r.Context()), owner, h.d.Now()); werr != nil {
			log.Error("bulk-member-match: withdrawing the request", zap.String("batch_id", b.ID), zap.Error(werr))
		}
		return notAccepted
	}
	for i, m := range members {
		// The batch and position are part of what is stored, so that the
		// same member sent in two batches is two artifacts, each withdrawn
		// with its own batch.
		var p map[string]json.RawMessage
		_ = json.Unmarshal(m, &p) // we marshalled it
		p["id"], _ = json.Marshal(fmt.Sprintf("%s-%d", b.ID, i))
		data, _ := json.Marshal(p)
		b.Members[i] = export.Digest(data)
		if err := h.d.Store.PutArtifact(r.Context(), store.Artifact{Digest: b.Members[i], TransferID: owner,
			Name: fmt.Sprintf("MemberBundle-%d.json", i), ContentType: "application/fhir+json", Size: int64(len(data)),
			Data: data, CreatedAt: now.UTC()}); err != nil {
			return failed(err)
		}
	}
	// The batch is a transfer before it runs (record.go).
	rec, err := h.beginBulkMatch(r.Context(), b, now)
	if err == nil {
		err = h.d.BulkMatches.StartBulkMatch(r.Context(), b)
	}
	if err == nil {
		err = rec.finish(r.Context(), http.StatusAccepted, "accepted")
	}
	if err != nil {
		if rec != nil {
			if aerr := rec.abort(context.WithoutCancel(r.Context()), "the batch could not be started"); aerr != nil {
				log.Error("bulk-member-match: recording the failure", zap.String("batch_id", b.ID), zap.Error(aerr))
			}
		}
		return failed(err)
	}
	base := h.base(r, strings.Index(r.URL.Path, "/Group/"))
	return reply{status: http.StatusAccepted, body: fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{
		Severity: "information", Code: "informational", Diagnostics: "accepted: poll the Content-Location",
	}}}}.header("Content-Location", base+"/bulk-member-match-status/"+b.ID).
		logged(log, zapcore.InfoLevel, "bulk-member-match accepted", zap.String("batch_id", b.ID), zap.Int("members", len(members)))
}

// bulkExpression is the FHIRPath of a parameter of $bulk-member-match.
func bulkExpression(param string) string {
	name, idx, ok := strings.Cut(param, "[")
	e := "Parameters.parameter.where(name='" + name + "')"
	if ok {
		e += "[" + idx
	}
	return e
}

func (h *Handler) bulkMatchStatus(w http.ResponseWriter, r *http.Request) {
	requester, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	log := h.d.Logger.With(zap.String("requester", requester), zap.String("batch_id", id))
	b, err := h.bulkMatchResult(r.Context(), requester, id)
	switch {
	case err != nil:
		log.Error("bulk-member-match status", zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the request could not be read"))
		return
	case b.state == batchUnknown:
		writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such request (it may have been deleted)"))
		return
	case b.state == batchRunning:
		progress, err := h.bulkMatchProgress(r.Context(), id, b.members)
		if err != nil {
			log.Error("bulk-member-match progress", zap.Error(err))
			progress = "matching members"
		}
		w.Header().Set("X-Progress", progress)
		w.Header().Set("Retry-After", strconv.Itoa(int((h.d.StatusRetryAfter+999_999_999)/1_000_000_000)))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	writeFHIR(w, http.StatusOK, h.bulkMatchResponse(b.result))
}

// bulkMatchProgress is the X-Progress of a batch of members members being
// decided: how many its transfer says are decided. No PHI: two counts.
func (h *Handler) bulkMatchProgress(ctx context.Context, id string, members int) (string, error) {
	evs, err := h.d.Store.Timeline(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "matching members", nil // a batch from before batches were transfers
	}
	if err != nil {
		return "", err
	}
	decided := 0
	for _, e := range evs {
		if e.Type == transfer.EventMemberDecided {
			decided++
		}
	}
	return fmt.Sprintf("%d of %d members decided", decided, members), nil
}

// deleteBulkMatch is Bulk Data's DELETE of the status URL: a batch being
// decided is cancelled (no member is decided after it, its members' PHI is
// withdrawn and the cancellation recorded); a decided batch's result is
// withdrawn (and with it its MatchedMembers Group) and the deletion
// recorded. Either way its status is 404 from then. The grants of members
// already matched stay: they are the matches', not the batch's.
func (h *Handler) deleteBulkMatch(w http.ResponseWriter, r *http.Request) {
	requester, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	log := h.d.Logger.With(zap.String("requester", requester), zap.String("batch_id", id))
	fail := func(msg string, err error) {
		log.Error("bulk-member-match delete: "+msg, zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the request could not be deleted"))
	}
	b, err := h.bulkMatchResult(r.Context(), requester, id)
	if err != nil {
		fail("reading the batch", err)
		return
	}
	if b.state == batchUnknown {
		writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such request (it may have been deleted)"))
		return
	}
	if b.state == batchRunning {
		if err := h.d.BulkMatches.DeleteBulkMatch(r.Context(), id); err != nil {
			fail("cancelling the batch", err)
			return
		}
		// It may have finished rather than stopped (it was finishing).
		if b, err = h.bulkMatchResult(r.Context(), requester, id); err != nil {
			fail("reading the batch", err)
			return
		}
	}
	if b.state == batchDone {
		if err := h.removeBulkMatchResult(r.Context(), requester, id, b.resultSHA256); err != nil {
			fail("removing the result", err)
			return
		}
	}
	log.Info("bulk-member-match deleted", zap.String("was", b.state.String()))
	writeFHIR(w, http.StatusAccepted, fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{
		Severity: "information", Code: "informational", Diagnostics: "request deleted",
	}}})
}

// removeBulkMatchResult records that requester deleted its decided batch
// id, then withdraws the result: recorded first, so that a result gone is
// never unexplained (a retry of the DELETE finishes the withdrawal).
func (h *Handler) removeBulkMatchResult(ctx context.Context, requester, id, digest string) error {
	_, err := h.d.Store.ApplyChange(ctx, id, store.Change{Event: transfer.BulkResultDeleted(requester, digest).Stamped(h.d.Now().UTC())})
	if err != nil && !errors.Is(err, store.ErrNotFound) { // no transfer: a batch from before batches were transfers
		return err
	}
	_, err = h.d.Store.WithdrawArtifacts(ctx, BulkMatchResultOwner(requester, id), h.d.Now())
	return err
}

type batchState int

const (
	batchUnknown batchState = iota
	batchRunning
	batchDone
)

func (s batchState) String() string {
	switch s {
	case batchRunning:
		return "running"
	case batchDone:
		return "done"
	}
	return "unknown"
}

// batch is what the store says of a requester's batch.
type batch struct {
	state        batchState
	result       transfer.BulkMatchResult // when done
	resultSHA256 string                   // when done
	members      int                      // when running: how many it has
}

// bulkMatchResult reads requester's batch id: its result once decided.
func (h *Handler) bulkMatchResult(ctx context.Context, requester, id string) (batch, error) {
	var b batch
	arts, err := h.d.Store.ListArtifacts(ctx, BulkMatchResultOwner(requester, id))
	if err != nil {
		return b, err
	}
	for _, a := range arts {
		if a.Name != transfer.BulkMatchResultName || a.WithdrawnAt != nil {
			continue
		}
		art, err := h.d.Store.GetArtifact(ctx, a.Digest)
		if err == nil {
			err = json.Unmarshal(art.Data, &b.result)
		}
		if err == nil && (b.result.BatchID != id || b.result.Requester != requester) {
			err = errors.New("the stored result is another batch's")
		}
		if err != nil {
			return batch{}, err
		}
		b.state, b.resultSHA256 = batchDone, a.Digest
		return b, nil
	}
	reqs, err := h.d.Store.ListArtifacts(ctx, BulkMatchRequestOwner(requester, id))
	if err != nil {
		return b, err
	}
	for _, a := range reqs {
		if a.WithdrawnAt == nil {
			b.state, b.members = batchRunning, len(reqs)
			return b, nil
		}
	}
	// Withdrawn with no result: the batch was never started, or was
	// cancelled, or its result deleted.
	return b, nil
}

// group is a FHIR Group as the PDex result carries it.
type group struct {
	ResourceType string                `json:"resourceType"`
	ID           string                `json:"id,omitempty"`
	Meta         *fhir.Meta            `json:"meta,omitempty"`
	Type         string                `json:"type"`
	Actual       bool                  `json:"actual"`
	Code         *fhir.CodeableConcept `json:"code,omitempty"`
	Quantity     int                   `json:"quantity"`
	Member       []groupMember         `json:"member,omitempty"`
}

type groupMember struct {
	Extension []fhir.Extension `json:"extension,omitempty"`
	Entity    fhir.Reference   `json:"entity"`
}

// bulkMatchResponse is the PDex multi-member-match-out Parameters of res.
func (h *Handler) bulkMatchResponse(res transfer.BulkMatchResult) fhir.Parameters {
	mk := func(id, code, display, profile string) *group {
		g := &group{ResourceType: "Group", ID: id, Type: "person", Actual: true, Meta: &fhir.Meta{Profile: []string{profile}},
			Code: &fhir.CodeableConcept{Coding: []fhir.Coding{{System: SystemMultiMemberMatchResult, Code: code, Display: display}}}}
		return g
	}
	matched := mk(BulkMatchedGroupID(res.BatchID), "match", "Matched", profileMatchGroup)
	nonMatched := mk("", "nomatch", "Not Matched", profileNoMatchGroup)
	constrained := mk("", "consentconstraint", "Consent Constraint", profileNoMatchGroup)
	for _, m := range res.Members {
		part := fmt.Sprintf("%s[%d]", ParamMemberBundle, m.Index)
		if m.Outcome == OutcomeMatched {
			ident := fhir.Identifier{Type: &memberIdentifierType, System: h.d.MemberIDSystem, Value: m.MemberID}
			ref := fhir.Reference{Type: "Patient", Identifier: &ident, Display: part}
			if h.d.PatientRef != nil {
				ref.Reference = h.d.PatientRef(m.MemberID)
			}
			matched.Member = append(matched.Member, groupMember{Entity: ref})
			continue
		}
		why := fhir.CodeableConcept{Coding: []fhir.Coding{{System: OutcomeSystem, Code: m.Outcome}}, Text: m.Why}
		if m.Reason != "" {
			why.Coding = append(why.Coding, fhir.Coding{System: OutcomeSystem, Code: m.Reason})
		}
		v, _ := fhir.NewValue("CodeableConcept", why) // our own types always marshal
		gm := groupMember{Extension: []fhir.Extension{{URL: OutcomeExtension, Value: v}}, Entity: fhir.Reference{Display: part}}
		if m.Outcome == OutcomeConsentDenied {
			constrained.Member = append(constrained.Member, gm)
		} else {
			nonMatched.Member = append(nonMatched.Member, gm)
		}
	}
	out := fhir.Parameters{ResourceType: "Parameters"}
	for _, p := range []struct {
		name string
		g    *group
	}{{ParamMatchedMembers, matched}, {ParamNonMatchedMembers, nonMatched}, {ParamConsentConstrainedMembers, constrained}} {
		p.g.Quantity = len(p.g.Member)
		b, _ := json.Marshal(p.g)
		out.Parameter = append(out.Parameter, fhir.Parameter{Name: p.name, Resource: b})
	}
	return out
}

// bulkMatchedGroup are the members of requester's MatchedMembers Group
// groupID (BulkMatchedGroupID), for its export; found false when there is
// no such Group (not a batch's, or not decided).
func (h *Handler) bulkMatchedGroup(ctx context.Context, requester, groupID string) (ids []string, found bool, err error) {
	id, ok := strings.CutPrefix(groupID, BulkMatchedGroupID(""))
	if !ok || h.d.BulkMatches == nil {
		return nil, false, nil
	}
	b, err := h.bulkMatchResult(ctx, requester, id)
	if err != nil || b.state != batchDone {
		return nil, false, err
	}
	ids = []string{}
	for _, m := range b.result.Members {
		if m.Outcome == OutcomeMatched {
			ids = append(ids, m.MemberID)
		}
	}
	return ids, true, nil
}
