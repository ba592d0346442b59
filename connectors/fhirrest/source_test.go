package fhirrest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// fakeSource is a FHIR server holding one member's data. Searches are
// answered in pages of pageSize with relative next links.
type fakeSource struct {
	t        *testing.T
	pageSize int
	patient  string              // Patient JSON
	byType   map[string][]string // resources by type
	mu       sync.Mutex
	queries  []string // every request's path?query
	auth     []string
	// hook may answer a request itself (true) before the fake does.
	hook func(w http.ResponseWriter, r *http.Request, n int) bool
}

func res(typ, id, lastUpdated string, security ...string) string {
	sec := ""
	for i, s := range security {
		if i > 0 {
			sec += ","
		}
		sys, code, _ := strings.Cut(s, "#")
		sec += fmt.Sprintf(`{"system":%q,"code":%q}`, sys, code)
	}
	return fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"lastUpdated":%q,"security":[%s]},"subject":{"reference":"Patient/pat-1"}}`, typ, id, lastUpdated, sec)
}

func (f *fakeSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.RequestURI())
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	n := len(f.queries)
	f.mu.Unlock()
	if r.Header.Get("Accept") != ContentType {
		f.t.Errorf("Accept %q", r.Header.Get("Accept"))
	}
	if f.hook != nil && f.hook(w, r, n) {
		return
	}
	typ := strings.TrimPrefix(r.URL.Path, "/fhir/")
	q := r.URL.Query()
	var all []string
	if typ == "Patient" {
		if q.Get("identifier") == export.DefaultMemberIDSystem+"|M1" {
			all = []string{f.patient}
		}
	} else {
		want := "Patient/pat-1"
		if got := q.Get(patientParam[typ]); got != want {
			f.t.Errorf("%s searched by %s=%q", typ, patientParam[typ], got)
		}
		all = f.byType[typ]
	}
	page := 0 // the first page has no page parameter
	if p := q.Get("page"); p != "" {
		if _, err := fmt.Sscan(p, &page); err != nil {
			f.t.Errorf("page %q: %v", p, err)
		}
	}
	end := min(len(all), (page+1)*f.pageSize)
	b := map[string]any{"resourceType": "Bundle", "type": "searchset"}
	var entries []any
	for _, s := range all[page*f.pageSize : end] {
		entries = append(entries, map[string]any{"resource": json.RawMessage(s), "search": map[string]string{"mode": "match"}})
	}
	// An OperationOutcome entry, as servers add for warnings: skipped.
	entries = append(entries, map[string]any{"resource": json.RawMessage(`{"resourceType":"OperationOutcome","issue":[]}`), "search": map[string]string{"mode": "outcome"}})
	b["entry"] = entries
	if end < len(all) {
		q.Set("page", fmt.Sprint(page+1))
		b["link"] = []map[string]string{{"relation": "self", "url": r.URL.RequestURI()}, {"relation": "next", "url": r.URL.Path + "?" + q.Encode()}}
	}
	w.Header().Set("Content-Type", ContentType)
	_ = json.NewEncoder(w).Encode(b)
}

func newFake(t *testing.T) *fakeSource {
	f := &fakeSource{t: t, pageSize: 2,
		patient: res("Patient", "pat-1", "2024-01-01T00:00:00Z"),
		byType: map[string][]string{
			"Coverage": {res("Coverage", "cov-1", "2022-01-01T00:00:00Z")},
			"ExplanationOfBenefit": {
				res("ExplanationOfBenefit", "eob-1", "2021-01-01T00:00:00Z"), res("ExplanationOfBenefit", "eob-2", "2022-01-01T00:00:00Z"),
				res("ExplanationOfBenefit", "eob-3", "2023-01-01T00:00:00Z"), res("ExplanationOfBenefit", "eob-4", "2023-06-01T00:00:00Z"),
				res("ExplanationOfBenefit", "eob-5", "2024-01-01T00:00:00Z"),
			},
			"Condition": {
				res("Condition", "cond-1", "2023-01-01T00:00:00Z"),
				res("Condition", "cond-psy", "2023-02-01T00:00:00Z", "http://terminology.hl7.org/CodeSystem/v3-ActCode#PSY"),
			},
		}}
	return f
}

func newTestSource(t *testing.T, h http.Handler, token bulkdata.TokenSource) (*Source, *httptest.Server) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s, err := NewSource(SourceConfig{Config: Config{BaseURL: srv.URL + "/fhir", Token: token, Backoff: time.Millisecond, HTTPClient: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	return s, srv
}

func TestSourcePagingAndBuild(t *testing.T) {
	f := newFake(t)
	s, _ := newTestSource(t, f, bulkdata.StaticToken("tok"))
	rs, err := s.Resources(context.Background(), member.Record{ID: "M1"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	sensitive := 0
	for _, r := range rs {
		got[r.ResourceType]++
		if r.Sensitive {
			sensitive++
			if r.ID != "cond-psy" {
				t.Errorf("%s/%s sensitive", r.ResourceType, r.ID)
			}
		}
	}
	want := map[string]int{"Patient": 1, "Coverage": 1, "ExplanationOfBenefit": 5, "Condition": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) || sensitive != 1 {
		t.Errorf("got %v (%d sensitive), want %v (1)", got, sensitive, want)
	}
	eobPages := 0
	for _, q := range f.queries {
		if strings.HasPrefix(q, "/fhir/ExplanationOfBenefit") {
			eobPages++
		}
	}
	if eobPages != 3 {
		t.Errorf("EOB pages fetched = %d, want 3 (5 resources, 2 a page)", eobPages)
	}
	for _, a := range f.auth {
		if a != "Bearer tok" {
			t.Errorf("Authorization %q", a)
		}
	}

	// Through export.Build: a regular consent leaves the PSY Condition out.
	since := time.Date(2022, 6, 1, 0, 0, 0, 0, time.UTC)
	f.queries = nil
	exp, err := export.Build(context.Background(), export.Input{TransferID: "t1", ConsentScope: transfer.ScopeRegular,
		DataScope: transfer.DataScope{ResourceTypes: []string{"Condition", "ExplanationOfBenefit"}, Since: &since},
		Member:    member.Record{ID: "M1"}, Source: s, CreatedAt: since})
	if err != nil {
		t.Fatal(err)
	}
	if exp.ExcludedSensitive != 1 {
		t.Errorf("excluded sensitive = %d, want 1", exp.ExcludedSensitive)
	}
	var searched []string
	for _, q := range f.queries {
		searched = append(searched, strings.SplitN(strings.TrimPrefix(q, "/fhir/"), "?", 2)[0])
		if !strings.HasPrefix(q, "/fhir/Patient") && !strings.Contains(q, "_lastUpdated=gt2022-06-01T00%3A00%3A00Z") {
			t.Errorf("no _lastUpdated in %s", q)
		}
	}
	if strings.Contains(strings.Join(searched, ","), "Coverage") {
		t.Errorf("out-of-scope type searched: %v", searched)
	}
}

func TestSourceErrors(t *testing.T) {
	tests := []struct {
		name      string
		hook      func(w http.ResponseWriter, r *http.Request, n int) bool
		wantClass fault.Class
		wantType  string
		wantCalls int
	}{
		{"503 then success", func(w http.ResponseWriter, r *http.Request, n int) bool {
			if n == 2 { // the first search after the Patient's (Condition)
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}, "", "", 0},
		{"503 every time", func(w http.ResponseWriter, r *http.Request, n int) bool {
			if n >= 2 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}, fault.Downstream, ErrTypeUnavailable, 1 + DefaultAttempts},
		{"401", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}, fault.Auth, ErrTypeAuth, 1},
		{"400", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Content-Type", ContentType)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"secret"}]}`))
			return true
		}, fault.Business, ErrTypeRejected, 1},
		{"next link to another host", func(w http.ResponseWriter, r *http.Request, n int) bool {
			if strings.HasPrefix(r.URL.Path, "/fhir/Coverage") {
				w.Header().Set("Content-Type", ContentType)
				_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"https://evil.example/fhir/Coverage?page=1"}],"entry":[]}`))
				return true
			}
			return false
		}, fault.Validation, ErrTypeHostNotAllowed, 3},
		{"two patients", func(w http.ResponseWriter, r *http.Request, n int) bool {
			p := res("Patient", "p", "2024-01-01T00:00:00Z")
			q := strings.Replace(p, `"id":"p"`, `"id":"q"`, 1)
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","entry":[{"resource":` + p + `},{"resource":` + q + `}]}`))
			return true
		}, fault.Validation, ErrTypeAmbiguous, 1},
		{"not a bundle", func(w http.ResponseWriter, r *http.Request, n int) bool {
			_, _ = w.Write([]byte(`<html>`))
			return true
		}, fault.Validation, ErrTypeBadResponse, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.hook = tt.hook
			s, _ := newTestSource(t, f, nil)
			rs, err := s.Resources(context.Background(), member.Record{ID: "M1"})
			if tt.wantType == "" {
				if err != nil || len(rs) != 9 {
					t.Fatalf("got %d resources, %v; want 9", len(rs), err)
				}
				return
			}
			fe, ok := fault.As(err)
			if !ok || fe.Class != tt.wantClass || fe.Type != tt.wantType {
				t.Fatalf("err = %v, want %s/%s", err, tt.wantClass, tt.wantType)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error quotes diagnostics: %v", err)
			}
			if len(f.queries) != tt.wantCalls {
				t.Errorf("%d requests, want %d: %v", len(f.queries), tt.wantCalls, f.queries)
			}
		})
	}
}

func TestSourceNoPatient(t *testing.T) {
	s, _ := newTestSource(t, newFake(t), nil)
	_, err := s.Resources(context.Background(), member.Record{ID: "M2"})
	if fe, ok := fault.As(err); !ok || fe.Class != fault.Business || fe.Type != ErrTypeNoPatient {
		t.Fatalf("err = %v", err)
	}
}

// refreshing is a token source that hands out a new token after
// Invalidate.
type refreshing struct {
	mu  sync.Mutex
	n   int
	inv []string
}

func (r *refreshing) Token(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("tok-%d", r.n), nil
}

func (r *refreshing) Invalidate(tok string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inv = append(r.inv, tok)
	r.n++
}

func TestSourceRefreshesRefusedToken(t *testing.T) {
	f := newFake(t)
	f.hook = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Header.Get("Authorization") == "Bearer tok-0" {
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		return false
	}
	tok := &refreshing{}
	s, _ := newTestSource(t, f, tok)
	if _, err := s.Resources(context.Background(), member.Record{ID: "M1"}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tok.inv) != "[tok-0]" {
		t.Errorf("invalidated %v", tok.inv)
	}
}

func TestNewSourceRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "/relative"} {
		if _, err := NewSource(SourceConfig{Config: Config{BaseURL: u}}); err == nil || fault.ClassOf(err) != fault.Validation {
			t.Errorf("%q: err = %v", u, err)
		}
	}
}
