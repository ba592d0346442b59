package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"go.uber.org/zap"
)

// ProblemTypePrefix starts every problem type URN.
const ProblemTypePrefix = "urn:p2p:problem:"

// Problem types, the stable slugs after ProblemTypePrefix. Clients switch
// on them; never rename one.
const (
	ProblemValidation            = "validation"              // 400: a field or parameter is invalid
	ProblemInvalidJSON           = "invalid-json"            // 400: the body is not JSON
	ProblemInvalidText           = "invalid-text"            // 400: the body is not UTF-8 or holds NUL
	ProblemUnsupportedMediaType  = "unsupported-media-type"  // 415
	ProblemTooLarge              = "too-large"               // 413
	ProblemHeaderTooLarge        = "header-too-large"        // 431: header fields past MaxHeaderBytes
	ProblemIdempotencyKeyMissing = "idempotency-key-missing" // 400
	ProblemIdempotencyKeyInvalid = "idempotency-key-invalid" // 400: outside 8..255 characters
	ProblemIdempotencyKeyReused  = "idempotency-key-reused"  // 422: same key, other body
	ProblemUnknownPartner        = "unknown-partner"         // 422
	ProblemNotFound              = "not-found"               // 404
	ProblemMethodNotAllowed      = "method-not-allowed"      // 405
	ProblemNotInReview           = "not-in-review"           // 409
	ProblemInvalidDecision       = "invalid-decision"        // 422
	ProblemNotAwaitingAck        = "not-awaiting-ack"        // 409
	ProblemReceiptInvalid        = "receipt-invalid"         // 422
	ProblemUnauthenticated       = "unauthenticated"         // 401: no credentials, or ones that do not hold
	ProblemForbidden             = "forbidden"               // 403: the client's scopes do not open the operation
	ProblemUnavailable           = "unavailable"             // 503: retry later
	ProblemRateLimited           = "rate-limited"            // 429: retry after Retry-After
	ProblemInternal              = "internal"                // 500
	// ProblemAuditInconsistent (500): the audit log does not verify from
	// its last signed checkpoint, so no checkpoint is signed.
	ProblemAuditInconsistent = "audit-inconsistent"
)

// problemError is an error a handler returns to answer with a problem.
// Its text never holds submitted values.
type problemError struct {
	status int
	slug   string
	title  string
	detail string
	fields []FieldProblem
	// challenge is the WWW-Authenticate header of a 401 or 403.
	challenge string
}

func (p *problemError) Error() string {
	return fmt.Sprintf("%d %s: %s", p.status, p.slug, p.detail)
}

func newProblem(status int, slug, title, detail string, fields ...FieldProblem) *problemError {
	return &problemError{status: status, slug: slug, title: title, detail: detail, fields: fields}
}

func invalid(detail string, fields ...FieldProblem) *problemError {
	return newProblem(http.StatusBadRequest, ProblemValidation, "Request is invalid", detail, fields...)
}

func fieldInvalid(field, reason string) *problemError {
	return invalid("the request has an invalid field", FieldProblem{Field: field, Reason: reason})
}

func notFound(what string) *problemError {
	return newProblem(http.StatusNotFound, ProblemNotFound, "Not found", what+" does not exist")
}

func unavailable(detail string) *problemError {
	return newProblem(http.StatusServiceUnavailable, ProblemUnavailable, "Service unavailable", detail)
}

var errInternal = newProblem(http.StatusInternalServerError, ProblemInternal, "Internal error",
	"an unexpected error occurred; quote the instance when reporting it")

// writeProblem answers with p as application/problem+json. instance names
// the request so that a client can quote it and we can find its log line.
func writeProblem(w http.ResponseWriter, r *http.Request, p *problemError) {
	body := Problem{Type: ProblemTypePrefix + p.slug, Title: p.title, Status: p.status}
	if p.detail != "" {
		body.Detail = &p.detail
	}
	if len(p.fields) > 0 {
		body.Errors = &p.fields
	}
	if info := infoFrom(r.Context()); info != nil {
		instance := "urn:p2p:request:" + info.requestID
		body.Instance = &instance
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(body) // a Problem always encodes
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	if p.challenge != "" {
		h.Set("WWW-Authenticate", p.challenge)
	}
	w.WriteHeader(p.status)
	_, _ = buf.WriteTo(w)
}

// responseError answers for an error a handler returned: its problem, or a
// 500 that is logged with the transfer id but never shown to the client.
func (s *Server) responseError(w http.ResponseWriter, r *http.Request, err error) {
	var p *problemError
	if errors.As(err, &p) {
		writeProblem(w, r, p)
		return
	}
	s.logFor(r.Context()).Error("request failed", zap.Error(err))
	writeProblem(w, r, errInternal)
}

// requestError answers for a body the strict handler could not decode. The
// decoder's message may quote the body, so it is dropped.
func requestError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeProblem(w, r, bodyTooLarge())
		return
	}
	writeProblem(w, r, newProblem(http.StatusBadRequest, ProblemInvalidJSON, "Body is not valid JSON",
		"the request body could not be decoded as the JSON this operation expects"))
}

func bodyTooLarge() *problemError {
	return newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge, "Body too large",
		fmt.Sprintf("the request body is larger than %d bytes", maxBodyBytes))
}

// paramError answers for a parameter the generated router could not bind.
func paramError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		required *RequiredHeaderError
		format   *InvalidParamFormatError
		reqParam *RequiredParamError
		many     *TooManyValuesForParamError
		unmarsh  *UnmarshalingParamError
	)
	switch {
	case errors.As(err, &required):
		if strings.EqualFold(required.ParamName, idempotencyHeader) {
			writeProblem(w, r, missingKey())
			return
		}
		writeProblem(w, r, fieldInvalid(required.ParamName, "is required"))
	case errors.As(err, &format):
		writeProblem(w, r, fieldInvalid(format.ParamName, "has an invalid format"))
	case errors.As(err, &reqParam):
		writeProblem(w, r, fieldInvalid(reqParam.ParamName, "is required"))
	case errors.As(err, &many):
		writeProblem(w, r, fieldInvalid(many.ParamName, "must be given once"))
	case errors.As(err, &unmarsh):
		writeProblem(w, r, fieldInvalid(unmarsh.ParamName, "has an invalid format"))
	default:
		writeProblem(w, r, invalid("the request parameters are invalid"))
	}
}

func missingKey() *problemError {
	return newProblem(http.StatusBadRequest, ProblemIdempotencyKeyMissing, "Idempotency-Key missing",
		"this operation requires an Idempotency-Key header",
		FieldProblem{Field: idempotencyHeader, Reason: "is required"})
}

func badKey() *problemError {
	return newProblem(http.StatusBadRequest, ProblemIdempotencyKeyInvalid, "Idempotency-Key invalid",
		fmt.Sprintf("the Idempotency-Key header must be %d to %d characters", minKeyLen, maxKeyLen),
		FieldProblem{Field: idempotencyHeader, Reason: fmt.Sprintf("must be %d to %d characters", minKeyLen, maxKeyLen)})
}

// validationProblem turns the request validator's error into a problem
// naming each field and why, built from the schema (never from the
// validator's messages, which may quote the value).
func validationProblem(err error) *problemError {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return bodyTooLarge()
	}
	var fields []FieldProblem
	key, undecodable, mediaType := false, false, false
	var walk func(prefix string, err error)
	walk = func(prefix string, err error) {
		// A type switch, not errors.As: a RequestError unwraps to the
		// MultiError inside it and would lose the parameter it is about.
		switch e := err.(type) {
		case openapi3.MultiError:
			for _, err := range e {
				walk(prefix, err)
			}
		case *openapi3filter.RequestError:
			switch {
			case e.Parameter != nil:
				name := e.Parameter.Name
				if strings.EqualFold(name, idempotencyHeader) {
					key = true
				}
				if e.Err == nil || errors.Is(e.Err, openapi3filter.ErrInvalidRequired) || errors.Is(e.Err, openapi3filter.ErrInvalidEmptyValue) {
					fields = append(fields, FieldProblem{Field: name, Reason: "is required"})
					return
				}
				walk(name, e.Err)
			case strings.HasPrefix(e.Reason, "header Content-Type has unexpected value"):
				mediaType = true
			case e.Reason == "failed to decode request body":
				undecodable = true
			case errors.Is(e.Err, openapi3filter.ErrInvalidRequired):
				fields = append(fields, FieldProblem{Field: "body", Reason: "is required"})
			case e.Err != nil:
				walk(prefix, e.Err)
			default:
				fields = append(fields, FieldProblem{Field: orBody(prefix), Reason: "is invalid"})
			}
		case *openapi3.SchemaError:
			fields = append(fields, schemaFieldProblem(prefix, e))
		default:
			if inner := errors.Unwrap(err); inner != nil {
				walk(prefix, inner)
				return
			}
			fields = append(fields, FieldProblem{Field: orBody(prefix), Reason: "is invalid"})
		}
	}
	walk("", err)

	switch {
	case mediaType:
		return newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "Unsupported media type",
			"the request body must be application/json")
	case undecodable:
		return newProblem(http.StatusBadRequest, ProblemInvalidJSON, "Body is not valid JSON",
			"the request body could not be parsed as JSON")
	case key:
		for _, f := range fields {
			if strings.EqualFold(f.Field, idempotencyHeader) && f.Reason == "is required" {
				p := missingKey()
				p.fields = fields
				return p
			}
		}
		p := badKey()
		p.fields = fields
		return p
	}
	return invalid("the request has invalid fields; see errors", fields...)
}

func orBody(prefix string) string {
	if prefix == "" {
		return "body"
	}
	return prefix
}

// identifier matches property names safe to repeat in an error: names a
// client may have mistyped, not values.
var identifier = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_\-]{0,63}$`)

// schemaFieldProblem names the field of a schema error and says why it is
// invalid in terms of the schema only.
func schemaFieldProblem(prefix string, se *openapi3.SchemaError) FieldProblem {
	field := fieldPath(prefix, se.JSONPointer())
	s := se.Schema
	if s == nil {
		s = &openapi3.Schema{}
	}
	reason := "is invalid"
	switch se.SchemaField {
	case "required":
		reason = "is required"
	case "properties":
		// "property \"x\" is unsupported": the pointer names the object.
		reason = "is not a known property"
		name, ok := quoted(se.Reason)
		if ok && identifier.MatchString(name) {
			field = joinField(field, name)
		} else {
			reason = "has a property that is not known"
		}
	case "type":
		reason = "must be of type " + strings.Join(s.Type.Slice(), " or ")
	case "nullable":
		reason = "must not be null"
	case "enum":
		vals := make([]string, 0, len(s.Enum))
		for _, v := range s.Enum {
			vals = append(vals, fmt.Sprint(v))
		}
		reason = "must be one of " + strings.Join(vals, ", ")
	case "format":
		switch s.Format {
		case "date":
			reason = "must be a date in YYYY-MM-DD form"
		case "date-time":
			reason = "must be an RFC 3339 date-time"
		default:
			reason = "must be in " + s.Format + " format"
		}
	case "minLength":
		if s.MinLength == 1 {
			reason = "must not be empty"
		} else {
			reason = fmt.Sprintf("must be at least %d characters", s.MinLength)
		}
	case "maxLength":
		if s.MaxLength != nil {
			reason = fmt.Sprintf("must be at most %d characters", *s.MaxLength)
		}
	case "minimum":
		if s.Min != nil {
			reason = "must be at least " + strconv.FormatFloat(*s.Min, 'f', -1, 64)
		}
	case "maximum":
		if s.Max != nil {
			reason = "must be at most " + strconv.FormatFloat(*s.Max, 'f', -1, 64)
		}
	case "minItems":
		reason = fmt.Sprintf("must have at least %d items", s.MinItems)
	case "maxItems":
		if s.MaxItems != nil {
			reason = fmt.Sprintf("must have at most %d items", *s.MaxItems)
		}
	case "pattern":
		reason = "does not match the expected pattern"
		if s.Pattern == memberIDPattern {
			reason = memberIDReason
		}
	}
	return FieldProblem{Field: orBody(field), Reason: reason}
}

// fieldPath renders a JSON pointer as member.address.street or
// data_scope.resource_types[1].
func fieldPath(prefix string, pointer []string) string {
	field := prefix
	for _, p := range pointer {
		if _, err := strconv.Atoi(p); err == nil {
			field += "[" + p + "]"
			continue
		}
		field = joinField(field, p)
	}
	return field
}

func joinField(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// quoted returns the first double-quoted string in s.
func quoted(s string) (string, bool) {
	i := strings.IndexByte(s, '"')
	if i < 0 {
		return "", false
	}
	q, err := strconv.QuotedPrefix(s[i:])
	if err != nil {
		return "", false
	}
	u, err := strconv.Unquote(q)
	return u, err == nil
}
