package fhir

// The clinical and claims resources of a member's record, as exports write
// them (Patient and Coverage are in resources.go: $member-match reads
// them too). Elements FHIR R4 requires (1..1, 1..*) are written even when
// empty; the rest are omitempty.

// Encounter is a visit.
type Encounter struct {
	ResourceType      string            `json:"resourceType"` // "Encounter"
	ID                string            `json:"id,omitempty"`
	Meta              *Meta             `json:"meta,omitempty"`
	ImplicitRules     string            `json:"implicitRules,omitempty"`
	Extension         []Extension       `json:"extension,omitempty"`
	ModifierExtension []Extension       `json:"modifierExtension,omitempty"`
	Status            string            `json:"status"` // planned, arrived, in-progress, finished, cancelled, ...
	Class             Coding            `json:"class"`  // v3-ActCode: AMB, EMER, IMP, ...
	Type              []CodeableConcept `json:"type,omitempty"`
	Subject           *Reference        `json:"subject,omitempty"`
	Period            *Period           `json:"period,omitempty"`
}

// Condition is a diagnosis.
type Condition struct {
	ResourceType       string            `json:"resourceType"` // "Condition"
	ID                 string            `json:"id,omitempty"`
	Meta               *Meta             `json:"meta,omitempty"`
	ImplicitRules      string            `json:"implicitRules,omitempty"`
	Extension          []Extension       `json:"extension,omitempty"`
	ModifierExtension  []Extension       `json:"modifierExtension,omitempty"`
	ClinicalStatus     *CodeableConcept  `json:"clinicalStatus,omitempty"`
	VerificationStatus *CodeableConcept  `json:"verificationStatus,omitempty"`
	Category           []CodeableConcept `json:"category,omitempty"`
	Code               *CodeableConcept  `json:"code,omitempty"`
	Subject            Reference         `json:"subject"`
	Encounter          *Reference        `json:"encounter,omitempty"`
	OnsetDateTime      string            `json:"onsetDateTime,omitempty"` // onset[x] as a dateTime
	RecordedDate       string            `json:"recordedDate,omitempty"`
}

// ExplanationOfBenefit is an adjudicated claim.
type ExplanationOfBenefit struct {
	ResourceType      string          `json:"resourceType"` // "ExplanationOfBenefit"
	ID                string          `json:"id,omitempty"`
	Meta              *Meta           `json:"meta,omitempty"`
	ImplicitRules     string          `json:"implicitRules,omitempty"`
	Extension         []Extension     `json:"extension,omitempty"`
	ModifierExtension []Extension     `json:"modifierExtension,omitempty"`
	Identifier        []Identifier    `json:"identifier,omitempty"`
	Status            string          `json:"status"` // active, cancelled, draft, entered-in-error
	Type              CodeableConcept `json:"type"`
	Use               string          `json:"use"` // claim, preauthorization, predetermination
	Patient           Reference       `json:"patient"`
	BillablePeriod    *Period         `json:"billablePeriod,omitempty"`
	Created           string          `json:"created"`
	Insurer           Reference       `json:"insurer"`
	Provider          Reference       `json:"provider"`
	Outcome           string          `json:"outcome"` // queued, complete, error, partial
	Insurance         []EOBInsurance  `json:"insurance"`
	Total             []EOBTotal      `json:"total,omitempty"`
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
