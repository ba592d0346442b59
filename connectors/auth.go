package connectors

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"regexp"
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
	// mTLS, calling the partner (roles pull, push).
	CertFile string `yaml:"cert_file,omitempty"` // our client certificate (PEM)
	CAFile   string `yaml:"ca_file,omitempty"`   // the partner's CA (PEM); "" = system roots
	// mTLS, the partner calling us (role requester): the identity of its
	// client certificate, which our client CA bundle (P2P_TLS_CLIENT_CA_FILE)
	// must have verified. At least one is required; when both are set both
	// must match (see MatchesClientCert).
	//
	// ClientCertSubject is a DNS name: one of the certificate's DNS SANs
	// or, for a certificate without any, its subject common name (RFC 6125).
	ClientCertSubject string `yaml:"client_cert_subject,omitempty"`
	// ClientCertSHA256 pins the certificate's key: the SHA-256 of its
	// SubjectPublicKeyInfo in hex (colons allowed), which survives
	// renewals that keep the key.
	ClientCertSHA256 string `yaml:"client_cert_sha256,omitempty"`
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
		// cert_file and key_file are our certificate, for calling the
		// partner; the client_cert_* fields are its, for it calling us.
		calls := slices.ContainsFunc(roles, func(r Role) bool { return r != RoleRequester })
		if calls && (a.CertFile == "" || a.KeyFile == "") {
			return errors.New("mtls: cert_file and key_file are required")
		}
		if slices.Contains(roles, RoleRequester) {
			if a.ClientCertSubject == "" && a.ClientCertSHA256 == "" {
				return errors.New("mtls: a requester needs client_cert_subject or client_cert_sha256, to know its client certificate")
			}
			if a.ClientCertSubject != "" && !dnsName.MatchString(a.ClientCertSubject) {
				return errors.New("mtls: client_cert_subject: want a DNS name, e.g. p2p.acme.example")
			}
			if a.ClientCertSHA256 != "" {
				if _, err := spkiPin(a.ClientCertSHA256); err != nil {
					return err
				}
			}
		} else if a.ClientCertSubject != "" || a.ClientCertSHA256 != "" {
			return errors.New("mtls: client_cert_subject and client_cert_sha256 are for role requester")
		}
	default:
		return errors.New("type: want none, smart-backend or mtls")
	}
	return nil
}

// dnsName is a host name as certificates carry it: labels of letters,
// digits and hyphens; a leading "*." for a wildcard SAN is not accepted,
// a partner's identity is one name.
var dnsName = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// spkiPin decodes a client_cert_sha256: 64 hex digits, colons allowed.
func spkiPin(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("mtls: client_cert_sha256: want the SHA-256 of the certificate's SubjectPublicKeyInfo, 64 hex digits")
	}
	return b, nil
}

// MatchesClientCert reports whether cert, a client certificate that TLS
// has already verified against our client CAs, is the one a's
// client_cert_subject and client_cert_sha256 name. Without either it
// matches nothing.
func (a Auth) MatchesClientCert(cert *x509.Certificate) bool {
	if cert == nil || a.kind() != AuthMTLS || (a.ClientCertSubject == "" && a.ClientCertSHA256 == "") {
		return false
	}
	if a.ClientCertSHA256 != "" {
		pin, err := spkiPin(a.ClientCertSHA256)
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		if err != nil || subtle.ConstantTimeCompare(pin, sum[:]) != 1 {
			return false
		}
	}
	if a.ClientCertSubject != "" {
		names := cert.DNSNames
		if len(names) == 0 && cert.Subject.CommonName != "" {
			names = []string{cert.Subject.CommonName}
		}
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, a.ClientCertSubject) }) {
			return false
		}
	}
	return true
}

// clientCertKey is a's client certificate identity in a canonical form,
// "" when it names none.
func (a Auth) clientCertKey() string {
	if a.kind() != AuthMTLS || (a.ClientCertSubject == "" && a.ClientCertSHA256 == "") {
		return ""
	}
	pin, _ := spkiPin(a.ClientCertSHA256) // validated; "" when unset
	return strings.ToLower(a.ClientCertSubject) + "|" + hex.EncodeToString(pin)
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
