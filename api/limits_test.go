package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
)

// TestHeaderLimit: header fields past MaxHeaderBytes are refused with 431
// in the API's terms (problem+json on /v1, an OperationOutcome on /fhir);
// up to it they pass.
func TestHeaderLimit(t *testing.T) {
	fhirOK := chi.NewRouter()
	fhirOK.Get("/metadata", func(w http.ResponseWriter, r *http.Request) {})
	e := newEnv(t, func(d *Deps) { d.FHIR = fhirOK })
	// pad brings r's header fields to n bytes, Host included.
	pad := func(r *http.Request, n int) {
		r.Header.Set("X-Pad", strings.Repeat("p", n-headerBytes(r)-len("X-Pad: \r\n")))
	}
	cases := []struct {
		name   string
		path   string
		size   int
		status int
	}{
		{"/v1 at the limit", "/v1/transfers", MaxHeaderBytes, http.StatusOK},
		{"/v1 past it", "/v1/transfers", MaxHeaderBytes + 1, http.StatusRequestHeaderFieldsTooLarge},
		{"/v1 far past it", "/v1/transfers", 200 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"health past it", "/healthz", MaxHeaderBytes + 1, http.StatusRequestHeaderFieldsTooLarge},
		{"/fhir at the limit", "/fhir/metadata", MaxHeaderBytes, http.StatusOK},
		{"/fhir past it", "/fhir/metadata", MaxHeaderBytes + 1, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, c.path, nil)
			if strings.HasPrefix(c.path, "/v1/") {
				r.Header.Set("Authorization", bearer(testClient, "", caller.Admin))
			}
			pad(r, c.size)
			if got := headerBytes(r); got != c.size {
				t.Fatalf("padded to %d bytes, want %d", got, c.size)
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if c.status != http.StatusRequestHeaderFieldsTooLarge {
				return
			}
			if strings.HasPrefix(c.path, "/fhir/") {
				var oo fhir.OperationOutcome
				if w.Header().Get("Content-Type") != "application/fhir+json" || json.Unmarshal(w.Body.Bytes(), &oo) != nil ||
					oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != "too-long" {
					t.Errorf("%q %s, want an OperationOutcome too-long", w.Header().Get("Content-Type"), w.Body)
				}
				return
			}
			p := problem(t, w, http.StatusRequestHeaderFieldsTooLarge, ProblemHeaderTooLarge)
			if p.Detail == nil || !strings.Contains(*p.Detail, fmt.Sprint(MaxHeaderBytes)) {
				t.Errorf("detail %v does not state the limit", p.Detail)
			}
		})
	}
}

// noMatch is a matcher that matches nobody: the body limit is decided
// before any member is.
type noMatch struct{}

func (noMatch) Resolve(context.Context, transfer.Demographics) (identity.Decision, error) {
	return identity.Decision{Outcome: identity.OutcomeNoMatch}, nil
}

// batches stands in for the bulk member-match engine: it keeps what starts.
type batches struct {
	mu  sync.Mutex
	got []pdex.BulkMatch
}

func (b *batches) StartBulkMatch(_ context.Context, m pdex.BulkMatch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, m)
	return nil
}

func (b *batches) DeleteBulkMatch(context.Context, string) error { return nil }

// realisticBulkBody is a $bulk-member-match of n members like
// pdex/testdata/member-bundle.json (see pdex.MaxBulkMemberMatchBody),
// indented by four spaces: the largest form of the documented request.
func realisticBulkBody(t *testing.T, n int) []byte {
	t.Helper()
	raw, err := os.ReadFile("../pdex/testdata/member-bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Parameters","parameter":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(bytes.Replace(compact.Bytes(), []byte(`"family":"Person"`), fmt.Appendf(nil, `"family":"Person%04d"`, i), 1))
	}
	b.WriteString(`]}`)
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "    "); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestBodyLimits: /fhir $bulk-member-match takes the documented 1,000
// members through the whole API; past its limit, and past 1 MiB on the
// other routes, the answer is 413 in the route's terms.
func TestBodyLimits(t *testing.T) {
	bulk := &batches{}
	e := newEnv(t, func(d *Deps) {
		h, err := pdex.NewHandler(pdex.Deps{
			Matcher:        noMatch{},
			Requester:      pdex.HeaderRequester("X-Test-Partner", func(id string) bool { return id == "new-payer" }),
			Parties:        func(id string) (pdex.Party, bool) { return pdex.Party{ID: id}, id == "new-payer" },
			MemberIDSystem: "https://old-payer.example/member-id",
			Store:          d.Store.(pdex.Store),
			BulkMatches:    bulk,
		})
		if err != nil {
			t.Fatal(err)
		}
		d.FHIR, d.FHIRMaxBody = h, pdex.MaxBulkMemberMatchBody
	})
	thousand := realisticBulkBody(t, pdex.DefaultMaxBulkMembers)
	t.Logf("1,000 members, indented by four spaces: %d bytes", len(thousand))
	fhirHeaders := []string{"Content-Type", "application/fhir+json", "Prefer", "respond-async", "X-Test-Partner", "new-payer"}
	const bulkPath = "/fhir/Group/$bulk-member-match"
	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		status int
		fhir   bool // answered as an OperationOutcome, else problem+json
	}{
		{"1,000 realistic members", http.MethodPost, bulkPath, thousand, http.StatusAccepted, true},
		{"bulk past its limit", http.MethodPost, bulkPath, append(thousand, bytes.Repeat([]byte(" "), pdex.MaxBulkMemberMatchBody-len(thousand)+1)...), http.StatusRequestEntityTooLarge, true},
		{"member-match past 1 MiB", http.MethodPost, "/fhir/Patient/$member-match", bytes.Repeat([]byte(" "), maxBodyBytes+1), http.StatusRequestEntityTooLarge, true},
		{"/v1 past 1 MiB", http.MethodPut, "/v1/members/M1", fmt.Appendf(nil, `{"given": %q, "birth_date": "1980-01-01"}`, strings.Repeat("x", maxBodyBytes)), http.StatusRequestEntityTooLarge, false},
		{"/v1 a 1,000-member body is no transfer", http.MethodPost, "/v1/transfers", thousand, http.StatusRequestEntityTooLarge, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.path, bytes.NewReader(c.body))
			if c.fhir {
				for i := 0; i+1 < len(fhirHeaders); i += 2 {
					r.Header.Set(fhirHeaders[i], fhirHeaders[i+1])
				}
			} else {
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Idempotency-Key", key)
				r.Header.Set("Authorization", bearer(testClient, "", caller.Admin))
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %.300s", w.Code, c.status, w.Body)
			}
			switch {
			case c.status == http.StatusAccepted:
				bulk.mu.Lock()
				defer bulk.mu.Unlock()
				if len(bulk.got) != 1 || len(bulk.got[0].Members) != pdex.DefaultMaxBulkMembers {
					t.Errorf("batches %d, want one of %d members", len(bulk.got), pdex.DefaultMaxBulkMembers)
				}
			case c.fhir:
				var oo fhir.OperationOutcome
				if json.Unmarshal(w.Body.Bytes(), &oo) != nil || len(oo.Issue) != 1 || oo.Issue[0].Code != "too-long" {
					t.Errorf("body %s, want an OperationOutcome too-long", w.Body)
				}
			default:
				problem(t, w, c.status, ProblemTooLarge)
			}
		})
	}
}
