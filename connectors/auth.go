package connectors

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
)

// AuthType is how we authenticate to a partner, or it to us.
type AuthType string

// Authentication methods.
const (
	// AuthNone: no authentication. Only for partners on loopback (the
	// sandbox, tests), and for push, whose payload our signature
	// authenticates.
	AuthNone AuthType = "none"
	// AuthSMARTBackend: SMART Backend Services — an OAuth 2.0 client
	// credentials grant with a signed JWT client assertion (RS384 or
	// ES384).
	AuthSMARTBackend AuthType = "smart-backend"
	// AuthMTLS: mutual TLS with a client certificate.
	AuthMTLS AuthType = "mtls"
)

// Auth is a partner's authentication settings. Secrets are files, never
// inline: the registry is configuration that gets copied and logged.
type Auth struct {
	Type AuthType `yaml:"type,omitempty"` // "" = none
	// SMART Backend Services. ClientID is our client id at the partner's
	// authorization server (role pull), or the partner's client id at
	// ours (role requester: its assertions are checked against jwks_url).
	ClientID string `yaml:"client_id,omitempty"`
	TokenURL string `yaml:"token_url,omitempty"` // "" = from {fhir_base_url}/.well-known/smart-configuration
	Alg      string `yaml:"alg,omitempty"`       // client assertion algorithm: RS384 (default) or ES384
	Scope    string `yaml:"scope,omitempty"`     // e.g. "system/*.read"
	// KeyFile is our private key: the client assertion's signing JWK
	// (smart-backend), or the TLS client key in PEM (mtls).
	KeyFile string `yaml:"key_file,omitempty"`
	// mTLS.
	CertFile string `yaml:"cert_file,omitempty"` // our client certificate (PEM)
	CAFile   string `yaml:"ca_file,omitempty"`   // the partner's CA (PEM); "" = system roots
}

func (a Auth) kind() AuthType {
	if a.Type == "" {
		return AuthNone
	}
	return a.Type
}

// validate checks a's settings for partner p with the given roles.
func (a Auth) validate(p Partner, roles []Role) error {
	switch a.kind() {
	case AuthNone:
		// Calls that carry or fetch member data need a real identity,
		// except on loopback where the peer is ourselves or a test.
		if (slices.Contains(roles, RolePull) || slices.Contains(roles, RoleRequester)) && !allLoopback(p.PushURL, p.FHIRBaseURL, p.JWKSURL) {
			return errors.New("type none is only for partners on loopback: use smart-backend or mtls")
		}
	case AuthSMARTBackend:
		switch {
		case a.ClientID == "":
			return errors.New("smart-backend: client_id is required")
		case a.KeyFile == "" && slices.Contains(roles, RolePull):
			return errors.New("smart-backend: key_file (our private JWK for the client assertion) is required to call the partner")
		case a.Alg != "" && a.Alg != "RS384" && a.Alg != "ES384":
			return errors.New("smart-backend: alg: want RS384 or ES384")
		case slices.Contains(roles, RoleRequester) && p.JWKSURL == "":
			return errors.New("smart-backend: a requester needs jwks_url, to verify its client assertions")
		}
		if a.TokenURL != "" {
			if err := checkURL(a.TokenURL); err != nil {
				return errors.New("token_url: " + err.Error())
			}
		}
	case AuthMTLS:
		if a.CertFile == "" || a.KeyFile == "" {
			return errors.New("mtls: cert_file and key_file are required")
		}
	default:
		return errors.New("type: want none, smart-backend or mtls")
	}
	return nil
}

// allLoopback reports whether every non-empty URL names a loopback host.
func allLoopback(urls ...string) bool {
	for _, s := range urls {
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			return false
		}
		h := u.Hostname()
		if strings.EqualFold(h, "localhost") {
			continue
		}
		ip := net.ParseIP(h)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}
