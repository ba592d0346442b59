package pdexclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
)

var (
	oldPayer = Organization{Name: "Old Health Plan", Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "9876543210"}}}
	us       = Organization{Name: "New Health Plan", Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "0123456789"}}}
	now      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func request(scope string) MatchRequest {
	return MatchRequest{
		Member: transfer.Demographics{MemberID: "NEW-1", Given: "Patricia", Family: "Person", BirthDate: "1974-12-25", Sex: "F",
			Address: transfer.Address{Street: "1 Main St", City: "Springfield", State: "IL", PostalCode: "62701"}, Phone: "555-0100"},
		Card: transfer.CoverageToMatch{Payer: "oldco", MemberID: "DH10001235", SubscriberID: "SUB-9", PeriodStart: "2011-05-23", PeriodEnd: "2012-05-23"},
		Consent: transfer.Consent{ID: "c-1", Status: "active", Scope: scope,
			PeriodStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)},
		OldPayer: oldPayer, Us: us, OurMemberID: "NEW-1", OurMemberIDSystem: "https://new.example/member-id",
	}
}

// The Parameters we send are what our own server reads and accepts: the
// member, the old card, and a consent it honours for us, in the scope we
// asked.
func TestBuildParametersParsedByOurServer(t *testing.T) {
	for _, scope := range []string{transfer.ScopeRegular, transfer.ScopeSensitive} {
		t.Run(scope, func(t *testing.T) {
			p, err := BuildParameters(request(scope))
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			req, perr := pdex.ParseMemberMatch(body)
			if perr != nil {
				t.Fatalf("ParseMemberMatch: %v", perr)
			}
			d := req.Demographics()
			want := transfer.Demographics{MemberID: "DH10001235", Given: "Patricia", Family: "Person", BirthDate: "1974-12-25", Sex: "F",
				Address: transfer.Address{Street: "1 Main St", City: "Springfield", State: "IL", PostalCode: "62701"}, Phone: "555-0100"}
			if d != want {
				t.Errorf("demographics = %+v, want %+v", d, want)
			}
			if req.CoverageToLink == nil || req.CoverageToLink.Identifier[0].Value != "NEW-1" {
				t.Errorf("CoverageToLink = %+v", req.CoverageToLink)
			}
			if len(req.ConsentModifiers) != 0 {
				t.Errorf("consent modifiers %v", req.ConsentModifiers)
			}
			requester := pdex.Party{ID: "newco", Identifiers: us.Identifiers}
			holder := pdex.Party{Identifiers: oldPayer.Identifiers}
			dec, why := pdex.EvaluateConsent(req.Consent, requester, holder, now)
			if !dec.Permit || dec.Scope != scope {
				t.Fatalf("consent decision = %+v (%s), want permit %s", dec, why, scope)
			}
			// Someone else is not the recipient, and the period binds.
			if dec, _ := pdex.EvaluateConsent(req.Consent, pdex.Party{Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "1"}}}, holder, now); dec.Permit {
				t.Error("the consent permits a stranger")
			}
			if dec, _ := pdex.EvaluateConsent(req.Consent, requester, holder, now.AddDate(1, 0, 0)); dec.Permit {
				t.Error("the consent permits after its period")
			}
		})
	}
}

func TestBuildParametersRefusesIncomplete(t *testing.T) {
	for name, edit := range map[string]func(*MatchRequest){
		"no name":        func(r *MatchRequest) { r.Member.Given, r.Member.Family = "", "" },
		"no birth date":  func(r *MatchRequest) { r.Member.BirthDate = "" },
		"no card number": func(r *MatchRequest) { r.Card.MemberID = "" },
		"open consent":   func(r *MatchRequest) { r.Consent.PeriodEnd = time.Time{} },
	} {
		r := request(transfer.ScopeRegular)
		edit(&r)
		if _, err := BuildParameters(r); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

// paths lists the JSON paths (object keys joined by '.', arrays
// transparent) of each parameter's resource, by parameter name.
func paths(t *testing.T, body []byte) map[string][]string {
	t.Helper()
	var p struct {
		Parameter []struct {
			Name     string          `json:"name"`
			Resource json.RawMessage `json:"resource"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, prm := range p.Parameter {
		var v any
		if err := json.Unmarshal(prm.Resource, &v); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		var walk func(v any, path string)
		walk = func(v any, path string) {
			switch x := v.(type) {
			case map[string]any:
				for k, c := range x {
					walk(c, strings.TrimPrefix(path+"."+k, "."))
				}
			case []any:
				for _, c := range x {
					walk(c, path)
				}
			default:
				set[path] = true
			}
		}
		walk(v, "")
		for k := range set {
			out[prm.Name] = append(out[prm.Name], k)
		}
		sort.Strings(out[prm.Name])
	}
	return out
}

// Our request has the official example's shape: the same parameters in
// the same order, and per resource the same elements, but for the ones
// listed here with why.
func TestBuildParametersHasTheExampleShape(t *testing.T) {
	example, err := os.ReadFile("../../pdex/testdata/hrex/member-match-in.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := BuildParameters(request(transfer.ScopeRegular))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, prm := range p.Parameter {
		names = append(names, prm.Name)
	}
	if want := []string{"MemberPatient", "CoverageToMatch", "CoverageToLink", "Consent"}; !slices.Equal(names, want) {
		t.Fatalf("parameters %v, want %v", names, want)
	}
	// Elements only we send: what our member record has beyond the
	// example (address, phone), the card's subscriber id and our consent's
	// id and date.
	onlyOurs := map[string]bool{
		"MemberPatient.address.use": true, "MemberPatient.address.line": true, "MemberPatient.address.city": true,
		"MemberPatient.address.state": true, "MemberPatient.address.postalCode": true,
		"MemberPatient.telecom.system": true, "MemberPatient.telecom.value": true,
		"CoverageToMatch.subscriberId": true, "Consent.identifier.value": true,
	}
	// Elements only the example has: the card's plan classes and member
	// number system (we do not know the old payer's systems), a patient
	// reference outside the Parameters, the consent's source document.
	onlyExample := map[string]bool{
		"CoverageToMatch.class.type.coding.system": true, "CoverageToMatch.class.type.coding.code": true,
		"CoverageToMatch.class.value": true, "CoverageToMatch.identifier.system": true,
		"Consent.sourceReference.reference": true,
	}
	got, want := paths(t, ours), paths(t, example)
	for name, ps := range got {
		for _, path := range ps {
			if !slices.Contains(want[name], path) && !onlyOurs[name+"."+path] {
				t.Errorf("we send %s.%s, which the example does not have", name, path)
			}
		}
	}
	for name, ps := range want {
		for _, path := range ps {
			if !slices.Contains(got[name], path) && !onlyExample[name+"."+path] {
				t.Errorf("the example has %s.%s, which we do not send", name, path)
			}
		}
	}
}

// ourServer is p2p's own $member-match server (pdex) with a stub matcher,
// behind an httptest server; the client names itself in the partner header.
type stubMatcher struct{ dec identity.Decision }

func (m stubMatcher) Resolve(context.Context, transfer.Demographics) (identity.Decision, error) {
	return m.dec, nil
}

func ourServer(t *testing.T, dec identity.Decision) *httptest.Server {
	t.Helper()
	h, err := pdex.NewHandler(pdex.Deps{
		Matcher:   stubMatcher{dec},
		Requester: pdex.HeaderRequester("X-P2P-Partner", func(id string) bool { return id == "newco" }),
		Parties: func(id string) (pdex.Party, bool) {
			return pdex.Party{ID: id, Identifiers: us.Identifiers}, id == "newco"
		},
		Holder:         pdex.Party{Identifiers: oldPayer.Identifiers},
		MemberIDSystem: "https://old.example/member",
		PatientRef:     func(id string) string { return "Patient/pt-" + id },
		Now:            func() time.Time { return now },
		MaxFailures:    100,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/fhir/", http.StripPrefix("/fhir", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T, base string, header bool) *Client {
	t.Helper()
	cfg := Config{Partner: "oldco", BaseURL: base, Now: func() time.Time { return now }}
	if header {
		cfg.Header = http.Header{"X-P2P-Partner": {"newco"}}
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMemberMatchAgainstOurServer(t *testing.T) {
	match := identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M7"}
	srv := ourServer(t, match)
	res, err := client(t, srv.URL+"/fhir", true).MemberMatch(context.Background(), request(transfer.ScopeRegular))
	if err != nil {
		t.Fatal(err)
	}
	if res.MemberIdentifier.Value != "M7" || res.MemberIdentifier.System != "https://old.example/member" || res.PatientID != "pt-M7" {
		t.Fatalf("result = %+v", res)
	}

	cases := []struct {
		name   string
		dec    identity.Decision
		edit   func(*MatchRequest)
		header bool
		class  fault.Class
		typ    string
		reason string
	}{
		{"no match", identity.Decision{Outcome: identity.OutcomeNoMatch}, nil, true, fault.Business, transfer.ErrorNoMatch, ReasonNoMatch},
		{"several", identity.Decision{Outcome: identity.OutcomeReview, Candidates: []string{"a", "b"}}, nil, true, fault.Business, transfer.ErrorNoMatch, ReasonMultipleMatches},
		{"consent ended", match, func(r *MatchRequest) { r.Consent.PeriodEnd = now.AddDate(0, 0, -2) }, true, fault.Business, transfer.ErrorConsentDenied, ReasonConsent},
		{"consent names another recipient", match, func(r *MatchRequest) {
			r.Us = Organization{Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: "5555555555"}}}
		}, true, fault.Business, transfer.ErrorConsentDenied, ReasonConsent},
		{"unauthenticated", match, nil, false, fault.Auth, bulkdata.ErrTypeAuth, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := ourServer(t, c.dec)
			r := request(transfer.ScopeRegular)
			if c.edit != nil {
				c.edit(&r)
			}
			_, err := client(t, srv.URL+"/fhir", c.header).MemberMatch(context.Background(), r)
			f, ok := fault.As(err)
			if !ok || f.Class != c.class || f.Type != c.typ || Reason(err) != c.reason {
				t.Fatalf("err = %v (reason %q), want %s/%s reason %q", err, Reason(err), c.class, c.typ, c.reason)
			}
			for _, phi := range []string{"Patricia", "Person", "1974-12-25", "DH10001235"} {
				if strings.Contains(err.Error(), phi) {
					t.Errorf("error holds PHI %q: %v", phi, err)
				}
			}
		})
	}
}

func TestMemberMatchAnswers(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		class      fault.Class
		typ        string
		retryAfter time.Duration
	}{
		{"throttled", 429, map[string]string{"Retry-After": "7"}, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"throttled"}]}`,
			fault.Downstream, bulkdata.ErrTypeThrottled, 7 * time.Second},
		{"server error", 500, nil, ``, fault.Downstream, bulkdata.ErrTypeUnavailable, 0},
		// A 503 that says when is throttling, as in every client (httpclass).
		{"unavailable with date", 503, map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, ``,
			fault.Downstream, bulkdata.ErrTypeThrottled, 90 * time.Second},
		{"unavailable", 502, nil, ``, fault.Downstream, bulkdata.ErrTypeUnavailable, 0},
		{"forbidden", 403, nil, ``, fault.Auth, bulkdata.ErrTypeAuth, 0},
		{"bad request", 400, nil, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}`,
			fault.Business, transfer.ErrorPartnerRejected, 0},
		{"consent by expression", 422, nil, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","expression":["Parameters.parameter.where(name='Consent').resource"]}]}`,
			fault.Business, transfer.ErrorConsentDenied, 0},
		{"multiple by issue type", 422, nil, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"multiple-matches"}]}`,
			fault.Business, transfer.ErrorNoMatch, 0},
		{"bare 422", 422, nil, ``, fault.Business, transfer.ErrorNoMatch, 0},
		{"200 without identifier", 200, nil, `{"resourceType":"Parameters","parameter":[]}`, fault.Validation, bulkdata.ErrTypeBadResponse, 0},
		{"200 not a patient", 200, nil, `{"resourceType":"Parameters","parameter":[{"name":"MemberIdentifier","valueIdentifier":{"value":"x"}},{"name":"MemberId","valueReference":{"reference":"Group/1"}}]}`,
			fault.Validation, bulkdata.ErrTypeBadResponse, 0},
		{"redirect", 302, map[string]string{"Location": "https://elsewhere.example/"}, ``, fault.Validation, bulkdata.ErrTypeBadResponse, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "application/fhir+json")
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			_, err := client(t, srv.URL, true).MemberMatch(context.Background(), request(transfer.ScopeRegular))
			f, ok := fault.As(err)
			if !ok || f.Class != c.class || f.Type != c.typ || f.RetryAfter != c.retryAfter {
				t.Fatalf("err = %v (retry after %v), want %s/%s after %v", err, f.RetryAfter, c.class, c.typ, c.retryAfter)
			}
		})
	}
	// A connection refused is transport.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	_, err := client(t, srv.URL, true).MemberMatch(context.Background(), request(transfer.ScopeRegular))
	if fault.ClassOf(err) != fault.Transport {
		t.Fatalf("err = %v, want transport", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal("unexpected cancel")
	}
}

func TestPatientID(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/123": "123", "https://old.example/fhir/Patient/a-1.b": "a-1.b",
		"https://old.example/fhir/Patient/9/_history/2": "9", "Group/1": "", "Patient/": "", "Patient/a b": "",
	} {
		got, ok := PatientID(ref)
		if got != want || ok != (want != "") {
			t.Errorf("PatientID(%q) = %q, %v; want %q", ref, got, ok, want)
		}
	}
}
