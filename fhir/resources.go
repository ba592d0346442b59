package fhir

import (
	"encoding/json"
	"fmt"
)

// Parameters is the input or output of an operation.
type Parameters struct {
	ResourceType  string      `json:"resourceType"` // "Parameters"
	ID            string      `json:"id,omitempty"`
	Meta          *Meta       `json:"meta,omitempty"`
	ImplicitRules string      `json:"implicitRules,omitempty"`
	Parameter     []Parameter `json:"parameter,omitempty"`
}

// Param returns the parameters named name, in order.
func (p *Parameters) Param(name string) []*Parameter {
	var out []*Parameter
	for i := range p.Parameter {
		if p.Parameter[i].Name == name {
			out = append(out, &p.Parameter[i])
		}
	}
	return out
}

// Parameter is Parameters.parameter: a name and one of a value[x], a
// resource or parts.
type Parameter struct {
	ID                string
	Extension         []Extension
	ModifierExtension []Extension
	Name              string
	Value             *Value          // value[x]
	Resource          json.RawMessage // kept as read; see DecodeResource
	Part              []Parameter
}

type paramHead struct {
	ID                string      `json:"id,omitempty"`
	Extension         []Extension `json:"extension,omitempty"`
	ModifierExtension []Extension `json:"modifierExtension,omitempty"`
	Name              string      `json:"name"`
}

type paramTail struct {
	Resource json.RawMessage `json:"resource,omitempty"`
	Part     []Parameter     `json:"part,omitempty"`
}

// MarshalJSON writes the parameter with its value[x].
func (p Parameter) MarshalJSON() ([]byte, error) {
	return marshalWithValue(paramHead{p.ID, p.Extension, p.ModifierExtension, p.Name}, p.Value, paramTail{p.Resource, p.Part})
}

// UnmarshalJSON reads a parameter with its value[x], whatever its type.
func (p *Parameter) UnmarshalJSON(b []byte) error {
	var a struct {
		paramHead
		paramTail
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	v, err := choice(b, "value")
	if err != nil {
		return fmt.Errorf("parameter %q: %w", a.Name, err)
	}
	*p = Parameter{
		ID: a.ID, Extension: a.Extension, ModifierExtension: a.ModifierExtension, Name: a.Name,
		Value: v, Resource: a.Resource, Part: a.Part,
	}
	return nil
}

// Patient is a person receiving care; for $member-match, the member as the
// requesting payer knows them; in an export, the member as we know them.
type Patient struct {
	ResourceType      string         `json:"resourceType"` // "Patient"
	ID                string         `json:"id,omitempty"`
	Meta              *Meta          `json:"meta,omitempty"`
	ImplicitRules     string         `json:"implicitRules,omitempty"`
	Extension         []Extension    `json:"extension,omitempty"`
	ModifierExtension []Extension    `json:"modifierExtension,omitempty"`
	Identifier        []Identifier   `json:"identifier,omitempty"`
	Active            *bool          `json:"active,omitempty"`
	Name              []HumanName    `json:"name,omitempty"`
	Telecom           []ContactPoint `json:"telecom,omitempty"`
	Gender            string         `json:"gender,omitempty"` // male, female, other, unknown
	BirthDate         string         `json:"birthDate,omitempty"`
	Address           []Address      `json:"address,omitempty"`
}

// Coverage is a member's insurance: for $member-match, the old and new
// plans; in an export, the member's plan with us.
type Coverage struct {
	ResourceType      string           `json:"resourceType"` // "Coverage"
	ID                string           `json:"id,omitempty"`
	Meta              *Meta            `json:"meta,omitempty"`
	ImplicitRules     string           `json:"implicitRules,omitempty"`
	Extension         []Extension      `json:"extension,omitempty"`
	ModifierExtension []Extension      `json:"modifierExtension,omitempty"`
	Identifier        []Identifier     `json:"identifier,omitempty"`
	Status            string           `json:"status,omitempty"`
	Type              *CodeableConcept `json:"type,omitempty"`
	PolicyHolder      *Reference       `json:"policyHolder,omitempty"`
	Subscriber        *Reference       `json:"subscriber,omitempty"`
	SubscriberID      string           `json:"subscriberId,omitempty"`
	Beneficiary       *Reference       `json:"beneficiary,omitempty"`
	Dependent         string           `json:"dependent,omitempty"`
	Relationship      *CodeableConcept `json:"relationship,omitempty"`
	Period            *Period          `json:"period,omitempty"`
	Payor             []Reference      `json:"payor,omitempty"`
	Class             []CoverageClass  `json:"class,omitempty"`
	Order             int              `json:"order,omitempty"`
	Network           string           `json:"network,omitempty"`
}

// CoverageClass is Coverage.class: group, plan and the like.
type CoverageClass struct {
	Type  CodeableConcept `json:"type"`
	Value string          `json:"value"`
	Name  string          `json:"name,omitempty"`
}

// Consent is a person's choice to permit or deny an action; for HRex, the
// member's permission for one payer to disclose their data to another.
type Consent struct {
	ResourceType      string            `json:"resourceType"` // "Consent"
	ID                string            `json:"id,omitempty"`
	Meta              *Meta             `json:"meta,omitempty"`
	ImplicitRules     string            `json:"implicitRules,omitempty"`
	Extension         []Extension       `json:"extension,omitempty"`
	ModifierExtension []Extension       `json:"modifierExtension,omitempty"`
	Identifier        []Identifier      `json:"identifier,omitempty"`
	Status            string            `json:"status,omitempty"` // draft, proposed, active, rejected, inactive, entered-in-error
	Scope             *CodeableConcept  `json:"scope,omitempty"`
	Category          []CodeableConcept `json:"category,omitempty"`
	Patient           *Reference        `json:"patient,omitempty"`
	DateTime          string            `json:"dateTime,omitempty"`
	Performer         []Reference       `json:"performer,omitempty"`
	Organization      []Reference       `json:"organization,omitempty"`
	SourceReference   *Reference        `json:"sourceReference,omitempty"`
	Policy            []ConsentPolicy   `json:"policy,omitempty"`
	PolicyRule        *CodeableConcept  `json:"policyRule,omitempty"`
	Provision         *ConsentProvision `json:"provision,omitempty"`
}

// ConsentPolicy is Consent.policy: a policy the consent is made under.
type ConsentPolicy struct {
	Authority string `json:"authority,omitempty"`
	URI       string `json:"uri,omitempty"`
}

// ConsentProvision is Consent.provision: what is permitted or denied, to
// whom and when. Nested provisions are exceptions to their parent.
type ConsentProvision struct {
	Extension         []Extension        `json:"extension,omitempty"`
	ModifierExtension []Extension        `json:"modifierExtension,omitempty"`
	Type              string             `json:"type,omitempty"` // deny, permit
	Period            *Period            `json:"period,omitempty"`
	Actor             []ConsentActor     `json:"actor,omitempty"`
	Action            []CodeableConcept  `json:"action,omitempty"`
	SecurityLabel     []Coding           `json:"securityLabel,omitempty"`
	Purpose           []Coding           `json:"purpose,omitempty"`
	Class             []Coding           `json:"class,omitempty"`
	Code              []CodeableConcept  `json:"code,omitempty"`
	DataPeriod        *Period            `json:"dataPeriod,omitempty"`
	Data              []ConsentData      `json:"data,omitempty"`
	Provision         []ConsentProvision `json:"provision,omitempty"`
}

// ConsentActor is Consent.provision.actor: who the provision applies to, in
// what role.
type ConsentActor struct {
	Extension         []Extension     `json:"extension,omitempty"`
	ModifierExtension []Extension     `json:"modifierExtension,omitempty"`
	Role              CodeableConcept `json:"role"`
	Reference         Reference       `json:"reference"`
}

// ConsentData is Consent.provision.data: specific resources the provision
// is about.
type ConsentData struct {
	Meaning   string    `json:"meaning"`
	Reference Reference `json:"reference"`
}

// OperationOutcome reports the outcome of an operation: errors, warnings,
// information.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"` // "OperationOutcome"
	ID           string  `json:"id,omitempty"`
	Issue        []Issue `json:"issue"`
}

// Issue is OperationOutcome.issue.
type Issue struct {
	Severity    string           `json:"severity"` // fatal, error, warning, information
	Code        string           `json:"code"`     // http://hl7.org/fhir/issue-type
	Details     *CodeableConcept `json:"details,omitempty"`
	Diagnostics string           `json:"diagnostics,omitempty"`
	Expression  []string         `json:"expression,omitempty"`
}

// Bundle is a collection of resources.
type Bundle struct {
	ResourceType string        `json:"resourceType"` // "Bundle"
	ID           string        `json:"id,omitempty"`
	Meta         *Meta         `json:"meta,omitempty"`
	Identifier   *Identifier   `json:"identifier,omitempty"`
	Type         string        `json:"type"` // document, message, transaction, batch, searchset, collection, ...
	Timestamp    string        `json:"timestamp,omitempty"`
	Total        *int          `json:"total,omitempty"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// BundleLink is Bundle.link and Bundle.entry.link.
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is Bundle.entry.
type BundleEntry struct {
	Link     []BundleLink    `json:"link,omitempty"`
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Request  *BundleRequest  `json:"request,omitempty"`
	Response *BundleResponse `json:"response,omitempty"`
}

// BundleRequest is Bundle.entry.request, for batches and transactions.
type BundleRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// BundleResponse is Bundle.entry.response.
type BundleResponse struct {
	Status   string          `json:"status"`
	Location string          `json:"location,omitempty"`
	Outcome  json.RawMessage `json:"outcome,omitempty"`
}

// Provenance records who did what to which resources; PDex wants one per
// transmitted resource set, naming the sending payer as Transmitter.
type Provenance struct {
	ResourceType string             `json:"resourceType"` // "Provenance"
	ID           string             `json:"id,omitempty"`
	Meta         *Meta              `json:"meta,omitempty"`
	Target       []Reference        `json:"target"`
	Recorded     string             `json:"recorded"` // instant
	Agent        []ProvenanceAgent  `json:"agent"`
	Entity       []ProvenanceEntity `json:"entity,omitempty"`
}

// ProvenanceAgent is Provenance.agent.
type ProvenanceAgent struct {
	Type       *CodeableConcept `json:"type,omitempty"` // e.g. provenance-participant-type#transmitter
	Who        Reference        `json:"who"`
	OnBehalfOf *Reference       `json:"onBehalfOf,omitempty"`
}

// ProvenanceEntity is Provenance.entity.
type ProvenanceEntity struct {
	Role string    `json:"role"` // derivation, revision, quotation, source, removal
	What Reference `json:"what"`
}

// Transmitter returns the Provenance agent that names org as the
// transmitter of the data (PDex: the payer that sends it).
func Transmitter(org Reference) ProvenanceAgent {
	t := Code(SystemProvenanceParticip, "transmitter")
	return ProvenanceAgent{Type: &t, Who: org}
}

// ResourceType returns the resourceType of the resource JSON raw, or "" if
// raw is not a JSON object with one.
func ResourceType(raw json.RawMessage) string {
	var r struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	return r.ResourceType
}

// DecodeResource decodes the resource JSON raw into dst after checking that
// its resourceType is want.
func DecodeResource(raw json.RawMessage, want string, dst any) error {
	if len(raw) == 0 {
		return fmt.Errorf("no %s resource", want)
	}
	if got := ResourceType(raw); got != want {
		if got == "" {
			return fmt.Errorf("not a FHIR resource (want %s)", want)
		}
		return fmt.Errorf("resourceType is %s, want %s", got, want)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s: %w", want, err)
	}
	return nil
}
