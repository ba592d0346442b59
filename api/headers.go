package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/p2p-payer/p2p/fhir"
)

// MaxHeaderBytes bounds a request's header fields, counted as sent
// ("Name: value\r\n" each, Host included): a bearer token is 1 to 2 KiB,
// so 32 KiB leaves room for a forwarded client certificate chain. Past it
// the answer is 431 in the API's terms. The server itself reads up to
// ServerMaxHeaderBytes, so that it is this check, not net/http's plain
// text, that answers.
const MaxHeaderBytes = 32 << 10

// ServerMaxHeaderBytes is the http.Server's MaxHeaderBytes (net/http's
// default, made explicit): a request past it gets net/http's plain-text
// 431 and its connection closed, before any handler runs.
const ServerMaxHeaderBytes = 1 << 20

// limitHeaders answers 431 to a request whose header fields exceed
// MaxHeaderBytes: problem+json, or a FHIR OperationOutcome under /fhir.
func limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerBytes(r) <= MaxHeaderBytes {
			next.ServeHTTP(w, r)
			return
		}
		detail := fmt.Sprintf("the request's header fields are larger than %d bytes", MaxHeaderBytes)
		if r.URL.Path == "/fhir" || strings.HasPrefix(r.URL.Path, "/fhir/") {
			b, _ := json.Marshal(fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{
				Severity: "error", Code: "too-long", Diagnostics: detail,
			}}}) // our own types always marshal
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
			_, _ = w.Write(append(b, '\n'))
			return
		}
		writeProblem(w, r, newProblem(http.StatusRequestHeaderFieldsTooLarge, ProblemHeaderTooLarge,
			"Request header fields too large", detail))
	})
}

// headerBytes is the size of r's header fields as sent.
func headerBytes(r *http.Request) int {
	n := len("Host: \r\n") + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}
