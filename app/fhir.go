package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/workflows"
)

// newFHIRHandler builds the partner-facing FHIR API (/fhir, package pdex)
// over the member store, with the identity matcher the worker uses (loaded
// now) and the synthetic export's identifiers, so that $member-match
// answers what a later export serves. Every match is recorded as a match
// grant, with its transfer: what lets the requester export the member's
// data. Partners authenticate by SMART Backend Services tokens (served
// beside it, WithSMART), by verified TLS client certificates
// (cfg.TLS.ClientCAFile), or by cfg.FHIRTrustHeader set by a gateway.
func newFHIRHandler(ctx context.Context, cfg Config, d Deps, tokens *signing.Signer) (http.Handler, *activities.IndexMatcher, error) {
	_, ids, err := cfg.us()
	if err != nil {
		return nil, nil, err
	}
	log := d.logger().Named("fhir")
	matcher, err := newMatcher(ctx, d.Store, "api", cfg.IdentitySnapshot, log)
	if err != nil {
		return nil, nil, err
	}
	var header func(*http.Request) (pdex.Caller, bool)
	if cfg.FHIRTrustHeader != "" {
		header = pdex.HeaderRequester(cfg.FHIRTrustHeader, func(id string) bool {
			p, ok := d.Partners.Get(id)
			return ok && p.HasRole(connectors.RoleRequester)
		})
	}
	auth := NewSMARTAuth(cfg.fhirURL(), tokens, d.Partners, d.Store, cfg.TokenLifetime, d.logger().Named("fhir-auth"))
	h, err := pdex.NewHandler(pdex.Deps{
		Matcher:        matcher,
		Requester:      FHIRRequester(auth, CertRequester(d.Partners), header),
		Parties:        func(id string) (pdex.Party, bool) { return PartyOf(d.Partners, id) },
		Holder:         pdex.Party{Identifiers: ids},
		MemberIDSystem: export.DefaultMemberIDSystem,
		PayerName:      export.DefaultPayerName,
		PatientRef:     func(id string) string { return "Patient/" + export.SyntheticPatientID(id) },
		Exports:        &workflows.ServeEngine{Client: d.Temporal, Store: d.Store, TaskQueue: cfg.TaskQueue, FileTTL: d.ExportFileTTL},
		BulkMatches:    &workflows.BulkMatchEngine{Client: d.Temporal, TaskQueue: cfg.TaskQueue},
		// Failed matches are counted in the store, so with the worker's
		// bulk member-match and every other process's.
		Throttle: pdex.NewSharedThrottle(0, 0, 0, 0, d.Store),
		Store:    d.Store,
		BaseURL:  publicFHIR(cfg),
		Logger:   log,

		StatusRetryAfter: cfg.StatusRetryAfter,
	})
	if err != nil {
		return nil, nil, err
	}
	return WithSMART(auth, h, cfg.Limits.public().New()), matcher, nil
}

// publicFHIR is the public URL of /fhir as configured (FHIRPublicURL, or
// /fhir under PublicURL), or "": the FHIR API then builds its URLs from
// each request.
func publicFHIR(cfg Config) string {
	switch {
	case cfg.FHIRPublicURL != "":
		return strings.TrimRight(cfg.FHIRPublicURL, "/") + "/fhir"
	case cfg.PublicURL != "" && cfg.FHIRAddr == "":
		return strings.TrimRight(cfg.PublicURL, "/") + "/fhir"
	}
	return ""
}

// fhirURL is how partners reach /fhir: the audience of its tokens and
// the base of its token endpoint.
func (c Config) fhirURL() string {
	if u := publicFHIR(c); u != "" {
		return u
	}
	if c.FHIRAddr != "" {
		scheme := "http://"
		if c.TLS.Enabled() {
			scheme = "https://"
		}
		return scheme + c.FHIRAddr + "/fhir"
	}
	return c.publicURL() + "/fhir"
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
