package pdex

import (
	"time"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/transfer"
)

// The HRex consent policies (value set hrex-consent-policy): #regular lets
// us disclose everything but sensitive data, #sensitive everything. We can
// honour both: the export leaves out resources labelled sensitive under a
// regular consent (export.SensitiveLabel).
const (
	PolicyRegular   = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular"
	PolicySensitive = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#sensitive"
)

// Why a consent is not honoured: stable codes (declared with the consent
// evaluation, in package transfer), carried in the OperationOutcome (see
// OutcomeSystem) and in logs.
const (
	ConsentModifier    = transfer.ConsentModifier
	ConsentInactive    = transfer.ConsentInactive
	ConsentScope       = transfer.ConsentScope
	ConsentPolicy      = transfer.ConsentPolicy
	ConsentNotPermit   = transfer.ConsentNotPermit
	ConsentConstrained = transfer.ConsentConstrained
	ConsentAction      = transfer.ConsentAction
	ConsentPeriod      = transfer.ConsentPeriod
	ConsentRecipient   = transfer.ConsentRecipient
	ConsentSource      = transfer.ConsentSource
)

// Party is an organization as a consent names it: by business identifier
// (an NPI, typically), since consents travel between payers that do not
// share resource ids.
type Party struct {
	ID          string            // our id for it: the partner id, or "" for us
	Identifiers []fhir.Identifier // system and value each
}

// Named reports whether r names p by one of its identifiers.
func (p Party) Named(r fhir.Reference) bool {
	if r.Identifier == nil {
		return false
	}
	for _, id := range p.Identifiers {
		if id.Same(*r.Identifier) {
			return true
		}
	}
	return false
}

// ConsentDecision is the outcome of evaluating a consent.
type ConsentDecision struct {
	Permit bool
	// Scope is what the consent lets us disclose when Permit:
	// transfer.ScopeRegular (all but sensitive data) or
	// transfer.ScopeSensitive (everything). Later requests for the member's
	// data re-check it, with Expires.
	Scope string
	// Expires is the last instant of the consent's provision period.
	Expires time.Time
	// Reason is one of the Consent* codes when !Permit.
	Reason string
}

// EvaluateConsent decides whether consent c lets us (holder) disclose the
// member's data to requester at now, as HRex and PDex describe it
// (profile hrex-consent): status active; a patient-privacy scope; exactly
// one HRex policy, #regular or #sensitive, and no policy we do not know; a
// permit provision with no further restrictions, for the disclose action,
// whose period covers now; requester named among the provision's
// recipients (role v3-ParticipationType#IRCP); and, when holder has
// identifiers, holder named among its sources (role
// provenance-participant-type#performer). A modifierExtension or
// implicitRules anywhere in the modelled consent refuses it: we cannot
// honour what we do not understand.
//
// This is the HRex adapter of the one consent evaluation: the status and
// the period are judged by package transfer's rules (StatusRefusal,
// PeriodRefusal), the rest is what the HRex resource adds.
//
// It returns the decision and, when denied, why in words (no PHI).
func EvaluateConsent(c fhir.Consent, requester, holder Party, now time.Time) (ConsentDecision, string) {
	deny := func(reason, why string) (ConsentDecision, string) {
		return ConsentDecision{Reason: reason}, why
	}
	if c.ImplicitRules != "" || len(c.ModifierExtension) > 0 || provisionModifiers(c.Provision) {
		return deny(ConsentModifier, "the consent carries modifiers we do not understand")
	}
	// The rule is the domain's; the words are HRex's own, and never echo
	// the partner's status value back to it.
	if r := transfer.StatusRefusal(c.Status); r != nil {
		return deny(r.Code, "the consent is not active")
	}
	if !c.Scope.Has(fhir.SystemConsentScope, "patient-privacy") {
		return deny(ConsentScope, "the consent is not a patient-privacy consent")
	}

	scope := ""
	for _, p := range c.Policy {
		s := ""
		switch p.URI {
		case PolicyRegular:
			s = transfer.ScopeRegular
		case PolicySensitive:
			s = transfer.ScopeSensitive
		default:
			return deny(ConsentPolicy, "the consent names a policy we do not know")
		}
		if scope != "" && scope != s {
			return deny(ConsentPolicy, "the consent names both the regular and the sensitive policy")
		}
		scope = s
	}
	if c.PolicyRule != nil {
		return deny(ConsentPolicy, "the consent names a policy rule we do not know")
	}
	if scope == "" {
		return deny(ConsentPolicy, "the consent names no HRex policy (#regular or #sensitive)")
	}

	pr := c.Provision
	if pr == nil || pr.Type != "permit" {
		return deny(ConsentNotPermit, "the consent's provision does not permit")
	}
	if len(pr.Provision) > 0 || len(pr.SecurityLabel) > 0 || len(pr.Purpose) > 0 || len(pr.Class) > 0 ||
		len(pr.Code) > 0 || pr.DataPeriod != nil || len(pr.Data) > 0 {
		return deny(ConsentConstrained, "the consent restricts disclosure beyond its policy, which HRex prohibits")
	}
	if len(pr.Action) > 0 && !hasAction(pr.Action, "disclose") {
		return deny(ConsentAction, "the consent does not permit disclosure")
	}

	if pr.Period == nil || pr.Period.Start == "" || pr.Period.End == "" {
		return deny(ConsentPeriod, "the consent's provision has no start and end")
	}
	start, _, err := fhir.DateRange(pr.Period.Start)
	if err != nil {
		return deny(ConsentPeriod, "the consent's provision period start is not a FHIR date")
	}
	_, end, err := fhir.DateRange(pr.Period.End)
	if err != nil {
		return deny(ConsentPeriod, "the consent's provision period end is not a FHIR date")
	}
	if end.Before(start) {
		return deny(ConsentPeriod, "the consent's provision period ends before it starts")
	}
	// end is the period's last instant: the period runs until just after it.
	if r := transfer.PeriodRefusal(start, end.Add(time.Nanosecond), now); r != nil {
		if start.After(now) {
			return deny(r.Code, "the consent's provision period has not started")
		}
		return deny(r.Code, "the consent's provision period has ended")
	}

	if !actorNamed(pr.Actor, fhir.SystemParticipationType, "IRCP", requester) {
		return deny(ConsentRecipient, "the requester is not a recipient named by the consent")
	}
	if len(holder.Identifiers) > 0 && !actorNamed(pr.Actor, fhir.SystemProvenanceParticip, "performer", holder) {
		return deny(ConsentSource, "the consent does not name us as the party that discloses")
	}
	return ConsentDecision{Permit: true, Scope: scope, Expires: end}, ""
}

func provisionModifiers(p *fhir.ConsentProvision) bool {
	if p == nil {
		return false
	}
	if len(p.ModifierExtension) > 0 {
		return true
	}
	for _, a := range p.Actor {
		if len(a.ModifierExtension) > 0 {
			return true
		}
	}
	for i := range p.Provision {
		if provisionModifiers(&p.Provision[i]) {
			return true
		}
	}
	return false
}

func hasAction(actions []fhir.CodeableConcept, code string) bool {
	for i := range actions {
		if actions[i].Has(fhir.SystemConsentAction, code) {
			return true
		}
	}
	return false
}

// actorNamed reports whether an actor in role system#code names p.
func actorNamed(actors []fhir.ConsentActor, system, code string, p Party) bool {
	for _, a := range actors {
		if a.Role.Has(system, code) && p.Named(a.Reference) {
			return true
		}
	}
	return false
}
