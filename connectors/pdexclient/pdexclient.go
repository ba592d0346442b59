// Package pdexclient is the new payer's side of HRex $member-match (Da
// Vinci PDex payer-to-payer exchange): it asks a member's old payer who
// the member is there, so that a Bulk Data export of the member's data can
// follow (connectors/bulkdata).
//
//	POST [base]/Patient/$member-match   Parameters (MemberPatient,
//	     CoverageToMatch, CoverageToLink, Consent) → MemberIdentifier, MemberId
//
// Answers and what they become (every error is classified with package
// fault):
//
//	200                       MatchResult
//	422 consent refused       business consent_denied
//	422 several members       business no_match (the old payer holds the
//	                          candidates: nobody here can pick one; the fix
//	                          is more demographics, so the transfer fails
//	                          and says why in its detail)
//	422 otherwise             business no_match
//	429, 5xx, 408             downstream (retryable), with Retry-After
//	401, 403                  auth
//	other 4xx                 business partner_rejected
//	anything else             validation partner_bad_response
//	connection failures       transport
//
// (all but 200 and 422 by the table of package httpclass)
package pdexclient

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

	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/httpclass"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/internal/egress"
	"github.com/p2p-payer/p2p/transfer"
)

// MemberMatcher runs $member-match at a member's old payer.
type MemberMatcher interface {
	MemberMatch(ctx context.Context, r MatchRequest) (MatchResult, error)
}

// Fault types of the client besides fault.TypeNoMatch and
// fault.TypeConsentDenied (business) and bulkdata's partner_* types.
const (
	// ReasonMultipleMatches is MatchError.Reason when the old payer found
	// several members.
	ReasonMultipleMatches = "multiple_matches"
	// ReasonNoMatch and ReasonConsent are the other reasons of a 422.
	ReasonNoMatch = "no_match"
	ReasonConsent = "consent_denied"
)

// HRex consent policies (as pdex names them).
const (
	PolicyRegular   = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular"
	PolicySensitive = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#sensitive"
)

// Organization is a payer as the exchange names it: by business
// identifiers (its NPI, typically) and a display name.
type Organization struct {
	Name        string
	Identifiers []fhir.Identifier
}

func (o Organization) reference() fhir.Reference {
	r := fhir.Reference{Display: o.Name}
	if len(o.Identifiers) > 0 {
		id := o.Identifiers[0]
		r.Identifier = &id
	}
	return r
}

// MatchRequest is what a $member-match asks. It holds PHI: never log it.
type MatchRequest struct {
	Member  transfer.Demographics    // MemberPatient
	Card    transfer.CoverageToMatch // CoverageToMatch: the old card
	Consent transfer.Consent         // the member's consent: scope, period
	// OldPayer is the payer asked (the consent's source, the old card's
	// payor); Us the new payer (the consent's recipient, CoverageToLink's
	// payor).
	OldPayer Organization
	Us       Organization
	// OurMemberID is the member's id with us, in OurMemberIDSystem: the
	// identifier of CoverageToLink.
	OurMemberID       string
	OurMemberIDSystem string
}

// MatchResult is a successful match.
type MatchResult struct {
	// MemberIdentifier is the member's identifier at the old payer.
	MemberIdentifier fhir.Identifier
	// PatientID is the id of the member's Patient resource at the old
	// payer, from MemberId ("" when the answer has none, HRex 0..1).
	PatientID string
}

// MatchError is the reason of a 422, in the chain of the fault error the
// client returns.
type MatchError struct {
	Reason  string // ReasonNoMatch, ReasonMultipleMatches or ReasonConsent
	Outcome *fhir.OperationOutcome
}

func (e *MatchError) Error() string { return "member-match answered 422: " + e.Reason }

// Reason returns the reason of a refused match in err's chain, or "".
func Reason(err error) string {
	var me *MatchError
	if errors.As(err, &me) {
		return me.Reason
	}
	return ""
}

// BuildParameters builds the HRex member-match-in Parameters of r:
// MemberPatient (name, gender, birth date, address, phone), CoverageToMatch
// (the old card: member number typed MB, subscriber id, period, the old
// payer as payor), CoverageToLink (our coverage of the member) and the
// HRex Consent: active, patient-privacy, IDSCL, policy #regular or
// #sensitive as the consent's scope says, a permit provision over the
// consent's period for disclosure from the old payer (performer) to us
// (IRCP). Every resource refers to the member as Patient/1, the
// MemberPatient's local id, as the HRex example does.
func BuildParameters(r MatchRequest) (fhir.Parameters, error) {
	m := r.Member
	if m.Family == "" && m.Given == "" {
		return fhir.Parameters{}, errors.New("member-match: the member needs a given or family name")
	}
	if m.BirthDate == "" {
		return fhir.Parameters{}, errors.New("member-match: the member needs a birth date")
	}
	if r.Card.MemberID == "" {
		return fhir.Parameters{}, errors.New("member-match: the old card needs a member id")
	}
	if r.Consent.PeriodEnd.IsZero() {
		return fhir.Parameters{}, errors.New("member-match: the consent needs a period end")
	}
	const self = "Patient/1"
	pt := fhir.Patient{ResourceType: "Patient", ID: "1", BirthDate: m.BirthDate}
	name := fhir.HumanName{Use: "official", Family: m.Family}
	if m.Given != "" {
		name.Given = []string{m.Given}
	}
	pt.Name = []fhir.HumanName{name}
	switch m.Sex {
	case "F":
		pt.Gender = "female"
	case "M":
		pt.Gender = "male"
	case "U":
		pt.Gender = "unknown"
	}
	if a := m.Address; a != (transfer.Address{}) {
		addr := fhir.Address{Use: "home", City: a.City, State: a.State, PostalCode: a.PostalCode}
		if a.Street != "" {
			addr.Line = []string{a.Street}
		}
		pt.Address = []fhir.Address{addr}
	}
	if m.Phone != "" {
		pt.Telecom = []fhir.ContactPoint{{System: "phone", Value: m.Phone}}
	}

	mb := fhir.Code(fhir.SystemV20203, "MB")
	unknown := fhir.Code("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown")
	old := fhir.Coverage{
		ResourceType: "Coverage", ID: "1", Status: "draft",
		Identifier:   []fhir.Identifier{{Type: &mb, Value: r.Card.MemberID}},
		SubscriberID: r.Card.SubscriberID, Beneficiary: &fhir.Reference{Reference: self},
		Relationship: &unknown, Payor: []fhir.Reference{r.OldPayer.reference()},
	}
	if r.Card.SubscriberID != "" && r.Card.SubscriberID == r.Card.MemberID {
		self := fhir.Code(fhir.SystemSubscriberRel, "self")
		old.Relationship = &self
	}
	if r.Card.PeriodStart != "" || r.Card.PeriodEnd != "" {
		old.Period = &fhir.Period{Start: r.Card.PeriodStart, End: r.Card.PeriodEnd}
	}
	link := fhir.Coverage{
		ResourceType: "Coverage", ID: "2", Status: "active",
		Identifier:  []fhir.Identifier{{Type: &mb, System: r.OurMemberIDSystem, Value: r.OurMemberID}},
		Beneficiary: &fhir.Reference{Reference: self}, Relationship: &unknown,
		Payor: []fhir.Reference{r.Us.reference()},
	}

	policy := PolicyRegular
	if r.Consent.Scope == transfer.ScopeSensitive {
		policy = PolicySensitive
	}
	scope := fhir.Code(fhir.SystemConsentScope, "patient-privacy")
	consent := fhir.Consent{
		ResourceType: "Consent", Status: r.Consent.Status, Scope: &scope,
		Category:  []fhir.CodeableConcept{fhir.Code(fhir.SystemActCode, "IDSCL")},
		Patient:   &fhir.Reference{Reference: self},
		Performer: []fhir.Reference{{Reference: self}},
		Policy:    []fhir.ConsentPolicy{{URI: policy}},
		Provision: &fhir.ConsentProvision{
			Type:   "permit",
			Period: &fhir.Period{Start: fhirDate(r.Consent.PeriodStart), End: fhirDate(r.Consent.PeriodEnd)},
			Actor: []fhir.ConsentActor{
				{Role: fhir.Code(fhir.SystemProvenanceParticip, "performer"), Reference: r.OldPayer.reference()},
				{Role: fhir.Code(fhir.SystemParticipationType, "IRCP"), Reference: r.Us.reference()},
			},
			Action: []fhir.CodeableConcept{fhir.Code(fhir.SystemConsentAction, "disclose")},
		},
	}
	if r.Consent.ID != "" {
		consent.Identifier = []fhir.Identifier{{Value: r.Consent.ID}}
	}
	if !r.Consent.GrantedAt.IsZero() {
		consent.DateTime = r.Consent.GrantedAt.UTC().Format(time.RFC3339)
	}

	p := fhir.Parameters{ResourceType: "Parameters", Meta: &fhir.Meta{
		Profile: []string{"http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-parameters-member-match-in"}}}
	for _, prm := range []struct {
		name string
		res  any
	}{{"MemberPatient", pt}, {"CoverageToMatch", old}, {"CoverageToLink", link}, {"Consent", consent}} {
		b, err := json.Marshal(prm.res)
		if err != nil {
			return fhir.Parameters{}, fmt.Errorf("member-match: %s: %w", prm.name, err)
		}
		p.Parameter = append(p.Parameter, fhir.Parameter{Name: prm.name, Resource: b})
	}
	return p, nil
}

// fhirDate is the day of t (UTC), a FHIR date: provision periods are
// days in the HRex example, and a day covers the instant it holds.
func fhirDate(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// Config configures a Client for one partner.
type Config struct {
	Partner string // the partner id, for error messages
	BaseURL string // the partner's FHIR base
	// Tokens gives the bearer token of each call; nil: none (loopback
	// test partners only).
	Tokens bulkdata.TokenSource
	// Header is added to every call, e.g. the dev stack's partner header
	// naming us on loopback (never a secret: it goes to logs of proxies).
	Header     http.Header
	HTTPClient *http.Client  // nil: bulkdata.NewHTTPClient()
	Timeout    time.Duration // per call; 0: bulkdata.DefaultTimeout
	Now        func() time.Time
}

// Client is a MemberMatcher over HTTP. It is safe for concurrent use.
type Client struct {
	cfg Config
	url string
}

var _ MemberMatcher = (*Client)(nil)

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("pdexclient: base URL %.100q: want an absolute http(s) URL without credentials", cfg.BaseURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = bulkdata.NewHTTPClient()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = bulkdata.DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Partner == "" {
		cfg.Partner = u.Host
	}
	// No redirects: the answer carries member ids, and a POST has no
	// business being sent elsewhere.
	hc := *cfg.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTPClient = &hc
	return &Client{cfg: cfg, url: u.String() + "/Patient/$member-match"}, nil
}

// statusTypes are the fault types of an answer other than 200 and 422.
var statusTypes = httpclass.Types{
	Auth: bulkdata.ErrTypeAuth, Throttled: bulkdata.ErrTypeThrottled, Unavailable: bulkdata.ErrTypeUnavailable,
	Rejected: fault.TypePartnerRejected, RejectClass: fault.Business, Unexpected: bulkdata.ErrTypeBadResponse,
}

// maxAnswer bounds the answer read: a member-match answer is a few KiB.
const maxAnswer = 1 << 20

// MemberMatch posts the Parameters of r and reads the answer.
func (c *Client) MemberMatch(ctx context.Context, r MatchRequest) (MatchResult, error) {
	msg := "partner " + c.cfg.Partner + ": member-match"
	p, err := BuildParameters(r)
	if err != nil {
		return MatchResult{}, fault.Wrap(fault.Validation, bulkdata.ErrTypeBadRequest, msg, err)
	}
	body, err := json.Marshal(p)
	if err != nil {
		return MatchResult{}, fault.Wrap(fault.Validation, bulkdata.ErrTypeBadRequest, msg, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.post(ctx, body, false)
	if err != nil {
		return MatchResult{}, err
	}
	defer resp.Body.Close()
	b, err := egress.ReadAll(resp.Body, maxAnswer, c.cfg.Partner)
	if f, ok := egress.Fault(err); ok {
		return MatchResult{}, f
	}
	if err != nil {
		return MatchResult{}, fault.Wrap(fault.Transport, bulkdata.ErrTypeUnreachable, msg+": reading the answer", err)
	}
	code := resp.StatusCode
	switch code {
	case http.StatusOK:
		return c.result(b)
	case http.StatusUnprocessableEntity:
		oo := httpclass.Outcome[fhir.OperationOutcome](resp.Header, b)
		reason := reasonOf(oo)
		typ, text := fault.TypeNoMatch, "no member matches at the old payer"
		switch reason {
		case ReasonConsent:
			typ, text = fault.TypeConsentDenied, "the old payer cannot honour the consent"
		case ReasonMultipleMatches:
			text = "several members match at the old payer; send more of the member's details"
		}
		e := fault.Wrap(fault.Business, typ, msg+": "+text, &MatchError{Reason: reason, Outcome: oo})
		e.Status = code
		return MatchResult{}, e
	}
	// Every other status by the shared table.
	text := fmt.Sprintf("%s answered %d", msg, code)
	if httpclass.KindOf(code) == httpclass.Rejected {
		text += fmt.Sprintf(" (OperationOutcome %s)", codes(httpclass.Outcome[fhir.OperationOutcome](resp.Header, b)))
	}
	return MatchResult{}, statusTypes.Error(code, resp.Header, c.cfg.Now(), text, nil)
}

// post sends the request, with a fresh token once more after a 401 when
// the token source can drop a revoked token.
func (c *Client) post(ctx context.Context, body []byte, retried bool) (*http.Response, error) {
	msg := "partner " + c.cfg.Partner + ": member-match"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, fault.Wrap(fault.Validation, bulkdata.ErrTypeBadRequest, msg, err)
	}
	for k, vs := range c.cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", bulkdata.MediaFHIRJSON)
	req.Header.Set("Accept", bulkdata.MediaFHIRJSON)
	req.Header.Set("User-Agent", "p2p")
	var token string
	if c.cfg.Tokens != nil {
		if token, err = c.cfg.Tokens.Token(ctx); err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if f, ok := egress.Fault(err); ok {
		return nil, f // refused: nothing was sent
	}
	if err != nil {
		return nil, fault.Wrap(fault.Transport, bulkdata.ErrTypeUnreachable, msg, err)
	}
	inv, ok := c.cfg.Tokens.(interface{ Invalidate(token string) })
	if resp.StatusCode == http.StatusUnauthorized && ok && !retried {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		_ = resp.Body.Close()
		inv.Invalidate(token)
		return c.post(ctx, body, true)
	}
	return resp, nil
}

// result reads a member-match-out Parameters: MemberIdentifier (an
// Identifier with a value) is required, MemberId (a Reference to a
// Patient) optional.
func (c *Client) result(b []byte) (MatchResult, error) {
	bad := func(why string) (MatchResult, error) {
		return MatchResult{}, fault.New(fault.Validation, bulkdata.ErrTypeBadResponse, "partner "+c.cfg.Partner+": member-match: "+why)
	}
	var p fhir.Parameters
	if err := json.Unmarshal(b, &p); err != nil || p.ResourceType != "Parameters" {
		return bad("the answer is not a Parameters resource")
	}
	var res MatchResult
	ids := p.Param("MemberIdentifier")
	if len(ids) != 1 {
		return bad("the answer needs exactly one MemberIdentifier")
	}
	if ok, err := ids[0].Value.Decode("Identifier", &res.MemberIdentifier); !ok || err != nil || res.MemberIdentifier.Value == "" {
		return bad("MemberIdentifier is not an Identifier with a value")
	}
	if refs := p.Param("MemberId"); len(refs) > 0 {
		var ref fhir.Reference
		if ok, err := refs[0].Value.Decode("Reference", &ref); !ok || err != nil {
			return bad("MemberId is not a Reference")
		}
		id, ok := PatientID(ref.Reference)
		if !ok {
			return bad("MemberId does not refer to a Patient")
		}
		res.PatientID = id
	}
	return res, nil
}

// PatientID returns the id of a reference to a Patient, relative
// ("Patient/123") or absolute ("https://old.example/fhir/Patient/123",
// with or without a _history version).
func PatientID(ref string) (string, bool) {
	if u, err := url.Parse(ref); err == nil && u.Path != "" {
		ref = u.Path
	}
	parts := strings.Split(strings.Trim(ref, "/"), "/")
	for i := len(parts) - 2; i >= 0; i-- {
		if parts[i] == "Patient" && fhir.ValidID(parts[i+1]) {
			return parts[i+1], true
		}
	}
	return "", false
}

// reasonOf reads why a 422 refused the match. HRex does not code the
// reasons, so we read, in order: an issue detail coded consent_denied or
// multiple_matches (p2p's servers code them, pdex.OutcomeSystem); the FHIR
// issue type multiple-matches; an issue about the Consent parameter (its
// expression) or of type security/forbidden; else no match.
func reasonOf(o *fhir.OperationOutcome) string {
	if o == nil {
		return ReasonNoMatch
	}
	for _, is := range o.Issue {
		if is.Details != nil {
			for _, cd := range is.Details.Coding {
				switch cd.Code {
				case ReasonConsent:
					return ReasonConsent
				case ReasonMultipleMatches:
					return ReasonMultipleMatches
				}
			}
		}
	}
	for _, is := range o.Issue {
		switch is.Code {
		case "multiple-matches":
			return ReasonMultipleMatches
		case "security", "forbidden":
			return ReasonConsent
		}
		for _, e := range is.Expression {
			if strings.Contains(e, "'Consent'") || strings.HasPrefix(e, "Consent") {
				return ReasonConsent
			}
		}
	}
	return ReasonNoMatch
}

func codes(o *fhir.OperationOutcome) string {
	if o == nil {
		return "none"
	}
	var cs []string
	for _, is := range o.Issue {
		cs = append(cs, is.Code)
	}
	return strings.Join(cs, ",")
}
