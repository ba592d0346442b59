package pdex

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/p2p-payer/p2p/export"
)

const scopesHeader = "X-Test-Scopes"

// scopedRequester names the partner of partnerHeader with the scopes of
// scopesHeader, as a SMART token would; without that header, every scope
// (a certificate or a gateway).
func scopedRequester(r *http.Request) (Caller, bool) {
	id := r.Header.Get(partnerHeader)
	if id != "new-payer" && id != "stranger" {
		return Caller{}, false
	}
	sc, ok := r.Header[http.CanonicalHeaderKey(scopesHeader)]
	if !ok {
		return Caller{PartnerID: id, AllScopes: true}, true
	}
	return Caller{PartnerID: id, Scopes: strings.Fields(strings.Join(sc, " "))}, true
}

func TestCallerPermits(t *testing.T) {
	tests := []struct {
		scopes string
		res    string
		p      Permission
		want   bool
	}{
		{"system/Patient.rs", "Patient", Search, true},
		{"system/Patient.rs", "Patient", Read, true},
		{"system/Patient.r", "Patient", Search, false},
		{"system/Observation.r", "Patient", Search, false},
		{"system/Observation.rs", "Patient", Read, false},
		{"system/*.rs", "Condition", Read, true},
		{"system/*.s", "Condition", Read, false},
		{"system/*.read", "Patient", Search, true},
		{"system/Patient.read", "Coverage", Read, false},
		{"system/*.write", "Patient", Read, false},
		{"system/*.*", "Patient", Search, true},
		{"user/*.rs", "Patient", Read, false},
		{"patient/Patient.rs", "Patient", Read, false},
		{"system/Patient", "Patient", Read, false},
		{"", "Patient", Read, false},
	}
	for _, tt := range tests {
		c := Caller{PartnerID: "p", Scopes: strings.Fields(tt.scopes)}
		if got := c.Permits(tt.res, tt.p); got != tt.want {
			t.Errorf("%q permits %s %c = %v, want %v", tt.scopes, tt.res, tt.p, got, tt.want)
		}
	}
	if !(Caller{AllScopes: true}).Permits("Anything", Search) {
		t.Error("AllScopes must permit everything")
	}
}

// TestRouteScopes: every /fhir route checks its scope: with the scope it
// needs a request reaches the operation, without it the answer is 403
// insufficient_scope; a system/Observation.r token runs nothing.
func TestRouteScopes(t *testing.T) {
	b := newBulkMatchHarness(t, func(d *Deps) { d.Requester = scopedRequester })
	mm := exampleBody(t)
	tests := []struct {
		name, method, target string
		body                 []byte
		scopes               string
		refused              bool
	}{
		{"member-match", "POST", "/Patient/$member-match", mm, "system/Patient.s", false},
		{"member-match with v1 read", "POST", "/Patient/$member-match", mm, "system/Patient.read", false},
		{"member-match with Observation.r", "POST", "/Patient/$member-match", mm, "system/Observation.r", true},
		{"member-match with Patient.r", "POST", "/Patient/$member-match", mm, "system/Patient.r", true},
		{"member-match with all but search", "POST", "/Patient/$member-match", mm, "system/*.cud", true},
		{"bulk-member-match", "POST", "/Group/$bulk-member-match", nil, "system/Patient.rs", false},
		{"bulk-member-match with Coverage.rs", "POST", "/Group/$bulk-member-match", nil, "system/Coverage.rs", true},
		{"bulk-member-match status", "GET", "/bulk-member-match-status/x", nil, "system/Patient.s", false},
		{"bulk-member-match status with Observation.r", "GET", "/bulk-member-match-status/x", nil, "system/Observation.r", true},
		{"bulk-member-match delete with Observation.r", "DELETE", "/bulk-member-match-status/x", nil, "system/Observation.r", true},
		{"export of two types", "GET", "/Patient/$export?_type=Patient,Condition", nil, "system/Patient.r system/Condition.r", false},
		{"export of two types, one read", "GET", "/Patient/$export?_type=Patient,Condition", nil, "system/Patient.r", true},
		{"export of every type", "GET", "/Patient/$export", nil, "system/*.r", false},
		{"export of every type, one read", "GET", "/Patient/$export", nil, "system/Patient.rs", true},
		{"Group export", "GET", "/Group/matched-new-payer/$davinci-data-export?_type=Patient", nil, "system/Patient.r", false},
		{"Group export with search only", "GET", "/Group/matched-new-payer/$export?_type=Patient", nil, "system/Patient.s", true},
		{"export with Observation.r", "GET", "/Patient/$export?_type=Patient", nil, "system/Observation.r", true},
		{"export status", "GET", "/bulk-status/x", nil, "system/Patient.r", false},
		{"export status with search only", "GET", "/bulk-status/x", nil, "system/*.s", true},
		{"export delete with search only", "DELETE", "/bulk-status/x", nil, "system/*.s", true},
		{"file with search only", "GET", "/bulk-files/x/" + strings.Repeat("0", 64), nil, "system/*.s", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{scopesHeader: tt.scopes, "Content-Type": "application/fhir+json"}
			for k, v := range async {
				h[k] = v
			}
			a := b.do(tt.method, tt.target, "new-payer", h, tt.body)
			refused := a.status == http.StatusForbidden && bytes.Contains(a.body, []byte(OutcomeInsufficientScope))
			if refused != tt.refused {
				t.Fatalf("%d %s; refused for scope = %v, want %v", a.status, a.body, refused, tt.refused)
			}
			if refused && !strings.Contains(a.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("WWW-Authenticate %q", a.header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestFileScopes: each file needs read of its type; Provenance comes with
// any exported type's read.
func TestFileScopes(t *testing.T) {
	b := newBulkHarness(t, func(d *Deps) { d.Requester = scopedRequester })
	id := b.kickoff("/Patient/$export?_type=Patient,Condition")
	p := b.prepare(id, m1, m2)
	art, _ := b.st.GetArtifact(context.Background(), p.Export.ManifestSHA256)
	man, _ := export.ParseBulkManifest(art.Data)
	digest := map[string]string{}
	for _, f := range man.Files {
		if f.MemberID == "M1" {
			digest[f.Type] = f.SHA256
		}
	}
	tests := []struct {
		typ, scopes string
		want        int
	}{
		{"Patient", "system/Patient.r", http.StatusOK},
		{"Patient", "system/Condition.r", http.StatusForbidden},
		{"Condition", "system/*.rs", http.StatusOK},
		{"Provenance", "system/Condition.r", http.StatusOK},
		{"Provenance", "system/Patient.s", http.StatusForbidden},
	}
	for _, tt := range tests {
		if digest[tt.typ] == "" {
			t.Fatalf("no %s file of M1", tt.typ)
		}
		a := b.do("GET", "/bulk-files/"+id+"/"+digest[tt.typ], "new-payer", map[string]string{scopesHeader: tt.scopes}, nil)
		if a.status != tt.want {
			t.Errorf("%s file with %q: %d %s, want %d", tt.typ, tt.scopes, a.status, a.body, tt.want)
		}
	}
}

// TestEveryRouteHasScopes: a route without an entry in routeScopes would
// be refused to everyone; this says so when one is added.
func TestEveryRouteHasScopes(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	n := 0
	err := chi.Walk(b.h.router.(chi.Routes), func(_ string, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		n++
		if _, ok := routeScopes[route]; !ok {
			t.Errorf("route %s has no entry in routeScopes", route)
		}
		return nil
	})
	if err != nil || n < len(routeScopes) {
		t.Fatalf("walked %d routes, %v", n, err)
	}
}
