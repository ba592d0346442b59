package identity

import (
	"fmt"
	"sort"
	"strings"

	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// Weights of exact agreement used by the deterministic rules' rationale:
// typical log2 likelihood ratios (m/u) of exact agreement in a large member
// index, so that a deterministic score reads on about the same scale as a
// probabilistic one. The rules, not these weights, decide.
var exactWeights = map[string]float64{
	FieldMemberID: 20, FieldGiven: 7, FieldFamily: 9, FieldBirthDate: 12, FieldSex: 1,
	FieldPhone: 10, FieldStreet: 8, FieldPostal: 4,
}

// ResolveDeterministic applies the exact rules: exact member_id + birth date
// → match; else exact normalised given + family + birth date (+ sex when
// both present): one candidate → match, several → review, none → no_match.
// candidates are the member with q.MemberID, if any, plus every member with
// q's birth date; other records are ignored by the rules.
func ResolveDeterministic(q transfer.Demographics, candidates []member.Record) Decision {
	dob := normalize.BirthDate(q.BirthDate)
	if dob == 0 {
		return Decision{Outcome: OutcomeNoMatch, Rationale: transfer.Rationale{
			Rule: RuleNone, Summary: "the query has no valid birth date, which every exact rule requires"}}
	}
	if id := strings.TrimSpace(q.MemberID); id != "" {
		for _, c := range candidates {
			if strings.TrimSpace(c.ID) == id && normalize.BirthDate(c.BirthDate) == dob {
				fields := []transfer.FieldContribution{
					{Field: FieldMemberID, Level: LevelExact, Weight: exactWeights[FieldMemberID]},
					{Field: FieldBirthDate, Level: LevelExact, Weight: exactWeights[FieldBirthDate]},
				}
				return Decision{Outcome: OutcomeMatch, MemberID: c.ID, Score: sumWeights(fields),
					Rationale: transfer.Rationale{Rule: RuleMemberID, Fields: fields,
						Summary: "member id and birth date agree exactly"}}
			}
		}
	}
	given, family := normalize.Compact(normalize.Name(q.Given)), normalize.Compact(normalize.Name(q.Family))
	sex := normalize.Sex(q.Sex)
	if given == "" || family == "" {
		return Decision{Outcome: OutcomeNoMatch, Rationale: transfer.Rationale{
			Rule: RuleNone, Summary: "the query lacks a given or family name, which the exact name rule requires"}}
	}
	type hit struct {
		id     string
		fields []transfer.FieldContribution
		score  float64
	}
	var hits []hit
	seen := map[string]bool{}
	for _, c := range candidates {
		if seen[c.ID] || normalize.BirthDate(c.BirthDate) != dob ||
			normalize.Compact(normalize.Name(c.Given)) != given || normalize.Compact(normalize.Name(c.Family)) != family {
			continue
		}
		cs := normalize.Sex(c.Sex)
		if sex != "" && cs != "" && sex != cs {
			continue
		}
		seen[c.ID] = true
		fields := []transfer.FieldContribution{
			{Field: FieldGiven, Level: LevelExact, Weight: exactWeights[FieldGiven]},
			{Field: FieldFamily, Level: LevelExact, Weight: exactWeights[FieldFamily]},
			{Field: FieldBirthDate, Level: LevelExact, Weight: exactWeights[FieldBirthDate]},
		}
		if sex != "" && cs != "" {
			fields = append(fields, transfer.FieldContribution{Field: FieldSex, Level: LevelExact, Weight: exactWeights[FieldSex]})
		}
		// Exact contact agreement only orders the candidates a reviewer sees.
		if p := normalize.Phone(q.Phone); p != "" && p == normalize.Phone(c.Phone) {
			fields = append(fields, transfer.FieldContribution{Field: FieldPhone, Level: LevelExact, Weight: exactWeights[FieldPhone]})
		}
		if s := normalize.Street(q.Address.Street); s != "" && s == normalize.Street(c.Street) {
			fields = append(fields, transfer.FieldContribution{Field: FieldStreet, Level: LevelExact, Weight: exactWeights[FieldStreet]})
		}
		if z := normalize.PostalCode(q.Address.PostalCode); z != "" && z == normalize.PostalCode(c.PostalCode) {
			fields = append(fields, transfer.FieldContribution{Field: FieldPostal, Level: LevelExact, Weight: exactWeights[FieldPostal]})
		}
		hits = append(hits, hit{id: c.ID, fields: fields, score: sumWeights(fields)})
	}
	if len(hits) == 0 {
		return Decision{Outcome: OutcomeNoMatch, Rationale: transfer.Rationale{
			Rule: RuleNone, Summary: "no member has the same name and birth date"}}
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].score != hits[j].score {
			return hits[i].score > hits[j].score
		}
		return hits[i].id < hits[j].id
	})
	best := hits[0]
	d := Decision{MemberID: best.id, Score: best.score, Rationale: transfer.Rationale{Rule: RuleExactNameDOB, Fields: best.fields}}
	if len(hits) == 1 {
		d.Outcome = OutcomeMatch
		d.Rationale.Summary = "exactly one member has the same name and birth date"
		return d
	}
	d.Outcome = OutcomeReview
	d.Rationale.Summary = fmt.Sprintf("%d members have the same name and birth date", len(hits))
	d.Rationale.RunnerUp = &transfer.RunnerUp{MemberID: hits[1].id, Score: hits[1].score}
	for _, h := range hits {
		d.Candidates = append(d.Candidates, h.id)
	}
	return d
}

func sumWeights(fields []transfer.FieldContribution) float64 {
	s := 0.0
	for _, f := range fields {
		s += f.Weight
	}
	return s
}
