// Package fhirrest connects p2p to our own payer's FHIR R4 server through
// its RESTful API, for the two ends of a transfer that stay in house:
//
//   - Source (source.go) reads a member's data for an export: one search
//     per resource type in scope, following the Bundle's next links. It
//     implements export.Source (and export.QuerySource).
//   - Sink (sink.go) writes the data an import pulled from the old payer:
//     the staged NDJSON files, as batch Bundles of PUTs.
//
// Both speak application/fhir+json, send a bearer token when given one
// (a connectors/bulkdata TokenSource) and classify every failure with
// package fault: transport and 5xx/429 are retryable (each request is
// tried a few times before the error goes back to the activity), 401/403
// are auth, other 4xx are business (Source) or validation (Sink).
// Messages name the operation, the status and OperationOutcome issue
// codes, never a resource's content.
package fhirrest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/httpclass"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// ContentType is the media type of FHIR R4 JSON.
const ContentType = "application/fhir+json"

// Stable fault types of the package.
const (
	ErrTypeUnreachable    = "fhir_unreachable"      // transport: connection, DNS, timeout, body cut
	ErrTypeUnavailable    = "fhir_unavailable"      // downstream: 5xx, 408, 429
	ErrTypeAuth           = "fhir_auth"             // auth: 401, 403, no token
	ErrTypeRejected       = "fhir_rejected"         // business (source) / validation (sink): another 4xx
	ErrTypeBadResponse    = "fhir_bad_response"     // validation: an answer we cannot use
	ErrTypeHostNotAllowed = fault.TypeEgressRefused // validation: a next link to another host (was fhir_host_not_allowed)
	ErrTypeTooLarge       = "fhir_too_large"        // validation: past a page, byte or resource bound
	ErrTypeNoPatient      = "fhir_patient_not_found"
	ErrTypeAmbiguous      = "fhir_patient_ambiguous"
	ErrTypeBadInput       = "fhir_bad_input" // validation: a staged line we cannot send
)

// Defaults of Config.
const (
	DefaultAttempts        = 3
	DefaultBackoff         = 500 * time.Millisecond
	DefaultMaxRetryAfter   = 30 * time.Second // longer: give up, the activity retries later
	DefaultMaxResponseSize = 32 << 20
)

// Config is how to reach a FHIR server.
type Config struct {
	BaseURL string               // e.g. https://fhir.payer.example/r4; http(s) only
	Token   bulkdata.TokenSource // nil: no Authorization header
	// HTTPClient: nil is an egress client (package internal/egress) held
	// to the base URL's host, sending the token to its origin only, no
	// redirects, timeouts, answers capped at MaxResponseSize. Private
	// addresses are allowed: the server is ours, configured by the
	// operator, and usually on an internal network.
	HTTPClient *http.Client
	// Attempts is how many times one request is tried when it fails in a
	// retryable way; 0: DefaultAttempts.
	Attempts int
	// Backoff is the wait before the second try, doubled after each; 0:
	// DefaultBackoff. A Retry-After up to DefaultMaxRetryAfter wins.
	Backoff time.Duration
	// MaxResponseSize bounds the bytes of one answer; 0:
	// DefaultMaxResponseSize.
	MaxResponseSize int64
}

// client is what Source and Sink share: the base URL, the token and
// the request loop with its retries and classification.
type client struct {
	base  *url.URL
	cfg   Config
	sleep func(context.Context, time.Duration) error
}

func newClient(cfg Config) (*client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fault.New(fault.Validation, ErrTypeBadInput, "the FHIR base URL must be an absolute http(s) URL")
	}
	if cfg.MaxResponseSize <= 0 {
		cfg.MaxResponseSize = DefaultMaxResponseSize
	}
	if cfg.HTTPClient == nil {
		host, _ := egress.HostOf(u)
		origin, _ := egress.OriginOf(u)
		cfg.HTTPClient = egress.NewClient(egress.Policy{
			Name: u.Hostname(), AllowPrivate: true, Hosts: []egress.Rule{host}, TokenHosts: []egress.Rule{origin},
			MaxResponseBytes: cfg.MaxResponseSize + 1, Timeout: connectors.MaxTimeout,
		})
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	return &client{base: u, cfg: cfg, sleep: sleepCtx}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// endpoint returns base/path?query (the base itself for path "").
func (c *client) endpoint(path string, q url.Values) string {
	u := *c.base
	if path != "" {
		u.Path = strings.TrimRight(u.Path, "/") + "/" + path
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// sameOrigin reports whether u is on the base URL's scheme and host: we
// send our token, and follow links, nowhere else.
func (c *client) sameOrigin(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, c.base.Scheme) && strings.EqualFold(u.Host, c.base.Host)
}

// do sends the request, retrying retryable failures, and returns the body
// of a 2xx answer. op names the call in errors; rejectClass is the class
// of a 4xx other than 401/403.
func (c *client) do(ctx context.Context, op, method, target string, body []byte, rejectClass fault.Class) ([]byte, error) {
	wait := c.cfg.Backoff
	var last *fault.Error
	refreshed := false
	for attempt := 1; attempt <= c.cfg.Attempts; attempt++ {
		if attempt > 1 {
			d := wait
			if last.RetryAfter > 0 {
				d = last.RetryAfter
			}
			if err := c.sleep(ctx, d); err != nil {
				return nil, fault.Wrap(fault.Transport, ErrTypeUnreachable, op, err)
			}
			wait *= 2
		}
		b, token, err := c.once(ctx, op, method, target, body, rejectClass)
		if err == nil {
			return b, nil
		}
		last = err
		// A refused token is dropped and the request tried once more with
		// a fresh one.
		if err.Class == fault.Auth && err.Status == http.StatusUnauthorized && token != "" && !refreshed {
			if inv, ok := c.cfg.Token.(interface{ Invalidate(string) }); ok {
				inv.Invalidate(token)
				refreshed = true
				attempt--
				continue
			}
		}
		if !err.Class.Retryable() || err.RetryAfter > DefaultMaxRetryAfter || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, last
}

func (c *client) once(ctx context.Context, op, method, target string, body []byte, rejectClass fault.Class) ([]byte, string, *fault.Error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, "", fault.Wrap(fault.Validation, ErrTypeBadInput, op, err)
	}
	req.Header.Set("Accept", ContentType)
	if body != nil {
		req.Header.Set("Content-Type", ContentType)
	}
	token := ""
	if c.cfg.Token != nil {
		if token, err = c.cfg.Token.Token(ctx); err != nil {
			if f, ok := fault.As(err); ok {
				return nil, "", f
			}
			return nil, "", fault.Wrap(fault.Auth, ErrTypeAuth, op+": no token", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if f, ok := egress.Fault(err); ok {
		return nil, token, f
	}
	if err != nil {
		return nil, token, fault.Wrap(fault.Transport, ErrTypeUnreachable, op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseSize+1))
	if f, ok := egress.Fault(err); ok {
		return nil, token, f
	}
	if err != nil {
		return nil, token, fault.Wrap(fault.Transport, ErrTypeUnreachable, op+": reading the answer", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, token, classify(op, resp, b, rejectClass)
	}
	if int64(len(b)) > c.cfg.MaxResponseSize {
		return nil, token, fault.New(fault.Validation, ErrTypeTooLarge, fmt.Sprintf("%s: answer larger than %d bytes", op, c.cfg.MaxResponseSize))
	}
	return b, token, nil
}

// classify turns a non-2xx answer into a classified error (package
// httpclass; a 429 is unavailable like a 5xx). Its cause is a
// *bulkdata.StatusError (status and OperationOutcome codes); the body is
// never quoted.
func classify(op string, resp *http.Response, body []byte, rejectClass fault.Class) *fault.Error {
	se := &bulkdata.StatusError{Op: op, StatusCode: resp.StatusCode, Outcome: httpclass.Outcome[bulkdata.OperationOutcome](resp.Header, body), RetryAfter: resp.Header.Get("Retry-After")}
	types := httpclass.Types{
		Auth: ErrTypeAuth, Throttled: ErrTypeUnavailable, Unavailable: ErrTypeUnavailable,
		Rejected: ErrTypeRejected, RejectClass: rejectClass, Unexpected: ErrTypeBadResponse,
	}
	msg := op
	if httpclass.KindOf(resp.StatusCode) == httpclass.Unexpected {
		msg += ": unexpected status"
	}
	return types.Error(resp.StatusCode, resp.Header, time.Now(), msg, se)
}

// outcomeCodes returns the issue codes of a raw OperationOutcome, "" if
// it is none.
func outcomeCodes(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var o bulkdata.OperationOutcome
	if json.Unmarshal(raw, &o) != nil || o.ResourceType != "OperationOutcome" {
		return ""
	}
	return o.Codes()
}

var errNotBundle = errors.New("not a Bundle")
