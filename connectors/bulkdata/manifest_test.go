package bulkdata

import (
	"strings"
	"testing"
	"time"
)

func TestParseManifest(t *testing.T) {
	// The IG's example manifest, plus deleted and extension.
	const full = `{
	  "transactionTime": "2021-01-01T00:00:00.123+01:00",
	  "request": "https://example.com/fhir/Patient/$export?_type=Patient,Observation",
	  "requiresAccessToken": true,
	  "output": [
	    {"type": "Patient", "url": "https://example.com/output/patient_file_1.ndjson", "count": 10},
	    {"type": "Observation", "url": "https://example.com/output/observation_file_1.ndjson"},
	    {"type": "Observation", "url": "https://example.com/output/observation_file_2.ndjson", "extension": {"x": 1}}
	  ],
	  "deleted": [{"type": "Bundle", "url": "https://example.com/output/del_file_1.ndjson"}],
	  "error": [{"type": "OperationOutcome", "url": "https://example.com/output/err_file_1.ndjson"}],
	  "extension": {"https://example.com/extra-property": true}
	}`
	m, err := ParseManifest([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2020, 12, 31, 23, 0, 0, 123e6, time.UTC); !m.TransactionTime.Equal(want) {
		t.Errorf("transactionTime %v, want %v", m.TransactionTime, want)
	}
	if !m.RequiresAccessToken || len(m.Output) != 3 || len(m.Error) != 1 || len(m.Deleted) != 1 || len(m.Extension) == 0 {
		t.Fatalf("manifest %+v", m)
	}
	if m.Output[0].Count == nil || *m.Output[0].Count != 10 || m.Output[1].Count != nil {
		t.Errorf("counts %v %v", m.Output[0].Count, m.Output[1].Count)
	}
	if got := OutputSeq(m.Output); got[0] != 1 || got[1] != 1 || got[2] != 2 {
		t.Errorf("OutputSeq %v, want [1 1 2]", got)
	}

	ok := func(s string) string {
		return `{"transactionTime":"2021-01-01T00:00:00Z","request":"r","requiresAccessToken":false,` + s + `}`
	}
	valid := []struct{ name, json string }{
		{"empty output and error", ok(`"output":[],"error":[]`)},
		{"error file without a type", ok(`"output":[],"error":[{"url":"https://e.example/e"}]`)},
		{"STU3 outputFormat", ok(`"output":[],"error":[],"outputFormat":"application/fhir+ndjson"`)},
		{"empty link", ok(`"output":[],"error":[],"link":[]`)},
		{"extension as an array (STU4)", ok(`"output":[],"error":[],"extension":[{"url":"u","valueBoolean":true}]`)},
		{"count 0", ok(`"output":[{"type":"Patient","url":"https://e.example/p","count":0}],"error":[]`)},
	}
	for _, tt := range valid {
		if _, err := ParseManifest([]byte(tt.json)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}

	invalid := []struct{ name, json, want string }{
		{"not JSON", `<html>`, "manifest:"},
		{"two objects", ok(`"output":[],"error":[]`) + `{}`, "trailing data"},
		{"no transactionTime", `{"request":"r","requiresAccessToken":true,"output":[],"error":[]}`, "transactionTime is missing"},
		{"transactionTime without zone", `{"transactionTime":"2021-01-01T00:00:00","request":"r","requiresAccessToken":true,"output":[],"error":[]}`, "not a FHIR instant"},
		{"transactionTime a date", `{"transactionTime":"2021-01-01","request":"r","requiresAccessToken":true,"output":[],"error":[]}`, "not a FHIR instant"},
		{"no request", `{"transactionTime":"2021-01-01T00:00:00Z","requiresAccessToken":true,"output":[],"error":[]}`, "request is missing"},
		{"no requiresAccessToken", `{"transactionTime":"2021-01-01T00:00:00Z","request":"r","output":[],"error":[]}`, "requiresAccessToken is missing"},
		{"requiresAccessToken a string", `{"transactionTime":"2021-01-01T00:00:00Z","request":"r","requiresAccessToken":"true","output":[],"error":[]}`, "requiresAccessToken"},
		{"no output", ok(`"error":[]`), "output is missing"},
		{"no error", ok(`"output":[]`), "error is missing"},
		{"unknown key", ok(`"output":[],"error":[],"outputs":[]`), "unknown field"},
		{"unknown file key", ok(`"output":[{"type":"Patient","url":"https://e.example/p","size":3}],"error":[]`), "unknown field"},
		{"partial manifest", ok(`"output":[],"error":[],"link":[{"relation":"next","url":"https://e.example/m2"}]`), "partial manifests"},
		{"organised output", ok(`"output":[],"error":[],"outputOrganizedBy":"Patient"`), "organised output"},
		{"continuesInFile itself", ok(`"output":[{"type":"Patient","url":"https://e.example/p","continuesInFile":"https://e.example/p"}],"error":[]`), "continues in itself"},
		{"continuesInFile relative", ok(`"output":[{"type":"Patient","url":"https://e.example/p","continuesInFile":"q"}],"error":[]`), "continuesInFile: "},
		{"not NDJSON", ok(`"output":[],"error":[],"outputFormat":"text/csv"`), "not NDJSON"},
		{"output without type", ok(`"output":[{"url":"https://e.example/p"}],"error":[]`), "type is missing"},
		{"output without url", ok(`"output":[{"type":"Patient"}],"error":[]`), "url is missing"},
		{"bad type", ok(`"output":[{"type":"../etc","url":"https://e.example/p"}],"error":[]`), "not a resource type"},
		{"relative url", ok(`"output":[{"type":"Patient","url":"/files/p"}],"error":[]`), "not an absolute"},
		{"ftp url", ok(`"output":[{"type":"Patient","url":"ftp://e.example/p"}],"error":[]`), "not an absolute"},
		{"url with credentials", ok(`"output":[{"type":"Patient","url":"https://u:p@e.example/p"}],"error":[]`), "credentials"},
		{"negative count", ok(`"output":[{"type":"Patient","url":"https://e.example/p","count":-1}],"error":[]`), "count"},
		{"fractional count", ok(`"output":[{"type":"Patient","url":"https://e.example/p","count":1.5}],"error":[]`), "count"},
		{"duplicate url", ok(`"output":[{"type":"Patient","url":"https://e.example/p"},{"type":"Patient","url":"https://e.example/p"}],"error":[]`), "listed twice"},
		{"error file of another type", ok(`"output":[],"error":[{"type":"Patient","url":"https://e.example/e"}]`), "want OperationOutcome"},
		{"deleted file of another type", ok(`"output":[],"error":[],"deleted":[{"type":"Patient","url":"https://e.example/d"}]`), "want Bundle"},
		{"extension a string", ok(`"output":[],"error":[],"extension":"x"`), "extension"},
	}
	for _, tt := range invalid {
		_, err := ParseManifest([]byte(tt.json))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one saying %q", tt.name, err, tt.want)
		}
	}
}

// TestManifestContinuesInFile: a type split over several files, its parts
// marked with continuesInFile on plain output (as some servers do), reads
// as every part; a part the server names only by continuesInFile is added,
// of its type, once.
func TestManifestContinuesInFile(t *testing.T) {
	m, err := ParseManifest([]byte(`{"transactionTime":"2021-01-01T00:00:00Z","request":"r","requiresAccessToken":true,"output":[` +
		`{"type":"Observation","url":"https://e.example/o1","count":10000,"continuesInFile":"https://e.example/o2"},` +
		`{"type":"Observation","url":"https://e.example/o2","count":10000,"continuesInFile":"https://e.example/o3"},` +
		`{"type":"Patient","url":"https://e.example/p1","count":1}],"error":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range m.Output {
		got = append(got, f.Type+" "+f.URL+" -> "+f.ContinuesInFile)
	}
	want := []string{
		"Observation https://e.example/o1 -> https://e.example/o2",
		"Observation https://e.example/o2 -> https://e.example/o3",
		"Patient https://e.example/p1 -> ",
		"Observation https://e.example/o3 -> ", // named only as a continuation
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m.Output[3].Count != nil {
		t.Errorf("an added part has a count: %d", *m.Output[3].Count)
	}
}
