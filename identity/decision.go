// Package identity finds the member of our index that a requesting
// partner's demographics describe: deterministic rules first, then a
// Fellegi–Sunter probabilistic matcher over a blocked in-memory index, and
// three outcomes (match, review, no_match) with a rationale whose field
// weights add up to the score.
package identity

import "github.com/p2p-payer/p2p/transfer"

// Outcomes of a Decision.
const (
	OutcomeMatch   = "match"    // one member, confidently
	OutcomeReview  = "review"   // a person must choose among Candidates
	OutcomeNoMatch = "no_match" // no member is a plausible match
)

// Decision is the outcome of matching one query.
type Decision struct {
	Outcome    string             // OutcomeMatch, OutcomeReview or OutcomeNoMatch
	MemberID   string             // best candidate ("" when none)
	Score      float64            // the best candidate's score; Rationale.Fields add up to it
	Rationale  transfer.Rationale // Rule, Summary, Fields, RunnerUp
	Candidates []string           // for review: the member ids a person must choose from, best first
	// Duplicates are, for a match, other records of the index that look like
	// the same person as MemberID (an index with duplicates), best first.
	// They are set aside when judging ambiguity; deduplication links them.
	Duplicates []string
}

// Rules that decide, as they appear in Rationale.Rule.
const (
	RuleMemberID      = "exact_member_id_birth_date" // exact member id with agreeing birth date
	RuleExactNameDOB  = "exact_name_birth_date"      // exact normalised given, family, birth date (and sex)
	RuleProbabilistic = "fellegi_sunter"             // the probabilistic score decided
	RuleNone          = "none"                       // no candidate
)
