// Package identity finds the member of our index that a requesting
// partner's demographics describe: deterministic rules first, then a
// Fellegi–Sunter probabilistic matcher over a blocked in-memory index, and
// three outcomes (match, review, no_match) with a rationale whose field
// weights add up to the score.
//
//   - ResolveDeterministic: the exact rules alone, over candidates the caller
//     fetched (the member with the query's member id and those with its birth
//     date).
//   - NewIndex / Index.Match: the full matcher. A score is the posterior
//     log2-odds that the candidate is the member sought: the prior (1 in N)
//     plus a weight log2(m/u) per compared field (member id, given, family,
//     birth date, sex, address, phone), u from random member pairs with
//     term-frequency adjustment, m from defaults or EM (Index.Train).
//   - Vetoes keep relatives apart: where the index holds households, a given
//     name or birth date that disagrees, a close short name within a
//     household, or another sex with another given name is never matched
//     automatically, whatever the score.
//   - RunMatchCLI: `p2p identity match --index INDEX.csv --queries Q.csv`.
//
// Names, birth dates, addresses and phones never reach errors, logs or
// rationale summaries; a rationale names fields and levels only.
//
// Evaluation: `make eval` (TestEvaluation, TestSyntheticUS); build time,
// memory, latency, snapshot, add and update: `go test -run '^$' -bench .
// ./identity` (P2P_IDENTITY_BENCH_N=10000000 for ten million members); the
// 100k-query CLI timing: P2P_IDENTITY_BENCH_CLI=1 go test -run '^$' -bench
// MatchCLI ./identity.
package identity

import (
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/transfer"
)

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

// IdentityOutcome is d as a transfer's identity outcome: the member when
// matched, the candidates when a person must choose.
func (d Decision) IdentityOutcome() transfer.IdentityOutcome {
	rationale := d.Rationale
	o := transfer.IdentityOutcome{Score: d.Score, Rationale: &rationale}
	switch d.Outcome {
	case OutcomeMatch:
		o.Status, o.MemberID = transfer.IdentityResolved, d.MemberID
	case OutcomeReview:
		o.Status, o.MemberID, o.Candidates = transfer.IdentityAmbiguous, d.MemberID, d.Candidates
	default:
		o.Status = transfer.IdentityNoMatch
	}
	return o
}

// Rules that decide, as they appear in Rationale.Rule.
const (
	RuleMemberID      = "exact_member_id_birth_date" // exact member id with agreeing birth date
	RuleExactNameDOB  = "exact_name_birth_date"      // exact normalised given, family, birth date (and sex)
	RuleProbabilistic = "fellegi_sunter"             // the probabilistic score decided
	RuleNone          = "none"                       // no candidate
	// RuleRememberedReview: a reviewer decided the same presentation before.
	RuleRememberedReview = "remembered_review"
)

// MadeBy is who or what decided o, as the identity graph names the maker
// of the link o makes: the reviewer when a person decided (in this
// transfer, or before for RuleRememberedReview), the score when the
// probabilistic matcher decided, else the exact rule that did.
func MadeBy(o transfer.IdentityOutcome) graph.Maker {
	var rule string
	if o.Rationale != nil {
		rule = o.Rationale.Rule
	}
	switch {
	case o.ReviewedBy != "":
		m := graph.Maker{Kind: graph.MadeByReviewer, Reviewer: o.ReviewedBy, Score: o.Score}
		if rule == RuleRememberedReview {
			m.Rule = rule
		}
		return m
	case rule == RuleProbabilistic:
		return graph.Maker{Kind: graph.MadeByScore, Rule: rule, Score: o.Score}
	default:
		return graph.Maker{Kind: graph.MadeByRule, Rule: rule}
	}
}

// LinkOf is the link that outcome o adds to the identity graph: the
// external identity (partner, o.Presentation) is o's member, made by
// MadeBy(o), with the transfer that recorded it and a note (no PHI) as its
// provenance. It is nil when o resolved no member or names no
// presentation. Recorded again for a member the external identity is
// linked to already, it adds nothing (graph.Supersede).
func LinkOf(partner, transferID string, o transfer.IdentityOutcome, note string) *graph.Link {
	if o.Status != transfer.IdentityResolved || o.MemberID == "" || o.Presentation == "" || partner == "" {
		return nil
	}
	return &graph.Link{Partner: partner, ExternalRef: o.Presentation, MemberID: o.MemberID, MadeBy: MadeBy(o),
		Provenance: graph.Provenance{TransferID: transferID, Presentation: o.Presentation, Note: note}}
}
