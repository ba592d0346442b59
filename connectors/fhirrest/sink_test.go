package fhirrest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
)

// fakeSink is a FHIR server taking batch Bundles: it stores resources by
// type/id and answers each entry, or refuses the ids in reject.
type fakeSink struct {
	t       *testing.T
	mu      sync.Mutex
	stored  map[string]string // "Type/id" -> resource
	batches []int             // entries per batch
	reject  map[string]string // "Type/id" -> status
}

func (f *fakeSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.URL.Path != "/fhir" || r.Header.Get("Content-Type") != ContentType {
		f.t.Errorf("%s %s %s", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	var b struct {
		ResourceType, Type string
		Entry              []struct {
			Resource json.RawMessage
			Request  struct{ Method, URL string }
		}
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.ResourceType != "Bundle" || b.Type != "batch" {
		f.t.Errorf("not a batch: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, len(b.Entry))
	var out []any
	for _, e := range b.Entry {
		var h struct{ ResourceType, ID string }
		_ = json.Unmarshal(e.Resource, &h)
		if e.Request.Method != "PUT" || e.Request.URL != h.ResourceType+"/"+h.ID {
			f.t.Errorf("entry %s %s for %s/%s", e.Request.Method, e.Request.URL, h.ResourceType, h.ID)
		}
		if st, ok := f.reject[e.Request.URL]; ok {
			out = append(out, map[string]any{"response": map[string]any{"status": st,
				"outcome": json.RawMessage(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invariant","diagnostics":"Jane Doe is bad"}]}`)}})
			continue
		}
		status := "201 Created"
		if _, ok := f.stored[e.Request.URL]; ok {
			status = "200 OK"
		}
		f.stored[e.Request.URL] = string(e.Resource)
		out = append(out, map[string]any{"response": map[string]any{"status": status}})
	}
	w.Header().Set("Content-Type", ContentType)
	_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "batch-response", "entry": out})
}

func (f *fakeSink) count() map[string]int {
	n := map[string]int{}
	for k := range f.stored {
		t, _, _ := strings.Cut(k, "/")
		n[t]++
	}
	return n
}

// writeNDJSON writes n resources of typ to dir/<typ>.1.ndjson.
func writeNDJSON(t *testing.T, dir, typ string, n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `{"resourceType":%q,"id":"%s-%d","name":[{"family":"Doe"}]}`+"\n", typ, strings.ToLower(typ), i)
	}
	p := filepath.Join(dir, typ+".1.ndjson")
	if err := os.WriteFile(p, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestSink(t *testing.T, f *fakeSink) *Sink {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	s, err := NewSink(SinkConfig{Config: Config{BaseURL: srv.URL + "/fhir/", Backoff: time.Millisecond, HTTPClient: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSinkLoad(t *testing.T) {
	dir := t.TempDir()
	paths := []string{writeNDJSON(t, dir, "Patient", 1), writeNDJSON(t, dir, "ExplanationOfBenefit", 230), writeNDJSON(t, dir, "Coverage", 2)}
	f := &fakeSink{t: t, stored: map[string]string{}}
	s := newTestSink(t, f)
	got, err := s.Load(context.Background(), OpenFile, paths)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"Patient": 1, "ExplanationOfBenefit": 230, "Coverage": 2}
	if fmt.Sprint(got.Resources) != fmt.Sprint(want) || fmt.Sprint(f.count()) != fmt.Sprint(want) {
		t.Errorf("loaded %v, server holds %v, want %v", got.Resources, f.count(), want)
	}
	// Batches of at most 100, filled across files.
	if fmt.Sprint(f.batches) != "[100 100 33]" || got.Batches != 3 {
		t.Errorf("batches %v (%d), want [100 100 33]", f.batches, got.Batches)
	}
	// A retry writes the same resources again: PUT by id, nothing doubled.
	if _, err := s.Load(context.Background(), OpenFile, paths); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.count()) != fmt.Sprint(want) {
		t.Errorf("after a retry the server holds %v", f.count())
	}
}

func TestSinkEntryFailures(t *testing.T) {
	tests := []struct {
		name      string
		reject    map[string]string
		wantClass fault.Class
		wantIn    string
	}{
		{"rejected entry", map[string]string{"Coverage/coverage-1": "422 Unprocessable Entity"},
			fault.Validation, "Coverage.1.ndjson:2 Coverage/coverage-1 422 (invariant)"},
		{"server error on an entry", map[string]string{"Patient/patient-0": "500 Internal Server Error"},
			fault.Downstream, "Patient.1.ndjson:1 Patient/patient-0 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			paths := []string{writeNDJSON(t, dir, "Patient", 1), writeNDJSON(t, dir, "Coverage", 3)}
			f := &fakeSink{t: t, stored: map[string]string{}, reject: tt.reject}
			got, err := newTestSink(t, f).Load(context.Background(), OpenFile, paths)
			fe, ok := fault.As(err)
			if !ok || fe.Class != tt.wantClass {
				t.Fatalf("err = %v, want class %s", err, tt.wantClass)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("err = %v, want it to name %q", err, tt.wantIn)
			}
			for _, phi := range []string{"Doe", "Jane"} {
				if strings.Contains(err.Error(), phi) {
					t.Errorf("err quotes content: %v", err)
				}
			}
			// The other entries were written.
			total := 0
			for _, n := range got.Resources {
				total += n
			}
			if total != 3 || len(f.stored) != 3 {
				t.Errorf("loaded %v, server holds %d, want 3", got.Resources, len(f.stored))
			}
		})
	}
}

func TestSinkBadInput(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "Patient.1.ndjson")
	if err := os.WriteFile(p, []byte(`{"resourceType":"Patient","id":"a/../b"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fakeSink{t: t, stored: map[string]string{}}
	_, err := newTestSink(t, f).Load(context.Background(), OpenFile, []string{p})
	if fe, ok := fault.As(err); !ok || fe.Class != fault.Validation || fe.Type != ErrTypeBadInput || !strings.Contains(err.Error(), "Patient.1.ndjson:1") {
		t.Fatalf("err = %v", err)
	}
	if len(f.batches) != 0 {
		t.Errorf("sent %v", f.batches)
	}
}

func TestSinkBatchStatus(t *testing.T) {
	tests := []struct {
		status    int
		wantClass fault.Class
	}{
		{http.StatusForbidden, fault.Auth},
		{http.StatusBadRequest, fault.Validation},
		{http.StatusBadGateway, fault.Downstream},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			s, err := NewSink(SinkConfig{Config: Config{BaseURL: srv.URL, Backoff: time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Load(context.Background(), OpenFile, []string{writeNDJSON(t, t.TempDir(), "Patient", 1)})
			if fault.ClassOf(err) != tt.wantClass {
				t.Fatalf("err = %v, want %s", err, tt.wantClass)
			}
			wantCalls := 1
			if tt.wantClass.Retryable() {
				wantCalls = DefaultAttempts
			}
			if calls != wantCalls {
				t.Errorf("%d calls, want %d", calls, wantCalls)
			}
		})
	}
}
