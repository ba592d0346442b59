// Package export assembles a member's data for a partner: FHIR R4 NDJSON,
// one file per resource type, within the consent and data scope, and a
// canonical JSON manifest of the files' SHA-256 digests. The manifest is
// what we sign (package signing) and what the partner checks the files
// against.
//
// Build is deterministic: the same Input gives byte-identical files and
// manifest, so a retried export activity stores the same artifacts under
// the same digests.
package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// ManifestVersion is the version of the manifest format Build writes.
const ManifestVersion = 1

// Stable fault types of Build's errors.
const (
	ErrTypeUnsupportedType = "unsupported_resource_type"
	ErrTypeInvalidInput    = "invalid_export_input"
	ErrTypeInvalidResource = "invalid_resource" // a Source returned something unusable
)

// SupportedTypes are the resource types an export can hold, sorted.
var SupportedTypes = []string{"Condition", "Coverage", "Encounter", "ExplanationOfBenefit", "Patient"}

// Supported reports whether resource type t can be exported.
func Supported(t string) bool { return slices.Contains(SupportedTypes, t) }

// Resource is one FHIR resource of a member as a Source holds it.
type Resource struct {
	ResourceType string
	ID           string
	LastUpdated  time.Time // meta.lastUpdated; the since filter compares it
	Sensitive    bool      // left out under a regular consent
	JSON         []byte    // the resource; compacted into one NDJSON line by Build
}

// Source yields every resource held for a member. Build filters them; a
// Source need not.
type Source interface {
	Resources(ctx context.Context, m member.Record) ([]Resource, error)
}

// Query is what Build needs of a Source: the resource types in scope,
// sorted, and the since filter (nil: everything).
type Query struct {
	Types []string
	Since *time.Time
}

// QuerySource is a Source that can narrow what it fetches to a Query: a
// remote FHIR server, where fetching every type and every year would cost
// calls and bytes for nothing. Build calls ResourcesFor instead of
// Resources and still filters what it gets, so a QuerySource that returns
// too much leaks nothing.
type QuerySource interface {
	Source
	ResourcesFor(ctx context.Context, m member.Record, q Query) ([]Resource, error)
}

// Input is what an export is built from. It holds PHI (Member).
type Input struct {
	TransferID   string
	PartnerID    string
	ConsentID    string
	ConsentScope string             // transfer.ScopeRegular or transfer.ScopeSensitive
	DataScope    transfer.DataScope // types filter (empty = all supported) and since
	Member       member.Record
	Source       Source
	CreatedAt    time.Time // written into the manifest; passed in for determinism
}

// File is one NDJSON file of an export.
type File struct {
	Type   string // resource type
	Name   string // "<Type>.ndjson"
	Count  int    // resources, one per line
	Data   []byte // NDJSON: one compact JSON object per line, each ending in \n
	SHA256 string // hex digest of Data
}

// Export is a built export: its files, sorted by type, and its manifest.
type Export struct {
	Files             []File
	Manifest          []byte // canonical JSON, see Manifest
	ManifestSHA256    string // hex digest of Manifest
	ExcludedSensitive int
}

// Manifest is the canonical JSON description of an export. Field order is
// fixed by this struct; Build writes it with encoding/json, so the bytes
// are the same for the same export.
//
//	{"version":1,"transfer_id":"…","partner_id":"…",
//	 "consent":{"id":"…","scope":"regular"},
//	 "data_scope":{"resource_types":["Condition",…],"since":"…"},
//	 "created_at":"2025-01-02T03:04:05Z",
//	 "files":[{"type":"Condition","name":"Condition.ndjson","count":1,"sha256":"…","bytes":123}],
//	 "excluded_sensitive":1}
type Manifest struct {
	Version           int               `json:"version"`
	TransferID        string            `json:"transfer_id"`
	PartnerID         string            `json:"partner_id"`
	Consent           ManifestConsent   `json:"consent"`
	DataScope         ManifestDataScope `json:"data_scope"`
	CreatedAt         string            `json:"created_at"` // RFC 3339, UTC
	Files             []ManifestFile    `json:"files"`
	ExcludedSensitive int               `json:"excluded_sensitive"` // in-scope resources left out for a regular consent
}

// ManifestConsent names the consent the export was made under.
type ManifestConsent struct {
	ID    string `json:"id"`
	Scope string `json:"scope"`
}

// ManifestDataScope is the data scope the export was made for: the
// resource types asked for (every supported type when none were named) and
// the since filter.
type ManifestDataScope struct {
	ResourceTypes []string `json:"resource_types"`
	Since         string   `json:"since,omitempty"` // RFC 3339, UTC
}

// ManifestFile describes one file of the export.
type ManifestFile struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Count  int    `json:"count"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// ParseManifest decodes a manifest and checks its version and that its
// file names are unique. Unknown fields are ignored, so that a receiver
// keeps working when a later version adds some.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("export: manifest is not JSON: %w", err)
	}
	if m.Version != ManifestVersion {
		return Manifest{}, fmt.Errorf("export: manifest version %d, want %d", m.Version, ManifestVersion)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if f.Name == "" || seen[f.Name] {
			return Manifest{}, fmt.Errorf("export: manifest file names must be unique and non-empty")
		}
		seen[f.Name] = true
	}
	return m, nil
}

// Build fetches the member's resources from in.Source (narrowed to the
// data scope when it is a QuerySource), keeps those the
// data scope asks for (type, and meta.lastUpdated strictly after since, as
// FHIR Bulk Data's _since), leaves out sensitive ones unless the consent
// scope is sensitive, and writes one NDJSON file per type present, sorted
// by type, resources sorted by id. A resource counts as sensitive if its
// Source says so or if its meta.security carries a sensitivity label (see
// SensitiveLabel), so a Source that forgets the flag cannot leak it.
//
// Errors: bad input (unknown consent scope, unsupported resource type in
// the data scope, missing ids) is fault.Validation; an error of the Source
// is returned as it is.
func Build(ctx context.Context, in Input) (*Export, error) {
	types, err := checkInput(in)
	if err != nil {
		return nil, err
	}
	var resources []Resource
	if qs, ok := in.Source.(QuerySource); ok {
		resources, err = qs.ResourcesFor(ctx, in.Member, Query{Types: slices.Clone(types), Since: in.DataScope.Since})
	} else {
		resources, err = in.Source.Resources(ctx, in.Member)
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	byType := map[string][]line{}
	excluded := 0
	for _, r := range resources {
		l, labelled, err := checkResource(r)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(types, r.ResourceType) {
			continue
		}
		if in.DataScope.Since != nil && !r.LastUpdated.After(*in.DataScope.Since) {
			continue
		}
		if (r.Sensitive || labelled) && in.ConsentScope != transfer.ScopeSensitive {
			excluded++
			continue
		}
		byType[r.ResourceType] = append(byType[r.ResourceType], l)
	}

	exp := &Export{ExcludedSensitive: excluded}
	man := Manifest{
		Version:    ManifestVersion,
		TransferID: in.TransferID,
		PartnerID:  in.PartnerID,
		Consent:    ManifestConsent{ID: in.ConsentID, Scope: in.ConsentScope},
		DataScope:  ManifestDataScope{ResourceTypes: types},
		CreatedAt:  in.CreatedAt.UTC().Format(time.RFC3339Nano),
		Files:      []ManifestFile{},

		ExcludedSensitive: excluded,
	}
	if in.DataScope.Since != nil {
		man.DataScope.Since = in.DataScope.Since.UTC().Format(time.RFC3339Nano)
	}
	for _, t := range types { // sorted, so files are too
		lines := byType[t]
		if len(lines) == 0 {
			continue
		}
		sort.Slice(lines, func(i, j int) bool { return lines[i].id < lines[j].id })
		var buf bytes.Buffer
		for i, l := range lines {
			if i > 0 && lines[i-1].id == l.id {
				return nil, fault.New(fault.Validation, ErrTypeInvalidResource,
					fmt.Sprintf("source returned %s/%s twice", t, l.id))
			}
			buf.Write(l.json)
			buf.WriteByte('\n')
		}
		f := File{Type: t, Name: t + ".ndjson", Count: len(lines), Data: buf.Bytes(), SHA256: Digest(buf.Bytes())}
		exp.Files = append(exp.Files, f)
		man.Files = append(man.Files, ManifestFile{Type: f.Type, Name: f.Name, Count: f.Count, SHA256: f.SHA256, Bytes: int64(len(f.Data))})
	}
	exp.Manifest, err = json.Marshal(man)
	if err != nil {
		return nil, fmt.Errorf("export: marshal manifest: %w", err)
	}
	exp.ManifestSHA256 = Digest(exp.Manifest)
	return exp, nil
}

// Digest returns the hex SHA-256 of b, the form every digest of an export
// takes.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type line struct {
	id   string
	json []byte
}

// checkInput validates in and returns the resource types to export, sorted.
func checkInput(in Input) ([]string, error) {
	invalid := func(msg string) error { return fault.New(fault.Validation, ErrTypeInvalidInput, msg) }
	switch {
	case in.TransferID == "":
		return nil, invalid("transfer id is required")
	case in.Member.ID == "":
		return nil, invalid("member id is required")
	case in.Source == nil:
		return nil, invalid("no source")
	case in.CreatedAt.IsZero():
		return nil, invalid("created_at is required")
	case in.ConsentScope != transfer.ScopeRegular && in.ConsentScope != transfer.ScopeSensitive:
		// Never guess a scope: guessing "sensitive" could disclose too much.
		return nil, invalid(fmt.Sprintf("consent scope must be %q or %q", transfer.ScopeRegular, transfer.ScopeSensitive))
	}
	if len(in.DataScope.ResourceTypes) == 0 {
		return slices.Clone(SupportedTypes), nil
	}
	var types []string
	for _, t := range in.DataScope.ResourceTypes {
		if !Supported(t) {
			return nil, fault.New(fault.Validation, ErrTypeUnsupportedType,
				fmt.Sprintf("resource type %.64q is not supported (supported: %v)", t, SupportedTypes))
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	return types, nil
}

// checkResource compacts r's JSON into one line, checks that it is the
// resource r says it is, and reports whether it carries a sensitivity
// label.
func checkResource(r Resource) (line, bool, error) {
	bad := func(msg string) error {
		return fault.New(fault.Validation, ErrTypeInvalidResource, fmt.Sprintf("%s/%s: %s", r.ResourceType, r.ID, msg))
	}
	if !Supported(r.ResourceType) {
		return line{}, false, bad("unsupported resource type from source")
	}
	if r.ID == "" {
		return line{}, false, bad("no id")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, r.JSON); err != nil {
		return line{}, false, bad("not valid JSON") // no detail: the error may quote PHI
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			Security []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"security"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(buf.Bytes(), &head); err != nil {
		return line{}, false, bad("not a JSON object")
	}
	if head.ResourceType != r.ResourceType || head.ID != r.ID {
		return line{}, false, bad("resourceType or id in the JSON does not match")
	}
	labelled := false
	for _, c := range head.Meta.Security {
		labelled = labelled || SensitiveLabel(c.System, c.Code)
	}
	return line{id: r.ID, json: buf.Bytes()}, labelled, nil
}
