package identity

import (
	"math"
	"testing"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

func TestResolveDeterministic(t *testing.T) {
	ann := member.Record{ID: "M1", Given: "Ann", Family: "Lee", BirthDate: "1980-02-03", Sex: "F", Phone: "555-201-0001", Street: "1 Main St", PostalCode: "02139"}
	annTwin := member.Record{ID: "M2", Given: "Ann", Family: "Lee", BirthDate: "1980-02-03", Sex: "F", Phone: "555-201-0002"}
	bob := member.Record{ID: "M3", Given: "Bob", Family: "Lee", BirthDate: "1980-02-03", Sex: "M"}
	annMale := member.Record{ID: "M4", Given: "Ann", Family: "Lee", BirthDate: "1980-02-03", Sex: "M"}
	tests := []struct {
		name       string
		q          transfer.Demographics
		cands      []member.Record
		outcome    string
		memberID   string
		rule       string
		candidates []string
	}{
		{"member id and birth date", transfer.Demographics{MemberID: "M3", BirthDate: "1980-02-03"}, []member.Record{ann, bob}, OutcomeMatch, "M3", RuleMemberID, nil},
		{"member id but other birth date falls to names", transfer.Demographics{MemberID: "M3", Given: "ANN ", Family: "lee", BirthDate: "1980-02-03"},
			[]member.Record{{ID: "M3", Given: "Bob", Family: "Lee", BirthDate: "1990-01-01"}, ann}, OutcomeMatch, "M1", RuleExactNameDOB, nil},
		{"exact name and birth date, normalised", transfer.Demographics{Given: " ánn", Family: "LEE.", BirthDate: "1980-02-03"}, []member.Record{ann, bob}, OutcomeMatch, "M1", RuleExactNameDOB, nil},
		{"sex disagreement excludes", transfer.Demographics{Given: "Ann", Family: "Lee", BirthDate: "1980-02-03", Sex: "M"}, []member.Record{ann, annMale}, OutcomeMatch, "M4", RuleExactNameDOB, nil},
		{"sex unknown keeps both", transfer.Demographics{Given: "Ann", Family: "Lee", BirthDate: "1980-02-03", Sex: "U"}, []member.Record{annTwin, ann}, OutcomeReview, "M1", RuleExactNameDOB, []string{"M1", "M2"}},
		{"contact orders review candidates", transfer.Demographics{Given: "Ann", Family: "Lee", BirthDate: "1980-02-03", Phone: "+1 (555) 201-0002"}, []member.Record{ann, annTwin}, OutcomeReview, "M2", RuleExactNameDOB, []string{"M2", "M1"}},
		{"no candidate", transfer.Demographics{Given: "Ann", Family: "Lee", BirthDate: "1980-02-04"}, []member.Record{ann}, OutcomeNoMatch, "", RuleNone, nil},
		{"no birth date", transfer.Demographics{MemberID: "M1", Given: "Ann", Family: "Lee"}, []member.Record{ann}, OutcomeNoMatch, "", RuleNone, nil},
		{"no family name", transfer.Demographics{Given: "Ann", BirthDate: "1980-02-03"}, []member.Record{ann}, OutcomeNoMatch, "", RuleNone, nil},
		{"duplicate candidate counted once", transfer.Demographics{Given: "Ann", Family: "Lee", BirthDate: "1980-02-03"}, []member.Record{ann, ann}, OutcomeMatch, "M1", RuleExactNameDOB, nil},
		{"empty candidates", transfer.Demographics{MemberID: "M1", Given: "Ann", Family: "Lee", BirthDate: "1980-02-03"}, nil, OutcomeNoMatch, "", RuleNone, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ResolveDeterministic(tt.q, tt.cands)
			if d.Outcome != tt.outcome || d.MemberID != tt.memberID || d.Rationale.Rule != tt.rule {
				t.Fatalf("got %s %q rule %s, want %s %q rule %s", d.Outcome, d.MemberID, d.Rationale.Rule, tt.outcome, tt.memberID, tt.rule)
			}
			if len(d.Candidates) != len(tt.candidates) {
				t.Fatalf("candidates %v, want %v", d.Candidates, tt.candidates)
			}
			for i := range tt.candidates {
				if d.Candidates[i] != tt.candidates[i] {
					t.Fatalf("candidates %v, want %v", d.Candidates, tt.candidates)
				}
			}
			if math.Abs(sumWeights(d.Rationale.Fields)-d.Score) > 1e-9 {
				t.Fatalf("fields add up to %v, score %v", sumWeights(d.Rationale.Fields), d.Score)
			}
			if d.Rationale.Summary == "" {
				t.Fatal("empty summary")
			}
		})
	}
}
