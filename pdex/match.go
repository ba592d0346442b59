package pdex

import (
	"context"
	"fmt"
	"time"

	"github.com/p2p-payer/p2p/identity"
)

// Matching is the decision of $member-match for one member, shared by the
// single operation (Handler) and the bulk one ($bulk-member-match, whose
// members are decided one by one by activities.MatchBulkMember): the
// consent first, then the matcher, each failed match counted against the
// requester's cap. A match's grant is recorded by the caller, with the
// event that records the decision (Decision.Match).
type Matching struct {
	Matcher Matcher                              // required
	Parties func(partnerID string) (Party, bool) // required
	Holder  Party
	// OnMatch, if set, is told of each match before it is recorded and
	// answered; its error fails the decision.
	OnMatch func(ctx context.Context, m Match) error
	// Throttle counts failed matches per requester. Share one between the
	// Handler and the bulk activities of a process, or give both a
	// NewSharedThrottle over the same store, so that a batch cannot probe
	// past the cap of single calls.
	Throttle *Throttle
	Now      func() time.Time // nil: time.Now
}

func (m *Matching) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Decision is the outcome of matching one member. It holds no PHI: our
// member id when matched, and codes.
type Decision struct {
	// Outcome is one of the Outcome* classes.
	Outcome string
	// MemberID is our member's id when Outcome is OutcomeMatched.
	MemberID string `json:",omitempty"`
	// ConsentReason is the Consent* code when Outcome is
	// OutcomeConsentDenied.
	ConsentReason string `json:",omitempty"`
	// Why says in words what happened (never PHI).
	Why string `json:",omitempty"`
	// Consent is the consent decision (scope and expiry when matched).
	Consent ConsentDecision `json:"-"`
	// Rule is the matcher's rule when matched; Candidates how many members
	// the review band held.
	Rule       string `json:"-"`
	Candidates int    `json:"-"`
	// Identity is the matcher's decision, when the matcher ran (the consent
	// was honoured): its rationale is recorded with the match's transfer.
	Identity *identity.Decision `json:"-"`
	// Match is the match when Outcome is OutcomeMatched: what its grant
	// (Match.Grant) is made of.
	Match *Match `json:"-"`
}

// Decide decides req, sent by requester, at now. The consent is judged
// before matching, so that its answer does not depend on who our members
// are; a no-match or several candidates count against the requester's
// failed-match cap; OnMatch is told of a match. The error is an
// infrastructure failure (the matcher's, the failure count's, OnMatch's):
// the member is
// undecided and no identifier may leave. A match is not recorded here:
// the caller records Decision.Match's grant with its decision.
func (m *Matching) Decide(ctx context.Context, requester string, req *MemberMatchRequest, now time.Time) (Decision, error) {
	party, known := m.Parties(requester)
	if !known {
		party = Party{ID: requester}
	}
	cd, why := EvaluateConsent(req.Consent, party, m.Holder, now)
	if cd.Permit && len(req.ConsentModifiers) > 0 {
		cd, why = ConsentDecision{Reason: ConsentModifier}, "the consent carries modifiers we do not understand"
	}
	if !cd.Permit {
		return Decision{Outcome: OutcomeConsentDenied, ConsentReason: cd.Reason, Why: "the consent cannot be honoured: " + why, Consent: cd}, nil
	}
	dec, err := m.Matcher.Resolve(ctx, req.Demographics())
	if err != nil {
		return Decision{}, fmt.Errorf("matching: %w", err)
	}
	switch dec.Outcome {
	case identity.OutcomeMatch:
	case identity.OutcomeReview:
		if err := m.Throttle.fail(ctx, requester, now); err != nil {
			return Decision{}, fmt.Errorf("counting the failed match: %w", err)
		}
		return Decision{Outcome: OutcomeMultipleMatches, Candidates: len(dec.Candidates), Identity: &dec,
			Why: "more than one member may be the one described; send more of the member's details"}, nil
	default:
		if err := m.Throttle.fail(ctx, requester, now); err != nil {
			return Decision{}, fmt.Errorf("counting the failed match: %w", err)
		}
		return Decision{Outcome: OutcomeNoMatch, Why: "no member matches", Identity: &dec}, nil
	}
	match := &Match{Requester: requester, MemberID: dec.MemberID, Consent: cd, ConsentJSON: req.ConsentJSON,
		CoverageToLink: req.CoverageToLink, At: now, Identity: dec}
	if m.OnMatch != nil {
		if err := m.OnMatch(ctx, *match); err != nil {
			return Decision{}, fmt.Errorf("telling of the match: %w", err)
		}
	}
	return Decision{Outcome: OutcomeMatched, MemberID: dec.MemberID, Consent: cd, Rule: dec.Rationale.Rule, Identity: &dec, Match: match}, nil
}
