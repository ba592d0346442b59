package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/smartauth"
	"github.com/p2p-payer/p2p/store"
)

// FHIRDeps are what the partner-facing FHIR API (/fhir, package pdex)
// needs.
type FHIRDeps struct {
	Store    store.Store
	Partners PartnerList // who may call (role requester); how consents name them
	// Holder is us as consents name the disclosing payer; zero: consents
	// are not checked for naming us.
	Holder pdex.Party
	// TrustHeader names the request header that carries the authenticated
	// partner id, set by a gateway (or, in dev, by the caller). Empty: only
	// Auth's tokens name partners.
	TrustHeader string
	// Auth, if set, authenticates partners by SMART Backend Services
	// access tokens (tried first); its endpoints are served by WithSMART.
	// Partners are also named by their verified TLS client certificates
	// (CertRequester, tried next) when the server asks for them
	// (ServerTLS.ClientCAFile), then by TrustHeader.
	Auth *smartauth.Server
	// Exports serves bulk export of the members partners matched
	// (workflows.ServeEngine); nil: only $member-match is served.
	Exports pdex.Exports
	// BulkMatches runs $bulk-member-match (workflows.BulkMatchEngine); nil:
	// not served.
	BulkMatches pdex.BulkMatches
	// Throttle limits requests and failed matches per partner; share it
	// with the worker's activities (ActivityDeps.Throttle) when they run in
	// this process; nil: this handler's own request rate, failed matches
	// counted in Store (so with every other process's).
	Throttle *pdex.Throttle
	// BaseURL is the absolute URL of /fhir as partners reach it; "": from
	// each request.
	BaseURL string
	// StatusRetryAfter is the Retry-After of an export in progress; 0:
	// pdex.DefaultStatusRetryAfter.
	StatusRetryAfter time.Duration
	Logger           *zap.Logger
}

// NewFHIRHandler builds the /fhir handler over the member store, with the
// identity matcher the worker uses (loaded now) and the synthetic export's
// identifiers, so that $member-match answers what a later export serves.
// Every match is recorded as a match grant, with its transfer (the store
// is pdex.Deps.Store): what lets the requester export the member's data.
func NewFHIRHandler(ctx context.Context, d FHIRDeps) (http.Handler, error) {
	if d.Store == nil || d.Partners == nil {
		return nil, errors.New("app: the FHIR API needs the store and the partner registry")
	}
	matcher, err := newMatcher(d.Store, d.Logger)
	if err != nil {
		return nil, err
	}
	if err := matcher.Warm(ctx); err != nil {
		return nil, fmt.Errorf("loading the identity index: %w", err)
	}
	var header func(*http.Request) (string, bool)
	if d.TrustHeader != "" {
		header = pdex.HeaderRequester(d.TrustHeader, func(id string) bool {
			p, ok := d.Partners.Get(id)
			return ok && p.HasRole(connectors.RoleRequester)
		})
	}
	var token func(*http.Request) (string, bool)
	if d.Auth != nil {
		token = d.Auth.Requester
	}
	requester := FirstRequester(token, CertRequester(d.Partners), header)
	throttle := d.Throttle
	if throttle == nil {
		throttle = pdex.NewSharedThrottle(0, 0, 0, 0, d.Store)
	}
	return pdex.NewHandler(pdex.Deps{
		Matcher:        matcher,
		Requester:      requester,
		Parties:        func(id string) (pdex.Party, bool) { return PartyOf(d.Partners, id) },
		Holder:         d.Holder,
		MemberIDSystem: export.DefaultMemberIDSystem,
		PayerName:      export.DefaultPayerName,
		PatientRef:     func(id string) string { return "Patient/" + export.SyntheticPatientID(id) },
		Exports:        d.Exports,
		BulkMatches:    d.BulkMatches,
		Throttle:       throttle,
		Store:          d.Store,
		BaseURL:        d.BaseURL,
		Logger:         d.Logger,

		StatusRetryAfter: d.StatusRetryAfter,
	})
}

// PartnerLookup finds a registered partner: a *connectors.Registry or a
// *connectors.Live.
type PartnerLookup interface {
	Get(id string) (connectors.Partner, bool)
}

// PartyOf is the registered partner id as consents name it.
func PartyOf(r PartnerLookup, id string) (pdex.Party, bool) {
	p, ok := r.Get(id)
	if !ok {
		return pdex.Party{}, false
	}
	party := pdex.Party{ID: p.ID}
	for _, i := range p.Identifiers {
		party.Identifiers = append(party.Identifiers, fhir.Identifier{System: i.System, Value: i.Value})
	}
	return party, true
}

// ParseIdentifier reads "system|value" (the FHIR token form), e.g.
// "http://hl7.org/fhir/sid/us-npi|1234567893".
func ParseIdentifier(s string) (fhir.Identifier, error) {
	system, value, ok := strings.Cut(s, "|")
	if !ok || system == "" || value == "" {
		return fhir.Identifier{}, fmt.Errorf("identifier %q: want system|value", s)
	}
	return fhir.Identifier{System: system, Value: value}, nil
}

// Transmitter is us, named by our payer identifier (zero: by name only),
// as the Provenance of the exports we serve names the transmitter.
func Transmitter(id fhir.Identifier) fhir.Reference {
	ref := fhir.Reference{Type: "Organization", Display: export.DefaultPayerName}
	if id.Value != "" {
		ref.Identifier = &id
	}
	return ref
}

// newMatcher is the identity matcher of the worker and the FHIR API, with
// the decision thresholds the environment sets (identity.ConfigFromEnv).
func newMatcher(st store.Store, log *zap.Logger) (*activities.IndexMatcher, error) {
	cfg, err := identity.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	return &activities.IndexMatcher{Store: st, Logger: log, Config: cfg}, nil
}
