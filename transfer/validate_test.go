package transfer

import (
	"testing"
	"time"
)

func TestRequestProblems(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := Request{PartnerID: "p", Member: Demographics{Given: "G", BirthDate: "1980-01-02"},
		Consent: Consent{ID: "c", PeriodStart: t0, PeriodEnd: t0.AddDate(1, 0, 0)}}
	imp := ok
	imp.Direction, imp.CoverageToMatch = DirectionImport, &CoverageToMatch{Payer: "old", MemberID: "m"}
	for _, tc := range []struct {
		name  string
		base  Request
		mod   func(r *Request)
		field string // "": no problem
	}{
		{"export", ok, func(*Request) {}, ""},
		{"import", imp, func(*Request) {}, ""},
		{"blank partner", ok, func(r *Request) { r.PartnerID = " " }, "partner_id"},
		{"export with a card", ok, func(r *Request) { r.CoverageToMatch = &CoverageToMatch{} }, "coverage_to_match"},
		{"no names", ok, func(r *Request) { r.Member.Given = "" }, "member"},
		{"bad birth date", ok, func(r *Request) { r.Member.BirthDate = "1980-02-31" }, "member.birth_date"},
		{"no consent id", ok, func(r *Request) { r.Consent.ID = "" }, "consent.id"},
		{"consent backwards", ok, func(r *Request) { r.Consent.PeriodEnd = t0.AddDate(-1, 0, 0) }, "consent.period.end"},
		{"import without card", imp, func(r *Request) { r.CoverageToMatch = nil }, "coverage_to_match"},
		{"import without payer", imp, func(r *Request) { r.CoverageToMatch = &CoverageToMatch{MemberID: "m"} }, "coverage_to_match.payer"},
		{"import without member id", imp, func(r *Request) { r.CoverageToMatch = &CoverageToMatch{Payer: "old"} }, "coverage_to_match.member_id"},
		{"import card backwards", imp, func(r *Request) {
			r.CoverageToMatch = &CoverageToMatch{Payer: "old", MemberID: "m", PeriodStart: "2024-02-01", PeriodEnd: "2024-01-01"}
		}, "coverage_to_match.period.end"},
		{"import by member id alone", imp, func(r *Request) { r.Member = Demographics{MemberID: "m", BirthDate: "1980-01-02"} }, "member"},
		{"import with an open consent", imp, func(r *Request) { r.Consent.PeriodEnd = time.Time{} }, "consent.period.end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.base
			tc.mod(&r)
			ps := r.Problems()
			if tc.field == "" {
				if len(ps) > 0 {
					t.Errorf("problems %v, want none", ps)
				}
				return
			}
			if len(ps) != 1 || ps[0].Field != tc.field {
				t.Errorf("problems %v, want one with %s", ps, tc.field)
			}
		})
	}
}
