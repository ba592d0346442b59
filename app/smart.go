package app

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/internal/ratelimit"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/smartauth"
)

// PartnerList is a registry that can list its partners.
type PartnerList interface {
	PartnerLookup
	Partners() []connectors.Partner
}

// SMARTTokenPath is where, below /fhir, partners get access tokens.
const SMARTTokenPath = "/auth/token"

// FHIRScopes are the SMART system scopes /fhir grants and advertises:
// read (r), search (s), both (rs) and SMART v1's read, of every type we
// export, of Provenance and of all (*). Nothing that writes: /fhir has
// no write. pdex's routeScopes say which one each route needs.
func FHIRScopes() []string {
	types := append([]string{"*"}, export.SupportedTypes...)
	types = append(types, export.ProvenanceType)
	var out []string
	for _, t := range types {
		for _, p := range []string{"rs", "r", "s", "read"} {
			if sc := "system/" + t + "." + p; !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	return out
}

// NewSMARTAuth is our SMART Backend Services authorization server for the
// /fhir API at fhirURL (its public base, ending in /fhir): requester
// partners whose registry auth is smart-backend, by their client_id, with
// assertion keys at their jwks_url. Access tokens are signed with signer
// (our JWKS), for audience fhirURL; assertions are remembered in replay.
func NewSMARTAuth(fhirURL string, signer *signing.Signer, partners PartnerList, replay smartauth.Replay, lifetime time.Duration, log *zap.Logger) *smartauth.Server {
	requester := func(p connectors.Partner) bool {
		return p.HasRole(connectors.RoleRequester) && p.Auth.Type == connectors.AuthSMARTBackend && p.JWKSURL != ""
	}
	client := func(p connectors.Partner) smartauth.Client {
		return smartauth.Client{ID: p.Auth.ClientID, Subject: p.ID, JWKSURL: p.JWKSURL}
	}
	base := strings.TrimRight(fhirURL, "/")
	return &smartauth.Server{
		Surface: "fhir", TokenURL: base + SMARTTokenPath, Audience: base, Signer: signer, Scopes: FHIRScopes(),
		Keys: PartnerKeys(partners), Replay: replay, Logger: log, TokenLifetime: lifetime,
		Clients: func(_ context.Context, clientID string) (smartauth.Client, error) {
			for _, p := range partners.Partners() {
				if requester(p) && p.Auth.ClientID == clientID {
					return client(p), nil
				}
			}
			return smartauth.Client{}, smartauth.ErrUnknownClient
		},
		Active: func(_ context.Context, id string) (smartauth.Client, error) {
			if p, ok := partners.Get(id); ok && requester(p) {
				return client(p), nil
			}
			return smartauth.Client{}, smartauth.ErrUnknownClient
		},
	}
}

// PartnerKeys is the fetcher of partners' JWKS (their client assertions,
// their signed receipts): each fetch under the egress policy of the
// partner that publishes the URL (connectors.JWKSEgress).
func PartnerKeys(partners PartnerList) *signing.RemoteKeys {
	return &signing.RemoteKeys{Egress: connectors.JWKSEgress(partners.Partners)}
}

// WithSMART serves the token endpoint and .well-known/smart-configuration
// of auth beside fhir (the /fhir handler, which sees paths below /fhir).
// The token endpoint admits what tokens admits per remote address (nil:
// everything).
func WithSMART(auth *smartauth.Server, fhir http.Handler, tokens *ratelimit.Keyed) http.Handler {
	r := chi.NewRouter()
	r.Method(http.MethodPost, SMARTTokenPath, LimitTokenRequests(tokens, auth.TokenHandler()))
	r.Method(http.MethodGet, "/.well-known/smart-configuration", auth.ConfigurationHandler())
	r.Mount("/", fhir)
	return r
}

// FHIRRequester names the partner calling /fhir (pdex.Deps.Requester): by
// its SMART access token, with the token's scopes; else by its verified
// client certificate (certs), else by the trust header (header, nil when
// not configured), both holding every scope. A request with an
// Authorization header is judged by its token alone: an invalid one is
// refused, never taken for a request without one.
func FHIRRequester(auth *smartauth.Server, certs func(*http.Request) (string, bool), header func(*http.Request) (pdex.Caller, bool)) func(*http.Request) (pdex.Caller, bool) {
	return func(r *http.Request) (pdex.Caller, bool) {
		if token, present := smartauth.Bearer(r); present {
			t, err := auth.Verify(r.Context(), token)
			if err != nil || token == "" {
				return pdex.Caller{}, false
			}
			return pdex.Caller{PartnerID: t.Subject, Scopes: t.Scopes}, true
		}
		if certs != nil {
			if id, ok := certs(r); ok {
				return pdex.Caller{PartnerID: id, AllScopes: true}, true
			}
		}
		if header != nil {
			return header(r)
		}
		return pdex.Caller{}, false
	}
}
