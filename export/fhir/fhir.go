// Package fhir holds the few FHIR R4 data types and resources p2p writes,
// by hand: no FHIR model module is available from the module proxy, and we
// need only a small, stable subset. Field names and JSON shapes follow
// https://hl7.org/fhir/R4; every optional element is omitempty, so the JSON
// holds only what we set.
package fhir

// Code systems p2p uses.
const (
	SystemActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	SystemConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	SystemV20203          = "http://terminology.hl7.org/CodeSystem/v2-0203"
	SystemICD10CM         = "http://hl7.org/fhir/sid/icd-10-cm"
	SystemSNOMED          = "http://snomed.info/sct"
	SystemClaimType       = "http://terminology.hl7.org/CodeSystem/claim-type"
	SystemAdjudication    = "http://terminology.hl7.org/CodeSystem/adjudication"
	SystemConditionClin   = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	SystemConditionVer    = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	SystemConditionCat    = "http://terminology.hl7.org/CodeSystem/condition-category"
	SystemSubscriberRel   = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
)

// Meta is Resource.meta: when the resource last changed and its security
// labels.
type Meta struct {
	LastUpdated string   `json:"lastUpdated,omitempty"` // instant, e.g. 2024-03-05T10:20:00Z
	Security    []Coding `json:"security,omitempty"`
}

// Coding is a code from a code system.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a concept given by codings and/or text.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Code returns a CodeableConcept with one coding.
func Code(system, code, display string) CodeableConcept {
	return CodeableConcept{Coding: []Coding{{System: system, Code: code, Display: display}}}
}

// Identifier is a business identifier.
type Identifier struct {
	Type   *CodeableConcept `json:"type,omitempty"`
	System string           `json:"system,omitempty"`
	Value  string           `json:"value,omitempty"`
}

// Reference points at another resource, by relative URL and/or display.
type Reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

// Period is a time range; Start and End are FHIR dates or dateTimes.
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// HumanName is a person's name.
type HumanName struct {
	Use    string   `json:"use,omitempty"`
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

// Address is a postal address.
type Address struct {
	Use        string   `json:"use,omitempty"`
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
}

// ContactPoint is a phone number, email address and the like.
type ContactPoint struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
	Use    string `json:"use,omitempty"`
}

// Money is an amount in a currency.
type Money struct {
	Value    float64 `json:"value"`
	Currency string  `json:"currency,omitempty"`
}

// Patient is the member.
type Patient struct {
	ResourceType string         `json:"resourceType"` // "Patient"
	ID           string         `json:"id"`
	Meta         *Meta          `json:"meta,omitempty"`
	Identifier   []Identifier   `json:"identifier,omitempty"`
	Active       bool           `json:"active,omitempty"`
	Name         []HumanName    `json:"name,omitempty"`
	Telecom      []ContactPoint `json:"telecom,omitempty"`
	Gender       string         `json:"gender,omitempty"` // male, female, other, unknown
	BirthDate    string         `json:"birthDate,omitempty"`
	Address      []Address      `json:"address,omitempty"`
}

// Coverage is the member's insurance with us.
type Coverage struct {
	ResourceType string           `json:"resourceType"` // "Coverage"
	ID           string           `json:"id"`
	Meta         *Meta            `json:"meta,omitempty"`
	Identifier   []Identifier     `json:"identifier,omitempty"`
	Status       string           `json:"status"`
	Type         *CodeableConcept `json:"type,omitempty"`
	SubscriberID string           `json:"subscriberId,omitempty"`
	Beneficiary  Reference        `json:"beneficiary"`
	Relationship *CodeableConcept `json:"relationship,omitempty"`
	Period       *Period          `json:"period,omitempty"`
	Payor        []Reference      `json:"payor"`
}

// ExplanationOfBenefit is an adjudicated claim.
type ExplanationOfBenefit struct {
	ResourceType   string          `json:"resourceType"` // "ExplanationOfBenefit"
	ID             string          `json:"id"`
	Meta           *Meta           `json:"meta,omitempty"`
	Identifier     []Identifier    `json:"identifier,omitempty"`
	Status         string          `json:"status"`
	Type           CodeableConcept `json:"type"`
	Use            string          `json:"use"`
	Patient        Reference       `json:"patient"`
	BillablePeriod *Period         `json:"billablePeriod,omitempty"`
	Created        string          `json:"created"`
	Insurer        Reference       `json:"insurer"`
	Provider       Reference       `json:"provider"`
	Outcome        string          `json:"outcome"`
	Insurance      []EOBInsurance  `json:"insurance"`
	Total          []EOBTotal      `json:"total,omitempty"`
}

// EOBInsurance is ExplanationOfBenefit.insurance.
type EOBInsurance struct {
	Focal    bool      `json:"focal"`
	Coverage Reference `json:"coverage"`
}

// EOBTotal is ExplanationOfBenefit.total.
type EOBTotal struct {
	Category CodeableConcept `json:"category"`
	Amount   Money           `json:"amount"`
}

// Encounter is a visit.
type Encounter struct {
	ResourceType string            `json:"resourceType"` // "Encounter"
	ID           string            `json:"id"`
	Meta         *Meta             `json:"meta,omitempty"`
	Status       string            `json:"status"`
	Class        Coding            `json:"class"`
	Type         []CodeableConcept `json:"type,omitempty"`
	Subject      *Reference        `json:"subject,omitempty"`
	Period       *Period           `json:"period,omitempty"`
}

// Condition is a diagnosis.
type Condition struct {
	ResourceType       string            `json:"resourceType"` // "Condition"
	ID                 string            `json:"id"`
	Meta               *Meta             `json:"meta,omitempty"`
	ClinicalStatus     *CodeableConcept  `json:"clinicalStatus,omitempty"`
	VerificationStatus *CodeableConcept  `json:"verificationStatus,omitempty"`
	Category           []CodeableConcept `json:"category,omitempty"`
	Code               *CodeableConcept  `json:"code,omitempty"`
	Subject            Reference         `json:"subject"`
	Encounter          *Reference        `json:"encounter,omitempty"`
	OnsetDateTime      string            `json:"onsetDateTime,omitempty"`
	RecordedDate       string            `json:"recordedDate,omitempty"`
}
