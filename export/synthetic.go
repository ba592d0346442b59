package export

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/member"
)

// Defaults of SyntheticSource.
const (
	DefaultMemberIDSystem = "https://p2p.example/fhir/sid/member-id"
	DefaultPayerName      = "p2p Demo Health Plan"
)

// SyntheticSource is the dev and demo Source: it makes up a small,
// plausible record for any member, the same one every time. Everything is
// derived from the member record and a SHA-256 of the member id (no clock,
// no randomness), so the same member always gives byte-identical
// resources:
//
//   - 1 Patient: name, birth date, gender, address and phone from the
//     record; an identifier (type MB) with our member id;
//   - 1 Coverage, active since 2021-01-01;
//   - 2 Encounters (2021 and 2023) and 3 ExplanationOfBenefit (one per
//     encounter, plus a pharmacy claim in 2024);
//   - 2 Conditions: a common chronic one, and a mental-health diagnosis
//     (F32.9 or F41.1) that is sensitive.
//
// The sensitive Condition is labelled in meta.security with v3-ActCode PSY
// (psychiatry disorder information sensitivity) and v3-Confidentiality R
// (restricted), the usual pair for mental-health data. PSY rather than
// ETH because ETH marks substance-use data under 42 CFR Part 2, which
// needs its own consent rules; PSY exercises the regular/sensitive split
// HRex describes without implying them.
//
// meta.lastUpdated spreads over 2021–2024, so a since filter keeps some
// resources and drops others.
type SyntheticSource struct {
	MemberIDSystem string // identifier system of our member ids; "" = DefaultMemberIDSystem
	PayerName      string // display of Coverage.payor and EOB.insurer; "" = DefaultPayerName
}

var _ Source = SyntheticSource{}

// SyntheticPatientID is the id of the Patient resource SyntheticSource
// makes for member id: what $member-match answers as MemberId.
func SyntheticPatientID(memberID string) string { return newSeed(memberID).id("pat", 1) }

// seed is the SHA-256 of the member id, the root of every derived value.
type seed [32]byte

func newSeed(memberID string) seed { return sha256.Sum256([]byte("p2p-synthetic-v1\x00" + memberID)) }

// n returns a number in [0, mod) derived from the seed and label.
func (s seed) n(label string, mod int) int {
	h := sha256.Sum256(append(s[:], label...))
	return int(binary.BigEndian.Uint64(h[:8]) % uint64(mod))
}

// at returns a moment during working hours of a day in year, derived
// from label.
func (s seed) at(year int, label string) time.Time {
	return time.Date(year, time.January, 1, 8+s.n(label+"/h", 10), s.n(label+"/m", 60), 0, 0, time.UTC).
		AddDate(0, 0, s.n(label+"/d", 360))
}

func (s seed) id(kind string, i int) string {
	return fmt.Sprintf("syn-%s-%s-%d", kind, hex.EncodeToString(s[:8]), i)
}

type code struct{ code, display string }

var (
	visitTypes = []code{
		{"185349003", "Encounter for check up"},
		{"390906007", "Follow-up encounter"},
		{"185345009", "Encounter for symptom"},
	}
	chronic = []code{
		{"I10", "Essential (primary) hypertension"},
		{"E11.9", "Type 2 diabetes mellitus without complications"},
		{"J45.909", "Unspecified asthma, uncomplicated"},
		{"E78.5", "Hyperlipidemia, unspecified"},
		{"K21.9", "Gastro-esophageal reflux disease without esophagitis"},
	}
	mentalHealth = []code{
		{"F32.9", "Major depressive disorder, single episode, unspecified"},
		{"F41.1", "Generalized anxiety disorder"},
	}
)

// Resources returns the member's synthetic record, in a fixed order.
func (src SyntheticSource) Resources(ctx context.Context, m member.Record) ([]Resource, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	system, payer := src.MemberIDSystem, src.PayerName
	if system == "" {
		system = DefaultMemberIDSystem
	}
	if payer == "" {
		payer = DefaultPayerName
	}
	s := newSeed(m.ID)
	b := &builder{}
	patientID, coverageID := s.id("pat", 1), s.id("cov", 1)
	patientRef := fhir.Reference{Reference: "Patient/" + patientID}
	coverageRef := fhir.Reference{Reference: "Coverage/" + coverageID}

	p := fhir.Patient{
		ResourceType: "Patient", ID: patientID, Active: ptr(true),
		Identifier: []fhir.Identifier{{
			Type:   ptr(fhir.CodeDisplay(fhir.SystemV20203, "MB", "Member Number")),
			System: system, Value: m.ID,
		}},
		Gender: gender(m.Sex), BirthDate: m.BirthDate,
	}
	if m.Given != "" || m.Family != "" {
		n := fhir.HumanName{Use: "official", Family: m.Family}
		if m.Given != "" {
			n.Given = []string{m.Given}
		}
		p.Name = []fhir.HumanName{n}
	}
	if m.Phone != "" {
		p.Telecom = []fhir.ContactPoint{{System: "phone", Value: m.Phone, Use: "home"}}
	}
	if m.Street != "" || m.City != "" || m.State != "" || m.PostalCode != "" {
		a := fhir.Address{Use: "home", City: m.City, State: m.State, PostalCode: m.PostalCode}
		if m.Street != "" {
			a.Line = []string{m.Street}
		}
		p.Address = []fhir.Address{a}
	}
	b.add("Patient", patientID, s.at(2024, "patient"), false, &p.Meta, &p)

	cov := fhir.Coverage{
		ResourceType: "Coverage", ID: coverageID, Status: "active",
		Identifier:   []fhir.Identifier{{System: system, Value: m.ID}},
		Type:         ptr(fhir.CodeDisplay(fhir.SystemActCode, "HIP", "health insurance plan policy")),
		SubscriberID: m.ID, Beneficiary: &patientRef,
		Relationship: ptr(fhir.CodeDisplay(fhir.SystemSubscriberRel, "self", "Self")),
		Period:       &fhir.Period{Start: "2021-01-01"},
		Payor:        []fhir.Reference{{Display: payer}},
	}
	b.add("Coverage", coverageID, s.at(2023, "coverage"), false, &cov.Meta, &cov)

	// Two visits, each with its claim.
	visits := []time.Time{s.at(2021, "visit-1"), s.at(2023, "visit-2")}
	for i, v := range visits {
		id := s.id("enc", i+1)
		vt := visitTypes[s.n(fmt.Sprint("visit-type-", i), len(visitTypes))]
		enc := fhir.Encounter{
			ResourceType: "Encounter", ID: id, Status: "finished",
			Class:   fhir.Coding{System: fhir.SystemActCode, Code: "AMB", Display: "ambulatory"},
			Type:    []fhir.CodeableConcept{fhir.CodeDisplay(fhir.SystemSNOMED, vt.code, vt.display)},
			Subject: &patientRef,
			Period:  &fhir.Period{Start: instant(v), End: instant(v.Add(time.Duration(20+s.n(fmt.Sprint("visit-len-", i), 40)) * time.Minute))},
		}
		b.add("Encounter", id, v.AddDate(0, 0, 2), false, &enc.Meta, &enc)
	}
	claims := []struct {
		kind, display string
		service       time.Time
	}{
		{"professional", "Professional", visits[0]},
		{"professional", "Professional", visits[1]},
		{"pharmacy", "Pharmacy", s.at(2024, "rx")},
	}
	for i, c := range claims {
		id := s.id("eob", i+1)
		created := c.service.AddDate(0, 0, 7+s.n(fmt.Sprint("eob-lag-", i), 14))
		cents := 2500 + s.n(fmt.Sprint("eob-amount-", i), 47500)
		day := c.service.Format(time.DateOnly)
		eob := fhir.ExplanationOfBenefit{
			ResourceType: "ExplanationOfBenefit", ID: id, Status: "active",
			Identifier:     []fhir.Identifier{{System: "https://p2p.example/fhir/sid/claim-id", Value: id}},
			Type:           fhir.CodeDisplay(fhir.SystemClaimType, c.kind, c.display),
			Use:            "claim",
			Patient:        patientRef,
			BillablePeriod: &fhir.Period{Start: day, End: day},
			Created:        instant(created),
			Insurer:        fhir.Reference{Display: payer},
			Provider:       fhir.Reference{Display: "Synthetic Community Clinic"},
			Outcome:        "complete",
			Insurance:      []fhir.EOBInsurance{{Focal: true, Coverage: coverageRef}},
			Total: []fhir.EOBTotal{{
				Category: fhir.CodeDisplay(fhir.SystemAdjudication, "submitted", "Submitted Amount"),
				Amount:   fhir.Money{Value: float64(cents) / 100, Currency: "USD"},
			}},
		}
		b.add("ExplanationOfBenefit", id, created, false, &eob.Meta, &eob)
	}

	conditions := []struct {
		c         code
		visit     int
		updated   time.Time
		sensitive bool
	}{
		{chronic[s.n("chronic", len(chronic))], 0, s.at(2022, "cond-1"), false},
		{mentalHealth[s.n("mental-health", len(mentalHealth))], 1, s.at(2024, "cond-2"), true},
	}
	for i, c := range conditions {
		id := s.id("cond", i+1)
		cond := fhir.Condition{
			ResourceType: "Condition", ID: id,
			ClinicalStatus:     ptr(fhir.CodeDisplay(fhir.SystemConditionClin, "active", "Active")),
			VerificationStatus: ptr(fhir.CodeDisplay(fhir.SystemConditionVer, "confirmed", "Confirmed")),
			Category:           []fhir.CodeableConcept{fhir.CodeDisplay(fhir.SystemConditionCat, "encounter-diagnosis", "Encounter Diagnosis")},
			Code:               ptr(fhir.CodeDisplay(fhir.SystemICD10CM, c.c.code, c.c.display)),
			Subject:            patientRef,
			Encounter:          &fhir.Reference{Reference: "Encounter/" + s.id("enc", c.visit+1)},
			OnsetDateTime:      visits[c.visit].Format(time.DateOnly),
			RecordedDate:       visits[c.visit].Format(time.DateOnly),
		}
		b.add("Condition", id, c.updated, c.sensitive, &cond.Meta, &cond)
	}
	if b.err != nil {
		return nil, b.err
	}
	return b.out, nil
}

// builder fills in meta and marshals each resource.
type builder struct {
	out []Resource
	err error
}

func (b *builder) add(typ, id string, updated time.Time, sensitive bool, meta **fhir.Meta, v any) {
	if b.err != nil {
		return
	}
	m := &fhir.Meta{LastUpdated: instant(updated)}
	if sensitive {
		m.Security = []fhir.Coding{
			{System: fhir.SystemActCode, Code: "PSY", Display: "psychiatry disorder information sensitivity"},
			{System: fhir.SystemConfidentiality, Code: "R", Display: "restricted"},
		}
	}
	*meta = m
	j, err := json.Marshal(v)
	if err != nil {
		b.err = fmt.Errorf("export: marshal synthetic %s: %w", typ, err)
		return
	}
	b.out = append(b.out, Resource{ResourceType: typ, ID: id, LastUpdated: updated, Sensitive: sensitive, JSON: j})
}

func instant(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func gender(sex string) string {
	switch sex {
	case "F":
		return "female"
	case "M":
		return "male"
	case "U":
		return "unknown"
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
