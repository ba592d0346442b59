package pdex

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/transfer"
)

// The parameters of $member-match (HRex profile hrex-parameters-member-match-in).
const (
	ParamMemberPatient    = "MemberPatient"
	ParamCoverageToMatch  = "CoverageToMatch"
	ParamCoverageToLink   = "CoverageToLink"
	ParamConsent          = "Consent"
	ParamMemberIdentifier = "MemberIdentifier" // out
	ParamMemberID         = "MemberId"         // out
)

// MemberMatchRequest is a read and checked $member-match request. It holds
// PHI (Patient): never log it.
type MemberMatchRequest struct {
	Patient         fhir.Patient
	CoverageToMatch fhir.Coverage
	CoverageToLink  *fhir.Coverage // nil when not sent (HRex 0..1)
	Consent         fhir.Consent
	// ConsentJSON is the Consent as received, to keep with the match.
	ConsentJSON json.RawMessage
	// ConsentModifiers are the modifiers found anywhere in the Consent's
	// JSON, modelled elements or not (fhir.ModifierPaths). A consent with
	// any cannot be honoured.
	ConsentModifiers []string
}

// InputError is why a request cannot be read: the parameter (or element)
// at fault and what is wrong, never the values.
type InputError struct {
	Param string // e.g. "MemberPatient" or "MemberPatient.birthDate"; "" for the body
	Code  string // FHIR issue type: invalid, required, structure, not-supported
	Msg   string
}

func (e *InputError) Error() string {
	if e.Param == "" {
		return e.Msg
	}
	return e.Param + ": " + e.Msg
}

// ParseMemberMatch reads a $member-match Parameters resource and checks
// what HRex requires and what matching needs: exactly one MemberPatient
// (a Patient with a name and a full birth date) and one CoverageToMatch
// (a Coverage); at most one CoverageToLink (a Coverage); one Consent (a
// Consent — HRex allows none, but PDex payer-to-payer exchange requires
// it); no other parameter (the profile's slicing is closed); and no
// modifier we do not understand outside the Consent. The Consent's own
// content is judged by EvaluateConsent, not here.
func ParseMemberMatch(body []byte) (*MemberMatchRequest, *InputError) {
	var p fhir.Parameters
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, &InputError{Code: "structure", Msg: "the body is not a FHIR Parameters resource in JSON"}
	}
	if p.ImplicitRules != "" {
		return nil, &InputError{Param: "Parameters.implicitRules", Code: "not-supported", Msg: "implicit rules are not supported"}
	}
	seen := map[string]*fhir.Parameter{}
	for i := range p.Parameter {
		prm := &p.Parameter[i]
		switch prm.Name {
		case ParamMemberPatient, ParamCoverageToMatch, ParamCoverageToLink, ParamConsent:
		default:
			return nil, &InputError{Param: prm.Name, Code: "not-supported", Msg: "is not a parameter of $member-match"}
		}
		if seen[prm.Name] != nil {
			return nil, &InputError{Param: prm.Name, Code: "invalid", Msg: "appears more than once"}
		}
		seen[prm.Name] = prm
		if len(prm.ModifierExtension) > 0 {
			return nil, &InputError{Param: prm.Name, Code: "not-supported", Msg: "carries a modifierExtension we do not understand"}
		}
		if prm.Value != nil || len(prm.Part) > 0 {
			return nil, &InputError{Param: prm.Name, Code: "invalid", Msg: "must carry a resource, not a value or parts"}
		}
	}

	var req MemberMatchRequest
	if err := resource(seen, ParamMemberPatient, "Patient", &req.Patient, true); err != nil {
		return nil, err
	}
	if err := resource(seen, ParamCoverageToMatch, "Coverage", &req.CoverageToMatch, true); err != nil {
		return nil, err
	}
	var link fhir.Coverage
	if seen[ParamCoverageToLink] != nil {
		if err := resource(seen, ParamCoverageToLink, "Coverage", &link, true); err != nil {
			return nil, err
		}
		req.CoverageToLink = &link
	}
	if seen[ParamConsent] == nil {
		return nil, &InputError{Param: ParamConsent, Code: "required", Msg: "is required: payer-to-payer exchange needs the member's consent (PDex)"}
	}
	if err := resource(seen, ParamConsent, "Consent", &req.Consent, false); err != nil {
		return nil, err
	}
	req.ConsentJSON = seen[ParamConsent].Resource
	req.ConsentModifiers, _ = fhir.ModifierPaths(req.ConsentJSON) // it decoded, so it parses

	if _, err := bestName(req.Patient); err != nil {
		return nil, err
	}
	if len(req.Patient.BirthDate) != len(time.DateOnly) {
		return nil, &InputError{Param: ParamMemberPatient + ".birthDate", Code: "required", Msg: "a full birth date (YYYY-MM-DD) is required"}
	}
	if _, err := time.Parse(time.DateOnly, req.Patient.BirthDate); err != nil {
		return nil, &InputError{Param: ParamMemberPatient + ".birthDate", Code: "invalid", Msg: "is not a valid date"}
	}
	return &req, nil
}

// resource decodes the resource of parameter name into dst. With
// noModifiers, a modifier anywhere in it is an error.
func resource(seen map[string]*fhir.Parameter, name, typ string, dst any, noModifiers bool) *InputError {
	prm := seen[name]
	if prm == nil {
		return &InputError{Param: name, Code: "required", Msg: "is required"}
	}
	if len(prm.Resource) == 0 {
		return &InputError{Param: name, Code: "required", Msg: "must carry a " + typ + " resource"}
	}
	if err := fhir.DecodeResource(prm.Resource, typ, dst); err != nil {
		// The decoder's message names types and fields, never values.
		return &InputError{Param: name, Code: "invalid", Msg: "must be a valid " + typ + " resource"}
	}
	if noModifiers {
		if paths, err := fhir.ModifierPaths(prm.Resource); err != nil || len(paths) > 0 {
			return &InputError{Param: name, Code: "not-supported", Msg: "carries modifiers we do not understand (" + strings.Join(paths, ", ") + ")"}
		}
	}
	return nil
}

// bestName is the official name, else the usual one, else the first that
// has a family or given name.
func bestName(p fhir.Patient) (fhir.HumanName, *InputError) {
	var best *fhir.HumanName
	rank := func(use string) int {
		switch use {
		case "official":
			return 3
		case "usual", "":
			return 2
		case "old", "anonymous":
			return 0
		}
		return 1
	}
	for i := range p.Name {
		n := &p.Name[i]
		if n.Family == "" && len(n.Given) == 0 {
			continue
		}
		if best == nil || rank(n.Use) > rank(best.Use) {
			best = n
		}
	}
	if best == nil {
		return fhir.HumanName{}, &InputError{Param: ParamMemberPatient + ".name", Code: "required", Msg: "a name with a family or given name is required"}
	}
	return *best, nil
}

// Demographics are the request's member as our matcher takes them. The
// member id comes from CoverageToMatch, the member's card with us: its
// identifier typed MB (member number), else its subscriberId when the
// member is the subscriber. A subscriber id of a dependent names someone
// else, so it is not used.
func (r *MemberMatchRequest) Demographics() transfer.Demographics {
	p := r.Patient
	n, _ := bestName(p)
	d := transfer.Demographics{Family: n.Family, BirthDate: p.BirthDate}
	if len(n.Given) > 0 {
		d.Given = n.Given[0]
	}
	switch p.Gender {
	case "female":
		d.Sex = "F"
	case "male":
		d.Sex = "M"
	}
	if a := homeAddress(p.Address); a != nil {
		d.Address = transfer.Address{Street: strings.Join(a.Line, " "), City: a.City, State: a.State, PostalCode: a.PostalCode}
	}
	for _, t := range p.Telecom {
		if t.System == "phone" && t.Value != "" && t.Use != "old" {
			d.Phone = t.Value
			break
		}
	}
	d.MemberID = memberID(r.CoverageToMatch)
	return d
}

func homeAddress(as []fhir.Address) *fhir.Address {
	var best *fhir.Address
	for i := range as {
		a := &as[i]
		if a.Use == "old" || a.Use == "billing" {
			continue
		}
		if a.Use == "home" {
			return a
		}
		if best == nil {
			best = a
		}
	}
	return best
}

func memberID(c fhir.Coverage) string {
	for _, id := range c.Identifier {
		if id.Value != "" && id.Type.Has(fhir.SystemV20203, "MB") {
			return id.Value
		}
	}
	if c.SubscriberID != "" && c.Relationship.Has(fhir.SystemSubscriberRel, "self") {
		return c.SubscriberID
	}
	return ""
}
