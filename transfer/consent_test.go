package transfer

import (
	"testing"
	"time"
)

func TestConsentRefusal(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	active := Consent{ID: "c1", Status: "active", Scope: ScopeRegular, PeriodStart: t0.AddDate(0, -1, 0), PeriodEnd: t0.AddDate(1, 0, 0)}
	for _, tc := range []struct {
		name      string
		mod       func(c *Consent)
		code, why string // "": permitted
	}{
		{"active and in period", func(*Consent) {}, "", ""},
		{"sensitive scope", func(c *Consent) { c.Scope = ScopeSensitive }, "", ""},
		{"open-ended period", func(c *Consent) { c.PeriodEnd = time.Time{} }, "", ""},
		{"inactive", func(c *Consent) { c.Status = "inactive" }, ConsentInactive, "consent is inactive, not active"},
		{"rejected", func(c *Consent) { c.Status = "rejected" }, ConsentInactive, "consent is rejected, not active"},
		{"expired", func(c *Consent) { c.PeriodEnd = t0.Add(-time.Second) }, ConsentPeriod, "consent period has ended"},
		{"ends exactly now", func(c *Consent) { c.PeriodEnd = t0 }, ConsentPeriod, "consent period has ended"},
		{"not yet started", func(c *Consent) { c.PeriodStart = t0.Add(time.Hour) }, ConsentPeriod, "consent period has not started"},
		{"granted in the future", func(c *Consent) { c.GrantedAt = t0.Add(time.Hour) }, ConsentPeriod, "consent is granted in the future"},
		{"unknown scope", func(c *Consent) { c.Scope = "everything" }, ConsentPolicy, "consent scope is not regular or sensitive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := active
			tc.mod(&c)
			r := c.Refusal(t0)
			switch {
			case tc.code == "" && r != nil:
				t.Errorf("refused %+v, want permitted", *r)
			case tc.code != "" && (r == nil || r.Code != tc.code || r.Why != tc.why):
				t.Errorf("refusal %+v, want %s %q", r, tc.code, tc.why)
			}
		})
	}
}
