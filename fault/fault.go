// Package fault classifies errors. The class of an error decides what the
// workflow does with it: transport and downstream faults are retried, auth
// and validation faults go to a person or fail, business outcomes end the
// transfer with a stable error type.
package fault

import (
	"errors"
	"fmt"
	"time"
)

// Class is what kind of failure an error is.
type Class string

// The classes of failure.
const (
	Transport  Class = "transport"  // network, timeout, connection refused: retry
	Auth       Class = "auth"       // credentials or signature refused: do not retry
	Validation Class = "validation" // malformed input or response: do not retry
	Business   Class = "business"   // a decision (no match, consent denied, partner rejected): do not retry
	Downstream Class = "downstream" // the other side failed (5xx, 429): retry
)

// Retryable reports whether errors of class c are worth retrying.
func (c Class) Retryable() bool { return c == Transport || c == Downstream }

// Error types shared by connectors, activities and workflows. The type of
// a classified error is the one stable string that names the failure all
// the way: the connector sets it, the activity fails with it as its
// Temporal application error type, the workflow reads it and records it
// (the transfer's error type, for the business ones). Connectors declare
// their own finer types beside these (connectors.ErrType*,
// bulkdata.ErrType*, fhirrest.ErrType*).
const (
	TypePartnerRejected = "partner_rejected"     // business: the partner refused the request (4xx)
	TypePartnerAuth     = "partner_auth"         // auth: the partner refused our credentials (401, 403, token)
	TypeUnavailable     = "partner_unavailable"  // downstream: the partner failed (5xx, 408)
	TypeBadResponse     = "partner_bad_response" // validation: an answer we cannot use
	TypeUnknownPartner  = "unknown_partner"      // business: not in the registry, or not in that role
	TypeNoMatch         = "no_match"             // business: no member matches
	TypeConsentDenied   = "consent_denied"       // business: the consent cannot be honoured
	TypeExportExpired   = "bulk_export_expired"  // business: the export or a file is gone; kick off again
	TypeNotFound        = "not_found"            // what the step works on is not in our store
	TypeSigning         = "signing"              // transport: the signer failed

	// Outbound calls (package internal/egress) and import caps. All are
	// validation faults: retrying cannot change the answer.
	TypeEgressRefused      = "egress_refused"        // a call refused before it was sent: address, host or token not allowed
	TypeResponseTooLarge   = "response_too_large"    // an answer longer than the client's cap
	TypeImportFileTooLarge = "import_file_too_large" // one file of an import past its byte cap
	TypeImportTooLarge     = "import_too_large"      // an import's files together past the per-transfer byte cap
	TypeImportTooManyFiles = "import_too_many_files" // a manifest listing more files than the cap
)

// TypeOf is err's type: a classified error's own, else the name of its
// class (an unclassified error is a Transport fault, "transport").
func TypeOf(err error) string {
	if e, ok := As(err); ok && e.Type != "" {
		return e.Type
	}
	return string(ClassOf(err))
}

// Error is a classified error. Type is a stable string (for business errors,
// the transfer's error type, e.g. "consent_denied"). Messages never hold PHI.
type Error struct {
	Class      Class
	Type       string
	Msg        string
	RetryAfter time.Duration // a partner's Retry-After, if it sent one
	Status     int           // the HTTP status the other side answered, 0 if it did not answer
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s/%s: %s: %v", e.Class, e.Type, e.Msg, e.Err)
	}
	return fmt.Sprintf("%s/%s: %s", e.Class, e.Type, e.Msg)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns a classified error.
func New(c Class, typ, msg string) *Error { return &Error{Class: c, Type: typ, Msg: msg} }

// Wrap returns a classified error with cause err.
func Wrap(c Class, typ, msg string, err error) *Error {
	return &Error{Class: c, Type: typ, Msg: msg, Err: err}
}

// As returns the classified error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ClassOf returns the class of err; unclassified errors count as Transport
// so that an unknown failure is retried rather than silently dropped.
func ClassOf(err error) Class {
	if e, ok := As(err); ok {
		return e.Class
	}
	return Transport
}
