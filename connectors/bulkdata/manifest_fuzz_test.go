package bulkdata

import (
	"bytes"
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
)

// FuzzParseManifest reads complete-status bodies: a manifest it accepts
// holds what ParseManifest promises (required elements, resource types,
// absolute http(s) URLs without credentials, each listed once, counts
// not negative, the IG's types for error and deleted files), and reads
// back the same after encoding.
func FuzzParseManifest(f *testing.F) {
	ok := func(s string) string {
		return `{"transactionTime":"2021-01-01T00:00:00Z","request":"r","requiresAccessToken":false,` + s + `}`
	}
	for _, s := range []string{
		// The IG's example manifest, plus deleted and extension.
		`{"transactionTime":"2021-01-01T00:00:00.123+01:00","request":"https://example.com/fhir/Patient/$export?_type=Patient,Observation","requiresAccessToken":true,` +
			`"output":[{"type":"Patient","url":"https://example.com/output/patient_file_1.ndjson","count":10},{"type":"Observation","url":"https://example.com/output/observation_file_1.ndjson"},` +
			`{"type":"Observation","url":"https://example.com/output/observation_file_2.ndjson","extension":{"x":1}}],` +
			`"deleted":[{"type":"Bundle","url":"https://example.com/output/del_file_1.ndjson"}],"error":[{"type":"OperationOutcome","url":"https://example.com/output/err_file_1.ndjson"}],` +
			`"extension":{"https://example.com/extra-property":true}}`,
		// An extension that encoding escapes differently ("&" becomes "\u0026").
		ok(`"output":[],"error":[],"extension":{"https://e.example/?a&b":"<x>"}`),
		// As the test server (bulktest) and the client tests serve them.
		`{"transactionTime":"2026-12-01T10:00:00Z","request":"x","requiresAccessToken":true,"output":[{"type":"Patient","url":"http://127.0.0.1:8080/f/1"}],"error":[]}`,
		ok(`"output":[],"error":[{"url":"https://e.example/e"}]`),
		ok(`"output":[],"error":[],"outputFormat":"application/fhir+ndjson","link":[]`),
		ok(`"output":[],"error":[],"extension":[{"url":"u","valueBoolean":true}]`),
		ok(`"output":[{"type":"Patient","url":"https://e.example/p","count":0}],"error":[]`),
		ok(`"output":[{"type":"Patient","url":"https://u:p@e.example/p","count":1.5}],"error":[],"link":[{"relation":"next","url":"https://e.example/m2"}]`),
		ok(`"output":[{"type":"Patient","url":"https://e.example/p"},{"type":"Patient","url":"https://e.example/p"}],"error":[]`),
		ok(`"output":[{"type":"Patient","url":"https://e.example/p","continuesInFile":"https://e.example/p2"}],"error":[]`),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if m != nil {
				t.Fatalf("a manifest with an error: %v", err)
			}
			return
		}
		if m.TransactionTime.IsZero() || m.Request == "" || m.Output == nil || m.Error == nil {
			t.Fatalf("accepted a manifest without a required element: %+v", m)
		}
		seen := map[string]bool{}
		for _, list := range []struct {
			files []OutputFile
			typ   string
		}{{m.Output, ""}, {m.Error, "OperationOutcome"}, {m.Deleted, "Bundle"}} {
			for _, f := range list.files {
				u, err := url.Parse(f.URL)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
					t.Fatalf("accepted file URL %q", f.URL)
				}
				if seen[f.URL] {
					t.Fatalf("accepted %q twice", f.URL)
				}
				seen[f.URL] = true
				if !resourceTypeRE.MatchString(f.Type) || (list.typ != "" && f.Type != list.typ) {
					t.Fatalf("accepted type %q (want %q)", f.Type, list.typ)
				}
				if f.Count != nil && *f.Count < 0 {
					t.Fatalf("accepted count %d", *f.Count)
				}
			}
		}

		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("an accepted manifest does not encode: %v", err)
		}
		back, err := ParseManifest(b)
		if err != nil {
			t.Fatalf("an accepted manifest, encoded, is refused: %v\n%s", err, b)
		}
		if !back.TransactionTime.Equal(m.TransactionTime) {
			t.Fatalf("transactionTime %v after a round trip, want %v", back.TransactionTime, m.TransactionTime)
		}
		if !reflect.DeepEqual(normalised(back), normalised(m)) {
			t.Fatalf("after a round trip:\n%+v\nwant\n%+v", back, m)
		}
	})
}

// normalised is m without its time (compared with Equal) and with its
// extensions compacted and HTML-escaped, as encoding them does (so "&"
// and "\u0026" read the same).
func normalised(m *Manifest) Manifest {
	c := *m
	c.TransactionTime = c.TransactionTime.UTC()
	c.Extension = compact(c.Extension)
	for _, l := range []*[]OutputFile{&c.Output, &c.Error, &c.Deleted} {
		fs := append([]OutputFile(nil), *l...)
		for i := range fs {
			fs[i].Extension = compact(fs[i].Extension)
		}
		*l = fs
	}
	return c
}

func compact(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var b, e bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	json.HTMLEscape(&e, b.Bytes())
	return e.Bytes()
}
