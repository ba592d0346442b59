package api

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// The /fhir routes reach Deps.FHIR untouched by the OpenAPI request
// validator (they are not in the spec), with the mount prefix stripped for
// a chi router inside.
func TestFHIRMount(t *testing.T) {
	var gotPath, gotBody, gotCT string
	inner := chi.NewRouter()
	inner.Post("/Patient/$member-match", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotPath, gotBody, gotCT = r.URL.Path, string(b), r.Header.Get("Content-Type")
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome"}`)
	})
	e := newEnv(t, func(d *Deps) { d.FHIR = inner })
	body := `{"resourceType":"Parameters","parameter":[]}`
	w := e.do(http.MethodPost, "/fhir/Patient/$member-match", body, "Content-Type", "application/fhir+json")
	if w.Code != http.StatusUnprocessableEntity || w.Header().Get("Content-Type") != "application/fhir+json" {
		t.Fatalf("status %d %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if gotPath != "/fhir/Patient/$member-match" || gotBody != body || gotCT != "application/fhir+json" {
		t.Errorf("FHIR handler saw %q %q %q", gotPath, gotBody, gotCT)
	}
	if w.Header().Get("X-Request-Id") == "" {
		t.Error("no request id: the API's middleware did not run")
	}
	// The rest of the API still validates.
	if w := e.do(http.MethodPost, "/v1/transfers", `{"nope":1}`); w.Code != http.StatusBadRequest {
		t.Errorf("/v1/transfers: %d", w.Code)
	}
}

func TestFHIRNotMounted(t *testing.T) {
	e := newEnv(t)
	w := e.do(http.MethodPost, "/fhir/Patient/$member-match", `{}`, "Content-Type", "application/fhir+json")
	if w.Code != http.StatusNotFound || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") {
		t.Errorf("status %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}
