package api

import (
	"net/http"
	"strings"
	"testing"
)

// replace swaps the first occurrence of old in the sample body.
func replace(old, new string) string {
	b := body("sandbox")
	if !strings.Contains(b, old) {
		panic("sample body lacks " + old)
	}
	return strings.Replace(b, old, new, 1)
}

func TestCreateTransferMalformedBody(t *testing.T) {
	cases := []struct {
		name   string
		doc    string
		ctype  string // default application/json
		status int
		slug   string
		field  string // named in errors
		secret string // submitted value that must not be echoed
	}{
		{"bad birth date", replace(`"1984-07-19"`, `"1984-19-07"`), "", 400, ProblemValidation, "member.birth_date", "1984-19-07"},
		{"impossible birth date", replace(`"1984-07-19"`, `"1984-02-31"`), "", 400, ProblemValidation, "member.birth_date", "1984-02-31"},
		{"future birth date", replace(`"1984-07-19"`, `"2999-01-01"`), "", 400, ProblemValidation, "member.birth_date", "2999-01-01"},
		{"phone not a string", replace(`"555-0199"`, `5550199`), "", 400, ProblemValidation, "member.phone", "5550199"},
		{"sex not in enum", replace(`"sex": "F"`, `"sex": "Zorblax"`), "", 400, ProblemValidation, "member.sex", "Zorblax"},
		{"bad date-time", replace(`"2025-01-01T00:00:00Z", "end"`, `"2025-02-30T00:00:00Z", "end"`), "", 400, ProblemValidation, "consent.period.start", "2025-02-30"},
		{"bad consent status", replace(`"active"`, `"maybe-Quarrington"`), "", 400, ProblemValidation, "consent.status", "maybe-"},
		{"bad resource type", replace(`"Coverage"]`, `"Zelphina"]`), "", 400, ProblemValidation, "data_scope.resource_types[1]", ""},
		{"missing consent", replace(`"consent": {`, `"consentx": {`), "", 400, ProblemValidation, "consent", ""},
		{"unknown property", replace(`"correlation_id"`, `"correlation"`), "", 400, ProblemValidation, "correlation", "corr-1"},
		{"no names", replace(`"given": "Zelphina", "family": "Quarrington", `, ``), "", 400, ProblemValidation, "member", ""},
		{"period backwards", replace(`"2030-01-01T00:00:00Z"`, `"2020-01-01T00:00:00Z"`), "", 400, ProblemValidation, "consent.period.end", "2020-01-01"},
		{"blank partner", replace(`"partner_id": "sandbox"`, `"partner_id": "   "`), "", 400, ProblemValidation, "partner_id", ""},
		{"invalid JSON", `{"partner_id": "sandbox", "member": {"given": "Zelphina"`, "", 400, ProblemInvalidJSON, "", ""},
		{"not an object", `["Zelphina"]`, "", 400, ProblemValidation, "body", ""},
		{"empty body", ``, "", 400, ProblemValidation, "body", ""},
		{"wrong media type", body("sandbox"), "text/plain", 415, ProblemUnsupportedMediaType, "", ""},
		{"too large", `{"partner_id": "` + strings.Repeat("x", maxBodyBytes) + `"}`, "", 413, ProblemTooLarge, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			hdr := []string{"Idempotency-Key", key}
			if c.ctype != "" {
				hdr = append(hdr, "Content-Type", c.ctype)
			}
			w := e.do(http.MethodPost, "/v1/transfers", c.doc, hdr...)
			p := problem(t, w, c.status, c.slug)
			if c.field != "" && !hasField(p, c.field) {
				t.Errorf("errors = %v, want %s named", fields(p), c.field)
			}
			if c.secret != "" && strings.Contains(w.Body.String(), c.secret) {
				t.Errorf("problem echoes the value %q: %s", c.secret, w.Body)
			}
			if n := e.countTransfers(); n != 0 {
				t.Errorf("transfers = %d, want 0", n)
			}
		})
	}
}

func TestListTransfersBadParams(t *testing.T) {
	cases := []struct {
		query string
		field string
	}{
		{"limit=0", "limit"},
		{"limit=201", "limit"},
		{"limit=abc", "limit"},
		{"state=bogus", "state"},
		{"direction=sideways", "direction"},
		{"cursor=not-a-cursor", "cursor"},
	}
	e := newEnv(t)
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			p := problem(t, e.do(http.MethodGet, "/v1/transfers?"+c.query, ""), http.StatusBadRequest, ProblemValidation)
			if !hasField(p, c.field) {
				t.Errorf("errors = %v, want %s named", fields(p), c.field)
			}
		})
	}
}

func TestRoutesNotInSpec(t *testing.T) {
	e := newEnv(t)
	problem(t, e.do(http.MethodGet, "/v1/nothing", ""), http.StatusNotFound, ProblemNotFound)
	problem(t, e.do(http.MethodDelete, "/v1/transfers", ""), http.StatusMethodNotAllowed, ProblemMethodNotAllowed)
}
