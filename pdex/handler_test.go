package pdex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

// PHI of the official example request: no answer but a 200 and no log line
// may hold any.
var examplePHI = []string{"Patricia", "Person", "1974-12-25", "DH10001235"}

type fakeMatcher struct {
	mu    sync.Mutex
	dec   identity.Decision
	err   error
	calls int
	last  transfer.Demographics
}

func (m *fakeMatcher) Resolve(_ context.Context, q transfer.Demographics) (identity.Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	m.last = q
	return m.dec, m.err
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t     *testing.T
	h     *Handler
	m     *fakeMatcher
	clock *clock
	logs  *observer.ObservedLogs
}

const partnerHeader = "X-Test-Partner"

func newHarness(t *testing.T, edit func(*Deps)) *harness {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	hs := &harness{t: t, m: &fakeMatcher{dec: identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M100001",
		Rationale: transfer.Rationale{Rule: identity.RuleProbabilistic}}},
		clock: &clock{t: day("2022-01-15T12:00:00Z")}, logs: logs}
	parties := map[string]Party{"new-payer": newPayer, "stranger": {ID: "stranger", Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "1111111111"}}}}
	d := Deps{
		Matcher:   hs.m,
		Requester: HeaderRequester(partnerHeader, func(id string) bool { _, ok := parties[id]; return ok }),
		Parties: func(id string) (Party, bool) {
			p, ok := parties[id]
			return p, ok
		},
		Holder:         oldPayer,
		MemberIDSystem: "https://old-payer.example/fhir/sid/member-id",
		PayerName:      "Old Health Plan",
		PatientRef:     func(id string) string { return "Patient/pat-" + id },
		Logger:         zap.New(core),
		Now:            hs.clock.now,
	}
	if edit != nil {
		edit(&d)
	}
	h, err := NewHandler(d)
	if err != nil {
		t.Fatal(err)
	}
	hs.h = h
	return hs
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (hs *harness) post(partner string, body []byte, contentType string) answer {
	hs.t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/Patient/$member-match", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if partner != "" {
		r.Header.Set(partnerHeader, partner)
	}
	w := httptest.NewRecorder()
	hs.h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return answer{w.Code, w.Result().Header, b}
}

func (hs *harness) match(partner string, body []byte) answer {
	return hs.post(partner, body, "application/fhir+json")
}

// noPHI fails if the answer body or any log line holds the example's PHI.
func (hs *harness) noPHI(a answer) {
	hs.t.Helper()
	for _, s := range examplePHI {
		if bytes.Contains(a.body, []byte(s)) {
			hs.t.Errorf("answer %d holds PHI %q: %s", a.status, s, a.body)
		}
	}
	for _, e := range hs.logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		for _, s := range append(examplePHI, "M100001", "M100002") {
			if strings.Contains(line, s) {
				hs.t.Errorf("log line holds %q: %s", s, line)
			}
		}
	}
}

func exampleBody(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/hrex/member-match-in.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func outcomeOf(t *testing.T, a answer) fhir.Issue {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/fhir+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var oo fhir.OperationOutcome
	if err := json.Unmarshal(a.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 {
		t.Fatalf("not an OperationOutcome with one issue: %v %s", err, a.body)
	}
	return oo.Issue[0]
}

// class is the outcome class in the issue's details.
func class(is fhir.Issue) string {
	if is.Details == nil || len(is.Details.Coding) == 0 || is.Details.Coding[0].System != OutcomeSystem {
		return ""
	}
	return is.Details.Coding[0].Code
}

func TestMemberMatchOfficialExample(t *testing.T) {
	hs := newHarness(t, nil)
	a := hs.match("new-payer", exampleBody(t))
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/fhir+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	want := transfer.Demographics{Given: "Patricia", Family: "Person", BirthDate: "1974-12-25", Sex: "F", MemberID: "DH10001235"}
	if hs.m.last != want {
		t.Errorf("matcher got %+v, want %+v", hs.m.last, want)
	}
	for _, ex := range []string{"member-match-out.json", "member-match-out-stu1.json"} {
		t.Run(ex, func(t *testing.T) { conformsTo(t, a.body, "testdata/hrex/"+ex) })
	}
	var out fhir.Parameters
	if err := json.Unmarshal(a.body, &out); err != nil {
		t.Fatal(err)
	}
	var id fhir.Identifier
	if ok, err := out.Param(ParamMemberIdentifier)[0].Value.Decode("Identifier", &id); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if id.Value != "M100001" || id.System != "https://old-payer.example/fhir/sid/member-id" || id.Assigner.Display != "Old Health Plan" {
		t.Errorf("MemberIdentifier = %+v", id)
	}
	var ref fhir.Reference
	if ok, _ := out.Param(ParamMemberID)[0].Value.Decode("Reference", &ref); !ok || ref.Reference != "Patient/pat-M100001" {
		t.Errorf("MemberId = %+v", ref)
	}
	hs.noPHI(answer{}) // logs only: the 200 carries the member's id by design
}

// conformsTo checks our response against the shape of an official HRex
// response example: the same parameter names, each with the same kind of
// value; the example's identifier type codings all present in ours (the
// profile's pattern); system, value and assigner where the example has
// them; and no parameter the profile does not define.
func conformsTo(t *testing.T, got []byte, examplePath string) {
	t.Helper()
	exb, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var ex, ours fhir.Parameters
	if err := json.Unmarshal(exb, &ex); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &ours); err != nil || ours.ResourceType != "Parameters" {
		t.Fatalf("not Parameters: %v", err)
	}
	for _, p := range ours.Parameter {
		if p.Name != ParamMemberIdentifier && p.Name != ParamMemberID {
			t.Errorf("parameter %q is not in hrex-parameters-member-match-out", p.Name)
		}
	}
	for _, e := range ex.Parameter {
		o := ours.Param(e.Name)
		if len(o) != 1 {
			t.Errorf("%s: %d parameters, want 1", e.Name, len(o))
			continue
		}
		if o[0].Value == nil || e.Value == nil || o[0].Value.Type != e.Value.Type || o[0].Resource != nil {
			t.Errorf("%s: value %+v, want a value%s", e.Name, o[0].Value, e.Value.Type)
			continue
		}
		switch e.Value.Type {
		case "Identifier":
			var want, have fhir.Identifier
			_, _ = e.Value.Decode("Identifier", &want)
			if _, err := o[0].Value.Decode("Identifier", &have); err != nil {
				t.Fatal(err)
			}
			for _, c := range want.Type.Coding {
				if !have.Type.Has(c.System, c.Code) {
					t.Errorf("%s.type lacks %s#%s", e.Name, c.System, c.Code)
				}
			}
			if (want.System != "") != (have.System != "") || have.Value == "" ||
				(want.Assigner != nil && (have.Assigner == nil || have.Assigner.Display == "")) {
				t.Errorf("%s = %+v, example %+v", e.Name, have, want)
			}
		case "Reference":
			var have fhir.Reference
			if _, err := o[0].Value.Decode("Reference", &have); err != nil || !strings.Contains(have.Reference, "Patient/") {
				t.Errorf("%s = %+v (%v), want a Patient reference", e.Name, have, err)
			}
		}
	}
}

func TestMemberMatchRefusals(t *testing.T) {
	body := exampleBody(t)
	expired := func(d *Deps) { d.Now = func() time.Time { return day("2023-01-01T00:00:00Z") } }
	cases := []struct {
		name    string
		deps    func(*Deps)
		partner string
		dec     identity.Decision
		err     error
		status  int
		code    string // FHIR issue type
		class   string
		matched bool // the matcher was asked
	}{
		{name: "no match", dec: identity.Decision{Outcome: identity.OutcomeNoMatch}, status: 422, code: "not-found", class: OutcomeNoMatch, matched: true},
		{name: "review band", dec: identity.Decision{Outcome: identity.OutcomeReview, MemberID: "M100001", Candidates: []string{"M100001", "M100002"}},
			status: 422, code: "multiple-matches", class: OutcomeMultipleMatches, matched: true},
		{name: "one candidate under review", dec: identity.Decision{Outcome: identity.OutcomeReview, MemberID: "M100001", Candidates: []string{"M100001"}},
			status: 422, code: "multiple-matches", class: OutcomeMultipleMatches, matched: true},
		{name: "consent expired", deps: expired, status: 422, code: "business-rule", class: OutcomeConsentDenied},
		{name: "requester not the consent's recipient", partner: "stranger", status: 422, code: "business-rule", class: OutcomeConsentDenied},
		{name: "matcher fails", err: errors.New("index unavailable"), status: 500, code: "exception", class: OutcomeError, matched: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hs := newHarness(t, c.deps)
			hs.m.dec, hs.m.err = c.dec, c.err
			partner := c.partner
			if partner == "" {
				partner = "new-payer"
			}
			a := hs.match(partner, body)
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			is := outcomeOf(t, a)
			if is.Code != c.code || class(is) != c.class || is.Severity != "error" {
				t.Errorf("issue %+v, want %s / %s", is, c.code, c.class)
			}
			if (hs.m.calls > 0) != c.matched {
				t.Errorf("matcher asked %d times", hs.m.calls)
			}
			for _, id := range []string{"M100001", "M100002", "Patient"} {
				if bytes.Contains(a.body, []byte(id)) {
					t.Errorf("refusal names %q: %s", id, a.body)
				}
			}
			hs.noPHI(a)
		})
	}
}

func TestConsentRefusalNamesReason(t *testing.T) {
	hs := newHarness(t, func(d *Deps) { d.Now = func() time.Time { return day("2023-01-01T00:00:00Z") } })
	is := outcomeOf(t, hs.match("new-payer", exampleBody(t)))
	if len(is.Details.Coding) != 2 || is.Details.Coding[1] != (fhir.Coding{System: OutcomeSystem, Code: ConsentPeriod}) {
		t.Errorf("details = %+v", is.Details)
	}
	if len(is.Expression) != 1 || !strings.Contains(is.Expression[0], "Consent") {
		t.Errorf("expression = %v", is.Expression)
	}
}

func TestConsentWithUnmodelledModifierRefused(t *testing.T) {
	var p map[string]any
	if err := json.Unmarshal(exampleBody(t), &p); err != nil {
		t.Fatal(err)
	}
	consent := p["parameter"].([]any)[3].(map[string]any)["resource"].(map[string]any)
	consent["verification"] = []any{map[string]any{"verified": true, "modifierExtension": []any{map[string]any{"url": "http://example.org/x"}}}}
	b, _ := json.Marshal(p)
	hs := newHarness(t, nil)
	a := hs.match("new-payer", b)
	if a.status != 422 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if is := outcomeOf(t, a); is.Details.Coding[1].Code != ConsentModifier {
		t.Errorf("details = %+v", is.Details)
	}
	if hs.m.calls != 0 {
		t.Error("matched despite a refused consent")
	}
}

// edit returns the official example with f applied to its JSON.
func edit(t *testing.T, f func(params []any) []any) []byte {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(exampleBody(t), &p); err != nil {
		t.Fatal(err)
	}
	p["parameter"] = f(p["parameter"].([]any))
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func resourceOf(params []any, i int) map[string]any {
	return params[i].(map[string]any)["resource"].(map[string]any)
}

func TestMemberMatchBadRequests(t *testing.T) {
	drop := func(i int) func([]any) []any {
		return func(ps []any) []any { return append(ps[:i:i], ps[i+1:]...) }
	}
	cases := []struct {
		name  string
		body  []byte
		ct    string
		param string // expected in the diagnostics and the expression
		want  int
	}{
		{name: "not JSON", body: []byte("Patricia Person 1974-12-25"), want: 400},
		{name: "not Parameters", body: []byte(`{"resourceType":"Patient","name":[{"family":"Person"}]}`), want: 400},
		{name: "no MemberPatient", body: edit(t, drop(0)), param: ParamMemberPatient, want: 400},
		{name: "no CoverageToMatch", body: edit(t, drop(1)), param: ParamCoverageToMatch, want: 400},
		{name: "no Consent", body: edit(t, drop(3)), param: ParamConsent, want: 400},
		{name: "CoverageToLink is optional", body: edit(t, drop(2)), want: 200},
		{name: "MemberPatient twice", body: edit(t, func(ps []any) []any { return append(ps, ps[0]) }), param: ParamMemberPatient, want: 400},
		{name: "unknown parameter", body: edit(t, func(ps []any) []any { return append(ps, map[string]any{"name": "Extra", "valueString": "x"}) }), param: "Extra", want: 400},
		{name: "MemberPatient is a Coverage", body: edit(t, func(ps []any) []any {
			ps[0].(map[string]any)["resource"] = resourceOf(ps, 1)
			return ps
		}), param: ParamMemberPatient, want: 400},
		{name: "CoverageToMatch as a value", body: edit(t, func(ps []any) []any {
			ps[1] = map[string]any{"name": "CoverageToMatch", "valueString": "DH10001235"}
			return ps
		}), param: ParamCoverageToMatch, want: 400},
		{name: "Consent is a Patient", body: edit(t, func(ps []any) []any {
			ps[3].(map[string]any)["resource"] = resourceOf(ps, 0)
			return ps
		}), param: ParamConsent, want: 400},
		{name: "no birth date", body: edit(t, func(ps []any) []any { delete(resourceOf(ps, 0), "birthDate"); return ps }), param: "MemberPatient.birthDate", want: 400},
		{name: "birth year only", body: edit(t, func(ps []any) []any { resourceOf(ps, 0)["birthDate"] = "1974"; return ps }), param: "MemberPatient.birthDate", want: 400},
		{name: "impossible birth date", body: edit(t, func(ps []any) []any { resourceOf(ps, 0)["birthDate"] = "1974-02-30"; return ps }), param: "MemberPatient.birthDate", want: 400},
		{name: "no name", body: edit(t, func(ps []any) []any { delete(resourceOf(ps, 0), "name"); return ps }), param: "MemberPatient.name", want: 400},
		{name: "modifier on MemberPatient", body: edit(t, func(ps []any) []any {
			resourceOf(ps, 0)["modifierExtension"] = []any{map[string]any{"url": "http://example.org/x"}}
			return ps
		}), param: ParamMemberPatient, want: 400},
		{name: "modifier on CoverageToMatch class", body: edit(t, func(ps []any) []any {
			resourceOf(ps, 1)["class"].([]any)[0].(map[string]any)["modifierExtension"] = []any{map[string]any{"url": "http://example.org/x"}}
			return ps
		}), param: ParamCoverageToMatch, want: 400},
		{name: "wrong content type", body: exampleBody(t), ct: "text/plain", want: 415},
		{name: "plain JSON is fine", body: exampleBody(t), ct: "application/json; charset=utf-8", want: 200},
		{name: "FHIR JSON with a version", body: exampleBody(t), ct: "application/fhir+json; fhirVersion=4.0", want: 200},
		{name: "too large", body: append(exampleBody(t), bytes.Repeat([]byte(" "), maxBody)...), want: 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hs := newHarness(t, nil)
			ct := c.ct
			if ct == "" {
				ct = "application/fhir+json"
			}
			a := hs.post("new-payer", c.body, ct)
			if a.status != c.want {
				t.Fatalf("status %d, want %d: %s", a.status, c.want, a.body)
			}
			if c.want == 200 {
				return
			}
			is := outcomeOf(t, a)
			if class(is) != OutcomeInvalid {
				t.Errorf("class %q", class(is))
			}
			if c.param != "" {
				if !strings.Contains(is.Diagnostics, c.param) || len(is.Expression) != 1 || !strings.Contains(is.Expression[0], strings.Split(c.param, ".")[0]) {
					t.Errorf("issue does not name %s: %+v", c.param, is)
				}
			}
			if hs.m.calls != 0 {
				t.Error("a bad request reached the matcher")
			}
			hs.noPHI(a)
		})
	}
}

func TestMemberMatchUnauthenticated(t *testing.T) {
	hs := newHarness(t, nil)
	for _, partner := range []string{"", "unknown-partner"} {
		a := hs.match(partner, exampleBody(t))
		if a.status != http.StatusUnauthorized || class(outcomeOf(t, a)) != OutcomeUnauthenticated {
			t.Errorf("%q: status %d: %s", partner, a.status, a.body)
		}
	}
	if hs.m.calls != 0 {
		t.Error("matched for an unauthenticated request")
	}
}

func TestRoutes(t *testing.T) {
	hs := newHarness(t, nil)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/Patient/$member-match", 405},
		{http.MethodPost, "/Patient/$everything", 404},
		{http.MethodGet, "/metadata", 404},
	} {
		w := httptest.NewRecorder()
		hs.h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.want || w.Header().Get("Content-Type") != "application/fhir+json" {
			t.Errorf("%s %s: %d %q", c.method, c.path, w.Code, w.Header().Get("Content-Type"))
		}
	}
}

func TestOnMatch(t *testing.T) {
	var got []Match
	hs := newHarness(t, func(d *Deps) {
		d.OnMatch = func(_ context.Context, m Match) error { got = append(got, m); return nil }
	})
	if a := hs.match("new-payer", exampleBody(t)); a.status != 200 {
		t.Fatalf("status %d", a.status)
	}
	if len(got) != 1 {
		t.Fatalf("OnMatch ran %d times", len(got))
	}
	m := got[0]
	if m.Requester != "new-payer" || m.MemberID != "M100001" || !m.Consent.Permit || m.Consent.Scope != transfer.ScopeRegular ||
		m.CoverageToLink == nil || m.CoverageToLink.ID != "AA87654" || fhir.ResourceType(m.ConsentJSON) != "Consent" || !m.At.Equal(hs.clock.now()) {
		t.Errorf("Match = %+v", m)
	}

	failing := newHarness(t, func(d *Deps) {
		d.OnMatch = func(context.Context, Match) error { return errors.New("store down") }
	})
	a := failing.match("new-payer", exampleBody(t))
	if a.status != 500 || bytes.Contains(a.body, []byte("M100001")) {
		t.Errorf("status %d: %s", a.status, a.body)
	}
}

func retryAfter(t *testing.T, a answer) int {
	t.Helper()
	n, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q", a.header.Get("Retry-After"))
	}
	return n
}

func TestRateLimit(t *testing.T) {
	hs := newHarness(t, func(d *Deps) { d.Rate, d.Burst = 0.5, 3 }) // one token every 2 s
	body := exampleBody(t)
	for i := 0; i < 3; i++ {
		if a := hs.match("new-payer", body); a.status != 200 {
			t.Fatalf("request %d: %d", i, a.status)
		}
	}
	a := hs.match("new-payer", body)
	if a.status != http.StatusTooManyRequests || class(outcomeOf(t, a)) != OutcomeThrottled {
		t.Fatalf("4th request: %d %s", a.status, a.body)
	}
	if n := retryAfter(t, a); n != 2 {
		t.Errorf("Retry-After %d, want 2", n)
	}
	// Another partner has its own bucket (its consent fails, but it is not throttled).
	if a := hs.match("stranger", body); a.status != 422 {
		t.Errorf("other partner: %d", a.status)
	}
	hs.clock.add(2 * time.Second)
	if a := hs.match("new-payer", body); a.status != 200 {
		t.Errorf("after Retry-After: %d", a.status)
	}
	if hs.m.calls != 4 {
		t.Errorf("matcher asked %d times, want 4", hs.m.calls)
	}
}

// throttleModes are the two places failed matches are counted: this
// process's memory, and the store (every process).
var throttleModes = []struct {
	name string
	edit func(t *testing.T, maxFailures int, window time.Duration) func(*Deps)
}{
	{"memory", func(_ *testing.T, maxFailures int, window time.Duration) func(*Deps) {
		return func(d *Deps) { d.MaxFailures, d.FailureWindow = maxFailures, window }
	}},
	{"store", func(t *testing.T, maxFailures int, window time.Duration) func(*Deps) {
		st := openStore(t)
		return func(d *Deps) { d.Throttle = NewSharedThrottle(0, 0, maxFailures, window, st) }
	}},
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

func TestFailedMatchCap(t *testing.T) {
	for _, mode := range throttleModes {
		t.Run(mode.name, func(t *testing.T) {
			hs := newHarness(t, mode.edit(t, 3, 10*time.Minute))
			body := exampleBody(t)
			hs.m.dec = identity.Decision{Outcome: identity.OutcomeNoMatch}
			for i := 0; i < 2; i++ {
				if a := hs.match("new-payer", body); a.status != 422 {
					t.Fatalf("probe %d: %d", i, a.status)
				}
			}
			// A success in between does not reset the count.
			hs.m.dec = identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M100001"}
			if a := hs.match("new-payer", body); a.status != 200 {
				t.Fatalf("match: %d", a.status)
			}
			hs.clock.add(2 * time.Minute)
			hs.m.dec = identity.Decision{Outcome: identity.OutcomeReview, Candidates: []string{"a", "b"}}
			if a := hs.match("new-payer", body); a.status != 422 {
				t.Fatalf("probe 3: %d", a.status)
			}
			hs.clock.add(time.Minute)
			a := hs.match("new-payer", body)
			if a.status != http.StatusTooManyRequests || class(outcomeOf(t, a)) != OutcomeTooManyFailures {
				t.Fatalf("after 3 failures: %d %s", a.status, a.body)
			}
			if n := retryAfter(t, a); n != 7*60 {
				t.Errorf("Retry-After %d, want until the first failure leaves the window (420)", n)
			}
			calls := hs.m.calls
			// Throttled requests are not matched at all; another partner is
			// not throttled.
			if hs.match("new-payer", body); hs.m.calls != calls {
				t.Error("a throttled request reached the matcher")
			}
			if a := hs.match("stranger", body); a.status == http.StatusTooManyRequests {
				t.Errorf("another partner throttled: %d", a.status)
			}
			// The window slides: once the first two failures leave it, one
			// is left; two more failures cap again, until the third leaves.
			hs.clock.add(7 * time.Minute)
			hs.m.dec = identity.Decision{Outcome: identity.OutcomeNoMatch}
			for i := 0; i < 2; i++ {
				if a := hs.match("new-payer", body); a.status != 422 {
					t.Fatalf("next window, probe %d: %d", i, a.status)
				}
			}
			a = hs.match("new-payer", body)
			if a.status != http.StatusTooManyRequests || retryAfter(t, a) != 2*60 {
				t.Errorf("capped again: %d, Retry-After %q, want 120", a.status, a.header.Get("Retry-After"))
			}
			hs.clock.add(2 * time.Minute)
			hs.m.dec = identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M100001"}
			if a := hs.match("new-payer", body); a.status != 200 {
				t.Errorf("after the window: %d", a.status)
			}
			hs.noPHI(a)
		})
	}
}

// Two processes over one store (the API and a worker, or two replicas)
// share one failed-match count.
func TestFailedMatchCapShared(t *testing.T) {
	st := openStore(t)
	shared := func(d *Deps) { d.Throttle = NewSharedThrottle(0, 0, 3, 10*time.Minute, st) }
	one, two := newHarness(t, shared), newHarness(t, shared)
	body := exampleBody(t)
	one.m.dec, two.m.dec = identity.Decision{Outcome: identity.OutcomeNoMatch}, identity.Decision{Outcome: identity.OutcomeNoMatch}
	one.match("new-payer", body)
	one.match("new-payer", body)
	two.match("new-payer", body)
	for name, hs := range map[string]*harness{"one": one, "two": two} {
		if a := hs.match("new-payer", body); a.status != http.StatusTooManyRequests {
			t.Errorf("process %s after 3 failures between them: %d", name, a.status)
		}
	}
}

// failingFailures is a store.FailedMatches that is down.
type failingFailures struct{}

func (failingFailures) AppendMatchFailure(context.Context, string, time.Time, time.Time) error {
	return errors.New("store down")
}

func (failingFailures) MatchFailures(context.Context, string, time.Time, int) ([]time.Time, error) {
	return nil, errors.New("store down")
}

// A failed-match count that cannot be read answers 500: no match is made
// that the cap could not check.
func TestFailedMatchCapStoreDown(t *testing.T) {
	hs := newHarness(t, func(d *Deps) { d.Throttle = NewSharedThrottle(0, 0, 3, time.Minute, failingFailures{}) })
	if a := hs.match("new-payer", exampleBody(t)); a.status != http.StatusInternalServerError || hs.m.calls != 0 {
		t.Errorf("%d, matcher asked %d times", a.status, hs.m.calls)
	}
}

func TestNewHandlerRequires(t *testing.T) {
	full := func() Deps {
		return Deps{Matcher: &fakeMatcher{}, Requester: func(*http.Request) (Caller, bool) { return Caller{}, false },
			Parties: func(string) (Party, bool) { return Party{}, false }, MemberIDSystem: "x"}
	}
	if _, err := NewHandler(full()); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*Deps){
		"Matcher":        func(d *Deps) { d.Matcher = nil },
		"Requester":      func(d *Deps) { d.Requester = nil },
		"Parties":        func(d *Deps) { d.Parties = nil },
		"MemberIDSystem": func(d *Deps) { d.MemberIDSystem = "" },
	} {
		d := full()
		f(&d)
		if _, err := NewHandler(d); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v", name, err)
		}
	}
}

func TestDemographics(t *testing.T) {
	req := exampleRequest(t)
	req.Patient.Name = append([]fhir.HumanName{{Use: "old", Family: "Maiden", Given: []string{"Pat"}}}, req.Patient.Name...)
	req.Patient.Address = []fhir.Address{
		{Use: "old", Line: []string{"1 Old Rd"}, City: "Was"},
		{Use: "home", Line: []string{"12 Oak Street", "Apt 2"}, City: "Springfield", State: "IL", PostalCode: "62701"},
	}
	req.Patient.Telecom = []fhir.ContactPoint{{System: "email", Value: "p@example.org"}, {System: "phone", Value: "217-555-0101"}}
	req.Patient.Gender = "other"
	req.CoverageToMatch.Identifier = nil
	req.CoverageToMatch.SubscriberID = "SUB-1"
	self := fhir.Code(fhir.SystemSubscriberRel, "self")
	req.CoverageToMatch.Relationship = &self
	got := req.Demographics()
	want := transfer.Demographics{
		MemberID: "SUB-1", Given: "Patricia", Family: "Person", BirthDate: "1974-12-25",
		Address: transfer.Address{Street: "12 Oak Street Apt 2", City: "Springfield", State: "IL", PostalCode: "62701"},
		Phone:   "217-555-0101",
	}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// A dependent's card: the subscriber id names someone else.
	child := fhir.Code(fhir.SystemSubscriberRel, "child")
	req.CoverageToMatch.Relationship = &child
	if got := req.Demographics(); got.MemberID != "" {
		t.Errorf("dependent: member id %q", got.MemberID)
	}
}
