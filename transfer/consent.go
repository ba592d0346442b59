package transfer

import "time"

// The one evaluation of a member's consent: the consent asserted with a
// transfer request (Consent) and, through package pdex's adapter, the HRex
// Consent resource a partner sends with $member-match. Each rule is
// declared once here; pdex adds only what is particular to the HRex
// resource (its policies, provision structure and parties).

// Why a consent is not honoured: stable codes, carried in pdex's
// OperationOutcome and in logs.
const (
	ConsentModifier    = "consent_modifier"    // a modifierExtension or implicitRules we do not understand
	ConsentInactive    = "consent_inactive"    // status is not active
	ConsentScope       = "consent_scope"       // not a patient-privacy consent
	ConsentPolicy      = "consent_policy"      // no HRex policy, both, or a policy (scope) we do not know
	ConsentNotPermit   = "consent_not_permit"  // no provision, or it denies
	ConsentConstrained = "consent_constrained" // restrictions HRex prohibits (nested provisions, data, purpose, ...)
	ConsentAction      = "consent_action"      // the actions do not include disclose
	ConsentPeriod      = "consent_period"      // the period is missing, unreadable, or does not cover now
	ConsentRecipient   = "consent_recipient"   // the requester is not a named recipient
	ConsentSource      = "consent_source"      // we are not named as the party that discloses
)

// Refusal is why a consent does not permit disclosure: one of the
// Consent* codes and the reason in words (never PHI).
type Refusal struct {
	Code string
	Why  string
}

// StatusRefusal refuses a consent whose status is not active.
func StatusRefusal(status string) *Refusal {
	if status != "active" {
		return &Refusal{ConsentInactive, "consent is " + status + ", not active"}
	}
	return nil
}

// PeriodRefusal refuses a consent whose period [start, end) does not
// cover now; a zero end leaves the period open.
func PeriodRefusal(start, end, now time.Time) *Refusal {
	switch {
	case start.After(now):
		return &Refusal{ConsentPeriod, "consent period has not started"}
	case !end.IsZero() && !now.Before(end):
		return &Refusal{ConsentPeriod, "consent period has ended"}
	}
	return nil
}

// Refusal returns why consent c does not permit disclosure at now, or nil
// when it does. The scope never denies: regular consent permits
// everything but resources tagged sensitive, which the export leaves out.
func (c Consent) Refusal(now time.Time) *Refusal {
	if r := StatusRefusal(c.Status); r != nil {
		return r
	}
	switch {
	case c.Scope != ScopeRegular && c.Scope != ScopeSensitive:
		return &Refusal{ConsentPolicy, "consent scope is not regular or sensitive"}
	case !c.GrantedAt.IsZero() && c.GrantedAt.After(now):
		return &Refusal{ConsentPeriod, "consent is granted in the future"}
	}
	return PeriodRefusal(c.PeriodStart, c.PeriodEnd, now)
}
