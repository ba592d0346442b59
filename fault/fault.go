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
