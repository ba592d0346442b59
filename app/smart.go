package app

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/p2p-payer/p2p/connectors"
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

// NewSMARTAuth is our SMART Backend Services authorization server for the
// /fhir API at publicURL: requester partners whose registry auth is
// smart-backend, by their client_id, with assertion keys at their jwks_url.
// Access tokens are signed with signer (our JWKS).
func NewSMARTAuth(publicURL string, signer *signing.Signer, partners PartnerList) *smartauth.Server {
	requester := func(p connectors.Partner) bool {
		return p.HasRole(connectors.RoleRequester) && p.Auth.Type == connectors.AuthSMARTBackend && p.JWKSURL != ""
	}
	return &smartauth.Server{
		TokenURL: strings.TrimRight(publicURL, "/") + "/fhir" + SMARTTokenPath,
		Signer:   signer,
		Keys:     PartnerKeys(partners),
		Clients: func(clientID string) (smartauth.Client, bool) {
			for _, p := range partners.Partners() {
				if requester(p) && p.Auth.ClientID == clientID {
					return smartauth.Client{PartnerID: p.ID, JWKSURL: p.JWKSURL}, true
				}
			}
			return smartauth.Client{}, false
		},
		Active: func(id string) bool {
			p, ok := partners.Get(id)
			return ok && requester(p)
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
func WithSMART(auth *smartauth.Server, fhir http.Handler) http.Handler {
	r := chi.NewRouter()
	r.Method(http.MethodPost, SMARTTokenPath, auth.TokenHandler())
	r.Method(http.MethodGet, "/.well-known/smart-configuration", auth.ConfigurationHandler())
	r.Mount("/", fhir)
	return r
}

// FirstRequester tries each way of naming the calling partner in turn.
func FirstRequester(ways ...func(*http.Request) (string, bool)) func(*http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		for _, w := range ways {
			if w == nil {
				continue
			}
			if id, ok := w(r); ok {
				return id, true
			}
		}
		return "", false
	}
}
