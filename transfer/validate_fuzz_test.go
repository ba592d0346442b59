package transfer

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// problemFields are the fields Problems may name: the API's names, never
// anything taken from the request.
var problemFields = []string{
	"partner_id", "coverage_to_match", "coverage_to_match.payer", "coverage_to_match.member_id",
	"coverage_to_match.period.end", "member", "member.birth_date", "consent.id", "consent.period.end",
}

// FuzzRequestProblems decodes a transfer request as the store keeps it and
// judges it: every problem names a known field with a reason that holds
// none of the member's values; the judgement depends on whether each
// identifying field is blank, never on what it says; and a request
// survives a JSON round trip with the same judgement.
func FuzzRequestProblems(f *testing.F) {
	for _, s := range []string{
		`{"partner_id":"p","member":{"given":"Zelphina","family":"Quarrington","birth_date":"1984-07-19","sex":"F","address":{"street":"17 Larkspur Lane","city":"Springfield","state":"IL","postal_code":"62701"},"phone":"555-0199"},"consent":{"id":"c-1","status":"active","scope":"regular","period_start":"2025-01-01T00:00:00Z","period_end":"2030-01-01T00:00:00Z","granted_at":"2025-01-01T00:00:00Z"},"data_scope":{"resource_types":["Patient","Coverage"]}}`,
		`{"direction":"import","member":{"given":"G","birth_date":"1980-01-02"},"consent":{"id":"c","period_start":"2025-01-01T00:00:00Z","period_end":"2026-01-01T00:00:00Z"},"coverage_to_match":{"payer":"old","member_id":"m","subscriber_id":"s","period_start":"2024-02-01","period_end":"2024-01-01"}}`,
		`{"direction":"import","member":{"member_id":"m","birth_date":"1980-02-31"},"consent":{"id":" "}}`,
		`{"partner_id":" ","member":{},"consent":{"id":"c","period_start":"2025-01-01T00:00:00Z","period_end":"2024-01-01T00:00:00+05:00"},"coverage_to_match":{}}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		if json.Unmarshal(data, &r) != nil {
			return
		}
		ps := r.Problems()
		for _, p := range ps {
			if !slices.Contains(problemFields, p.Field) || p.Reason == "" {
				t.Fatalf("problem %+v: unknown field or no reason", p)
			}
		}

		// The member's values, swapped for canaries (blank stays blank):
		// the same fields are at fault and no reason holds a canary.
		m := r
		canaries := map[string]bool{}
		mark := func(s *string) {
			if strings.TrimSpace(*s) != "" {
				*s = fmt.Sprintf("Qz%dQ", len(canaries))
				canaries[*s] = true
			}
		}
		d := &m.Member
		for _, s := range []*string{&d.MemberID, &d.Given, &d.Family, &d.Phone, &d.Address.Street, &d.Address.City, &d.Address.State, &d.Address.PostalCode} {
			mark(s)
		}
		if c := r.CoverageToMatch; c != nil {
			cc := *c
			mark(&cc.MemberID)
			mark(&cc.SubscriberID)
			m.CoverageToMatch = &cc
		}
		mps := m.Problems()
		if !reflect.DeepEqual(fields(mps), fields(ps)) {
			t.Fatalf("problems depend on the member's values: %v, with canaries %v", ps, mps)
		}
		for _, p := range mps {
			for c := range canaries {
				if strings.Contains(p.Reason, c) || strings.Contains(p.Field, c) {
					t.Fatalf("problem %+v holds a value of the request", p)
				}
			}
		}

		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("a decoded request does not encode: %v", err)
		}
		var back Request
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("an encoded request does not decode: %v", err)
		}
		if got := back.Problems(); !reflect.DeepEqual(got, ps) {
			t.Fatalf("after a round trip: problems %v, want %v", got, ps)
		}
	})
}

func fields(ps []FieldProblem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Field)
	}
	return out
}
