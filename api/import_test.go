package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/transfer"
)

// importBody is a valid import request from the old payer "oldco".
const importBody = `{
  "direction": "import",
  "coverage_to_match": {
    "payer": "oldco", "member_id": "OLD-778", "subscriber_id": "SUB-778",
    "period": {"start": "2021-01-01", "end": "2025-12-31"}
  },
  "member": {
    "member_id": "NEW-1", "given": "Zelphina", "family": "Quarrington", "birth_date": "1984-07-19", "sex": "F",
    "address": {"street": "17 Larkspur Lane", "city": "Springfield", "state": "IL", "postal_code": "62701"},
    "phone": "555-0199"
  },
  "consent": {
    "id": "c-1", "status": "active", "scope": "regular",
    "period": {"start": "2025-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}
  },
  "data_scope": {"resource_types": ["Patient", "Coverage"]}
}`

func importWith(old, new string) string {
	if !strings.Contains(importBody, old) {
		panic("import body lacks " + old)
	}
	return strings.Replace(importBody, old, new, 1)
}

func withPullers(ids ...string) envOption {
	return func(d *Deps) {
		d.Pullers = PartnersFunc(func(id string) bool {
			for _, k := range ids {
				if k == id {
					return true
				}
			}
			return false
		})
		// Exports still check the push registry: an import must not.
		d.Partners = PartnersFunc(func(id string) bool { return id == "sandbox" })
	}
}

func TestCreateImportTransfer(t *testing.T) {
	e := newEnv(t, withPullers("oldco"))
	w := e.post(key, importBody)
	if w.Code != http.StatusAccepted {
		t.Fatalf("status = %d; body %s", w.Code, w.Body)
	}
	v := decode[Transfer](t, w)
	if v.Direction != DirectionImport || v.PartnerId != "oldco" || v.State != TransferStateInitiated {
		t.Fatalf("transfer = %+v, want an initiated import from oldco", v)
	}
	req, err := e.store.GetTransferRequest(context.Background(), v.Id)
	if err != nil {
		t.Fatal(err)
	}
	want := transfer.CoverageToMatch{Payer: "oldco", MemberID: "OLD-778", SubscriberID: "SUB-778", PeriodStart: "2021-01-01", PeriodEnd: "2025-12-31"}
	if req.Direction != transfer.DirectionImport || req.PartnerID != "oldco" || req.CoverageToMatch == nil || *req.CoverageToMatch != want {
		t.Fatalf("stored request = %+v / %+v, want import with %+v", req, req.CoverageToMatch, want)
	}
	if req.Consent.PeriodEnd.IsZero() || req.Member.Family != "Quarrington" || len(req.DataScope.ResourceTypes) != 2 {
		t.Fatalf("stored request lost consent, member or scope: %+v", req)
	}
	tr, err := e.store.GetTransfer(context.Background(), v.Id)
	if err != nil || tr.Direction != transfer.DirectionImport {
		t.Fatalf("stored transfer = %+v, %v", tr, err)
	}
	// The replay is the same bytes; the received event says import and
	// holds no card number.
	r := e.post(key, importBody)
	if r.Code != http.StatusAccepted || r.Body.String() != w.Body.String() || r.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %d %s", r.Code, r.Body)
	}
	evs, err := e.store.Timeline(context.Background(), v.Id)
	if err != nil || len(evs) != 1 || evs[0].Detail["direction"] != "import" {
		t.Fatalf("timeline = %+v, %v", evs, err)
	}
	for k, val := range evs[0].Detail {
		if s, ok := val.(string); ok && (strings.Contains(s, "OLD-778") || strings.Contains(s, "SUB-778")) {
			t.Errorf("received event %s holds the old card: %s", k, s)
		}
	}
	// The same key with another card is another body.
	problem(t, e.post(key, importWith(`"OLD-778"`, `"OLD-779"`)), 422, ProblemIdempotencyKeyReused)
	if got := e.engine.started()[v.Id]; got != 1 {
		t.Errorf("workflow starts = %d, want 1", got)
	}
}

func TestCreateImportTransferInvalid(t *testing.T) {
	cases := []struct {
		name   string
		doc    string
		status int
		slug   string
		field  string
	}{
		{"no coverage", importWith(`"coverage_to_match": {`, `"x": {`), 400, ProblemValidation, "x"},
		{"coverage missing", strings.Replace(importBody, `"coverage_to_match": {
    "payer": "oldco", "member_id": "OLD-778", "subscriber_id": "SUB-778",
    "period": {"start": "2021-01-01", "end": "2025-12-31"}
  },`, "", 1), 400, ProblemValidation, "coverage_to_match"},
		{"no member id on card", importWith(`"member_id": "OLD-778", `, ``), 400, ProblemValidation, "coverage_to_match.member_id"},
		{"blank member id on card", importWith(`"OLD-778"`, `"  "`), 400, ProblemValidation, "coverage_to_match.member_id"},
		{"blank payer", importWith(`"payer": "oldco"`, `"payer": " "`), 400, ProblemValidation, "coverage_to_match.payer"},
		{"partner disagrees", importWith(`"direction": "import",`, `"direction": "import", "partner_id": "sandbox",`), 400, ProblemValidation, "partner_id"},
		{"card period backwards", importWith(`"end": "2025-12-31"`, `"end": "2020-12-31"`), 400, ProblemValidation, "coverage_to_match.period.end"},
		{"bad card date", importWith(`"2021-01-01"`, `"2021-13-01"`), 400, ProblemValidation, "coverage_to_match.period.start"},
		{"no name", importWith(`"given": "Zelphina", "family": "Quarrington", `, ``), 400, ProblemValidation, "member"},
		{"open consent", importWith(`, "end": "2030-01-01T00:00:00Z"`, ``), 400, ProblemValidation, "consent.period.end"},
		{"bad direction", importWith(`"direction": "import"`, `"direction": "sideways"`), 400, ProblemValidation, "direction"},
		{"not a puller", importWith(`"payer": "oldco"`, `"payer": "sandbox"`), 422, ProblemUnknownPartner, "coverage_to_match.payer"},
		{"export with card", importWith(`"direction": "import",`, `"direction": "export", "partner_id": "sandbox",`), 400, ProblemValidation, "coverage_to_match"},
		{"export without partner", importWith(`"direction": "import",`, `"direction": "export",`), 400, ProblemValidation, "partner_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, withPullers("oldco"))
			p := problem(t, e.post(key, c.doc), c.status, c.slug)
			if !hasField(p, c.field) {
				t.Errorf("errors = %v, want %s named", fields(p), c.field)
			}
			if n := e.countTransfers(); n != 0 {
				t.Errorf("transfers = %d, want 0", n)
			}
		})
	}
}
