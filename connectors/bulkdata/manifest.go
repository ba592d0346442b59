package bulkdata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
)

// Manifest is the body of a complete status response (Bulk Data Access IG
// v2, "Response - Complete Status"). ParseManifest reads it strictly.
type Manifest struct {
	// TransactionTime is the server's time of the export: the _since of
	// the next incremental pull.
	TransactionTime time.Time `json:"transactionTime"`
	// Request is the kick-off URL the server says it ran.
	Request string `json:"request"`
	// RequiresAccessToken: files are downloaded with our bearer token
	// (true), or with none (false, e.g. pre-signed URLs).
	RequiresAccessToken bool `json:"requiresAccessToken"`
	// Output lists the data files, Error OperationOutcome files about
	// resources that could not be exported, Deleted transaction Bundles of
	// DELETE entries (exports with _since).
	Output  []OutputFile `json:"output"`
	Error   []OutputFile `json:"error"`
	Deleted []OutputFile `json:"deleted,omitempty"`
	// Extension is the manifest's extension element as sent (a JSON object
	// in v2), or nil.
	Extension json.RawMessage `json:"extension,omitempty"`
}

// OutputFile is one entry of a manifest's output, error or deleted array.
type OutputFile struct {
	Type      string          `json:"type"`            // FHIR resource type of every line
	URL       string          `json:"url"`             // absolute URL, on an allow-listed host
	Count     *int64          `json:"count,omitempty"` // number of resources, if the server says
	Extension json.RawMessage `json:"extension,omitempty"`
	// ContinuesInFile is the file that holds the rest of this type's
	// resources, as some servers mark the parts of a type they split,
	// organised output or not; "" if the server did not say. That file is
	// in the same list (ParseManifest adds it when the server left it out).
	ContinuesInFile string `json:"continuesInFile,omitempty"`
}

// wireManifest is the JSON as it may arrive. Elements later versions of
// the IG added are declared so that they are recognised and refused if
// they change the meaning of the manifest (we never ask for partial
// manifests or organised output); any other unknown key is refused.
type wireManifest struct {
	TransactionTime     *string           `json:"transactionTime"`
	Request             *string           `json:"request"`
	RequiresAccessToken *bool             `json:"requiresAccessToken"`
	Output              *[]wireOutputFile `json:"output"`
	Error               *[]wireOutputFile `json:"error"`
	Deleted             []wireOutputFile  `json:"deleted"`
	Extension           json.RawMessage   `json:"extension"`
	// STU3+:
	OutputFormat      string          `json:"outputFormat"`
	OutputOrganizedBy string          `json:"outputOrganizedBy"`
	Link              json.RawMessage `json:"link"`
}

type wireOutputFile struct {
	Type            *string         `json:"type"`
	URL             *string         `json:"url"`
	Count           *json.Number    `json:"count"`
	Extension       json.RawMessage `json:"extension"`
	ContinuesInFile string          `json:"continuesInFile"` // the next part of this type
}

// maxManifest bounds the size of a manifest we read (thousands of files
// fit in well under this).
const maxManifest = 16 << 20

// resourceTypeRE is the shape of a FHIR resource type name. It also keeps
// the type safe in a file name.
var resourceTypeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

// instantRE is a FHIR instant: seconds required, time zone required.
var instantRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// ParseManifest reads a complete-status body strictly: transactionTime (a
// FHIR instant), request, requiresAccessToken (a JSON boolean), output and
// error (arrays, maybe empty) are required; deleted and extension are
// optional; every file has a resource type and an absolute http(s) URL,
// and a count that is a non-negative integer if present; error files hold
// OperationOutcome and deleted files Bundle. A file's continuesInFile (the
// next part of a split type, which servers send with plain output too) is
// followed: a part the server did not list is added to the same list, of
// the same type. Unknown keys, partial manifests (link) and organised
// output are refused: each would mean data we would silently miss. It
// does not check hosts; see Client.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(io.LimitReader(bytes.NewReader(data), maxManifest))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var w wireManifest
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: trailing data after the JSON object")
	}
	switch {
	case w.TransactionTime == nil:
		return nil, errors.New("manifest: transactionTime is missing")
	case w.Request == nil || *w.Request == "":
		return nil, errors.New("manifest: request is missing")
	case w.RequiresAccessToken == nil:
		return nil, errors.New("manifest: requiresAccessToken is missing")
	case w.Output == nil:
		return nil, errors.New("manifest: output is missing")
	case w.Error == nil:
		return nil, errors.New("manifest: error is missing")
	case len(w.Link) > 0 && string(w.Link) != "null" && string(w.Link) != "[]":
		return nil, errors.New("manifest: link: partial manifests were not requested")
	case w.OutputOrganizedBy != "":
		return nil, errors.New("manifest: outputOrganizedBy: organised output was not requested")
	case w.OutputFormat != "" && !isNDJSON(w.OutputFormat):
		return nil, fmt.Errorf("manifest: outputFormat %.40q is not NDJSON", w.OutputFormat)
	}
	if !instantRE.MatchString(*w.TransactionTime) {
		return nil, fmt.Errorf("manifest: transactionTime %.40q is not a FHIR instant", *w.TransactionTime)
	}
	tt, err := time.Parse(time.RFC3339Nano, *w.TransactionTime)
	if err != nil {
		return nil, fmt.Errorf("manifest: transactionTime %.40q: %w", *w.TransactionTime, err)
	}
	if err := checkExtension(w.Extension); err != nil {
		return nil, fmt.Errorf("manifest: extension: %w", err)
	}
	m := &Manifest{
		TransactionTime:     tt,
		Request:             *w.Request,
		RequiresAccessToken: *w.RequiresAccessToken,
		Extension:           w.Extension,
	}
	seen := map[string]bool{}
	for _, list := range []struct {
		name string
		in   []wireOutputFile
		out  *[]OutputFile
		typ  string // required type, "" for any
	}{
		{"output", *w.Output, &m.Output, ""},
		{"error", *w.Error, &m.Error, "OperationOutcome"},
		{"deleted", w.Deleted, &m.Deleted, "Bundle"},
	} {
		*list.out = make([]OutputFile, 0, len(list.in))
		for i, f := range list.in {
			of, err := parseOutputFile(f, list.typ)
			if err != nil {
				return nil, fmt.Errorf("manifest: %s[%d]: %w", list.name, i, err)
			}
			if seen[of.URL] {
				return nil, fmt.Errorf("manifest: %s[%d]: url listed twice", list.name, i)
			}
			seen[of.URL] = true
			*list.out = append(*list.out, of)
		}
	}
	for _, l := range []*[]OutputFile{&m.Output, &m.Error, &m.Deleted} {
		// A part named only by continuesInFile is read like a listed one.
		// Only listed files are checked here, so an added part ends the
		// chain and the loop ends.
		for i := 0; i < len(*l); i++ {
			if next := (*l)[i].ContinuesInFile; next != "" && !seen[next] {
				seen[next] = true
				*l = append(*l, OutputFile{Type: (*l)[i].Type, URL: next})
			}
		}
	}
	return m, nil
}

func parseOutputFile(f wireOutputFile, wantType string) (OutputFile, error) {
	switch {
	case f.URL == nil || *f.URL == "":
		return OutputFile{}, errors.New("url is missing")
	case f.ContinuesInFile != "" && f.ContinuesInFile == *f.URL:
		return OutputFile{}, errors.New("continuesInFile: the file continues in itself")
	}
	if err := checkAbsoluteURL(*f.URL); err != nil {
		return OutputFile{}, fmt.Errorf("url: %w", err)
	}
	if f.ContinuesInFile != "" {
		if err := checkAbsoluteURL(f.ContinuesInFile); err != nil {
			return OutputFile{}, fmt.Errorf("continuesInFile: %w", err)
		}
	}
	of := OutputFile{URL: *f.URL, Extension: f.Extension, ContinuesInFile: f.ContinuesInFile}
	switch {
	case f.Type != nil:
		of.Type = *f.Type
	case wantType != "":
		// type is required on output entries; error and deleted files have
		// a type fixed by the IG, which some servers leave out.
		of.Type = wantType
	default:
		return OutputFile{}, errors.New("type is missing")
	}
	if !resourceTypeRE.MatchString(of.Type) {
		return OutputFile{}, fmt.Errorf("type %.40q is not a resource type", of.Type)
	}
	if wantType != "" && of.Type != wantType {
		return OutputFile{}, fmt.Errorf("type %s: want %s", of.Type, wantType)
	}
	if f.Count != nil {
		n, err := f.Count.Int64()
		if err != nil || n < 0 {
			return OutputFile{}, fmt.Errorf("count %.20q is not a non-negative integer", f.Count.String())
		}
		of.Count = &n
	}
	if err := checkExtension(f.Extension); err != nil {
		return OutputFile{}, fmt.Errorf("extension: %w", err)
	}
	return of, nil
}

// checkExtension accepts an absent extension, a JSON object (v2) or an
// array of Extension elements (later versions).
func checkExtension(raw json.RawMessage) error {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" || t[0] == '{' || t[0] == '[' {
		return nil
	}
	return errors.New("must be a JSON object")
}

// isNDJSON reports whether mt names NDJSON in one of the spellings the IG
// makes servers accept.
func isNDJSON(mt string) bool {
	switch mt {
	case "application/fhir+ndjson", "application/ndjson", "ndjson":
		return true
	}
	return false
}

// OutputSeq returns, for each file of files, its rank among the files of
// the same type, from 1: the n of NDJSONDirSink's <type>.<n>.ndjson.
func OutputSeq(files []OutputFile) []int {
	seq := make([]int, len(files))
	next := map[string]int{}
	for i, f := range files {
		next[f.Type]++
		seq[i] = next[f.Type]
	}
	return seq
}
