// Package httpclass classifies an HTTP answer whose status is not the one a
// client expected into the fault classes that the activities' retry
// policies act on (package fault):
//
//	status             Kind         class
//	401, 403           Auth         auth: not retried; credentials need a person
//	429                Throttled    downstream: retried, after Retry-After if sent
//	503 + Retry-After  Throttled    downstream: the server says when (Types.Error)
//	408, other 5xx     Unavailable  downstream: retried, after Retry-After if sent
//	another 4xx        Rejected     the client's choice (business or validation)
//	anything else      Unexpected   validation: an answer we cannot use
//
// The table and the reading of Retry-After (ParseRetryAfter) are shared
// by every client that talks to a partner or to the payer's own servers:
// the push, Bulk Data, FHIR REST and member-match clients. Each names
// its own fault types (Types), which the activities and the workflows'
// retry table know by name. A status a client reads itself (its 2xx, a
// 422 that carries a business reason) is handled before it comes here.
package httpclass

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/fhir"
)

// Kind is what a status says about a failed request.
type Kind int

// The kinds of status; see the package table.
const (
	Unexpected Kind = iota
	Auth
	Throttled
	Unavailable
	Rejected
)

// KindOf returns the kind of status code.
func KindOf(code int) Kind {
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return Auth
	case code == http.StatusTooManyRequests:
		return Throttled
	case code >= 500 || code == http.StatusRequestTimeout:
		// 408 is the server giving up on a slow request: worth a retry.
		return Unavailable
	case code >= 400:
		return Rejected
	}
	return Unexpected
}

// Types are the fault types a client gives each kind, and the class of a
// rejection.
type Types struct {
	Auth        string      // Auth, class auth
	Throttled   string      // Throttled, class downstream
	Unavailable string      // Unavailable, class downstream
	Rejected    string      // Rejected, class RejectClass
	RejectClass fault.Class // fault.Business or fault.Validation, as the caller's request is a decision or data
	Unexpected  string      // Unexpected, class validation
}

// Error returns the classified error of an answer with status code and
// header h: class and type by KindOf and t, message msg, cause err (nil:
// none) and Status code. A 503 that says when to come back (Retry-After)
// is Throttled: the server is shedding load, not broken. A downstream
// error carries the Retry-After that h asks for, read relative to now
// (ParseRetryAfter: capped, a date in the past is 0).
func (t Types) Error(code int, h http.Header, now time.Time, msg string, err error) *fault.Error {
	kind := KindOf(code)
	if code == http.StatusServiceUnavailable && h.Get("Retry-After") != "" {
		kind = Throttled
	}
	var e *fault.Error
	switch kind {
	case Auth:
		e = fault.Wrap(fault.Auth, t.Auth, msg, err)
	case Throttled:
		e = fault.Wrap(fault.Downstream, t.Throttled, msg, err)
	case Unavailable:
		e = fault.Wrap(fault.Downstream, t.Unavailable, msg, err)
	case Rejected:
		e = fault.Wrap(t.RejectClass, t.Rejected, msg, err)
	default:
		e = fault.Wrap(fault.Validation, t.Unexpected, msg, err)
	}
	e.Status = code
	if e.Class == fault.Downstream {
		if d, ok := ParseRetryAfter(h.Get("Retry-After"), now); ok {
			e.RetryAfter = d
		}
	}
	return e
}

// Outcome decodes the body of an answer into a new O, the caller's model
// of an OperationOutcome, when it is one: the answer is JSON (or says no
// media type) and its resourceType is OperationOutcome. nil otherwise.
// Only its codes may go into errors; diagnostics may echo what was sent.
func Outcome[O any](h http.Header, body []byte) *O {
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "" && !strings.HasSuffix(mt, "json") {
		return nil
	}
	var o O
	if json.Unmarshal(body, &o) != nil || fhir.ResourceType(body) != "OperationOutcome" {
		return nil
	}
	return &o
}
