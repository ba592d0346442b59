package pdex

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/transfer"
)

// The parties of the official HRex example: the new payer (recipient) and
// the old payer (source), by NPI.
var (
	newPayer = Party{ID: "new-payer", Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "0123456789"}}}
	oldPayer = Party{Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "9876543210"}}}
)

// exampleConsent is the Consent of the official HRex member-match request.
func exampleConsent(t *testing.T) fhir.Consent {
	t.Helper()
	req := exampleRequest(t)
	return req.Consent
}

func exampleRequest(t *testing.T) *MemberMatchRequest {
	t.Helper()
	b, err := os.ReadFile("testdata/hrex/member-match-in.json")
	if err != nil {
		t.Fatal(err)
	}
	req, perr := ParseMemberMatch(b)
	if perr != nil {
		t.Fatalf("the official example is refused: %v", perr)
	}
	return req
}

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestEvaluateConsent(t *testing.T) {
	inPeriod := day("2022-01-15T12:00:00Z")
	ext := []fhir.Extension{{URL: "http://example.org/x"}}
	cases := []struct {
		name      string
		edit      func(c *fhir.Consent)
		requester Party  // zero: newPayer
		holder    *Party // nil: oldPayer
		now       time.Time
		reason    string // "" = permit
		scope     string
	}{
		{name: "official example, in its period", now: inPeriod, scope: transfer.ScopeRegular},
		{name: "first instant of the period", now: day("2022-01-01T00:00:00Z"), scope: transfer.ScopeRegular},
		{name: "last day of the period counts whole", now: day("2022-01-31T23:59:59Z"), scope: transfer.ScopeRegular},
		{name: "holder not configured: source not checked", holder: &Party{}, now: inPeriod, scope: transfer.ScopeRegular,
			edit: func(c *fhir.Consent) { c.Provision.Actor = c.Provision.Actor[1:] }},
		{name: "sensitive policy", now: inPeriod, scope: transfer.ScopeSensitive,
			edit: func(c *fhir.Consent) { c.Policy[0].URI = PolicySensitive }},
		{name: "no action: applies to every action", now: inPeriod, scope: transfer.ScopeRegular,
			edit: func(c *fhir.Consent) { c.Provision.Action = nil }},

		{name: "before the period", now: day("2021-12-31T23:59:59Z"), reason: ConsentPeriod},
		{name: "expired", now: day("2022-02-01T00:00:00Z"), reason: ConsentPeriod},
		{name: "no end", now: inPeriod, reason: ConsentPeriod, edit: func(c *fhir.Consent) { c.Provision.Period.End = "" }},
		{name: "no period", now: inPeriod, reason: ConsentPeriod, edit: func(c *fhir.Consent) { c.Provision.Period = nil }},
		{name: "unreadable start", now: inPeriod, reason: ConsentPeriod, edit: func(c *fhir.Consent) { c.Provision.Period.Start = "01/01/2022" }},
		{name: "ends before it starts", now: inPeriod, reason: ConsentPeriod, edit: func(c *fhir.Consent) { c.Provision.Period.End = "2021-01-01" }},
		{name: "wrong recipient", requester: Party{ID: "other", Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "1111111111"}}},
			now: inPeriod, reason: ConsentRecipient},
		{name: "requester without identifiers", requester: Party{ID: "new-payer"}, now: inPeriod, reason: ConsentRecipient},
		{name: "requester named as source only", now: inPeriod, reason: ConsentRecipient,
			edit: func(c *fhir.Consent) {
				c.Provision.Actor[1].Role = fhir.Code(fhir.SystemProvenanceParticip, "performer")
			}},
		{name: "recipient by same value, other system", now: inPeriod, reason: ConsentRecipient,
			edit: func(c *fhir.Consent) { c.Provision.Actor[1].Reference.Identifier.System = "http://example.org/ids" }},
		{name: "we are not the source", holder: &Party{Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "5555555555"}}},
			now: inPeriod, reason: ConsentSource},
		{name: "inactive", now: inPeriod, reason: ConsentInactive, edit: func(c *fhir.Consent) { c.Status = "inactive" }},
		{name: "rejected", now: inPeriod, reason: ConsentInactive, edit: func(c *fhir.Consent) { c.Status = "rejected" }},
		{name: "research scope", now: inPeriod, reason: ConsentScope,
			edit: func(c *fhir.Consent) { s := fhir.Code(fhir.SystemConsentScope, "research"); c.Scope = &s }},
		{name: "no policy", now: inPeriod, reason: ConsentPolicy, edit: func(c *fhir.Consent) { c.Policy = nil }},
		{name: "unknown policy", now: inPeriod, reason: ConsentPolicy,
			edit: func(c *fhir.Consent) {
				c.Policy = append(c.Policy, fhir.ConsentPolicy{URI: "http://example.org/other"})
			}},
		{name: "both policies", now: inPeriod, reason: ConsentPolicy,
			edit: func(c *fhir.Consent) { c.Policy = append(c.Policy, fhir.ConsentPolicy{URI: PolicySensitive}) }},
		{name: "policy rule", now: inPeriod, reason: ConsentPolicy,
			edit: func(c *fhir.Consent) { r := fhir.Code("http://example.org", "x"); c.PolicyRule = &r }},
		{name: "deny provision", now: inPeriod, reason: ConsentNotPermit, edit: func(c *fhir.Consent) { c.Provision.Type = "deny" }},
		{name: "no provision", now: inPeriod, reason: ConsentNotPermit, edit: func(c *fhir.Consent) { c.Provision = nil }},
		{name: "nested provision", now: inPeriod, reason: ConsentConstrained,
			edit: func(c *fhir.Consent) { c.Provision.Provision = []fhir.ConsentProvision{{Type: "deny"}} }},
		{name: "purpose restriction", now: inPeriod, reason: ConsentConstrained,
			edit: func(c *fhir.Consent) { c.Provision.Purpose = []fhir.Coding{{Code: "TREAT"}} }},
		{name: "data period restriction", now: inPeriod, reason: ConsentConstrained,
			edit: func(c *fhir.Consent) { c.Provision.DataPeriod = &fhir.Period{Start: "2020"} }},
		{name: "access only", now: inPeriod, reason: ConsentAction,
			edit: func(c *fhir.Consent) {
				c.Provision.Action = []fhir.CodeableConcept{fhir.Code(fhir.SystemConsentAction, "access")}
			}},
		{name: "modifierExtension on the consent", now: inPeriod, reason: ConsentModifier, edit: func(c *fhir.Consent) { c.ModifierExtension = ext }},
		{name: "modifierExtension on the provision", now: inPeriod, reason: ConsentModifier, edit: func(c *fhir.Consent) { c.Provision.ModifierExtension = ext }},
		{name: "modifierExtension on an actor", now: inPeriod, reason: ConsentModifier, edit: func(c *fhir.Consent) { c.Provision.Actor[0].ModifierExtension = ext }},
		{name: "modifierExtension in a nested provision", now: inPeriod, reason: ConsentModifier,
			edit: func(c *fhir.Consent) { c.Provision.Provision = []fhir.ConsentProvision{{ModifierExtension: ext}} }},
		{name: "implicitRules", now: inPeriod, reason: ConsentModifier, edit: func(c *fhir.Consent) { c.ImplicitRules = "http://example.org/rules" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			consent := exampleConsent(t)
			if c.edit != nil {
				c.edit(&consent)
			}
			req, holder := newPayer, oldPayer
			if c.requester.ID != "" {
				req = c.requester
			}
			if c.holder != nil {
				holder = *c.holder
			}
			d, why := EvaluateConsent(consent, req, holder, c.now)
			if c.reason == "" {
				if !d.Permit || d.Scope != c.scope || why != "" {
					t.Fatalf("got %+v (%s), want permit with scope %s", d, why, c.scope)
				}
				if want := day("2022-01-31T23:59:59Z").Add(time.Second - time.Nanosecond); !d.Expires.Equal(want) {
					t.Errorf("Expires = %v, want %v", d.Expires, want)
				}
				return
			}
			if d.Permit || d.Reason != c.reason || why == "" || d.Scope != "" {
				t.Fatalf("got %+v (%q), want denial %s", d, why, c.reason)
			}
		})
	}
}

// The consent is judged on the typed model; a modifier in an element the
// model does not hold is found by the parser (ConsentModifiers).
func TestConsentModifierInUnmodelledElement(t *testing.T) {
	var p map[string]any
	b, _ := os.ReadFile("testdata/hrex/member-match-in.json")
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	consent := p["parameter"].([]any)[3].(map[string]any)["resource"].(map[string]any)
	consent["verification"] = []any{map[string]any{
		"verified":          true,
		"modifierExtension": []any{map[string]any{"url": "http://example.org/not-really"}},
	}}
	b, _ = json.Marshal(p)
	req, perr := ParseMemberMatch(b)
	if perr != nil {
		t.Fatal(perr)
	}
	if len(req.ConsentModifiers) != 1 || req.ConsentModifiers[0] != "Consent.verification.modifierExtension" {
		t.Errorf("ConsentModifiers = %v", req.ConsentModifiers)
	}
}

// The words a partner reads in a refusal are HRex's, and never echo a value
// the partner sent (a status such as "<script>" or "" comes back as "not
// active", not as itself).
func TestConsentRefusalWords(t *testing.T) {
	inPeriod := day("2022-01-15T12:00:00Z")
	cases := []struct {
		name   string
		status string
		now    time.Time
		why    string
	}{
		{"inactive", "inactive", inPeriod, "the consent is not active"},
		{"empty status", "", inPeriod, "the consent is not active"},
		{"status not echoed", "<script>", inPeriod, "the consent is not active"},
		{"before the period", "active", day("2021-12-31T23:59:59Z"), "the consent's provision period has not started"},
		{"after the period", "active", day("2022-02-01T00:00:00Z"), "the consent's provision period has ended"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			consent := exampleConsent(t)
			consent.Status = c.status
			if _, why := EvaluateConsent(consent, newPayer, oldPayer, c.now); why != c.why {
				t.Errorf("why = %q, want %q", why, c.why)
			}
		})
	}
}
