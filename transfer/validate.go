package transfer

import (
	"strings"

	"github.com/p2p-payer/p2p/member"
)

// FieldProblem is a rule a request breaks: the field (as the API names
// it) and the rule, never the value.
type FieldProblem struct {
	Field  string
	Reason string
}

// Problems are the rules of a transfer request that r breaks, beyond
// what the API's schema says: who the partner is, the old card of an
// import, enough of the member to match on, and a consent with an id and
// a period that runs forward (with both ends, for an import: the HRex
// consent's period needs them).
func (r Request) Problems() []FieldProblem {
	var ps []FieldProblem
	add := func(field, reason string) { ps = append(ps, FieldProblem{field, reason}) }
	if r.Direction.OrExport() == DirectionImport {
		c := r.CoverageToMatch
		switch {
		case c == nil:
			add("coverage_to_match", "is required for an import")
		case blank(c.Payer):
			add("coverage_to_match.payer", "must not be blank")
		}
		if c != nil {
			if blank(c.MemberID) {
				add("coverage_to_match.member_id", "must not be blank")
			}
			if c.PeriodStart != "" && c.PeriodEnd != "" && c.PeriodEnd < c.PeriodStart { // YYYY-MM-DD sorts as it runs
				add("coverage_to_match.period.end", "must not be before coverage_to_match.period.start")
			}
		}
		if blank(r.Member.Given) && blank(r.Member.Family) {
			add("member", "must have given or family for an import: the old payer matches on demographics")
		}
		if r.Consent.PeriodEnd.IsZero() {
			add("consent.period.end", "is required for an import: the HRex consent's period needs both ends")
		}
	} else {
		if blank(r.PartnerID) {
			add("partner_id", "must not be blank")
		}
		if r.CoverageToMatch != nil {
			add("coverage_to_match", "is for imports only")
		}
	}
	m := r.Member
	if blank(m.MemberID) && blank(m.Given) && blank(m.Family) {
		add("member", "must have member_id, given or family")
	}
	if err := member.ValidBirthDate(m.BirthDate); err != nil {
		add("member.birth_date", err.Error())
	}
	if blank(r.Consent.ID) {
		add("consent.id", "must not be blank")
	}
	if !r.Consent.PeriodEnd.IsZero() && r.Consent.PeriodEnd.Before(r.Consent.PeriodStart) {
		add("consent.period.end", "must not be before consent.period.start")
	}
	return ps
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }
