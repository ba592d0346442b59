// Package bulkdata is the client side of FHIR Bulk Data Access (the Bulk
// Data IG v2, https://hl7.org/fhir/uv/bulkdata/STU2), as p2p uses it to
// pull a member's data from the old payer: PDex's
// Group/[id]/$davinci-data-export or a plain $export.
//
// Each call is one HTTP exchange, so that a Temporal activity can make it
// and a workflow can decide what comes next on durable timers:
//
//	KickOff   GET|POST [base]/Patient/$export, [base]/Group/[id]/$export or
//	          [base]/Group/[id]/$davinci-data-export → the status URL
//	Poll      GET status URL → Status: in progress (X-Progress, Retry-After),
//	          complete (Manifest, Expires) or failed (OperationOutcome)
//	NextPollDelay  pure: how long the workflow sleeps before the next Poll
//	Download  GET one output file, streamed to a sink with bounded memory,
//	          each line checked, counted and hashed
//	Delete    DELETE status URL: cancel, or clean up after a failure
//
// Every URL the server hands back (Content-Location, manifest files,
// redirects) must be on the partner's allow-listed hosts, so a partner
// cannot send our bearer token, or us, anywhere else. Every failure is
// classified with package fault; HTTP answers are also in the chain as a
// *StatusError carrying the status and the server's OperationOutcome.
package bulkdata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// Defaults of Config.
const (
	DefaultTimeout             = 30 * time.Second
	DefaultDownloadIdleTimeout = 2 * time.Minute
	DefaultMaxLineBytes        = 64 << 20
)

// Media types of the protocol.
const (
	MediaFHIRJSON   = "application/fhir+json"
	MediaFHIRNDJSON = "application/fhir+ndjson"
)

// Config configures a Client for one partner.
type Config struct {
	// Partner names the partner in error messages (its registry id).
	Partner string
	// BaseURL is the partner's FHIR base, e.g. https://fhir.acme.example/r4.
	BaseURL string
	// AllowedHosts are the hosts the partner may send us to besides the
	// base URL's: "files.acme.example" (any port), "files.acme.example:8443"
	// (that port), "*.blob.acme.example" (any subdomain), "[::1]:8080".
	AllowedHosts []string
	// Tokens gives the bearer token for every request to the partner, and
	// for file downloads whose manifest requires one. nil: no token (only
	// for loopback test partners).
	Tokens TokenSource
	// HTTPClient makes the calls; nil: NewHTTPClient(). Whatever client is
	// given, redirects are only followed for GETs to allowed hosts.
	HTTPClient *http.Client
	// Timeout bounds a kick-off, a poll and a delete; 0: DefaultTimeout.
	Timeout time.Duration
	// DownloadIdleTimeout aborts a download that receives nothing for this
	// long (a download has no overall deadline: files can be large);
	// 0: DefaultDownloadIdleTimeout.
	DownloadIdleTimeout time.Duration
	// MaxLineBytes is the longest NDJSON line (one resource) accepted;
	// 0: DefaultMaxLineBytes.
	MaxLineBytes int
	// Now is the clock, for Retry-After dates; nil: time.Now.
	Now func() time.Time
}

// Exporter is the export-pull capability: the exchanges a caller drives
// one at a time (Client is the implementation).
type Exporter interface {
	KickOff(ctx context.Context, r ExportRequest) (string, error)
	Poll(ctx context.Context, statusURL string) (Status, error)
	DownloadTo(ctx context.Context, f OutputFile, requiresAccessToken bool, sink Sink, n int) (FileResult, error)
	Delete(ctx context.Context, statusURL string) error
}

var _ Exporter = (*Client)(nil)

// Client talks Bulk Data to one partner. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   *url.URL
	hosts  allowList
	client *http.Client
	next   func(*http.Request, []*http.Request) error // the given client's redirect rule
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("bulkdata: base URL %.100q: want an absolute http(s) URL", cfg.BaseURL)
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, errors.New("bulkdata: base URL must have no credentials, query or fragment")
	}
	hosts, err := newAllowList(base, cfg.AllowedHosts)
	if err != nil {
		return nil, fmt.Errorf("bulkdata: %w", err)
	}
	c := &Client{cfg: cfg, base: base, hosts: hosts}
	if c.cfg.Partner == "" {
		c.cfg.Partner = base.Host
	}
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = DefaultTimeout
	}
	if c.cfg.DownloadIdleTimeout <= 0 {
		c.cfg.DownloadIdleTimeout = DefaultDownloadIdleTimeout
	}
	if c.cfg.MaxLineBytes <= 0 {
		c.cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	cp := *hc
	if hc.CheckRedirect != nil {
		// The given client's rule, unless it is "follow none": ours
		// decides which redirects a Bulk Data client follows.
		c.next = func(req *http.Request, via []*http.Request) error {
			if err := hc.CheckRedirect(req, via); err != http.ErrUseLastResponse {
				return err
			}
			return nil
		}
	}
	cp.CheckRedirect = c.checkRedirect
	c.client = &cp
	return c, nil
}

// NewHTTPClient returns a client for Bulk Data calls: bounded connect, TLS
// and response-header times, and no overall timeout (downloads can be
// long; each call has its own deadline or idle timeout).
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   8,
			ForceAttemptHTTP2:     true,
		},
	}
}

// BaseURL returns the partner's FHIR base, without a trailing slash.
func (c *Client) BaseURL() string { return c.base.String() }

func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// allowList is where a partner may send us: its base URL's host and its
// allow-listed hosts, never from https down to http.
type allowList struct {
	https bool
	rules []egress.Rule
}

func newAllowList(base *url.URL, hosts []string) (allowList, error) {
	a := allowList{https: base.Scheme == "https"}
	own, _ := egress.RuleOf(base) // its port if it names one, else any
	a.rules = append(a.rules, own)
	for _, h := range hosts {
		r, err := egress.ParseRule(h)
		if err != nil {
			return a, fmt.Errorf("allowed host %.100q: %w", h, err)
		}
		a.rules = append(a.rules, r)
	}
	return a, nil
}

// check returns why u is refused, or "".
func (a allowList) check(u *url.URL) string {
	switch {
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return "is not an absolute http(s) URL"
	case u.User != nil:
		return "carries credentials"
	case a.https && u.Scheme != "https":
		return "downgrades to http"
	}
	for _, r := range a.rules {
		if r.Allows(u) {
			return ""
		}
	}
	return "is on a host that is not allow-listed"
}

// checkURL parses a URL the partner handed us and refuses it unless the
// allow-list takes it.
func (c *Client) checkURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fault.New(fault.Validation, ErrTypeBadResponse, fmt.Sprintf("partner %s: %s is not a URL", c.cfg.Partner, what))
	}
	return u, c.checkParsed(what, u)
}

func (c *Client) checkParsed(what string, u *url.URL) error {
	if why := c.hosts.check(u); why != "" {
		return egress.Refuse(c.cfg.Partner, u.Host, what+" "+why)
	}
	return nil
}

// checkAbsoluteURL is the host-independent part of checkURL, for
// ParseManifest.
func checkAbsoluteURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return errors.New("not an absolute http(s) URL")
	case u.User != nil:
		return errors.New("carries credentials")
	}
	return nil
}

// checkRedirect follows redirects of GETs (file downloads to a storage
// host, status URLs) to allowed hosts only, at most five; any other
// redirect is refused (egress_refused), nothing is sent to its target. The
// bearer token goes to the host it was asked for only: net/http would
// forward it to another port of the same host, and a pre-signed storage
// URL needs none. The client's own redirect rule (an egress policy's)
// applies too.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	switch {
	case len(via) >= egress.MaxRedirects:
		return egress.Refuse(c.cfg.Partner, req.URL.Host, "more than 5 redirects")
	case req.Method != http.MethodGet:
		return egress.Refuse(c.cfg.Partner, req.URL.Host, "a redirect of a "+req.Method)
	}
	if err := c.checkParsed("redirect", req.URL); err != nil {
		return err
	}
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
		req.Header.Del("Authorization")
	}
	if c.next != nil {
		return c.next(req, via)
	}
	return nil
}

// Level is where an export is kicked off.
type Level string

// Export levels.
const (
	// PatientLevel: [base]/Patient/$export, every patient the client may see.
	PatientLevel Level = "patient"
	// GroupLevel: [base]/Group/[id]/$export.
	GroupLevel Level = "group"
	// DaVinciLevel: [base]/Group/[id]/$davinci-data-export, PDex's export
	// of the members of a Group made by $member-match or $bulk-member-match.
	DaVinciLevel Level = "davinci"
)

// ExportRequest is a kick-off request.
type ExportRequest struct {
	Level   Level
	GroupID string // for GroupLevel and DaVinciLevel
	// Method is http.MethodGet (parameters in the query) or
	// http.MethodPost (a FHIR Parameters body); "" is POST.
	Method string
	// Types is _type: the resource types to export; empty: all the server
	// offers.
	Types []string
	// Since is _since: only resources changed after it; zero: all. For a
	// run-off pull, the previous manifest's TransactionTime.
	Since time.Time
	// ExportType is PDex's exportType (DaVinciLevel only), e.g.
	// "hl7.fhir.us.davinci-pdex#payertopayer"; "" sends none.
	ExportType string
	// Patients are patient references ("Patient/123") to limit a
	// Patient-level or Group export to (the IG v2 patient parameter; POST
	// only). A new payer pulling one matched member sends it at Patient
	// level.
	Patients []string
}

var (
	fhirIDRE  = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	patientRE = regexp.MustCompile(`^Patient/[A-Za-z0-9\-.]{1,64}$`)
)

// url returns the kick-off URL of r on base, without parameters.
func (r ExportRequest) url(base *url.URL) (*url.URL, error) {
	u := *base
	switch r.Level {
	case PatientLevel:
		u.Path += "/Patient/$export"
	case GroupLevel, DaVinciLevel:
		if !fhirIDRE.MatchString(r.GroupID) {
			return nil, fmt.Errorf("group id %.70q is not a FHIR id", r.GroupID)
		}
		op := "$export"
		if r.Level == DaVinciLevel {
			op = "$davinci-data-export"
		}
		u.Path += "/Group/" + r.GroupID + "/" + op
	default:
		return nil, fmt.Errorf("export level %.20q: want patient, group or davinci", r.Level)
	}
	u.RawPath = ""
	return &u, nil
}

func (r ExportRequest) check() error {
	for _, t := range r.Types {
		if !resourceTypeRE.MatchString(t) {
			return fmt.Errorf("_type %.70q is not a resource type", t)
		}
	}
	if r.ExportType != "" && r.Level != DaVinciLevel {
		return errors.New("exportType is a $davinci-data-export parameter")
	}
	if len(r.Patients) > 0 {
		if r.method() != http.MethodPost {
			return errors.New("patient is only sent in a POST kick-off")
		}
		for _, p := range r.Patients {
			if !patientRE.MatchString(p) {
				return fmt.Errorf("patient %.80q: want Patient/[id]", p)
			}
		}
	}
	switch r.method() {
	case http.MethodGet, http.MethodPost:
		return nil
	}
	return fmt.Errorf("method %.10q: want GET or POST", r.Method)
}

func (r ExportRequest) method() string {
	if r.Method == "" {
		return http.MethodPost
	}
	return r.Method
}

// instant formats t as a FHIR instant in UTC.
func instant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// query is r's parameters for a GET kick-off. Neither form sends
// _outputFormat: the IG's default is NDJSON, the only format we take, and
// some servers (FHIR Works on AWS) refuse the full media type that the IG
// says a server SHALL accept; every line downloaded is checked anyway.
func (r ExportRequest) query() url.Values {
	q := url.Values{}
	if len(r.Types) > 0 {
		q.Set("_type", strings.Join(r.Types, ","))
	}
	if !r.Since.IsZero() {
		q.Set("_since", instant(r.Since))
	}
	if r.ExportType != "" {
		q.Set("exportType", r.ExportType)
	}
	return q
}

// Parameters is the FHIR Parameters resource of a POST kick-off.
type Parameters struct {
	ResourceType string      `json:"resourceType"`
	Parameter    []Parameter `json:"parameter,omitempty"` // FHIR JSON has no empty arrays
}

// Parameter is one Parameters.parameter; exactly one value is set.
type Parameter struct {
	Name           string     `json:"name"`
	ValueString    string     `json:"valueString,omitempty"`
	ValueInstant   string     `json:"valueInstant,omitempty"`
	ValueCanonical string     `json:"valueCanonical,omitempty"`
	ValueReference *Reference `json:"valueReference,omitempty"`
}

// Reference is a FHIR Reference.
type Reference struct {
	Reference string `json:"reference"`
}

// parameters is r's body for a POST kick-off: one _type parameter per type
// (the form every version of the IG accepts).
func (r ExportRequest) parameters() Parameters {
	p := Parameters{ResourceType: "Parameters"}
	for _, t := range r.Types {
		p.Parameter = append(p.Parameter, Parameter{Name: "_type", ValueString: t})
	}
	if !r.Since.IsZero() {
		p.Parameter = append(p.Parameter, Parameter{Name: "_since", ValueInstant: instant(r.Since)})
	}
	if r.ExportType != "" {
		p.Parameter = append(p.Parameter, Parameter{Name: "exportType", ValueCanonical: r.ExportType})
	}
	for _, pt := range r.Patients {
		p.Parameter = append(p.Parameter, Parameter{Name: "patient", ValueReference: &Reference{Reference: pt}})
	}
	return p
}

// KickOff starts an export and returns its status URL (the Content-Location
// of the 202, resolved against the FHIR base when relative, and on an
// allowed host). A refusal is a classified error: 429 and 5xx downstream
// (with Retry-After), 401/403 auth, other 4xx business partner_rejected,
// with the server's OperationOutcome in the chain.
func (c *Client) KickOff(ctx context.Context, r ExportRequest) (string, error) {
	if err := r.check(); err != nil {
		return "", fault.Wrap(fault.Validation, ErrTypeBadRequest, "partner "+c.cfg.Partner+": kick-off", err)
	}
	u, err := r.url(c.base)
	if err != nil {
		return "", fault.Wrap(fault.Validation, ErrTypeBadRequest, "partner "+c.cfg.Partner+": kick-off", err)
	}
	var body []byte
	if r.method() == http.MethodGet {
		u.RawQuery = r.query().Encode()
	} else if body, err = json.Marshal(r.parameters()); err != nil {
		return "", fault.Wrap(fault.Validation, ErrTypeBadRequest, "partner "+c.cfg.Partner+": kick-off", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.do(ctx, "kick-off", true, func() (*http.Request, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method(), u.String(), rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", MediaFHIRJSON)
		req.Header.Set("Prefer", "respond-async")
		if body != nil {
			req.Header.Set("Content-Type", MediaFHIRJSON)
		}
		return req, nil
	})
	if err != nil {
		return "", err
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return "", classify("kick-off", c.cfg.Partner, resp, b, c.now(), false, fault.Business, ErrTypeRejected)
	}
	loc := resp.Header.Get("Content-Location")
	if loc == "" {
		return "", fault.New(fault.Validation, ErrTypeBadResponse, "partner "+c.cfg.Partner+": kick-off answered 202 without Content-Location")
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return "", fault.New(fault.Validation, ErrTypeBadResponse, "partner "+c.cfg.Partner+": kick-off Content-Location is not a URL")
	}
	// A relative Content-Location is taken like a FHIR relative reference:
	// relative to the service base.
	baseDir := *c.base
	baseDir.Path += "/"
	status := baseDir.ResolveReference(ref)
	if err := c.checkParsed("status URL", status); err != nil {
		return "", err
	}
	return status.String(), nil
}

// Delete asks the server to cancel the export, or to delete its files once
// done (compensation). 202 is the IG's answer; 200 and 204 are taken too;
// 404 and 410 mean there is nothing left to delete, which is also success.
func (c *Client) Delete(ctx context.Context, statusURL string) error {
	u, err := c.checkURL("status URL", statusURL)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.do(ctx, "delete", true, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", MediaFHIRJSON)
		return req, nil
	})
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	switch resp.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent, http.StatusNotFound, http.StatusGone:
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return classify("delete", c.cfg.Partner, resp, b, c.now(), false, fault.Business, ErrTypeRejected)
}

// do sends the request build makes, with the bearer token when withToken
// and a TokenSource is configured. On a 401 to a request that carried a
// token, it drops the token (if the source can) and tries once more with a
// fresh one: tokens can be revoked before they expire.
func (c *Client) do(ctx context.Context, op string, withToken bool, build func() (*http.Request, error)) (*http.Response, error) {
	withToken = withToken && c.cfg.Tokens != nil
	for try := 0; ; try++ {
		req, err := build()
		if err != nil {
			return nil, fault.Wrap(fault.Validation, ErrTypeBadRequest, "partner "+c.cfg.Partner+": "+op, err)
		}
		req.Header.Set("User-Agent", "p2p")
		var token string
		if withToken {
			if token, err = c.cfg.Tokens.Token(ctx); err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.client.Do(req)
		if f, ok := egress.Fault(err); ok {
			return nil, f // refused: nothing was sent, a retry would be refused too
		}
		if err != nil {
			return nil, fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+c.cfg.Partner+": "+op, err)
		}
		inv, canInvalidate := c.cfg.Tokens.(interface{ Invalidate(token string) })
		if resp.StatusCode == http.StatusUnauthorized && withToken && canInvalidate && try == 0 {
			drain(resp.Body)
			inv.Invalidate(token)
			continue
		}
		return resp, nil
	}
}

// drain reads a little of what is left of body, so the connection can be
// reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}
