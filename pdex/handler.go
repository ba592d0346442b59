// Package pdex serves the Da Vinci PDex payer-to-payer API to partner
// payers, under /fhir: we are the old payer, a new payer asks us for a
// member's data: HRex $member-match, then a FHIR Bulk Data export of the
// matched members' data (bulk.go).
//
//	POST /fhir/Patient/$member-match   (application/fhir+json Parameters)
//
// One call: who asks (Deps.Requester: the authenticated partner), whether
// they may ask now (a per-partner rate and a cap on failed matches, both
// answered 429 with Retry-After), what they ask (ParseMemberMatch: 400
// naming the parameter at fault), whether the member's consent lets us
// answer them (EvaluateConsent: 422), and who the member is
// (Deps.Matcher, the identity package's matcher: only a confident match of
// one member answers 200 with MemberIdentifier and MemberId; no match,
// several candidates or the review band answer 422). A 422 never carries
// a member's id or data, and the consent is judged before matching, so a
// refused consent tells nothing about who our members are.
//
// Logs carry the outcome, the requester and a keyed digest of the query
// (to correlate repeated queries), never names, birth dates, addresses,
// phones or member ids.
package pdex

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Matcher resolves a member's demographics to a member of our index
// (activities.IndexMatcher is the one p2p runs).
type Matcher interface {
	Resolve(ctx context.Context, q transfer.Demographics) (identity.Decision, error)
}

// Match is a successful $member-match: who asked, who the member is, and
// the consent that let us answer. Bulk export re-checks the consent's scope
// and expiry on every later request for the member's data.
type Match struct {
	Requester      string // partner id
	MemberID       string
	Consent        ConsentDecision
	ConsentJSON    json.RawMessage // the Consent as received
	CoverageToLink *fhir.Coverage  // the member's coverage with the requester, if sent
	At             time.Time
	// Identity is the matcher's decision (its rationale); TransferID the
	// transfer that records this $member-match, "" when none does.
	Identity   identity.Decision
	TransferID string
}

// Deps are the Handler's dependencies and settings.
type Deps struct {
	// Matcher finds the member. Required.
	Matcher Matcher
	// Requester says which partner sent r, once authenticated, and the
	// scopes it holds; ok false answers 401 (and so must an invalid
	// bearer token, whatever else the request carries). Each route then
	// checks the scope it needs (scopes.go; 403 insufficient_scope). This
	// is the seam where SMART Backend Services and mTLS plug in;
	// HeaderRequester is for loopback development and for deployments
	// behind a gateway that authenticates partners. Required.
	Requester func(r *http.Request) (c Caller, ok bool)
	// Parties says how consents name each partner (its NPI, typically).
	// A partner it does not know cannot be a consent's recipient. Required.
	Parties func(partnerID string) (Party, bool)
	// Holder is us as consents name the payer that discloses. With no
	// identifiers, consents are not checked for naming us.
	Holder Party
	// OnMatch, if set, is told of each match before it is recorded and
	// answered; an error answers 500 and no identifier leaves. With Store,
	// the match's grant is recorded with its transfer (record.go): OnMatch
	// is for whatever else must know.
	OnMatch func(ctx context.Context, m Match) error

	// MemberIDSystem is the identifier system of our member ids in
	// MemberIdentifier. Required.
	MemberIDSystem string
	// PayerName is MemberIdentifier.assigner.display; "" leaves it out.
	PayerName string
	// PatientRef gives the reference of the member's Patient resource
	// ("Patient/123") for MemberId; nil leaves MemberId out (HRex 0..1).
	PatientRef func(memberID string) string

	// Exports, with Store, serves bulk export of matched members (bulk.go);
	// nil: those routes answer 404. Store records each $member-match as a
	// transfer, with the grant of a match (record.go), and reads match
	// grants, the exports' transfers and their files; nil: nothing is
	// recorded.
	Exports Exports
	Store   Store
	// BulkMatches, with Store, serves $bulk-member-match (bulkmatch.go);
	// nil: that route answers 404. MaxBulkMembers bounds a batch; 0:
	// DefaultMaxBulkMembers.
	BulkMatches    BulkMatches
	MaxBulkMembers int
	// BaseURL is the absolute URL of /fhir as partners reach it, for the
	// URLs of status and files; "": from each request.
	BaseURL string
	// StatusRetryAfter is the Retry-After of an export in progress; 0:
	// DefaultStatusRetryAfter.
	StatusRetryAfter time.Duration

	// Throttle limits requests and failed matches per requester; nil: one
	// of Rate, Burst, MaxFailures and FailureWindow (zero values take the
	// Default* constants), counting failures in memory. Share it with the
	// bulk activities (Matching), or give both a NewSharedThrottle over
	// the store.
	Throttle      *Throttle
	Rate          rate.Limit
	Burst         int
	MaxFailures   int
	FailureWindow time.Duration

	// DigestKey keys the query digest of log lines; nil: a random key per
	// process (digests then correlate within one run only).
	DigestKey []byte
	Logger    *zap.Logger      // nil: no logging
	Now       func() time.Time // nil: time.Now
}

// Store is what the FHIR API needs of the store: the transfers it records
// $member-match and $bulk-member-match as (with their idempotency keys
// and timelines), the artifacts of exports and batches, match grants, and
// the presentation key of the identity graph.
type Store interface {
	store.Transfers
	store.Idempotency
	store.Timelines
	store.Artifacts
	store.Grants
	store.IdentityGraph
}

// Handler serves /fhir. Mount it at /fhir (chi: r.Mount("/fhir", h)); on
// its own it serves the paths below /fhir ("/Patient/$member-match").
type Handler struct {
	d        Deps
	throttle *Throttle
	match    *Matching
	router   http.Handler

	keyMu sync.Mutex
	key   []byte // the store's presentation key, read once
}

// maxBody bounds a request body: a member-match request is a few KiB.
const maxBody = 1 << 20

// NewHandler checks d and builds the Handler.
func NewHandler(d Deps) (*Handler, error) {
	switch {
	case d.Matcher == nil:
		return nil, errors.New("pdex: Deps.Matcher is required")
	case d.Requester == nil:
		return nil, errors.New("pdex: Deps.Requester is required")
	case d.Parties == nil:
		return nil, errors.New("pdex: Deps.Parties is required")
	case d.MemberIDSystem == "":
		return nil, errors.New("pdex: Deps.MemberIDSystem is required")
	case d.Exports != nil && d.Store == nil:
		return nil, errors.New("pdex: Deps.Store is required with Deps.Exports")
	case d.BulkMatches != nil && d.Store == nil:
		return nil, errors.New("pdex: Deps.Store is required with Deps.BulkMatches")
	}
	if d.MaxBulkMembers <= 0 {
		d.MaxBulkMembers = DefaultMaxBulkMembers
	}
	if d.StatusRetryAfter <= 0 {
		d.StatusRetryAfter = DefaultStatusRetryAfter
	}
	d.BaseURL = strings.TrimRight(d.BaseURL, "/")
	if d.Rate == 0 {
		d.Rate = DefaultRate
	}
	if d.Burst <= 0 {
		d.Burst = DefaultBurst
	}
	if d.MaxFailures <= 0 {
		d.MaxFailures = DefaultMaxFailures
	}
	if d.FailureWindow <= 0 {
		d.FailureWindow = DefaultFailureWindow
	}
	if d.DigestKey == nil {
		d.DigestKey = make([]byte, 32)
		_, _ = rand.Read(d.DigestKey) // crypto/rand.Read never fails
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Throttle == nil {
		d.Throttle = NewThrottle(d.Rate, d.Burst, d.MaxFailures, d.FailureWindow)
	}
	h := &Handler{d: d, throttle: d.Throttle, match: &Matching{
		Matcher: d.Matcher, Parties: d.Parties, Holder: d.Holder, OnMatch: d.OnMatch, Throttle: d.Throttle, Now: d.Now,
	}}
	r := chi.NewRouter()
	r.Post("/Patient/$member-match", h.memberMatch)
	if d.Exports != nil {
		h.mountBulk(r)
	}
	if d.BulkMatches != nil {
		h.mountBulkMatch(r)
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such FHIR operation here"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, http.StatusMethodNotAllowed, issue("not-supported", "", "method not allowed"))
	})
	h.router = r
	return h, nil
}

// ServeHTTP serves the FHIR routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.router.ServeHTTP(w, r) }

// HeaderRequester returns a Deps.Requester that trusts header to name the
// partner, if known(partner) — for loopback development, tests, and a
// gateway that authenticates partners and sets the header. Never expose it
// to partners directly: anyone could claim to be anyone.
func HeaderRequester(header string, known func(partnerID string) bool) func(*http.Request) (Caller, bool) {
	return func(r *http.Request) (Caller, bool) {
		id := r.Header.Get(header)
		if id == "" || !known(id) {
			return Caller{}, false
		}
		return Caller{PartnerID: id, AllScopes: true}, true
	}
}

// Outcome classes: the log's "outcome" and, for 422s, the code in
// OperationOutcome.issue.details (system OutcomeSystem) that tells the
// requester what happened. Clients switch on these strings.
const (
	OutcomeMatched         = transfer.BulkOutcomeMatched // "matched"
	OutcomeNoMatch         = transfer.ErrorNoMatch       // "no_match"
	OutcomeMultipleMatches = "multiple_matches"
	OutcomeConsentDenied   = transfer.BulkOutcomeConsentDenied // "consent_denied"
	OutcomeInvalid         = "invalid_request"
	OutcomeUnauthenticated = "unauthenticated"
	OutcomeThrottled       = "throttled"
	OutcomeTooManyFailures = "too_many_failures"
	OutcomeError           = transfer.BulkOutcomeError // "error"
)

// OutcomeSystem is the code system of OperationOutcome.issue.details
// codes: the Outcome* classes and, for a refused consent, the Consent*
// reason as a second coding.
const OutcomeSystem = "https://p2p.example/fhir/CodeSystem/member-match-outcome"

// Identifier type codings of MemberIdentifier. HRex STU 1.1 and 1.2 fix
// hrex-temp#UMB (a pattern: more codings may follow); STU1 used v2-0203#MB.
// We send both, so that clients of either release find theirs.
var memberIdentifierType = fhir.CodeableConcept{Coding: []fhir.Coding{
	{System: fhir.SystemHRexTemp, Code: "UMB", Display: "Unique Product-independent Payer Person Identifier"},
	{System: fhir.SystemV20203, Code: "MB", Display: "Member Number"},
}}

func (h *Handler) memberMatch(w http.ResponseWriter, r *http.Request) {
	h.decideMemberMatch(w, r).write(w)
}

// decideMemberMatch decides the reply to a $member-match: who asks,
// whether they may ask now, what they ask, then the match itself, recorded
// as a transfer before it is answered.
func (h *Handler) decideMemberMatch(w http.ResponseWriter, r *http.Request) reply {
	const msg = "member-match"
	now := h.d.Now()
	log := h.d.Logger
	c, ok := h.d.Requester(r)
	if !ok {
		return refuse(http.StatusUnauthorized, issue("login", OutcomeUnauthenticated, "authentication required")).
			header("WWW-Authenticate", "Bearer").logged(log, zapcore.InfoLevel, msg, zap.String("outcome", OutcomeUnauthenticated))
	}
	requester := c.PartnerID
	log = log.With(zap.String("requester", requester))
	if !permitted(c, r) {
		return insufficientScope(routeNeed(r)).logged(log, zapcore.InfoLevel, msg, zap.String("outcome", OutcomeInsufficientScope))
	}
	failed := func(err error, fields ...zap.Field) reply {
		return refuse(http.StatusInternalServerError, issue("exception", OutcomeError, "the match could not be performed")).
			logged(log, zapcore.ErrorLevel, msg, append(append([]zap.Field{zap.String("outcome", OutcomeError)}, fields...), zap.Error(err))...)
	}
	invalid := func(status int, is fhir.Issue, field zap.Field) reply {
		return refuse(status, is).logged(log, zapcore.InfoLevel, msg, zap.String("outcome", OutcomeInvalid), field)
	}
	if wait, why, err := h.throttle.admit(r.Context(), requester, now); err != nil {
		return failed(err, zap.String("why", "failed-match count"))
	} else if wait > 0 {
		return throttled(log, msg, wait, why)
	}
	if !fhirJSON(r.Header.Get("Content-Type")) {
		return invalid(http.StatusUnsupportedMediaType, issue("not-supported", OutcomeInvalid, "send application/fhir+json"), zap.String("why", "content type"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		a := unreadable(err)
		return invalid(a.status, a.issue, zap.String("why", "body"))
	}
	req, perr := ParseMemberMatch(body)
	if perr != nil {
		is := issue(perr.Code, OutcomeInvalid, perr.Error())
		if perr.Param != "" {
			is.Expression = []string{expression(perr.Param)}
		}
		return invalid(http.StatusBadRequest, is, zap.String("param", perr.Param))
	}
	log = log.With(zap.String("query_digest", h.digest(req.Demographics())))
	// The request is a transfer before it is decided (record.go): a match
	// is answered only once its steps and grant are recorded.
	rec, err := h.beginMatch(r.Context(), requester, req, now)
	if err != nil {
		return failed(err)
	}
	if rec != nil {
		log = log.With(zap.String("transfer_id", rec.id))
	}
	dec, err := h.match.Decide(r.Context(), requester, req, now)
	if err == nil && rec != nil {
		err = rec.decided(r.Context(), dec)
	}
	if err == nil && rec != nil {
		err = rec.finish(r.Context(), statusOf(dec.Outcome), dec.Outcome)
	}
	if err != nil {
		if rec != nil {
			if aerr := rec.abort(r.Context(), "the match could not be performed or recorded"); aerr != nil {
				log.Error("member-match: recording the failure", zap.Error(aerr))
			}
		}
		return failed(err)
	}
	return h.decided(log, dec)
}

// decided is the reply to a decided $member-match: 200 with the member's
// identifier when matched, else 422 saying why (never who).
func (h *Handler) decided(log *zap.Logger, dec Decision) reply {
	const msg = "member-match"
	outcome := zap.String("outcome", dec.Outcome)
	switch dec.Outcome {
	case OutcomeMatched:
		return reply{status: http.StatusOK, body: h.response(dec.MemberID)}.logged(log, zapcore.InfoLevel, msg,
			outcome, zap.String("rule", dec.Rule), zap.String("consent_scope", dec.Consent.Scope))
	case OutcomeConsentDenied:
		is := issue("business-rule", OutcomeConsentDenied, dec.Why)
		is.Details.Coding = append(is.Details.Coding, fhir.Coding{System: OutcomeSystem, Code: dec.ConsentReason})
		is.Expression = []string{expression(ParamConsent)}
		return refuse(http.StatusUnprocessableEntity, is).logged(log, zapcore.InfoLevel, msg, outcome, zap.String("reason", dec.ConsentReason))
	case OutcomeMultipleMatches:
		return refuse(http.StatusUnprocessableEntity, issue("multiple-matches", OutcomeMultipleMatches, dec.Why)).
			logged(log, zapcore.InfoLevel, msg, outcome, zap.Int("candidates", dec.Candidates))
	}
	return refuse(http.StatusUnprocessableEntity, issue("not-found", dec.Outcome, dec.Why)).logged(log, zapcore.InfoLevel, msg, outcome)
}

// response is the HRex member-match-out Parameters for member id.
func (h *Handler) response(id string) fhir.Parameters {
	ident := fhir.Identifier{Type: &memberIdentifierType, System: h.d.MemberIDSystem, Value: id}
	if h.d.PayerName != "" {
		ident.Assigner = &fhir.Reference{Display: h.d.PayerName}
	}
	v, _ := fhir.NewValue("Identifier", ident) // our own types always marshal
	out := fhir.Parameters{ResourceType: "Parameters", Parameter: []fhir.Parameter{{Name: ParamMemberIdentifier, Value: v}}}
	if h.d.PatientRef != nil {
		ref, _ := fhir.NewValue("Reference", fhir.Reference{Reference: h.d.PatientRef(id)})
		out.Parameter = append(out.Parameter, fhir.Parameter{Name: ParamMemberID, Value: ref})
	}
	return out
}

// digest is a keyed digest of the query, for logs: equal queries give
// equal digests within one key, and nobody without the key can test a
// guess (a plain hash of a name and birth date could be).
func (h *Handler) digest(q transfer.Demographics) string {
	m := hmac.New(sha256.New, h.d.DigestKey)
	for _, s := range []string{q.MemberID, strings.ToLower(q.Given), strings.ToLower(q.Family), q.BirthDate} {
		fmt.Fprintf(m, "%d:%s|", len(s), s)
	}
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// fhirJSON reports whether content type ct is FHIR JSON. Plain
// application/json is accepted too, as FHIR servers do.
func fhirJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/fhir+json" || mt == "application/json")
}

// expression is the FHIRPath of a parameter (or an element below it).
func expression(param string) string {
	name, rest, _ := strings.Cut(param, ".")
	e := "Parameters.parameter.where(name='" + name + "').resource"
	if rest != "" {
		e += "." + rest
	}
	return e
}

// issue is an error issue of FHIR type code, with our outcome class as
// details when class is set.
func issue(code, class, msg string) fhir.Issue {
	is := fhir.Issue{Severity: "error", Code: code, Diagnostics: msg}
	if class != "" {
		is.Details = &fhir.CodeableConcept{Coding: []fhir.Coding{{System: OutcomeSystem, Code: class}}, Text: msg}
	}
	return is
}

func writeOutcome(w http.ResponseWriter, status int, is fhir.Issue) {
	writeFHIR(w, status, fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{is}})
}

func writeFHIR(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Cache-Control", "no-store") // answers carry member ids
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
