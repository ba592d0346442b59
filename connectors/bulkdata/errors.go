package bulkdata

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/connectors/httpclass"
	"github.com/p2p-payer/p2p/fault"
)

// Stable fault types of the client. The class (package fault) says what the
// workflow does; the type says why, in words that never change.
const (
	ErrTypeUnreachable    = "partner_unreachable"     // transport: connection, DNS, timeout, body cut
	ErrTypeUnavailable    = fault.TypeUnavailable     // downstream: 5xx, 408
	ErrTypeThrottled      = "partner_throttled"       // downstream: 429 (and 503 with Retry-After)
	ErrTypeAuth           = fault.TypePartnerAuth     // auth: 401, 403, token refused
	ErrTypeRejected       = fault.TypePartnerRejected // business: the partner refused the kick-off (4xx)
	ErrTypeBadRequest     = "bulk_bad_request"        // validation: our request cannot be sent as configured
	ErrTypeBadResponse    = fault.TypeBadResponse     // validation: an answer we cannot use
	ErrTypeHostNotAllowed = fault.TypeEgressRefused   // validation: a URL outside the partner's allow-listed hosts, a redirect, a refused address (was bulk_host_not_allowed)
	ErrTypeBadFile        = "bulk_bad_file"           // validation: NDJSON that is not what the manifest says
	ErrTypeExpired        = fault.TypeExportExpired   // business: the export or a file is gone; kick off again
)

// ErrExpired is in the chain of every error saying that the export job or
// one of its files no longer exists on the server (404 or 410): the
// workflow kicks the export off again. Test with errors.Is.
var ErrExpired = errors.New("bulkdata: export expired")

// OperationOutcome is the FHIR R4 OperationOutcome a Bulk Data server
// returns with an error. Only the elements a client reasons about are kept.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string           `json:"severity"` // fatal | error | warning | information
	Code        string           `json:"code"`     // IssueType, e.g. "processing", "transient"
	Details     *CodeableConcept `json:"details,omitempty"`
	Diagnostics string           `json:"diagnostics,omitempty"`
	Expression  []string         `json:"expression,omitempty"`
}

// CodeableConcept is the FHIR data type, as far as Issue.details needs it.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Coding is a code from a code system.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// Codes returns the issue codes, e.g. "processing,too-costly": safe to log,
// unlike diagnostics and details, which a server may fill with what it was
// asked about.
func (o *OperationOutcome) Codes() string {
	if o == nil {
		return ""
	}
	codes := make([]string, 0, len(o.Issue))
	for _, is := range o.Issue {
		codes = append(codes, is.Code)
	}
	return strings.Join(codes, ",")
}

// transientCodes are the IssueType codes under "transient" (FHIR R4): a
// server that fails a status request with one of them says "ask again
// later", not "the export failed".
var transientCodes = map[string]bool{
	"transient": true, "lock-error": true, "no-store": true, "exception": true,
	"timeout": true, "incomplete": true, "throttled": true,
}

// Transient reports whether every issue of o has a transient code.
func (o *OperationOutcome) Transient() bool {
	if o == nil || len(o.Issue) == 0 {
		return false
	}
	for _, is := range o.Issue {
		if !transientCodes[is.Code] {
			return false
		}
	}
	return true
}

// StatusError is an HTTP answer that is not what the operation expects. It
// is the cause (Unwrap) of the *fault.Error every method returns, so
// errors.As gives the status and the OperationOutcome, and fault.As the
// class. Its message holds the operation, the status and the issue codes,
// never diagnostics.
type StatusError struct {
	Op         string            // "kick-off", "status", "download", "delete", "token", "discovery"
	StatusCode int               // HTTP status
	Outcome    *OperationOutcome // nil when the body was not an OperationOutcome
	RetryAfter string            // the Retry-After header as sent, if any
	err        error             // ErrExpired, or nil
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s answered %d", e.Op, e.StatusCode)
	if c := e.Outcome.Codes(); c != "" {
		s += " (OperationOutcome " + c + ")"
	}
	return s
}

// Unwrap returns ErrExpired for 404 and 410 answers on a status or file URL.
func (e *StatusError) Unwrap() error { return e.err }

// HTTPStatus returns the HTTP status in err's chain, or 0.
func HTTPStatus(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.StatusCode
	}
	return 0
}

// Outcome returns the OperationOutcome in err's chain, or nil.
func Outcome(err error) *OperationOutcome {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Outcome
	}
	return nil
}

// maxErrorBody bounds how much of an error answer we read.
const maxErrorBody = 1 << 20

// parseOutcome returns the body as an OperationOutcome when it is one.
func parseOutcome(h http.Header, body []byte) *OperationOutcome {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt != "" && !strings.HasSuffix(mt, "json") {
		return nil
	}
	var o OperationOutcome
	if json.Unmarshal(body, &o) != nil || o.ResourceType != "OperationOutcome" {
		return nil
	}
	return &o
}

// classify turns an unexpected answer to op into a classified error: an
// expirable request's 404 or 410 is business bulk_export_expired,
// wrapping ErrExpired; every other status goes by the shared table
// (httpclass: auth; throttled for 429 and a 503 with Retry-After;
// unavailable for 408 and 5xx; rejectClass/rejectType for another 4xx;
// validation for an answer we cannot use), except that a 500 or 501 whose
// OperationOutcome has an issue that is not transient is
// rejectClass/rejectType too: the server failed the request for good.
//
// msg names the partner and the operation; the body is only read for an
// OperationOutcome, never quoted.
func classify(op, partner string, resp *http.Response, body []byte, now time.Time, expirable bool, rejectClass fault.Class, rejectType string) *fault.Error {
	se := &StatusError{Op: op, StatusCode: resp.StatusCode, Outcome: parseOutcome(resp.Header, body), RetryAfter: resp.Header.Get("Retry-After")}
	msg := "partner " + partner + ": " + op
	if code := resp.StatusCode; expirable && (code == http.StatusNotFound || code == http.StatusGone) {
		se.err = ErrExpired
		e := fault.Wrap(fault.Business, ErrTypeExpired, msg, se)
		e.Status = code
		return e
	}
	if code := resp.StatusCode; (code == http.StatusInternalServerError || code == http.StatusNotImplemented) &&
		se.Outcome != nil && !se.Outcome.Transient() {
		// The server says what failed and that asking again will not
		// help: a refusal, read the same at kick-off, status and download.
		e := fault.Wrap(rejectClass, rejectType, msg, se)
		e.Status = code
		return e
	}
	types := httpclass.Types{Auth: ErrTypeAuth, Throttled: ErrTypeThrottled, Unavailable: ErrTypeUnavailable,
		Rejected: rejectType, RejectClass: rejectClass, Unexpected: ErrTypeBadResponse}
	return types.Error(resp.StatusCode, resp.Header, now, msg, se)
}
