package activities

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/connectors/sandbox"
	"github.com/p2p-payer/p2p/transfer"
)

// eventsOf returns the transfer's events of type typ.
func (f *fixture) eventsOf(t *testing.T, id, typ string) []transfer.Event {
	t.Helper()
	tl, err := f.st.Timeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []transfer.Event
	for _, ev := range tl {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// TestActivitiesRecordTheirDecisions: identity decisions, consent checks
// and failed delivery attempts are recorded by the activity that makes
// them, once, with what an auditor needs and no PHI.
func TestActivitiesRecordTheirDecisions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	q := transfer.Demographics{Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08", Phone: "503-555-0199"}
	f.create(t, "t1", q, activeConsent)
	for range 2 { // a retry records nothing more
		if _, err := f.acts.ResolveIdentity(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
	}
	ids := f.eventsOf(t, "t1", transfer.EventIdentityDecision)
	if len(ids) != 1 {
		t.Fatalf("%d identity decisions recorded, want 1", len(ids))
	}
	d := ids[0].Detail
	if d["status"] != transfer.IdentityAmbiguous || d["rule"] == "" || len(d["candidates"].([]any)) != 2 || d["summary"] == "" {
		t.Errorf("identity decision detail %v", d)
	}
	if tr, _ := f.st.GetTransfer(ctx, "t1"); tr.Identity == nil || tr.Identity.Status != transfer.IdentityAmbiguous {
		t.Errorf("projection identity %+v, want the decision", tr.Identity)
	}

	for _, phase := range []string{"initial", "before_send"} {
		if _, err := f.acts.CheckConsent(ctx, ConsentInput{TransferID: "t1", Phase: phase}); err != nil {
			t.Fatal(err)
		}
	}
	cs := f.eventsOf(t, "t1", transfer.EventConsentChecked)
	if len(cs) != 2 || cs[0].Detail["phase"] != "initial" || cs[1].Detail["phase"] != "before_send" {
		t.Fatalf("consent checks %+v, want initial then before_send", cs)
	}
	want := map[string]any{"phase": "initial", "consent_id": "c1", "asserted_status": "active", "scope": "regular",
		"period_start": rfc3339(activeConsent.PeriodStart), "period_end": rfc3339(activeConsent.PeriodEnd),
		"granted_at": rfc3339(activeConsent.GrantedAt), "result": transfer.ConsentVerified}
	if got, _ := json.Marshal(cs[0].Detail); string(got) != mustJSON(t, want) {
		t.Errorf("consent check detail %s, want %s", got, mustJSON(t, want))
	}

	// A denied consent is recorded with its reason.
	expired := activeConsent
	expired.PeriodEnd = t0.AddDate(0, 0, -1)
	f.create(t, "t2", q, expired)
	if out, err := f.acts.CheckConsent(ctx, ConsentInput{TransferID: "t2", Phase: "initial"}); err != nil || out.Status != transfer.ConsentDenied {
		t.Fatalf("expired consent: %+v %v", out, err)
	}
	if cs := f.eventsOf(t, "t2", transfer.EventConsentChecked); len(cs) != 1 || cs[0].Detail["result"] != transfer.ConsentDenied ||
		cs[0].Detail["reason"] != "consent period has ended" {
		t.Errorf("denied consent recorded as %+v", cs)
	}

	// A failed delivery attempt: partner, endpoint, attempt, HTTP status.
	f.create(t, "t3", transfer.Demographics{MemberID: "M1", BirthDate: "1985-04-12"}, activeConsent)
	p, err := f.acts.PrepareExport(ctx, PrepareInput{TransferID: "t3", MemberID: "M1"})
	if err != nil {
		t.Fatal(err)
	}
	f.partner.FailNext(1, sandbox.Failure{Status: 503})
	in := SendInput{TransferID: "t3", PartnerID: "sandbox", ManifestSHA256: p.Export.ManifestSHA256, SignatureSHA256: p.SignatureSHA256, Files: p.Export.Files}
	if _, err := f.acts.SendExport(ctx, in); err == nil {
		t.Fatal("send to a failing partner succeeded")
	}
	sf := f.eventsOf(t, "t3", transfer.EventSendFailed)
	if len(sf) != 1 {
		t.Fatalf("%d failed sends recorded, want 1", len(sf))
	}
	d = sf[0].Detail
	if d["partner_id"] != "sandbox" || !strings.HasSuffix(d["endpoint"].(string), "/exports") || d["attempt"] != float64(1) ||
		d["http_status"] != float64(503) || d["error_type"] != "partner_unavailable" {
		t.Errorf("failed send detail %v", d)
	}
	s, err := f.acts.SendExport(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if s.HTTPStatus != 200 || s.Attempt != 1 || s.DeliveryKey == "" || !strings.HasSuffix(s.Endpoint, "/exports") {
		t.Errorf("sent %+v, want the HTTP status, attempt, key and endpoint", s)
	}

	for _, id := range []string{"t1", "t2", "t3"} {
		tl, _ := f.st.Timeline(ctx, id)
		raw, _ := json.Marshal(tl)
		for _, v := range []string{"Jordan", "Lee", "1995-03-08", "503-555-0199", "1985-04-12", "Alice", "Nguyen"} {
			if strings.Contains(string(raw), v) {
				t.Errorf("timeline of %s holds PHI %q", id, v)
			}
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEndpointOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:secret@partner.example/fhir/exports?token=abc#x": "https://partner.example/fhir/exports",
		"http://127.0.0.1:8080/exports":                                "http://127.0.0.1:8080/exports",
	} {
		if got := endpointOf(in); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", in, got, want)
		}
	}
}
