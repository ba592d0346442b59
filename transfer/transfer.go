// Package transfer holds the model of a payer-to-payer transfer shared by the
// API, the store and the workflow: its states, its request, the outcome of
// each step and the events of its timeline. The state machine that walks
// these states is workflows/transfer.go.
package transfer

import (
	"errors"
	"time"

	"github.com/p2p-payer/p2p/fault"
)

// State is a state of the transfer state machine.
type State string

// The states of a transfer, in the order a successful transfer enters them,
// then the two off the happy path.
const (
	StateInitiated       State = "initiated"
	StateIdentityPending State = "identity_pending"
	StateConsentVerified State = "consent_verified"
	StatePayloadPrepared State = "payload_prepared"
	StateSent            State = "sent"
	StateAcknowledged    State = "acknowledged"
	StateComplete        State = "complete"
	StateFailed          State = "failed"
	StateManualReview    State = "manual_review"
)

// States lists every state, happy path first.
var States = []State{
	StateInitiated, StateIdentityPending, StateConsentVerified, StatePayloadPrepared,
	StateSent, StateAcknowledged, StateComplete, StateFailed, StateManualReview,
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, k := range States {
		if k == s {
			return true
		}
	}
	return false
}

// Terminal reports whether no further state follows s.
func (s State) Terminal() bool { return s == StateComplete || s == StateFailed }

// Error types a failed transfer ends with. They are stable strings: the API
// exposes them and clients switch on them. Those a partner's answer
// decides are the fault types the connector classified it with.
const (
	ErrorNoMatch            = fault.TypeNoMatch
	ErrorConsentDenied      = fault.TypeConsentDenied
	ErrorPartnerRejected    = fault.TypePartnerRejected
	ErrorReviewRejected     = "review_rejected"
	ErrorReviewTimeout      = "review_timeout"
	ErrorUnknownPartner     = fault.TypeUnknownPartner
	ErrorPartnerAuth        = fault.TypePartnerAuth
	ErrorPartnerUnavailable = fault.TypeUnavailable
	ErrorAckTimeout         = "ack_timeout"
	ErrorCancelled          = "cancelled"
	ErrorInternal           = "internal"

	// Imports (we pull from the old payer).
	ErrorExportFailed       = "export_failed"       // the old payer's export failed
	ErrorExportTimeout      = "export_timeout"      // the export stayed in progress past the poll budget
	ErrorExportExpired      = "export_expired"      // the export kept expiring before it was downloaded
	ErrorPartnerBadResponse = fault.TypeBadResponse // an answer or file we cannot use (bad manifest, NDJSON)
)

// Address is a postal address as a requesting partner knows it.
type Address struct {
	Street     string `json:"street,omitempty"`
	City       string `json:"city,omitempty"`
	State      string `json:"state,omitempty"`
	PostalCode string `json:"postal_code,omitempty"`
}

// Demographics identify the member as the requesting partner knows them. PHI.
type Demographics struct {
	MemberID  string  `json:"member_id,omitempty"`
	Given     string  `json:"given,omitempty"`
	Family    string  `json:"family,omitempty"`
	BirthDate string  `json:"birth_date,omitempty"` // YYYY-MM-DD
	Sex       string  `json:"sex,omitempty"`        // F, M, U
	Address   Address `json:"address"`
	Phone     string  `json:"phone,omitempty"`
}

// Consent scopes, as in the HRex consent policy.
const (
	ScopeRegular   = "regular"   // sensitive resources are left out of the export
	ScopeSensitive = "sensitive" // everything in scope may be disclosed
)

// Consent is the member's consent as asserted with the request.
type Consent struct {
	ID          string    `json:"id"`
	Status      string    `json:"status"` // active, inactive, rejected
	Scope       string    `json:"scope"`  // regular, sensitive
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	GrantedAt   time.Time `json:"granted_at"`
}

// DataScope limits what the export holds.
type DataScope struct {
	ResourceTypes []string   `json:"resource_types,omitempty"` // empty = every supported type
	Since         *time.Time `json:"since,omitempty"`
}

// Request is everything the client sent for a transfer. It holds PHI, so it
// lives in the store only; the workflow carries the transfer id.
type Request struct {
	PartnerID     string       `json:"partner_id"`
	Direction     Direction    `json:"direction,omitempty"` // "" is DirectionExport
	Member        Demographics `json:"member"`
	Consent       Consent      `json:"consent"`
	DataScope     DataScope    `json:"data_scope"`
	CorrelationID string       `json:"correlation_id,omitempty"`
	// CoverageToMatch is the member's card with the old payer: set for
	// imports, nil for exports.
	CoverageToMatch *CoverageToMatch `json:"coverage_to_match,omitempty"`
}

// CoverageToMatch is the member's card with the old payer, as HRex
// $member-match sends it (CoverageToMatch). PHI.
type CoverageToMatch struct {
	Payer        string `json:"payer"` // the old payer's partner id
	MemberID     string `json:"member_id"`
	SubscriberID string `json:"subscriber_id,omitempty"`
	PeriodStart  string `json:"period_start,omitempty"` // YYYY-MM-DD
	PeriodEnd    string `json:"period_end,omitempty"`   // YYYY-MM-DD
}

// Transfer is the projection of a transfer's workflow state, kept in the
// store for listing, filtering and status queries.
type Transfer struct {
	ID            string           `json:"id"`
	ClientID      string           `json:"client_id"`
	PartnerID     string           `json:"partner_id"`
	Direction     Direction        `json:"direction"` // "" is read as DirectionExport
	CorrelationID string           `json:"correlation_id,omitempty"`
	State         State            `json:"state"`
	CreatedAt     time.Time        `json:"created_at"`
	UpdatedAt     time.Time        `json:"updated_at"`
	Identity      *IdentityOutcome `json:"identity,omitempty"`
	Consent       *ConsentOutcome  `json:"consent,omitempty"`
	Export        *ExportInfo      `json:"export,omitempty"`
	Error         *ErrorInfo       `json:"error,omitempty"`
}

// Direction is which way a transfer moves a member's data.
type Direction string

// Directions.
const (
	// DirectionExport: the member's data leaves us for the partner (we are
	// the old payer): pushed to it, or served to its bulk export.
	DirectionExport Direction = "export"
	// DirectionImport: we pull the member's data from the partner (we are
	// the new payer).
	DirectionImport Direction = "import"
)

// OrExport returns d, or DirectionExport when d is empty (transfers
// recorded before directions existed are exports).
func (d Direction) OrExport() Direction {
	if d == "" {
		return DirectionExport
	}
	return d
}

// Identity outcome statuses.
const (
	IdentityPending   = "pending"
	IdentityResolved  = "resolved"
	IdentityAmbiguous = "ambiguous" // sent to manual review
	IdentityNoMatch   = "no_match"
)

// IdentityOutcome is the result of identity resolution. It names members by
// our member id only.
type IdentityOutcome struct {
	Status     string     `json:"status"`
	MemberID   string     `json:"member_id,omitempty"`
	Score      float64    `json:"score"`
	Rationale  *Rationale `json:"rationale,omitempty"`
	Candidates []string   `json:"candidates,omitempty"` // member ids awaiting review
	ReviewedBy string     `json:"reviewed_by,omitempty"`
	// Presentation is the keyed digest of what the partner presented
	// (graph.Presentation): the external identity whose links in the
	// identity graph this outcome adds to. Never PHI.
	Presentation string `json:"presentation,omitempty"`
}

// Rationale explains an identity decision: the rule that decided it, or the
// per-field contributions that add up to the score, and the runner-up.
type Rationale struct {
	Rule     string              `json:"rule"`
	Summary  string              `json:"summary"`
	Fields   []FieldContribution `json:"fields,omitempty"`
	RunnerUp *RunnerUp           `json:"runner_up,omitempty"`
}

// FieldContribution is one field's share of an identity score.
type FieldContribution struct {
	Field  string  `json:"field"`
	Level  string  `json:"level"`
	Weight float64 `json:"weight"`
}

// RunnerUp is the second-best candidate of an identity decision.
type RunnerUp struct {
	MemberID string  `json:"member_id"`
	Score    float64 `json:"score"`
}

// Consent check statuses.
const (
	ConsentVerified = "verified"
	ConsentDenied   = "denied"
)

// ConsentOutcome is the result of the latest consent check.
type ConsentOutcome struct {
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	ConsentID string    `json:"consent_id,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// ExportInfo describes the signed export prepared for the partner.
type ExportInfo struct {
	ManifestSHA256    string       `json:"manifest_sha256"`
	SignatureSHA256   string       `json:"signature_sha256,omitempty"` // the artifact of the signed manifest sent
	KID               string       `json:"kid"`
	Files             []ExportFile `json:"files"`
	ExcludedSensitive int          `json:"excluded_sensitive"`
	Withdrawn         bool         `json:"withdrawn,omitempty"`
	ReceiptID         string       `json:"receipt_id,omitempty"`
	// TransactionTime is, for an import, the old payer's manifest
	// transactionTime: the _since of the member's next (run-off) import.
	TransactionTime *time.Time `json:"transaction_time,omitempty"`
	// Partial is set on an import whose manifest listed errors: what was
	// received is kept, and known to be incomplete.
	Partial bool `json:"partial,omitempty"`
}

// ExportFile is one NDJSON file of an export, named by its digest.
type ExportFile struct {
	Type   string `json:"type"`
	Count  int    `json:"count"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// ErrorInfo says why a transfer failed.
type ErrorInfo struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// Event is one entry of a transfer's timeline. Detail never holds PHI.
type Event struct {
	Seq    int64          `json:"seq"`
	At     time.Time      `json:"at"`
	State  State          `json:"state,omitempty"`
	Actor  string         `json:"actor"`
	Type   string         `json:"type"`
	Detail map[string]any `json:"detail,omitempty"`
	// Key makes recording the event idempotent: a second event with the
	// same key for the same transfer is not recorded. State events use
	// StateKey(state).
	Key string `json:"-"`
}

// Event types. Each answers one question an auditor asks of a transfer:
// who asked for it, which member it resolved to and why, on what consent,
// which data left (by digest), to whom, with what outcome, and who read
// it. Details name people and systems (client, reviewer, partner ids,
// member ids) and digests, never PHI.
const (
	// EventState: the transfer entered State. The first one (initiated)
	// is the request received: client, hashed Idempotency-Key, request
	// and correlation ids.
	EventState = "state"
	// EventIdentityDecision: the matcher's decision: status, member id,
	// score, rule, per-field levels and weights, runner-up, candidates.
	EventIdentityDecision = "identity_decision"
	// EventConsentChecked: a consent check (phase initial or before_send):
	// consent id, asserted status, scope, period, result and reason.
	EventConsentChecked = "consent_checked"
	// EventConsentRechecked: the workflow goes on to send after the
	// before_send check.
	EventConsentRechecked = "consent_rechecked"
	// EventSendFailed: one delivery attempt failed: partner, endpoint,
	// attempt, HTTP status, error type.
	EventSendFailed = "send_failed"
	// EventReviewDecision: a person's decision, as the workflow took it.
	EventReviewDecision = "review_decision"
	// EventReviewNote: the reviewer's stated reason.
	EventReviewNote = "review_note"
	// EventExportWithdrawn: the compensation of a prepared export.
	EventExportWithdrawn = "export_withdrawn"
	// EventRead: a client read the transfer through the API.
	EventRead = "read"
	// EventMemberDecided: one member of a $bulk-member-match batch decided:
	// its index in the batch, the outcome code, our member id when matched,
	// the consent's refusal code.
	EventMemberDecided = "member_decided"
)

// StateKey is the idempotency key of the event that enters state s: each
// state is entered at most once per transfer.
func StateKey(s State) string { return "state:" + string(s) }

// Review decisions.
const (
	DecisionApprove = "approve"
	DecisionReject  = "reject"
)

// ReviewDecision is a person's decision on a transfer in manual review.
type ReviewDecision struct {
	Decision string `json:"decision"`
	MemberID string `json:"member_id,omitempty"`
	Reason   string `json:"reason"`
	Reviewer string `json:"reviewer"`
}

// Errors the workflow client reports for a review, and for a partner's
// later acknowledgement.
var (
	ErrNotInReview     = errors.New("transfer is not waiting in manual review")
	ErrInvalidDecision = errors.New("invalid review decision")
	ErrNotAwaitingAck  = errors.New("transfer is not waiting for an acknowledgement")
)
