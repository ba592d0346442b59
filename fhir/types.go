// Package fhir is a small, hand-written FHIR R4 model: the data types and
// resources that p2p reads and writes when it serves partners (HRex
// $member-match, consent, OperationOutcome, Bundle, Provenance) and the
// clinical and claims resources of a member's record that exports carry
// (Patient, Coverage, Encounter, Condition, ExplanationOfBenefit).
//
// Why by hand: of the Go FHIR model modules, github.com/samply/golang-fhir-models
// (last release v0.3.2, December 2022) and github.com/google/fhir/go
// (v0.7.4, August 2022, protobuf-based) resolve through the module proxy,
// but neither is maintained; the subset we need is small and stable.
//
// Rules the model keeps:
//   - Field names and JSON shapes follow https://hl7.org/fhir/R4; every
//     optional element is omitempty, so what we write holds only what we set.
//   - Unknown elements are ignored on input. What can change the meaning of
//     what we read — modifierExtension and implicitRules — is kept on every
//     type that has it, and ModifierPaths finds it anywhere in a resource's
//     JSON, modelled or not, so that a caller can refuse what it does not
//     understand instead of dropping it silently.
//   - Choice elements (value[x]) keep their type and JSON as read (Value), so
//     a round trip preserves them whatever their type.
//   - Contained resources (Parameters.parameter.resource, Bundle.entry.resource)
//     stay json.RawMessage until decoded with DecodeResource.
package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Code systems and URIs used with this model.
const (
	SystemV20203             = "http://terminology.hl7.org/CodeSystem/v2-0203"
	SystemConfidentiality    = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	SystemICD10CM            = "http://hl7.org/fhir/sid/icd-10-cm"
	SystemSNOMED             = "http://snomed.info/sct"
	SystemClaimType          = "http://terminology.hl7.org/CodeSystem/claim-type"
	SystemAdjudication       = "http://terminology.hl7.org/CodeSystem/adjudication"
	SystemConditionClin      = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	SystemConditionVer       = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	SystemConditionCat       = "http://terminology.hl7.org/CodeSystem/condition-category"
	SystemHRexTemp           = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"
	SystemConsentScope       = "http://terminology.hl7.org/CodeSystem/consentscope"
	SystemConsentAction      = "http://terminology.hl7.org/CodeSystem/consentaction"
	SystemActCode            = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	SystemParticipationType  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	SystemProvenanceParticip = "http://terminology.hl7.org/CodeSystem/provenance-participant-type" // also Provenance.agent.type
	SystemSubscriberRel      = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
	SystemNPI                = "http://hl7.org/fhir/sid/us-npi"
	SystemIssueType          = "http://hl7.org/fhir/issue-type"
)

// Meta is Resource.meta.
type Meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"`
	Profile     []string `json:"profile,omitempty"`
	Security    []Coding `json:"security,omitempty"`
	Tag         []Coding `json:"tag,omitempty"`
}

// Coding is a code from a code system.
type Coding struct {
	System       string `json:"system,omitempty"`
	Version      string `json:"version,omitempty"`
	Code         string `json:"code,omitempty"`
	Display      string `json:"display,omitempty"`
	UserSelected *bool  `json:"userSelected,omitempty"`
}

// CodeableConcept is a concept given by codings and/or text.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Code returns a CodeableConcept with one coding, without a display: what
// a reader matches on is system and code.
func Code(system, code string) CodeableConcept { return CodeDisplay(system, code, "") }

// CodeDisplay returns a CodeableConcept with one coding that carries its
// display too, for what people read (exported records).
func CodeDisplay(system, code, display string) CodeableConcept {
	return CodeableConcept{Coding: []Coding{{System: system, Code: code, Display: display}}}
}

// Has reports whether c holds a coding of code in system.
func (c *CodeableConcept) Has(system, code string) bool {
	if c == nil {
		return false
	}
	for _, cd := range c.Coding {
		if cd.System == system && cd.Code == code {
			return true
		}
	}
	return false
}

// Identifier is a business identifier.
type Identifier struct {
	Use      string           `json:"use,omitempty"`
	Type     *CodeableConcept `json:"type,omitempty"`
	System   string           `json:"system,omitempty"`
	Value    string           `json:"value,omitempty"`
	Period   *Period          `json:"period,omitempty"`
	Assigner *Reference       `json:"assigner,omitempty"`
}

// Same reports whether i and o name the same thing: both have a system and
// a value, and they are equal.
func (i Identifier) Same(o Identifier) bool {
	return i.System != "" && i.Value != "" && i.System == o.System && i.Value == o.Value
}

// Reference points at another resource by URL, by business identifier,
// or both.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Period is a time range; Start and End are FHIR dates or dateTimes (see
// DateRange).
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// HumanName is a person's name.
type HumanName struct {
	Use    string   `json:"use,omitempty"`
	Text   string   `json:"text,omitempty"`
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
	Prefix []string `json:"prefix,omitempty"`
	Suffix []string `json:"suffix,omitempty"`
	Period *Period  `json:"period,omitempty"`
}

// Address is a postal address.
type Address struct {
	Use        string   `json:"use,omitempty"`
	Type       string   `json:"type,omitempty"`
	Text       string   `json:"text,omitempty"`
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	District   string   `json:"district,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
	Country    string   `json:"country,omitempty"`
	Period     *Period  `json:"period,omitempty"`
}

// ContactPoint is a phone number, email address and the like.
type ContactPoint struct {
	System string  `json:"system,omitempty"` // phone, fax, email, pager, url, sms, other
	Value  string  `json:"value,omitempty"`
	Use    string  `json:"use,omitempty"`
	Rank   int     `json:"rank,omitempty"`
	Period *Period `json:"period,omitempty"`
}

// Money is an amount in a currency. Value is always written: a zero amount
// is an amount.
type Money struct {
	Value    float64 `json:"value"`
	Currency string  `json:"currency,omitempty"`
}

// Extension is an extension or modifierExtension.
type Extension struct {
	URL       string      `json:"url"`
	Value     *Value      `json:"-"` // value[x]
	Extension []Extension `json:"extension,omitempty"`
}

// Value is the value of a choice element value[x]: Type is the suffix that
// names its data type ("Identifier" for valueIdentifier), JSON its content
// as read or as set.
type Value struct {
	Type string
	JSON json.RawMessage
}

// NewValue returns the value[x] of type typ holding v.
func NewValue(typ string, v any) (*Value, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &Value{Type: typ, JSON: b}, nil
}

// Decode decodes v into dst if v is of type typ. It reports false, and
// leaves dst alone, when v is nil or of another type.
func (v *Value) Decode(typ string, dst any) (bool, error) {
	if v == nil || v.Type != typ {
		return false, nil
	}
	if err := json.Unmarshal(v.JSON, dst); err != nil {
		return true, fmt.Errorf("value%s: %w", typ, err)
	}
	return true, nil
}

type extHead struct {
	URL string `json:"url"`
}

type extTail struct {
	Extension []Extension `json:"extension,omitempty"`
}

// MarshalJSON writes url, value[x], extension.
func (e Extension) MarshalJSON() ([]byte, error) {
	return marshalWithValue(extHead{e.URL}, e.Value, extTail{e.Extension})
}

// UnmarshalJSON reads an extension with its value[x], whatever its type.
func (e *Extension) UnmarshalJSON(b []byte) error {
	var a struct {
		URL       string      `json:"url"`
		Extension []Extension `json:"extension,omitempty"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	v, err := choice(b, "value")
	if err != nil {
		return fmt.Errorf("extension %q: %w", a.URL, err)
	}
	*e = Extension{URL: a.URL, Value: v, Extension: a.Extension}
	return nil
}

// choice finds the element prefix[x] in the JSON object b: the one key
// that is prefix followed by an upper-case letter. nil when there is none;
// an error when there are several.
func choice(b []byte, prefix string) (*Value, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	var v *Value
	for k, raw := range m {
		if len(k) <= len(prefix) || k[:len(prefix)] != prefix {
			continue
		}
		if c := k[len(prefix)]; c < 'A' || c > 'Z' {
			continue
		}
		if v != nil {
			return nil, fmt.Errorf("more than one %s[x]: %s and %s", prefix, prefix+v.Type, k)
		}
		v = &Value{Type: k[len(prefix):], JSON: raw}
	}
	return v, nil
}

// marshalWithValue writes the fields of head, then "value<Type>", then the
// fields of tail, as one JSON object.
func marshalWithValue(head any, v *Value, tail any) ([]byte, error) {
	h, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	t, err := json.Marshal(tail)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(h[:len(h)-1]) // without '}'
	sep := func() {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
	}
	if v != nil {
		if v.Type == "" || len(v.JSON) == 0 {
			return nil, errors.New("fhir: value[x] without a type or content")
		}
		sep()
		k, _ := json.Marshal("value" + v.Type)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v.JSON)
	}
	if len(t) > 2 {
		sep()
		b.Write(t[1 : len(t)-1])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
