package devstack

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
)

// hrexRequest is the official HRex $member-match example request adapted
// to a member: the demographics of MemberPatient replaced, CoverageToMatch's
// member number set (or removed when ""), and the Consent's period moved to
// cover now.
func hrexRequest(t *testing.T, given, family, birthDate, gender, memberID string) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../pdex/testdata/hrex/member-match-in.json")
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	patient := param(p, 0)
	patient["name"] = []any{map[string]any{"use": "official", "family": family, "given": []any{given}}}
	patient["birthDate"] = birthDate
	if gender == "" {
		delete(patient, "gender")
	} else {
		patient["gender"] = gender
	}
	cov := param(p, 1)
	if memberID == "" {
		delete(cov, "identifier")
	} else {
		cov["identifier"].([]any)[0].(map[string]any)["value"] = memberID
	}
	now := time.Now().UTC()
	provision(p)["period"] = map[string]any{
		"start": now.AddDate(0, -1, 0).Format(time.DateOnly), "end": now.AddDate(0, 6, 0).Format(time.DateOnly),
	}
	return p
}

func param(p map[string]any, i int) map[string]any {
	return p["parameter"].([]any)[i].(map[string]any)["resource"].(map[string]any)
}

func provision(p map[string]any) map[string]any { return param(p, 3)["provision"].(map[string]any) }

func (e *e2e) memberMatch(partner string, body map[string]any) response {
	e.t.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.s.URL+"/fhir/Patient/$member-match", bytes.NewReader(j))
	req.Header.Set("Content-Type", "application/fhir+json")
	if partner != "" {
		req.Header.Set(PartnerHeader, partner)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// refusal checks a 4xx OperationOutcome and returns its outcome codes
// (class, then the consent reason if any).
func refusal(t *testing.T, r response, status int) []string {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/fhir+json" {
		t.Fatalf("status %d %q, want %d: %s", r.status, r.header.Get("Content-Type"), status, r.body)
	}
	var oo fhir.OperationOutcome
	if err := json.Unmarshal(r.body, &oo); err != nil || len(oo.Issue) != 1 || oo.Issue[0].Details == nil {
		t.Fatalf("not an OperationOutcome: %s", r.body)
	}
	var codes []string
	for _, c := range oo.Issue[0].Details.Coding {
		if c.System == pdex.OutcomeSystem {
			codes = append(codes, c.Code)
		}
	}
	for _, s := range []string{"M1000", "Patient/", "Nguyen", "Alice", "1985-04-12", "Jordan"} {
		if bytes.Contains(r.body, []byte(s)) {
			t.Errorf("refusal holds %q: %s", s, r.body)
		}
	}
	return codes
}

// TestMemberMatch runs $member-match against the dev stack's demo members,
// with the identity matcher over the real store, as a new payer would.
func TestMemberMatch(t *testing.T) {
	e := startStack(t)
	failures := 0 // failed matches so far: they count towards the brute-force cap

	t.Run("demo member with member number", func(t *testing.T) {
		r := e.memberMatch(SandboxPartnerID, hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001"))
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/fhir+json" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var out fhir.Parameters
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		var id fhir.Identifier
		if ok, err := out.Param(pdex.ParamMemberIdentifier)[0].Value.Decode("Identifier", &id); !ok || err != nil {
			t.Fatalf("MemberIdentifier: %v %v in %s", ok, err, r.body)
		}
		if id.Value != "M100001" || id.System != export.DefaultMemberIDSystem ||
			!id.Type.Has(fhir.SystemHRexTemp, "UMB") || !id.Type.Has(fhir.SystemV20203, "MB") {
			t.Errorf("MemberIdentifier = %+v", id)
		}
		var ref fhir.Reference
		if ok, _ := out.Param(pdex.ParamMemberID)[0].Value.Decode("Reference", &ref); !ok || ref.Reference != "Patient/"+export.SyntheticPatientID("M100001") {
			t.Errorf("MemberId = %+v", ref)
		}
	})
	t.Run("demo member by demographics alone", func(t *testing.T) {
		r := e.memberMatch(SandboxPartnerID, hrexRequest(t, "Robert", "Okafor", "1972-11-03", "male", ""))
		if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"M100002"`)) {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("sensitive consent is honoured", func(t *testing.T) {
		p := hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")
		param(p, 3)["policy"].([]any)[0].(map[string]any)["uri"] = pdex.PolicySensitive
		if r := e.memberMatch(SandboxPartnerID, p); r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("unknown member", func(t *testing.T) {
		codes := refusal(t, e.memberMatch(SandboxPartnerID, hrexRequest(t, "Zelphina", "Quarrington", "1984-07-19", "female", "")), 422)
		failures++
		if len(codes) != 1 || codes[0] != pdex.OutcomeNoMatch {
			t.Errorf("codes %v", codes)
		}
	})
	t.Run("two members fit", func(t *testing.T) {
		// M100006 and M100007: same name, birth date and address; no sex given.
		codes := refusal(t, e.memberMatch(SandboxPartnerID, hrexRequest(t, "Jordan", "Lee", "1995-03-08", "", "")), 422)
		failures++
		if len(codes) != 1 || codes[0] != pdex.OutcomeMultipleMatches {
			t.Errorf("codes %v", codes)
		}
	})
	t.Run("consent expired", func(t *testing.T) {
		p := hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")
		provision(p)["period"] = map[string]any{"start": "2022-01-01", "end": "2022-01-31"} // as in the HRex example
		codes := refusal(t, e.memberMatch(SandboxPartnerID, p), 422)
		if len(codes) != 2 || codes[0] != pdex.OutcomeConsentDenied || codes[1] != pdex.ConsentPeriod {
			t.Errorf("codes %v", codes)
		}
	})
	t.Run("consent names another recipient", func(t *testing.T) {
		p := hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")
		actor := provision(p)["actor"].([]any)[1].(map[string]any)
		actor["reference"].(map[string]any)["identifier"].(map[string]any)["value"] = "1111111111"
		codes := refusal(t, e.memberMatch(SandboxPartnerID, p), 422)
		if len(codes) != 2 || codes[0] != pdex.OutcomeConsentDenied || codes[1] != pdex.ConsentRecipient {
			t.Errorf("codes %v", codes)
		}
	})
	t.Run("consent from another payer", func(t *testing.T) {
		p := hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")
		actor := provision(p)["actor"].([]any)[0].(map[string]any)
		actor["reference"].(map[string]any)["identifier"].(map[string]any)["value"] = "2222222222"
		codes := refusal(t, e.memberMatch(SandboxPartnerID, p), 422)
		if len(codes) != 2 || codes[1] != pdex.ConsentSource {
			t.Errorf("codes %v", codes)
		}
	})
	t.Run("no partner", func(t *testing.T) {
		refusal(t, e.memberMatch("", hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")), 401)
		refusal(t, e.memberMatch("mallory", hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")), 401)
	})
	t.Run("each decided request is a transfer", func(t *testing.T) {
		// 3 matches, no match, two fit, 3 consents refused; the 401s were
		// not decided. Newest first.
		want := []string{"consent_denied", "consent_denied", "consent_denied", "no_match", "no_match", "complete", "complete", "complete"}
		r := e.do("GET", "/v1/transfers?direction=export&partner_id="+SandboxPartnerID, "", nil)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		items := r.json(t)["items"].([]any)
		if len(items) != len(want) {
			t.Fatalf("%d export transfers of %s, want %d: %s", len(items), SandboxPartnerID, len(want), r.body)
		}
		for i, it := range items {
			tr := it.(map[string]any)
			got := tr["state"].(string)
			if got == "failed" {
				got = tr["error"].(map[string]any)["type"].(string)
			}
			if got != want[i] || tr["partner_id"] != SandboxPartnerID || tr["direction"] != "export" {
				t.Errorf("transfer %d: %s %v, want %s", i, got, tr, want[i])
			}
		}
		// The oldest, Alice's match: its timeline and its audit events.
		id := items[len(items)-1].(map[string]any)["id"].(string)
		tl := e.do("GET", "/v1/transfers/"+id+"/timeline?limit=1000", "", nil)
		var states []string
		for _, ev := range tl.json(t)["events"].([]any) {
			if s, ok := ev.(map[string]any)["state"].(string); ok && s != "" {
				states = append(states, s)
			}
		}
		if strings.Join(states, " ") != "initiated identity_pending consent_verified complete" {
			t.Errorf("timeline states %v: %s", states, tl.body)
		}
		au := e.do("GET", "/v1/audit/events?transfer_id="+id, "", nil)
		if au.status != 200 || bytes.Count(au.body, []byte("\n")) < 5 || !bytes.Contains(au.body, []byte(`"identity_decision"`)) {
			t.Errorf("audit events of %s: %d %s", id, au.status, au.body)
		}
		for _, s := range []string{"Nguyen", "Alice", "1985-04-12", "Okafor", "Zelphina", "Quarrington"} {
			if bytes.Contains(r.body, []byte(s)) || bytes.Contains(tl.body, []byte(s)) || bytes.Contains(au.body, []byte(s)) {
				t.Errorf("the API shows PHI %q", s)
			}
		}
	})
	t.Run("bad request names the parameter", func(t *testing.T) {
		p := hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")
		p["parameter"] = p["parameter"].([]any)[1:] // no MemberPatient
		r := e.memberMatch(SandboxPartnerID, p)
		if codes := refusal(t, r, 400); len(codes) != 1 || codes[0] != pdex.OutcomeInvalid || !bytes.Contains(r.body, []byte("MemberPatient")) {
			t.Errorf("codes %v: %s", codes, r.body)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		// Unpaced: the bucket empties and the answer is 429 with a short
		// wait. Bad requests cost a token but are not failed matches.
		var r response
		for i := 0; i <= pdex.DefaultBurst; i++ {
			if r = e.memberMatch(SandboxPartnerID, map[string]any{"resourceType": "Parameters"}); r.status == http.StatusTooManyRequests {
				break
			}
		}
		codes := refusal(t, r, http.StatusTooManyRequests)
		if len(codes) != 1 || codes[0] != pdex.OutcomeThrottled || r.header.Get("Retry-After") != "1" {
			t.Errorf("codes %v, Retry-After %q", codes, r.header.Get("Retry-After"))
		}
		time.Sleep(time.Second)
	})

	// Probing for members: each unknown person is a failed match; past the
	// cap the partner is refused, even for a member who exists. Paced under
	// the rate limit, so that the cap, not the rate, is what stops it.
	t.Run("brute force", func(t *testing.T) {
		pace := time.Duration(float64(time.Second)/float64(pdex.DefaultRate)) + 20*time.Millisecond
		for i := 0; failures < pdex.DefaultMaxFailures; i++ {
			codes := refusal(t, e.memberMatch(SandboxPartnerID, hrexRequest(t, "Probe", "Person"+strconv.Itoa(i), "1960-01-01", "female", "")), 422)
			if codes[0] != pdex.OutcomeNoMatch {
				t.Fatalf("probe %d: %v", i, codes)
			}
			failures++
			time.Sleep(pace)
		}
		r := e.memberMatch(SandboxPartnerID, hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001"))
		if codes := refusal(t, r, http.StatusTooManyRequests); len(codes) != 1 || codes[0] != pdex.OutcomeTooManyFailures {
			t.Errorf("codes %v", codes)
		}
		if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 60 || n > int(pdex.DefaultFailureWindow/time.Second) {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
	})
}
