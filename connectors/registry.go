// Package connectors is how p2p talks to partner payers: the partner
// registry and one small interface per capability, each with one
// implementation per protocol. Today there is one capability, Pusher, with
// the signed-push protocol over HTTP (HTTPPusher); package
// connectors/sandbox is a simulated partner that speaks it.
//
// Every failure a connector returns is classified with package fault, so
// the workflow knows whether to retry (transport, downstream), stop
// (business) or ask a person (auth, validation).
package connectors

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/internal/egress"
)

// Timeouts of a partner call.
const (
	DefaultTimeout = 30 * time.Second // when a partner sets none
	MaxTimeout     = 10 * time.Minute // longer is surely a typo
)

// Limits of a partner's call rate and concurrency. The defaults keep one
// partner from taking a worker's whole activity capacity while leaving
// headroom for a member-initiated burst; partners that publish their own
// limits override them in the registry.
const (
	DefaultRateLimit   = 20.0 // calls per second, all workers together
	MaxRateLimit       = 10000.0
	DefaultConcurrency = 8 // calls in flight per worker
	MaxConcurrency     = 1000
	// DefaultDownloadConcurrency: an import's file downloads in flight per
	// worker, apart from Concurrency (each may take hours).
	DefaultDownloadConcurrency = 2
)

// Role is something we do with a partner.
type Role string

// Roles a partner can have.
const (
	// RolePush: we push signed exports to the partner's push_url.
	RolePush Role = "push"
	// RolePull: the partner is a member's old payer; we run $member-match
	// and bulk export against its fhir_base_url.
	RolePull Role = "pull"
	// RoleRequester: the partner is a member's new payer and calls our
	// /fhir endpoints ($member-match, bulk export).
	RoleRequester Role = "requester"
)

// Partner is a partner payer as the registry knows it.
type Partner struct {
	ID    string `yaml:"id"`              // stable, appears in logs and the API
	Name  string `yaml:"name"`            // display name
	Roles []Role `yaml:"roles,omitempty"` // default: [push] when push_url is set
	// PushURL is where signed exports are POSTed (role push).
	PushURL string `yaml:"push_url,omitempty"`
	// FHIRBaseURL is the partner's FHIR server (role pull).
	FHIRBaseURL string `yaml:"fhir_base_url,omitempty"`
	// AllowedHosts are the hosts, besides those of PushURL and FHIRBaseURL,
	// that a URL the partner hands back (Content-Location, a manifest's
	// file URLs) may name; any other host is refused, so a partner cannot
	// point our client at a third party. The rules of
	// bulkdata.Config.AllowedHosts: "files.a.example" (any port),
	// "files.a.example:8443" (that port), "*.blob.a.example" (any
	// subdomain), "[::1]:8080".
	AllowedHosts []string `yaml:"allowed_hosts,omitempty"`
	// TokenHosts are the hosts, besides that of FHIRBaseURL (on its port),
	// that may receive our bearer token: a file server on another host
	// whose manifest says requiresAccessToken. Same rules as AllowedHosts;
	// a token is never sent anywhere else, redirects included.
	TokenHosts []string `yaml:"token_hosts,omitempty"`
	// AllowPrivateNetwork lets our calls to the partner reach loopback,
	// private (10/8, 172.16/12, 192.168/16, fc00::/7) and shared
	// (100.64/10) addresses: the dev sandbox, a partner on a private
	// link. Without it they are refused, whatever a name resolves to.
	// Link-local addresses (cloud metadata) are refused even with it.
	AllowPrivateNetwork bool `yaml:"allow_private_network,omitempty"`
	// JWKSURL is the partner's own keys: its signatures and, as a
	// requester, its SMART client assertions.
	JWKSURL string        `yaml:"jwks_url,omitempty"`
	Auth    Auth          `yaml:"auth,omitempty"`
	Timeout time.Duration `yaml:"timeout,omitempty"` // per call, e.g. "30s"; 0 = DefaultTimeout
	// RateLimit caps calls to this partner per second, across every worker
	// (Temporal enforces it on the partner's task queue); 0 =
	// DefaultRateLimit.
	RateLimit float64 `yaml:"rate_limit,omitempty"`
	// Concurrency caps this partner's calls in flight per worker process;
	// 0 = DefaultConcurrency.
	Concurrency int `yaml:"concurrency,omitempty"`
	// DownloadConcurrency caps the files of imports from this partner
	// downloaded at once per worker process, on a task queue of their
	// own so that hours-long downloads never take the slots of sends and
	// matches; 0 = DefaultDownloadConcurrency.
	DownloadConcurrency int `yaml:"download_concurrency,omitempty"`
	// Retry overrides the retry policy of calls to this partner (nil: the
	// policy in activities/policy.go).
	Retry *RetryOverride `yaml:"retry,omitempty"`
	// Identifiers name the partner's organization in FHIR (its NPI,
	// typically): a member's consent names the payer it lets us disclose
	// to by one of them.
	Identifiers []Identifier `yaml:"identifiers,omitempty"`
}

// Identifier is a business identifier of a partner: a system URI and a
// value, e.g. http://hl7.org/fhir/sid/us-npi and a ten-digit NPI.
type Identifier struct {
	System string `yaml:"system"`
	Value  string `yaml:"value"`
}

// HasRole reports whether the partner has role r.
func (p Partner) HasRole(r Role) bool { return slices.Contains(p.Roles, r) }

// AllowsURL reports whether u, a URL the partner handed us, names a host we
// may call for it: the host of its push or FHIR URL or an allow-listed one.
func (p Partner) AllowsURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.User != nil {
		return false
	}
	host := strings.ToLower(pu.Hostname())
	for _, own := range []string{p.PushURL, p.FHIRBaseURL} {
		if ou, err := url.Parse(own); err == nil && own != "" && strings.EqualFold(ou.Hostname(), host) {
			return true
		}
	}
	return slices.ContainsFunc(p.AllowedHosts, func(h string) bool { return bulkdata.AllowedHost(h, pu) })
}

// Egress is the policy of our calls to p (package internal/egress): the
// hosts of its configured URLs and AllowedHosts, its token only to the
// origin of FHIRBaseURL and to TokenHosts, private addresses only with
// AllowPrivateNetwork. The caller sets the size cap, timeouts, redirects
// and TLS of its own client.
func (p Partner) Egress() egress.Policy {
	pol := egress.Policy{Name: p.ID, AllowPrivate: p.AllowPrivateNetwork}
	for _, s := range []string{p.PushURL, p.FHIRBaseURL, p.JWKSURL, p.Auth.TokenURL} {
		if u, err := url.Parse(s); err == nil && s != "" {
			if r, ok := egress.HostOf(u); ok {
				pol.Hosts = append(pol.Hosts, r)
			}
		}
	}
	for _, h := range p.AllowedHosts {
		if r, err := egress.ParseRule(h); err == nil {
			pol.Hosts = append(pol.Hosts, r)
		}
	}
	if u, err := url.Parse(p.FHIRBaseURL); err == nil && p.FHIRBaseURL != "" {
		if r, ok := egress.OriginOf(u); ok {
			pol.TokenHosts = append(pol.TokenHosts, r)
		}
	}
	for _, h := range p.TokenHosts {
		if r, err := egress.ParseRule(h); err == nil {
			pol.TokenHosts = append(pol.TokenHosts, r)
			pol.Hosts = append(pol.Hosts, r)
		}
	}
	return pol
}

// JWKSEgress is the egress policy of fetches from a JWKS URL, for
// signing.RemoteKeys.Egress: that of the partner in partners() whose
// jwks_url it is (so allow_private_network carries over), else public
// addresses only.
func JWKSEgress(partners func() []Partner) func(jwksURL string) egress.Policy {
	return func(jwksURL string) egress.Policy {
		for _, p := range partners() {
			if p.JWKSURL != "" && p.JWKSURL == jwksURL {
				return p.Egress()
			}
		}
		name := jwksURL
		if u, err := url.Parse(jwksURL); err == nil {
			name = u.Hostname()
		}
		return egress.Policy{Name: name}
	}
}

// privateURL returns why s, a configured URL, names an address p may not
// call (a loopback or private IP literal, "localhost" without
// allow_private_network; a link-local one ever), or "".
func (p Partner) privateURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return ""
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		h = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return ""
	}
	if why := egress.Allowed(ip, p.AllowPrivateNetwork); why != "" {
		if egress.PrivateClass(egress.Class(ip)) {
			return "is on a " + why + ": set allow_private_network: true for a partner on a private network"
		}
		return "is on a " + why + ", which no partner may be on"
	}
	return ""
}

// RetryOverride is a partner's own retry policy for calls to it, for
// partners that publish their limits. Zero fields keep the default.
type RetryOverride struct {
	InitialInterval time.Duration `yaml:"initial_interval,omitempty"`
	MaximumInterval time.Duration `yaml:"maximum_interval,omitempty"`
	MaximumAttempts int32         `yaml:"maximum_attempts,omitempty"`
}

func (r *RetryOverride) validate() error {
	switch {
	case r == nil:
		return nil
	case r.InitialInterval < 0 || r.InitialInterval > time.Hour:
		return errors.New("initial_interval: want between 0 and 1h")
	case r.MaximumInterval < 0 || r.MaximumInterval > 24*time.Hour:
		return errors.New("maximum_interval: want between 0 and 24h")
	case r.MaximumInterval != 0 && r.MaximumInterval < r.InitialInterval:
		return errors.New("maximum_interval: want at least initial_interval")
	case r.MaximumAttempts < 0:
		return errors.New("maximum_attempts: want 0 (unlimited within the activity's time budget) or more")
	}
	return nil
}

var partnerID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports the first problem with p's configuration. It does not
// apply defaults; NewRegistry does.
func (p Partner) Validate() error {
	if !partnerID.MatchString(p.ID) {
		return fmt.Errorf("partner id %.70q: want 1-64 letters, digits, '.', '_' or '-'", p.ID)
	}
	roles := p.roles()
	if len(roles) == 0 {
		return fmt.Errorf("partner %s: roles: want at least one of push, pull, requester (or a push_url)", p.ID)
	}
	for _, r := range roles {
		switch r {
		case RolePush, RolePull, RoleRequester:
		default:
			return fmt.Errorf("partner %s: role %.30q: want push, pull or requester", p.ID, r)
		}
	}
	if p.PushURL != "" || slices.Contains(roles, RolePush) {
		if err := checkURL(p.PushURL); err != nil {
			return fmt.Errorf("partner %s: push_url: %w", p.ID, err)
		}
	}
	if p.FHIRBaseURL != "" || slices.Contains(roles, RolePull) {
		if err := checkURL(p.FHIRBaseURL); err != nil {
			return fmt.Errorf("partner %s: fhir_base_url: %w", p.ID, err)
		}
	}
	for _, h := range p.AllowedHosts {
		if err := bulkdata.CheckAllowedHost(h); err != nil {
			return fmt.Errorf("partner %s: allowed_hosts: %.70q: %w", p.ID, h, err)
		}
	}
	for _, h := range p.TokenHosts {
		if err := bulkdata.CheckAllowedHost(h); err != nil {
			return fmt.Errorf("partner %s: token_hosts: %.70q: %w", p.ID, h, err)
		}
	}
	for _, f := range []struct{ name, url string }{
		{"push_url", p.PushURL}, {"fhir_base_url", p.FHIRBaseURL}, {"jwks_url", p.JWKSURL}, {"auth.token_url", p.Auth.TokenURL},
	} {
		if why := p.privateURL(f.url); why != "" {
			return fmt.Errorf("partner %s: %s %s", p.ID, f.name, why)
		}
	}
	if p.JWKSURL != "" {
		if err := checkURL(p.JWKSURL); err != nil {
			return fmt.Errorf("partner %s: jwks_url: %w", p.ID, err)
		}
	}
	if err := p.Auth.validate(p, roles); err != nil {
		return fmt.Errorf("partner %s: auth: %w", p.ID, err)
	}
	if err := p.Retry.validate(); err != nil {
		return fmt.Errorf("partner %s: retry: %w", p.ID, err)
	}
	if p.RateLimit < 0 || p.RateLimit > MaxRateLimit {
		return fmt.Errorf("partner %s: rate_limit %v: want between 0 (default %v) and %v calls per second", p.ID, p.RateLimit, DefaultRateLimit, MaxRateLimit)
	}
	if p.Concurrency < 0 || p.Concurrency > MaxConcurrency {
		return fmt.Errorf("partner %s: concurrency %d: want between 0 (default %d) and %d", p.ID, p.Concurrency, DefaultConcurrency, MaxConcurrency)
	}
	if p.DownloadConcurrency < 0 || p.DownloadConcurrency > MaxConcurrency {
		return fmt.Errorf("partner %s: download_concurrency %d: want between 0 (default %d) and %d", p.ID, p.DownloadConcurrency, DefaultDownloadConcurrency, MaxConcurrency)
	}
	for _, id := range p.Identifiers {
		if id.System == "" || id.Value == "" {
			return fmt.Errorf("partner %s: identifiers: each needs a system and a value", p.ID)
		}
	}
	if p.Timeout < 0 || p.Timeout > MaxTimeout {
		return fmt.Errorf("partner %s: timeout %v: want between 0 (default %v) and %v", p.ID, p.Timeout, DefaultTimeout, MaxTimeout)
	}
	return nil
}

// roles returns the partner's roles: as configured, or push for a partner
// configured before roles existed, with only a push_url.
func (p Partner) roles() []Role {
	if len(p.Roles) == 0 && p.PushURL != "" {
		return []Role{RolePush}
	}
	return p.Roles
}

// checkURL accepts absolute http(s) URLs without credentials: a password
// in a URL would end up in logs and error messages.
func checkURL(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an absolute http or https URL")
	case u.Host == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not carry credentials")
	case u.Fragment != "":
		return errors.New("must not have a fragment")
	}
	return nil
}

// Registry is the set of partners we deliver to. It is immutable, so safe
// for concurrent use; to change it, build a new one.
type Registry struct {
	byID map[string]Partner
	ids  []string
}

// NewRegistry validates partners (unique ids, URLs, timeouts), applies the
// default timeout and returns them as a registry.
func NewRegistry(partners ...Partner) (*Registry, error) {
	r := &Registry{byID: make(map[string]Partner, len(partners))}
	certs := map[string]string{} // client certificate identity → partner id
	for _, p := range partners {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("connectors: %w", err)
		}
		if _, dup := r.byID[p.ID]; dup {
			return nil, fmt.Errorf("connectors: partner id %s is listed twice", p.ID)
		}
		if k := p.Auth.clientCertKey(); k != "" && p.HasRole(RoleRequester) {
			if other, dup := certs[k]; dup {
				return nil, fmt.Errorf("connectors: partners %s and %s name the same client certificate", other, p.ID)
			}
			certs[k] = p.ID
		}
		if p.Timeout == 0 {
			p.Timeout = DefaultTimeout
		}
		if p.RateLimit == 0 {
			p.RateLimit = DefaultRateLimit
		}
		if p.Concurrency == 0 {
			p.Concurrency = DefaultConcurrency
		}
		if p.DownloadConcurrency == 0 {
			p.DownloadConcurrency = DefaultDownloadConcurrency
		}
		p.Roles = p.roles()
		r.byID[p.ID] = p
		r.ids = append(r.ids, p.ID)
	}
	slices.Sort(r.ids)
	return r, nil
}

// registryFile is the YAML form of a registry:
//
//	partners:
//	  - id: acme
//	    name: Acme Health
//	    push_url: https://p2p.acme.example/exports
//	    jwks_url: https://p2p.acme.example/.well-known/jwks.json
//	    timeout: 45s
//	    rate_limit: 5     # calls per second, all workers together
//	    concurrency: 4    # calls in flight per worker
//	    identifiers:
//	      - system: http://hl7.org/fhir/sid/us-npi
//	        value: "1234567893"
type registryFile struct {
	Partners []Partner `yaml:"partners"`
}

// LoadRegistry reads a registry from a YAML file (see ParseRegistry).
func LoadRegistry(path string) (*Registry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("connectors: read registry: %w", err)
	}
	return ParseRegistry(b)
}

// ParseRegistry reads a registry from YAML: a top-level "partners" list of
// {id, name, roles, push_url, fhir_base_url, allowed_hosts, token_hosts,
// allow_private_network, jwks_url, auth, timeout, rate_limit, concurrency,
// retry, identifiers}. Unknown keys are errors, so a
// misspelt key is caught rather than silently ignored. An empty document
// is an empty registry.
func ParseRegistry(data []byte) (*Registry, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f registryFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("connectors: parse registry: %w", err)
	}
	return NewRegistry(f.Partners...)
}

// Get returns the partner with id.
func (r *Registry) Get(id string) (Partner, bool) {
	if r == nil {
		return Partner{}, false
	}
	p, ok := r.byID[id]
	return p, ok
}

// Has reports whether id is a registered partner.
func (r *Registry) Has(id string) bool {
	_, ok := r.Get(id)
	return ok
}

// CanPush reports whether id is a registered partner we push exports to:
// the partners a transfer may name.
func (r *Registry) CanPush(id string) bool {
	p, ok := r.Get(id)
	return ok && p.HasRole(RolePush)
}

// CanPull reports whether id is a registered partner we pull members'
// data from (role pull): the old payers an import may name.
func (r *Registry) CanPull(id string) bool {
	p, ok := r.Get(id)
	return ok && p.HasRole(RolePull)
}

// IDs returns every partner id, sorted.
func (r *Registry) IDs() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.ids)
}

// Partners returns every partner, sorted by id: with NewRegistry, a way to
// add a partner (the dev sandbox) to a registry loaded from a file.
func (r *Registry) Partners() []Partner {
	out := make([]Partner, 0, len(r.IDs()))
	for _, id := range r.IDs() {
		out = append(out, r.byID[id])
	}
	return out
}
