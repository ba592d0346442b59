package transfer

// A PDex $bulk-member-match batch, decided member by member
// (workflows.BulkMemberMatch) and served by package pdex.

// Outcome codes of a batch member that activities and the batch's
// workflow decide on (pdex's OutcomeMatched, OutcomeConsentDenied and
// OutcomeError are these).
const (
	BulkOutcomeMatched       = "matched"
	BulkOutcomeConsentDenied = ErrorConsentDenied
	BulkOutcomeError         = "error"
)

// BulkMemberOutcome is the decision on one member of a batch. No PHI: our
// member id when matched, and codes.
type BulkMemberOutcome struct {
	Index int // the member's position among the request's MemberBundle parameters
	// Outcome is the pdex outcome class: matched, no_match,
	// multiple_matches, consent_denied, invalid_request,
	// too_many_failures or error.
	Outcome  string
	MemberID string `json:",omitempty"` // ours, when matched
	// Reason is the consent's refusal code (pdex.Consent*) when Outcome is
	// consent_denied.
	Reason string `json:",omitempty"`
	Why    string `json:",omitempty"` // in words, never PHI
}

// BulkMatchResult is a decided batch, as stored (BulkMatchResultName) and
// served by package pdex as the three Groups of the PDex response.
type BulkMatchResult struct {
	BatchID   string
	Requester string
	Members   []BulkMemberOutcome
}

// BulkMatchResultName is the artifact name of a stored BulkMatchResult.
const BulkMatchResultName = "bulk-member-match-result.json"
