package fhirrest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
	"github.com/p2p-payer/p2p/member"
)

// Defaults of SourceConfig.
const (
	DefaultPageSize     = 200   // _count of a search
	DefaultMaxPages     = 100   // per resource type
	DefaultMaxResources = 50000 // per member, every type together
)

// SourceConfig configures a Source.
type SourceConfig struct {
	Config
	// MemberIDSystem is the identifier system under which the server's
	// Patient resources carry our member ids; "":
	// export.DefaultMemberIDSystem.
	MemberIDSystem string
	PageSize       int // 0: DefaultPageSize
	MaxPages       int // 0: DefaultMaxPages
	MaxResources   int // 0: DefaultMaxResources
}

// Source reads a member's data from our FHIR server for an export.
//
// Our member id is not the server's Patient id, so Source first finds the
// Patient by identifier (GET [base]/Patient?identifier={system}|{member
// id}); exactly one must answer. It then searches each type in scope by
// that Patient: Coverage?beneficiary=Patient/{id}, and
// ExplanationOfBenefit, Encounter and Condition by ?patient=Patient/{id},
// with _lastUpdated=gt{since} when the export has a since, following
// link[relation=next] on the same scheme and host only, within MaxPages
// per type and MaxResources in all.
//
// Each resource's meta.lastUpdated and meta.security come through as
// Resource.LastUpdated and Resource.Sensitive (export.SensitiveLabel), and
// export.Build reads meta.security again from the JSON, so a resource the
// server labels PSY, ETH, R… stays out of a regular-consent export.
type Source struct {
	c   *client
	cfg SourceConfig
}

var _ export.QuerySource = (*Source)(nil)

// NewSource checks cfg and returns the Source.
func NewSource(cfg SourceConfig) (*Source, error) {
	c, err := newClient(cfg.Config)
	if err != nil {
		return nil, err
	}
	if cfg.MemberIDSystem == "" {
		cfg.MemberIDSystem = export.DefaultMemberIDSystem
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = DefaultMaxPages
	}
	if cfg.MaxResources <= 0 {
		cfg.MaxResources = DefaultMaxResources
	}
	return &Source{c: c, cfg: cfg}, nil
}

// patientParam is the search parameter that links each type to its
// Patient.
var patientParam = map[string]string{
	"Coverage":             "beneficiary",
	"Condition":            "patient",
	"Encounter":            "patient",
	"ExplanationOfBenefit": "patient",
}

// Resources returns every supported type of the member's data.
func (s *Source) Resources(ctx context.Context, m member.Record) ([]export.Resource, error) {
	return s.ResourcesFor(ctx, m, export.Query{Types: export.SupportedTypes})
}

// ResourcesFor returns the member's resources of the types in q, updated
// after q.Since.
func (s *Source) ResourcesFor(ctx context.Context, m member.Record, q export.Query) ([]export.Resource, error) {
	if m.ID == "" {
		return nil, fault.New(fault.Validation, ErrTypeBadInput, "source: no member id")
	}
	f := &fetch{s: s, seen: map[string]bool{}}
	patientQ := url.Values{"identifier": {s.cfg.MemberIDSystem + "|" + m.ID}, "_count": {"2"}}
	patients, err := f.search(ctx, "Patient", s.c.endpoint("Patient", patientQ), 1)
	if err != nil {
		return nil, err
	}
	switch len(patients) {
	case 0:
		return nil, fault.New(fault.Business, ErrTypeNoPatient, "source: no Patient on the FHIR server has the member id")
	case 1:
	default:
		return nil, fault.New(fault.Validation, ErrTypeAmbiguous, fmt.Sprintf("source: %d Patients on the FHIR server have the member id", len(patients)))
	}
	patient := patients[0]
	var out []export.Resource
	if slices.Contains(q.Types, "Patient") {
		out = append(out, patient)
	}
	for _, t := range q.Types {
		param, ok := patientParam[t]
		if !ok {
			continue // Patient, done above
		}
		v := url.Values{param: {"Patient/" + patient.ID}, "_count": {fmt.Sprint(s.cfg.PageSize)}}
		if q.Since != nil {
			v.Set("_lastUpdated", "gt"+q.Since.UTC().Format(time.RFC3339Nano))
		}
		rs, err := f.search(ctx, t, s.c.endpoint(t, v), s.cfg.MaxPages)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// fetch is one ResourcesFor call: the resources seen, against
// duplicates across pages and the MaxResources bound.
type fetch struct {
	s    *Source
	seen map[string]bool
}

type searchBundle struct {
	ResourceType string `json:"resourceType"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type resourceHead struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		LastUpdated string `json:"lastUpdated"`
		Security    []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"security"`
	} `json:"meta"`
}

// search reads every page of a search for resources of type t. Entries of
// other types (OperationOutcome, _include) are skipped.
func (f *fetch) search(ctx context.Context, t, first string, maxPages int) ([]export.Resource, error) {
	var out []export.Resource
	next := first
	for page := 1; next != ""; page++ {
		if page > maxPages {
			return nil, fault.New(fault.Validation, ErrTypeTooLarge, fmt.Sprintf("source: %s search has more than %d pages", t, maxPages))
		}
		op := fmt.Sprintf("source: %s search page %d", t, page)
		body, err := f.s.c.do(ctx, op, "GET", next, nil, fault.Business)
		if err != nil {
			return nil, err
		}
		var b searchBundle
		if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
			return nil, fault.Wrap(fault.Validation, ErrTypeBadResponse, op, errNotBundle)
		}
		for _, e := range b.Entry {
			r, ok, err := f.resource(t, e.Resource)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, r)
			}
		}
		cur, _ := url.Parse(next) // we just fetched it
		next = ""
		for _, l := range b.Link {
			if l.Relation != "next" {
				continue
			}
			ref, err := url.Parse(l.URL)
			if err != nil || l.URL == "" {
				return nil, fault.New(fault.Validation, ErrTypeBadResponse, op+": next link is not a URL")
			}
			u := cur.ResolveReference(ref)
			if !f.s.c.sameOrigin(u) {
				return nil, egress.Refuse(f.s.c.base.Hostname(), u.Host, op+": next link to another host")
			}
			next = u.String()
		}
	}
	return out, nil
}

// resource turns one entry into an export.Resource; false for an entry to
// skip (another type, or a duplicate across pages).
func (f *fetch) resource(t string, raw json.RawMessage) (export.Resource, bool, error) {
	var h resourceHead
	if len(raw) == 0 || json.Unmarshal(raw, &h) != nil {
		return export.Resource{}, false, fault.New(fault.Validation, ErrTypeBadResponse, "source: a "+t+" search entry is not a resource")
	}
	if h.ResourceType != t {
		return export.Resource{}, false, nil
	}
	if h.ID == "" {
		return export.Resource{}, false, fault.New(fault.Validation, ErrTypeBadResponse, "source: a "+t+" without an id")
	}
	key := t + "/" + h.ID
	if f.seen[key] {
		return export.Resource{}, false, nil
	}
	if len(f.seen) >= f.s.cfg.MaxResources {
		return export.Resource{}, false, fault.New(fault.Validation, ErrTypeTooLarge, fmt.Sprintf("source: the member has more than %d resources", f.s.cfg.MaxResources))
	}
	f.seen[key] = true
	r := export.Resource{ResourceType: t, ID: h.ID, JSON: raw}
	if h.Meta.LastUpdated != "" {
		at, err := time.Parse(time.RFC3339Nano, h.Meta.LastUpdated)
		if err != nil {
			return export.Resource{}, false, fault.New(fault.Validation, ErrTypeBadResponse, "source: "+key+": meta.lastUpdated is not an instant")
		}
		r.LastUpdated = at
	}
	for _, c := range h.Meta.Security {
		r.Sensitive = r.Sensitive || export.SensitiveLabel(c.System, c.Code)
	}
	return r, true, nil
}
