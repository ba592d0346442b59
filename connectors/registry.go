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
	"net/url"
	"os"
	"regexp"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// Timeouts of a partner call.
const (
	DefaultTimeout = 30 * time.Second // when a partner sets none
	MaxTimeout     = 10 * time.Minute // longer is surely a typo
)

// Partner is a partner payer as the registry knows it.
type Partner struct {
	ID      string        `yaml:"id"`                 // stable, appears in logs and the API
	Name    string        `yaml:"name"`               // display name
	PushURL string        `yaml:"push_url"`           // where signed exports are POSTed
	JWKSURL string        `yaml:"jwks_url,omitempty"` // the partner's own keys, if it signs anything
	Timeout time.Duration `yaml:"timeout,omitempty"`  // per call, e.g. "30s"; 0 = DefaultTimeout
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

var partnerID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports the first problem with p's configuration. It does not
// apply defaults; NewRegistry does.
func (p Partner) Validate() error {
	if !partnerID.MatchString(p.ID) {
		return fmt.Errorf("partner id %.70q: want 1-64 letters, digits, '.', '_' or '-'", p.ID)
	}
	if err := checkURL(p.PushURL); err != nil {
		return fmt.Errorf("partner %s: push_url: %w", p.ID, err)
	}
	if p.JWKSURL != "" {
		if err := checkURL(p.JWKSURL); err != nil {
			return fmt.Errorf("partner %s: jwks_url: %w", p.ID, err)
		}
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
	for _, p := range partners {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("connectors: %w", err)
		}
		if _, dup := r.byID[p.ID]; dup {
			return nil, fmt.Errorf("connectors: partner id %s is listed twice", p.ID)
		}
		if p.Timeout == 0 {
			p.Timeout = DefaultTimeout
		}
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
// {id, name, push_url, jwks_url, timeout, identifiers}. Unknown keys are errors, so a
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
