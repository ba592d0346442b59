package transfer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The events of a transfer's timeline (and so of the audit log), each
// declared once: a constructor gives its type, its idempotency key and its
// detail. A detail is a struct whose JSON is exactly the detail stored
// since the event first existed: the audit log's leaf hashes, the golden
// files and recorded workflow histories hold those bytes, so a field is
// never renamed and omitempty is used only where the detail always left
// the field out when empty. Details name people and systems, ids and
// digests, never PHI.

// Event types besides the ones in transfer.go: an import's steps (we pull
// from the old payer), the served files and $bulk-member-match batches,
// and the retention purge.
const (
	EventMemberMatch   = "member_match"   // the old payer's answer: outcome, reason, its member id
	EventImportPlanned = "import_planned" // _type and _since, and where _since comes from
	EventBulkKickOff   = "bulk_kickoff"   // an export kicked off: status URL, attempt
	EventBulkManifest  = "bulk_manifest"  // the export complete: transactionTime, files, errors
	EventBulkErrors    = "bulk_errors"    // the manifest listed error files: kept, flagged partial
	EventBulkFile      = "bulk_file"      // one file downloaded: type, count, digest
	EventBulkDeleted   = "bulk_deleted"   // DELETE sent to the status URL
	// EventBulkDeleteFailed: the DELETE of an expired export failed
	// (its error type); the import kicked off again regardless.
	EventBulkDeleteFailed = "bulk_delete_failed"
	EventImportDiscard    = "import_discarded" // the staged files removed (compensation)
	EventImportRekicked   = "bulk_rekickoff"   // the export expired: kicked off again
	EventImportLoaded     = "import_loaded"    // the delivered resources written to our FHIR server: counts by type

	// EventFileDownloaded: a served file was downloaded.
	EventFileDownloaded = "file_downloaded"
	// EventBulkMatchDeleted: the requester deleted a decided batch's result.
	EventBulkMatchDeleted = "bulk_match_deleted"
	// EventPHIPurged: the retention purge deleted the transfer's PHI.
	EventPHIPurged = "phi_purged"

	// EventEgressRefused: a call to a partner was refused before anything
	// was sent (an address, host or token its egress policy does not
	// allow): the host and why, never a path.
	EventEgressRefused = "egress_refused"
	// EventImportLimit: an import passed one of its caps (files per
	// manifest, bytes per file, bytes per transfer) and stopped.
	EventImportLimit = "import_limit_exceeded"
)

// Operations named by the initiated event of a transfer that a partner's
// FHIR request started (detail "operation").
const (
	OperationMemberMatch     = "member-match"
	OperationBulkMemberMatch = "bulk-member-match"
	OperationBulkExport      = "bulk-export"
)

// Ways a partner acknowledges a delivery (detail "ack_via").
const (
	AckInResponse = "push_response" // the receipt answered the push
	AckBySignal   = "signal"        // a later acknowledgement
)

// ClientActor is the actor of an event an API client caused. Events
// the workflow records have the actor "workflow" (the default).
func ClientActor(id string) string { return "client:" + id }

// PartnerActor is the actor of an event a partner caused.
func PartnerActor(id string) string { return "partner:" + id }

// ReviewerActor is the actor of a person's review.
func ReviewerActor(id string) string { return "reviewer:" + id }

// detailOf is d as Event.Detail holds it: the JSON object d marshals to,
// numbers kept exactly as written (json.Number), so that the detail
// marshals again to the same bytes.
//
// Workflows call it (through the constructors): encoding/json of our own
// structs is deterministic (fields in declaration order, map keys sorted),
// but workflowcheck judges its use of reflect as not, so it is told to
// trust this function.
//
//workflowcheck:ignore
func detailOf(d any) map[string]any {
	b, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("transfer: event detail %T does not marshal: %v", d, err)) // our own structs always marshal
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		panic(fmt.Sprintf("transfer: event detail %T is not an object: %v", d, err))
	}
	return m
}

// event is an event of type typ under key with detail d (nil: none).
func event(typ, key string, d any) Event {
	ev := Event{Type: typ, Key: key}
	if d != nil {
		ev.Detail = detailOf(d)
	}
	return ev
}

// Entered is the event of the transfer entering state s, with detail d
// (nil: none). The state-specific constructors below name its detail.
func Entered(s State, d any) Event {
	ev := event(EventState, StateKey(s), d)
	ev.State = s
	return ev
}

// Stamped returns e recorded at at.
func (e Event) Stamped(at time.Time) Event {
	e.At = at
	return e
}

// By returns e recorded by actor.
func (e Event) By(actor string) Event {
	e.Actor = actor
	return e
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// manifestTime is how a manifest's transactionTime is shown: milliseconds,
// as the Bulk Data manifest writes it.
func manifestTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// --- initiated: the request received ---

// RequestDetail is the detail of a transfer request received through the
// API: who sent it, under which key (its keyed token), with which ids to
// correlate it, and what it asked for. The member's demographics stay in
// the store.
type RequestDetail struct {
	PartnerID          string `json:"partner_id"`
	ClientID           string `json:"client_id"`
	IdempotencyKeyHMAC string `json:"idempotency_key_hmac"`
	RequestID          string `json:"request_id"`
	ConsentID          string `json:"consent_id"`
	// CorrelationIDHMAC is the client's correlation id as a keyed digest
	// (KeyedDigest): an id of the client's own that may name the member
	// stays out of the log, and can still be matched with the database.
	CorrelationIDHMAC string     `json:"correlation_id_hmac,omitempty"`
	Direction         Direction  `json:"direction,omitempty"` // import only: the member's old card stays in the store
	ResourceTypes     *[]string  `json:"resource_types,omitempty"`
	Since             *time.Time `json:"since,omitempty"`
}

// RequestReceived is the initiated event of a transfer a client asked for.
func RequestReceived(clientID string, d RequestDetail) Event {
	ev := Entered(StateInitiated, d)
	ev.Actor = ClientActor(clientID)
	return ev
}

// ExportRequestDetail is the detail of a bulk export kick-off we serve.
type ExportRequestDetail struct {
	Operation       string   `json:"operation"` // OperationBulkExport
	Request         string   `json:"request"`
	MemberIDs       []string `json:"member_ids"`
	TransactionTime string   `json:"transaction_time"` // RFC 3339, nanoseconds
	Requester       string   `json:"requester"`
	Types           []string `json:"types,omitempty"`
	// MatchTransfers: the $member-match transfers whose grants this
	// export rests on, by member id.
	MatchTransfers map[string]string `json:"match_transfers,omitempty"`
}

// ExportRequested is the initiated event of a bulk export a partner
// kicked off.
func ExportRequested(requester, request string, memberIDs, types []string, at time.Time, matchTransfers map[string]string) Event {
	ev := Entered(StateInitiated, ExportRequestDetail{Operation: OperationBulkExport, Request: request, MemberIDs: memberIDs,
		TransactionTime: at.Format(time.RFC3339Nano), Requester: requester, Types: types, MatchTransfers: matchTransfers})
	ev.Actor = PartnerActor(requester)
	return ev
}

// MemberMatchDetail is the detail of a $member-match received: the
// presentation as its keyed digest, the consent by id.
type MemberMatchDetail struct {
	Operation      string `json:"operation"` // OperationMemberMatch
	RequestID      string `json:"request_id"`
	Requester      string `json:"requester"`
	Presentation   string `json:"presentation"`
	ConsentID      string `json:"consent_id"`
	CoverageToLink bool   `json:"coverage_to_link"`
}

// MemberMatchReceived is the initiated event of a $member-match.
func MemberMatchReceived(d MemberMatchDetail) Event {
	d.Operation = OperationMemberMatch
	ev := Entered(StateInitiated, d)
	ev.Actor = PartnerActor(d.Requester)
	return ev
}

type bulkMatchReceived struct {
	Operation string `json:"operation"`
	BatchID   string `json:"batch_id"`
	Requester string `json:"requester"`
	Members   int    `json:"members"`
}

// BulkMatchReceived is the initiated event of a $bulk-member-match batch.
func BulkMatchReceived(batchID, requester string, members int) Event {
	ev := Entered(StateInitiated, bulkMatchReceived{OperationBulkMemberMatch, batchID, requester, members})
	ev.Actor = PartnerActor(requester)
	return ev
}

// --- identity_pending ---

type importPending struct {
	Direction Direction `json:"direction"`
	PartnerID string    `json:"partner_id"`
}

// ImportPending is identity_pending of an import from partnerID.
func ImportPending(partnerID string) Event {
	return Entered(StateIdentityPending, importPending{DirectionImport, partnerID})
}

type grantPending struct {
	MemberIDs []string `json:"member_ids"`
	Basis     string   `json:"basis"`
}

// ServePending is identity_pending of a served export: its members are
// the requester's, by match grant.
func ServePending(memberIDs []string) Event {
	return Entered(StateIdentityPending, grantPending{memberIDs, "match_grant"})
}

type matchPending struct {
	Basis   string `json:"basis"`
	Members *int   `json:"members,omitempty"`
}

// MemberMatchPending is identity_pending of a $member-match.
func MemberMatchPending() Event {
	return Entered(StateIdentityPending, matchPending{Basis: OperationMemberMatch})
}

// BulkMatchPending is identity_pending of a $bulk-member-match batch of
// members members.
func BulkMatchPending(members int) Event {
	return Entered(StateIdentityPending, matchPending{Basis: OperationBulkMemberMatch, Members: &members})
}

// --- identity ---

// IdentityDetail is the detail of an identity decision: the outcome, the
// rule or score that decided it, each field's comparison level and
// weight, the runner-up and the candidates left to a person. Member ids
// and codes only: never PHI.
type IdentityDetail struct {
	Status     string   `json:"status"`
	Score      float64  `json:"score"`
	MemberID   string   `json:"member_id,omitempty"`
	Candidates []string `json:"candidates,omitempty"`
	ReviewedBy string   `json:"reviewed_by,omitempty"`
	// The outcome's rationale, its fields inlined; absent without one.
	*Rationale
}

// IdentityDecided is the identity_decision event of outcome o.
func IdentityDecided(o IdentityOutcome) Event {
	d := IdentityDetail{Status: o.Status, Score: o.Score, MemberID: o.MemberID, Candidates: o.Candidates, ReviewedBy: o.ReviewedBy, Rationale: o.Rationale}
	return event(EventIdentityDecision, "identity:decision", d)
}

type inReview struct {
	Candidates int `json:"candidates"`
}

// InReview is manual_review with candidates candidates.
func InReview(candidates int) Event {
	return Entered(StateManualReview, inReview{candidates})
}

type reviewDecided struct {
	Decision   string   `json:"decision"`
	Reviewer   string   `json:"reviewer"`
	Candidates []string `json:"candidates"`
	MemberID   string   `json:"member_id,omitempty"`
}

// ReviewDecided is a person's decision on candidates as the workflow took
// it; memberID is the chosen one when approving.
func ReviewDecided(decision, reviewer string, candidates []string, memberID string) Event {
	ev := event(EventReviewDecision, "review:decision", reviewDecided{decision, reviewer, candidates, memberID})
	ev.Actor = ReviewerActor(reviewer)
	return ev
}

type reviewNoted struct {
	Decision    string `json:"decision"`
	ReasonHMAC  string `json:"reason_hmac"`
	ReasonBytes int    `json:"reason_bytes"`
}

// ReviewNoted is the reviewer's stated reason, by keyed digest
// (KeyedDigest) and length: a short reason could be guessed from a plain
// hash.
func ReviewNoted(reviewer, decision, reasonHMAC string, reasonBytes int) Event {
	ev := event(EventReviewNote, "review:note", reviewNoted{decision, reasonHMAC, reasonBytes})
	ev.Actor = ReviewerActor(reviewer)
	return ev
}

// --- consent ---

type consentChecked struct {
	Phase          string `json:"phase"`
	ConsentID      string `json:"consent_id"`
	AssertedStatus string `json:"asserted_status"`
	Scope          string `json:"scope"`
	PeriodStart    string `json:"period_start"`
	PeriodEnd      string `json:"period_end,omitempty"`
	GrantedAt      string `json:"granted_at,omitempty"`
	Result         string `json:"result"`
	Reason         string `json:"reason,omitempty"`
}

// ConsentChecked is a consent check of phase ("initial", "before_send"):
// the consent asserted (id, status, scope, period, grant) and what the
// check made of it.
func ConsentChecked(phase string, c Consent, out ConsentOutcome) Event {
	d := consentChecked{Phase: phase, ConsentID: c.ID, AssertedStatus: c.Status, Scope: c.Scope,
		PeriodStart: rfc3339(c.PeriodStart), Result: out.Status, Reason: out.Reason}
	if !c.PeriodEnd.IsZero() {
		d.PeriodEnd = rfc3339(c.PeriodEnd)
	}
	if !c.GrantedAt.IsZero() {
		d.GrantedAt = rfc3339(c.GrantedAt)
	}
	return event(EventConsentChecked, "consent:check:"+phase, d)
}

// GrantDetail is a match grant as a served export's grant check shows it.
type GrantDetail struct {
	MemberID  string `json:"member_id"`
	ConsentID string `json:"consent_id"`
	Scope     string `json:"scope"`
	Expires   string `json:"expires"`
	GrantedAt string `json:"granted_at"`
}

// NewGrantDetail is the detail of a grant of memberID.
func NewGrantDetail(memberID, consentID, scope string, expires, grantedAt time.Time) GrantDetail {
	return GrantDetail{memberID, consentID, scope, rfc3339(expires), rfc3339(grantedAt)}
}

type grantsChecked struct {
	Phase     string        `json:"phase"`
	Requester string        `json:"requester"`
	Members   []GrantDetail `json:"members"`
	Dropped   int           `json:"dropped"`
	Result    string        `json:"result"`
}

// GrantsChecked is a served export's grant check: the grants in force,
// how many members were dropped, and the result.
func GrantsChecked(requester string, members []GrantDetail, dropped int, result string) Event {
	if members == nil {
		members = []GrantDetail{}
	}
	return event(EventConsentChecked, "consent:check:grants", grantsChecked{"grants", requester, members, dropped, result})
}

type consentVerified struct {
	ConsentID string `json:"consent_id"`
	Scope     string `json:"scope"`
	MemberID  string `json:"member_id"`
}

// ConsentVerifiedFor is consent_verified of a push transfer for memberID.
func ConsentVerifiedFor(memberID string, c ConsentOutcome) Event {
	return Entered(StateConsentVerified, consentVerified{c.ConsentID, c.Scope, memberID})
}

type importVerified struct {
	PartnerMemberID  string `json:"partner_member_id"`
	PartnerPatientID string `json:"partner_patient_id"`
	ConsentID        string `json:"consent_id"`
	Scope            string `json:"scope"`
	VerifiedBy       string `json:"verified_by"`
}

// ImportVerified is consent_verified of an import: the old payer matched
// the member and honoured the consent.
func ImportVerified(partnerID, partnerMemberID, partnerPatientID, consentID, scope string) Event {
	return Entered(StateConsentVerified, importVerified{partnerMemberID, partnerPatientID, consentID, scope, PartnerActor(partnerID)})
}

type serveVerified struct {
	MemberIDs []string `json:"member_ids"`
	Dropped   int      `json:"dropped"`
}

// ServeVerified is consent_verified of a served export: the members
// whose grants are in force, and how many were dropped.
func ServeVerified(memberIDs []string, dropped int) Event {
	return Entered(StateConsentVerified, serveVerified{memberIDs, dropped})
}

type matchVerified struct {
	MemberID  string `json:"member_id"`
	ConsentID string `json:"consent_id"`
	Scope     string `json:"scope"`
	Expires   string `json:"expires"`
	Result    string `json:"result"`
}

// MatchVerified is consent_verified of a $member-match that matched.
func MatchVerified(memberID, consentID, scope string, expires time.Time) Event {
	return Entered(StateConsentVerified, matchVerified{memberID, consentID, scope, rfc3339(expires), ConsentVerified})
}

type consentRechecked struct {
	ConsentID string `json:"consent_id"`
	Scope     string `json:"scope"`
	Result    string `json:"result"`
}

// ConsentRechecked is the workflow going on to send after the before_send
// check.
func ConsentRechecked(c ConsentOutcome) Event {
	return event(EventConsentRechecked, "consent:before_send", consentRechecked{c.ConsentID, c.Scope, c.Status})
}

// --- payload_prepared ---

// fileDetails are files as a detail lists them (never null), and their
// resources.
func fileDetails(fs []ExportFile) ([]ExportFile, int) {
	out := make([]ExportFile, len(fs))
	total := 0
	for i, f := range fs {
		out[i] = f
		total += f.Count
	}
	return out, total
}

type exportPrepared struct {
	ManifestSHA256    string         `json:"manifest_sha256"`
	SignatureSHA256   string         `json:"signature_sha256"`
	KID               string         `json:"kid"`
	Files             []ExportFile   `json:"files"`
	ResourceCounts    map[string]int `json:"resource_counts"`
	Resources         int            `json:"resources"`
	ExcludedSensitive int            `json:"excluded_sensitive"`
}

// ExportPrepared is payload_prepared of a push: the signed manifest's
// digest and key, each file's digest, the resources per type, and how
// many sensitive resources the consent's scope left out.
func ExportPrepared(e ExportInfo, signatureSHA256 string) Event {
	files, total := fileDetails(e.Files)
	counts := map[string]int{}
	for _, f := range e.Files {
		counts[f.Type] = f.Count
	}
	return Entered(StatePayloadPrepared, exportPrepared{e.ManifestSHA256, signatureSHA256, e.KID, files, counts, total, e.ExcludedSensitive})
}

type servedPrepared struct {
	ManifestSHA256    string       `json:"manifest_sha256"`
	Files             []ExportFile `json:"files"`
	Resources         int          `json:"resources"`
	ExcludedSensitive int          `json:"excluded_sensitive"`
}

// ServedPrepared is payload_prepared of a served export: files by digest
// and type, and counts.
func ServedPrepared(e ExportInfo) Event {
	files, total := fileDetails(e.Files)
	return Entered(StatePayloadPrepared, servedPrepared{e.ManifestSHA256, files, total, e.ExcludedSensitive})
}

type importPrepared struct {
	ManifestSHA256  string `json:"manifest_sha256"`
	Files           int    `json:"files"`
	Resources       int    `json:"resources"`
	Partial         bool   `json:"partial"`
	TransactionTime string `json:"transaction_time"`
	Round           int    `json:"round"`
}

// ImportPrepared is payload_prepared of an import: every file of round
// staged; resources counts the data files' resources.
func ImportPrepared(e ExportInfo, resources, round int) Event {
	tt := ""
	if e.TransactionTime != nil {
		tt = manifestTime(*e.TransactionTime)
	}
	return Entered(StatePayloadPrepared, importPrepared{e.ManifestSHA256, len(e.Files), resources, e.Partial, tt, round})
}

// --- sent and acknowledged ---

// SentDetail is the detail of a delivery the partner took.
type SentDetail struct {
	PartnerID     string `json:"partner_id"`
	Endpoint      string `json:"endpoint"`
	Attempt       int32  `json:"attempt"`
	HTTPStatus    int    `json:"http_status"`
	PartnerStatus string `json:"partner_status"`
	Duplicate     bool   `json:"duplicate"`
	DeliveryKey   string `json:"delivery_key"`
}

// Delivered is sent of a push.
func Delivered(d SentDetail) Event {
	ev := Entered(StateSent, d)
	ev.Actor = "workflow"
	return ev
}

type importSent struct {
	Sink     string `json:"sink"`
	Location string `json:"location"`
	Files    int    `json:"files"`
}

// ImportSent is sent of an import: the files moved into the sink.
func ImportSent(sink, location string, files int) Event {
	ev := Entered(StateSent, importSent{sink, location, files})
	ev.Actor = "workflow"
	return ev
}

type servedSent struct {
	Requester string `json:"requester"`
	Files     int    `json:"files"`
	Via       string `json:"via"`
}

// ManifestFetched is sent of a served export: the requester fetched the
// complete manifest.
func ManifestFetched(requester string, files int) Event {
	ev := Entered(StateSent, servedSent{requester, files, "bulk-status"})
	ev.Actor = PartnerActor(requester)
	return ev
}

type acknowledged struct {
	ReceiptID       string `json:"receipt_id"`
	AckVia          string `json:"ack_via"`
	AckSignature    string `json:"ack_signature"`
	AckSignatureKID string `json:"ack_signature_kid,omitempty"`
	AckVerified     bool   `json:"ack_verified"`
}

// Acknowledged is acknowledged of a push, by partnerID. "ack_signature"
// is "verified" when the partner signed its receipt and the signature
// verified against its JWKS (kid in "ack_signature_kid"), "none" for a
// partner that publishes no keys. "ack_verified" is true when the
// acknowledgement is proven: signed and verified, or, from a partner
// without keys, the answer to our own push to its registered endpoint; a
// later one by signal from such a partner is its word alone.
func Acknowledged(partnerID, receiptID, via, signedBy string) Event {
	d := acknowledged{ReceiptID: receiptID, AckVia: via, AckSignature: "none",
		AckVerified: signedBy != "" || (via == AckInResponse && receiptID != "")}
	if signedBy != "" {
		d.AckSignature, d.AckSignatureKID = "verified", signedBy
	}
	ev := Entered(StateAcknowledged, d)
	ev.Actor = PartnerActor(partnerID)
	return ev
}

type importAcked struct {
	ReceiptID string `json:"receipt_id"`
	Via       string `json:"via"`
}

// ImportAcknowledged is acknowledged of an import: the sink read the
// files back with the downloaded digests.
func ImportAcknowledged(sink, receiptID string) Event {
	ev := Entered(StateAcknowledged, importAcked{receiptID, "sink_readback"})
	ev.Actor = "sink:" + sink
	return ev
}

type servedAcked struct {
	FilesDownloaded int    `json:"files_downloaded"`
	Via             string `json:"via"`
}

// FilesDownloaded is acknowledged of a served export: the requester
// downloaded every file.
func FilesDownloaded(requester string, files int) Event {
	ev := Entered(StateAcknowledged, servedAcked{files, "downloads"})
	ev.Actor = PartnerActor(requester)
	return ev
}

// --- complete ---

type matchGrant struct {
	Requester string `json:"requester"`
	MemberID  string `json:"member_id"`
	ConsentID string `json:"consent_id"`
	Scope     string `json:"scope"`
	Expires   string `json:"expires"`
	GrantedAt string `json:"granted_at"`
}

type matchComplete struct {
	Outcome   string     `json:"outcome"`
	MemberID  string     `json:"member_id"`
	ConsentID string     `json:"consent_id"`
	Scope     string     `json:"scope"`
	Expires   string     `json:"expires"`
	Grant     matchGrant `json:"grant"`
}

// MatchComplete is complete of a $member-match that matched: the grant
// it gives requester.
func MatchComplete(requester, memberID, consentID, scope string, expires, grantedAt time.Time) Event {
	exp := rfc3339(expires)
	return Entered(StateComplete, matchComplete{BulkOutcomeMatched, memberID, consentID, scope, exp,
		matchGrant{requester, memberID, consentID, scope, exp, rfc3339(grantedAt)}})
}

type bulkComplete struct {
	Members      int            `json:"members"`
	Outcomes     map[string]int `json:"outcomes"`
	ResultSHA256 string         `json:"result_sha256"`
}

// BulkMatchComplete is complete of a decided batch: its members, the
// count per outcome, the result's digest.
func BulkMatchComplete(members int, outcomes map[string]int, resultSHA256 string) Event {
	if outcomes == nil {
		outcomes = map[string]int{}
	}
	return Entered(StateComplete, bulkComplete{members, outcomes, resultSHA256})
}

// --- failed ---

// FailedDetail is the detail of a transfer entering failed: the error
// type, the state it failed after, and what was undone.
type FailedDetail struct {
	ErrorType       string `json:"error_type"`
	AfterState      State  `json:"after_state"`
	ExportWithdrawn bool   `json:"export_withdrawn"`
	ReviewedBy      string `json:"reviewed_by,omitempty"`
}

// Failed is failed of a push or served export.
func Failed(d FailedDetail) Event { return Entered(StateFailed, d) }

// ImportFailedDetail is the detail of an import entering failed.
type ImportFailedDetail struct {
	ErrorType  string `json:"error_type"`
	AfterState State  `json:"after_state"`
	// ExportDeleted is set when an export was live at the partner: whether
	// its DELETE succeeded.
	ExportDeleted   *bool `json:"export_deleted,omitempty"`
	StagedDiscarded bool  `json:"staged_discarded,omitempty"`
}

// ImportFailed is failed of an import.
func ImportFailed(d ImportFailedDetail) Event { return Entered(StateFailed, d) }

type bulkCancelled struct {
	ErrorType  string `json:"error_type"`
	Reason     string `json:"reason"`
	Members    int    `json:"members"`
	Decided    int    `json:"decided"`
	AfterState State  `json:"after_state"`
}

// BulkMatchCancelled is failed (cancelled) of a batch: why, and how many
// of its members had been decided.
func BulkMatchCancelled(actor, reason string, members, decided int) Event {
	ev := Entered(StateFailed, bulkCancelled{ErrorCancelled, reason, members, decided, StateIdentityPending})
	ev.Actor = actor
	return ev
}

type kickoffInterrupted struct {
	ErrorType string `json:"error_type"`
	Reason    string `json:"reason"`
}

// KickoffInterrupted is failed (cancelled) of a bulk kick-off whose
// request died before it was answered.
func KickoffInterrupted() Event {
	ev := Entered(StateFailed, kickoffInterrupted{ErrorCancelled, "kickoff_interrupted"})
	ev.Actor = "api"
	return ev
}

type matchRefused struct {
	Outcome    string `json:"outcome"`
	AfterState State  `json:"after_state"`
	Reason     string `json:"reason,omitempty"`
	Candidates *int   `json:"candidates,omitempty"`
	ErrorType  string `json:"error_type"`
}

// MatchRefused is failed of a $member-match that did not match: outcome
// (pdex's class), with the consent's refusal code when the consent was
// refused, or how many candidates when several members may be the one.
func MatchRefused(outcome, errorType, consentReason string, candidates *int) Event {
	return Entered(StateFailed, matchRefused{outcome, StateIdentityPending, consentReason, candidates, errorType})
}

type matchAborted struct {
	ErrorType  string `json:"error_type"`
	Reason     string `json:"reason"`
	AfterState State  `json:"after_state"`
}

// MatchAborted is failed (internal) of a $member-match that could not be
// performed or recorded, after state.
func MatchAborted(why string, after State) Event {
	return Entered(StateFailed, matchAborted{ErrorInternal, why, after})
}

// --- delivery and compensation ---

// SendFailedDetail is one failed delivery attempt.
type SendFailedDetail struct {
	PartnerID   string `json:"partner_id"`
	Endpoint    string `json:"endpoint"`
	Attempt     int32  `json:"attempt"`
	ErrorType   string `json:"error_type"`
	ErrorClass  string `json:"error_class,omitempty"`
	HTTPStatus  int    `json:"http_status,omitempty"`
	DeliveryKey string `json:"delivery_key"`
}

// SendFailed is a failed delivery attempt, once per attempt.
func SendFailed(d SendFailedDetail) Event {
	return event(EventSendFailed, fmt.Sprintf("send:attempt:%d", d.Attempt), d)
}

type exportWithdrawn struct {
	Reason             string  `json:"reason"`
	ArtifactsWithdrawn int     `json:"artifacts_withdrawn"`
	ManifestSHA256     *string `json:"manifest_sha256,omitempty"`
}

// ExportWithdrawn is the compensation of a prepared export: why, how many
// payloads went, and the manifest they belonged to (nil: the transfer
// had none).
func ExportWithdrawn(reason string, artifacts int, manifestSHA256 *string) Event {
	ev := event(EventExportWithdrawn, "compensation:WithdrawExport", exportWithdrawn{reason, artifacts, manifestSHA256})
	ev.Actor = "workflow"
	return ev
}

type phiPurged struct {
	Artifacts      int   `json:"artifacts"`
	RetentionHours int64 `json:"retention_hours"`
}

// PHIPurged is the retention purge of the transfer's payloads.
func PHIPurged(artifacts int, retention time.Duration) Event {
	ev := event(EventPHIPurged, "retention:phi_purged", phiPurged{artifacts, int64(retention / time.Hour)})
	ev.Actor = "retention"
	return ev
}

// --- reads ---

type read struct {
	Route     string `json:"route"`
	RequestID string `json:"request_id"`
	Person    string `json:"person,omitempty"`
	MemberID  string `json:"member_id,omitempty"`
}

// Read is clientID reading the transfer through route in request reqID:
// one read per request. person is who acted through the client, when its
// credential names one ("" for a system).
func Read(clientID, person, route, reqID string) Event {
	ev := event(EventRead, "read:"+reqID, read{route, reqID, person, ""})
	ev.Actor = ClientActor(clientID)
	return ev
}

// MemberRead is clientID (and person, as in Read) reading the
// demographics of member memberID for the transfer, through route in
// request reqID.
func MemberRead(clientID, person, route, reqID, memberID string) Event {
	ev := event(EventRead, "read:"+reqID, read{route, reqID, person, memberID})
	ev.Actor = ClientActor(clientID)
	return ev
}

type fileDownloaded struct {
	SHA256   string `json:"sha256"`
	Type     string `json:"type"`
	MemberID string `json:"member_id"`
	Count    int    `json:"count"`
}

// FileDownload is requester downloading a served file, download id
// (unique per download) naming the event.
func FileDownload(requester, download, sha256, typ, memberID string, count int) Event {
	ev := event(EventFileDownloaded, "download:"+download, fileDownloaded{sha256, typ, memberID, count})
	ev.Actor = PartnerActor(requester)
	return ev
}

// --- $bulk-member-match ---

type memberDecided struct {
	Index    int    `json:"index"`
	Outcome  string `json:"outcome"`
	MemberID string `json:"member_id,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// MemberDecided is one member of a batch decided: its index, outcome,
// our member id when matched, the consent's refusal code.
func MemberDecided(o BulkMemberOutcome) Event {
	d := memberDecided{Index: o.Index, Outcome: o.Outcome, Reason: o.Reason}
	if o.Outcome == BulkOutcomeMatched {
		d.MemberID = o.MemberID
	}
	return event(EventMemberDecided, fmt.Sprintf("member:%d", o.Index), d)
}

type bulkMatchDeleted struct {
	Reason       string `json:"reason"`
	ResultSHA256 string `json:"result_sha256"`
}

// BulkResultDeleted is requester deleting a decided batch's result.
func BulkResultDeleted(requester, resultSHA256 string) Event {
	ev := event(EventBulkMatchDeleted, "bulk:deleted", bulkMatchDeleted{"deleted_by_requester", resultSHA256})
	ev.Actor = PartnerActor(requester)
	return ev
}

// --- an import's steps ---

// PartnerMatchDetail is the old payer's answer to $member-match.
type PartnerMatchDetail struct {
	PartnerID  string `json:"partner_id"`
	Outcome    string `json:"outcome"`
	HTTPStatus int    `json:"http_status"`
	Attempt    int32  `json:"attempt"`
	Reason     string `json:"reason,omitempty"`
	*PartnerMember
}

// PartnerMember is the old payer's identifiers of a matched member.
type PartnerMember struct {
	MemberID  string `json:"partner_member_id"`
	System    string `json:"partner_member_system"`
	PatientID string `json:"partner_patient_id"`
}

// PartnerMatched is the old payer's answer to our $member-match.
func PartnerMatched(d PartnerMatchDetail) Event { return event(EventMemberMatch, "member_match", d) }

type importPlanned struct {
	Since         string   `json:"since"`
	SinceSource   string   `json:"since_source"`
	ResourceTypes []string `json:"resource_types"`
	RunOffOf      string   `json:"run_off_of,omitempty"`
}

// ImportPlanned is an import's _type and _since, and where _since comes
// from (runOffOf: the earlier import it continues).
func ImportPlanned(types []string, since time.Time, sinceSource, runOffOf string) Event {
	return event(EventImportPlanned, "import_planned", importPlanned{rfc3339(since), sinceSource, types, runOffOf})
}

type bulkKickedOff struct {
	PartnerID     string   `json:"partner_id"`
	StatusURL     string   `json:"status_url"`
	Round         int      `json:"round"`
	Attempt       int32    `json:"attempt"`
	Since         string   `json:"since"`
	ResourceTypes []string `json:"resource_types"`
}

// BulkKickedOff is an export kicked off at partnerID in round; statusURL
// without credentials.
func BulkKickedOff(partnerID, statusURL string, round int, attempt int32, since time.Time, types []string) Event {
	return event(EventBulkKickOff, "bulk:kickoff:"+strconv.Itoa(round),
		bulkKickedOff{partnerID, statusURL, round, attempt, rfc3339(since), types})
}

type bulkRekicked struct {
	Round int `json:"round"`
}

// BulkRekicked is round's kick-off after the export expired.
func BulkRekicked(round int) Event {
	return event(EventImportRekicked, "bulk:rekickoff:"+strconv.Itoa(round), bulkRekicked{round})
}

type bulkManifest struct {
	Round               int    `json:"round"`
	ManifestSHA256      string `json:"manifest_sha256"`
	OutputFiles         int    `json:"output_files"`
	ErrorFiles          int    `json:"error_files"`
	TransactionTime     string `json:"transaction_time"`
	RequiresAccessToken bool   `json:"requires_access_token"`
}

// BulkManifest is round's export complete: its manifest by digest.
func BulkManifest(round int, manifestSHA256 string, outputFiles, errorFiles int, transactionTime time.Time, requiresAccessToken bool) Event {
	return event(EventBulkManifest, "bulk:manifest:"+strconv.Itoa(round),
		bulkManifest{round, manifestSHA256, outputFiles, errorFiles, manifestTime(transactionTime), requiresAccessToken})
}

type bulkErrors struct {
	Round      int  `json:"round"`
	ErrorFiles int  `json:"error_files"`
	Partial    bool `json:"partial"`
}

// BulkErrors is round's manifest listing error files: the data is kept
// and flagged partial.
func BulkErrors(round, errorFiles int) Event {
	return event(EventBulkErrors, "bulk:errors:"+strconv.Itoa(round), bulkErrors{round, errorFiles, true})
}

type bulkFile struct {
	PartnerID string `json:"partner_id"`
	ExportFile
	N         int  `json:"n"`
	Round     int  `json:"round"`
	ErrorFile bool `json:"error_file"`
}

// BulkFile is one file of round downloaded: the n-th of its type, of the
// manifest's output or (errorFile) error files.
func BulkFile(partnerID string, f ExportFile, n, round int, errorFile bool) Event {
	key := fmt.Sprintf("bulk:file:%d:%t:%s:%d", round, errorFile, f.Type, n)
	return event(EventBulkFile, key, bulkFile{partnerID, f, n, round, errorFile})
}

type bulkDeleted struct {
	PartnerID string `json:"partner_id"`
	StatusURL string `json:"status_url"`
	Reason    string `json:"reason"`
}

// BulkDeleted is a DELETE sent to an export's status URL (shown without
// credentials); statusDigest names the export (the first 16 hex digits
// of its URL's SHA-256), so that each export is deleted once.
func BulkDeleted(partnerID, statusURL, statusDigest, reason string) Event {
	return event(EventBulkDeleted, "bulk:delete:"+statusDigest, bulkDeleted{partnerID, statusURL, reason})
}

type bulkDeleteFailed struct {
	Round     int    `json:"round"`
	Reason    string `json:"reason"`
	ErrorType string `json:"error_type"`
}

// BulkDeleteFailed is the DELETE of round's expired export failing with
// errorType.
func BulkDeleteFailed(round int, errorType string) Event {
	return event(EventBulkDeleteFailed, "bulk:delete-failed:"+strconv.Itoa(round), bulkDeleteFailed{round, "file_expired", errorType})
}

type importDiscarded struct {
	Reason             string `json:"reason"`
	StagedFilesRemoved bool   `json:"staged_files_removed"`
}

// ImportDiscarded is the compensation of an import's downloads: the staged
// files removed (removed: there were any).
func ImportDiscarded(reason string, removed bool) Event {
	return event(EventImportDiscard, "compensation:DiscardImport", importDiscarded{reason, removed})
}

type importLoaded struct {
	Resources map[string]int `json:"resources"`
	Batches   int            `json:"batches"`
	Round     int            `json:"round"`
}

// ImportLoaded is round's resources written to our FHIR server, by type.
func ImportLoaded(resources map[string]int, batches, round int) Event {
	return event(EventImportLoaded, "import:loaded:"+strconv.Itoa(round), importLoaded{resources, batches, round})
}

// EgressRefusedDetail is the detail of an egress_refused event.
type EgressRefusedDetail struct {
	PartnerID string `json:"partner_id"`
	Operation string `json:"operation"` // the call: push, member-match, kick-off, status, download, delete
	Host      string `json:"host"`      // host[:port] refused, never a path or query
	Reason    string `json:"reason"`    // e.g. "partner.example is a loopback address"
}

// EgressRefused is a call to a partner refused before it was sent, once
// per operation and host.
func EgressRefused(d EgressRefusedDetail) Event {
	return event(EventEgressRefused, "egress:refused:"+d.Operation+":"+d.Host, d)
}

// ImportLimitDetail is the detail of an import_limit_exceeded event.
type ImportLimitDetail struct {
	PartnerID string `json:"partner_id"`
	Limit     string `json:"limit"` // the fault type: import_too_many_files, import_file_too_large, import_too_large
	Cap       int64  `json:"cap"`   // the configured cap (files or bytes)
	Round     int    `json:"round"`
}

// ImportLimit is an import stopped by one of its caps, once per cap and
// round.
func ImportLimit(d ImportLimitDetail) Event {
	return event(EventImportLimit, fmt.Sprintf("import:limit:%d:%s", d.Round, d.Limit), d)
}
