package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

var (
	testMember = member.Record{
		ID: "M-1001", Given: "Ada", Family: "Lovelace", BirthDate: "1985-12-10", Sex: "F",
		Street: "12 Analytical Way", City: "Springfield", State: "IL", PostalCode: "62701", Phone: "217-555-0101",
	}
	created = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
)

func input(scope string, ds transfer.DataScope) Input {
	return Input{
		TransferID: "tr-1", PartnerID: "sandbox", ConsentID: "c-1", ConsentScope: scope,
		DataScope: ds, Member: testMember, Source: SyntheticSource{}, CreatedAt: created,
	}
}

func counts(e *Export) map[string]int {
	m := map[string]int{}
	for _, f := range e.Files {
		m[f.Type] = f.Count
	}
	return m
}

func date(s string) *time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func TestBuildScopes(t *testing.T) {
	all := map[string]int{"Condition": 2, "Coverage": 1, "Encounter": 2, "ExplanationOfBenefit": 3, "Patient": 1}
	tests := []struct {
		name     string
		scope    string
		ds       transfer.DataScope
		want     map[string]int
		excluded int
	}{
		{"sensitive, everything", transfer.ScopeSensitive, transfer.DataScope{}, all, 0},
		{"regular leaves out the sensitive condition", transfer.ScopeRegular, transfer.DataScope{},
			map[string]int{"Condition": 1, "Coverage": 1, "Encounter": 2, "ExplanationOfBenefit": 3, "Patient": 1}, 1},
		{"types filter", transfer.ScopeRegular, transfer.DataScope{ResourceTypes: []string{"Patient", "Condition", "Patient"}},
			map[string]int{"Condition": 1, "Patient": 1}, 1},
		{"types filter without sensitive types excludes nothing", transfer.ScopeRegular,
			transfer.DataScope{ResourceTypes: []string{"Coverage"}}, map[string]int{"Coverage": 1}, 0},
		{"since 2023", transfer.ScopeRegular, transfer.DataScope{Since: date("2023-01-01")},
			map[string]int{"Coverage": 1, "Encounter": 1, "ExplanationOfBenefit": 2, "Patient": 1}, 1},
		{"since 2023, sensitive", transfer.ScopeSensitive, transfer.DataScope{Since: date("2023-01-01")},
			map[string]int{"Condition": 1, "Coverage": 1, "Encounter": 1, "ExplanationOfBenefit": 2, "Patient": 1}, 0},
		{"since after everything", transfer.ScopeSensitive, transfer.DataScope{Since: date("2030-01-01")}, map[string]int{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Build(context.Background(), input(tt.scope, tt.ds))
			if err != nil {
				t.Fatal(err)
			}
			got := counts(e)
			if len(got) != len(tt.want) {
				t.Fatalf("files %v, want %v", got, tt.want)
			}
			for typ, n := range tt.want {
				if got[typ] != n {
					t.Errorf("%s: %d, want %d", typ, got[typ], n)
				}
			}
			if e.ExcludedSensitive != tt.excluded {
				t.Errorf("excluded %d, want %d", e.ExcludedSensitive, tt.excluded)
			}
			checkExport(t, e)
		})
	}
}

// checkExport checks the invariants of every export: NDJSON shape, digests,
// sorted files, and a manifest that describes exactly the files.
func checkExport(t *testing.T, e *Export) {
	t.Helper()
	m, err := ParseManifest(e.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if Digest(e.Manifest) != e.ManifestSHA256 {
		t.Fatal("manifest digest")
	}
	if m.ExcludedSensitive != e.ExcludedSensitive || len(m.Files) != len(e.Files) {
		t.Fatalf("manifest %+v does not describe the export", m)
	}
	for i, f := range e.Files {
		if i > 0 && e.Files[i-1].Type >= f.Type {
			t.Fatal("files not sorted by type")
		}
		mf := m.Files[i]
		if mf.Type != f.Type || mf.Name != f.Type+".ndjson" || mf.Name != f.Name || mf.Count != f.Count ||
			mf.SHA256 != f.SHA256 || mf.SHA256 != Digest(f.Data) || mf.Bytes != int64(len(f.Data)) {
			t.Fatalf("manifest entry %+v does not match file %s", mf, f.Name)
		}
		if !bytes.HasSuffix(f.Data, []byte("\n")) {
			t.Fatalf("%s does not end in a newline", f.Name)
		}
		lines := strings.Split(strings.TrimSuffix(string(f.Data), "\n"), "\n")
		if len(lines) != f.Count {
			t.Fatalf("%s: %d lines, count %d", f.Name, len(lines), f.Count)
		}
		for _, l := range lines {
			var r struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil || r.ResourceType != f.Type || r.ID == "" {
				t.Fatalf("%s: bad line (%v)", f.Name, err)
			}
		}
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	since := date("2022-06-01")
	a, err := Build(context.Background(), input(transfer.ScopeRegular, transfer.DataScope{Since: since}))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b, err := Build(context.Background(), input(transfer.ScopeRegular, transfer.DataScope{Since: since}))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Manifest, b.Manifest) || a.ManifestSHA256 != b.ManifestSHA256 || len(a.Files) != len(b.Files) {
			t.Fatal("manifest differs between builds")
		}
		for i := range a.Files {
			if !bytes.Equal(a.Files[i].Data, b.Files[i].Data) {
				t.Fatalf("%s differs between builds", a.Files[i].Name)
			}
		}
	}
	// A different member gives a different record, and a different
	// transfer a different manifest over the same files.
	other := input(transfer.ScopeRegular, transfer.DataScope{Since: since})
	other.Member.ID = "M-1002"
	c, _ := Build(context.Background(), other)
	if c.Files[0].SHA256 == a.Files[0].SHA256 {
		t.Fatal("two members got the same data")
	}
	tr := input(transfer.ScopeRegular, transfer.DataScope{Since: since})
	tr.TransferID = "tr-2"
	d, _ := Build(context.Background(), tr)
	if d.ManifestSHA256 == a.ManifestSHA256 || d.Files[0].SHA256 != a.Files[0].SHA256 {
		t.Fatal("transfer id should change the manifest only")
	}
}

// TestSyntheticGolden pins the synthetic record of one member. If you
// change SyntheticSource on purpose, update the digest; if it changes by
// accident, a dev data dir would produce different exports for the same
// members after an upgrade.
func TestSyntheticGolden(t *testing.T) {
	e, err := Build(context.Background(), input(transfer.ScopeSensitive, transfer.DataScope{}))
	if err != nil {
		t.Fatal(err)
	}
	const want = "4f1553955d8fce774320dd9d8e2ea652373e0f1f6e0b476fbb8786addbc157f7"
	if e.ManifestSHA256 != want {
		t.Errorf("manifest sha256 = %s, want %s\n%s", e.ManifestSHA256, want, e.Manifest)
	}
}

func TestManifestCanonicalForm(t *testing.T) {
	e, err := Build(context.Background(), input(transfer.ScopeRegular, transfer.DataScope{ResourceTypes: []string{"Patient"}}))
	if err != nil {
		t.Fatal(err)
	}
	f := e.Files[0]
	want := `{"version":1,"transfer_id":"tr-1","partner_id":"sandbox","consent":{"id":"c-1","scope":"regular"},` +
		`"data_scope":{"resource_types":["Patient"]},"created_at":"2025-03-04T05:06:07Z",` +
		`"files":[{"type":"Patient","name":"Patient.ndjson","count":1,"sha256":"` + f.SHA256 + `","bytes":` +
		jsonInt(len(f.Data)) + `}],"excluded_sensitive":0}`
	if string(e.Manifest) != want {
		t.Fatalf("manifest\n got %s\nwant %s", e.Manifest, want)
	}
	empty, err := Build(context.Background(), input(transfer.ScopeRegular, transfer.DataScope{Since: date("2030-01-01")}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(empty.Manifest), `"files":[]`) {
		t.Fatalf("empty export should list no files as []: %s", empty.Manifest)
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSyntheticPatientAndSensitivity(t *testing.T) {
	rs, err := SyntheticSource{}.Resources(context.Background(), testMember)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 9 {
		t.Fatalf("%d resources, want 9", len(rs))
	}
	var patient struct {
		Name []struct {
			Family string
			Given  []string
		}
		BirthDate string
		Gender    string
		Telecom   []struct{ Value string }
		Address   []struct {
			Line                    []string
			City, State, PostalCode string
		}
		Identifier []struct{ System, Value string }
	}
	if err := json.Unmarshal(rs[0].JSON, &patient); err != nil {
		t.Fatal(err)
	}
	if patient.Name[0].Family != "Lovelace" || patient.Name[0].Given[0] != "Ada" || patient.BirthDate != "1985-12-10" ||
		patient.Gender != "female" || patient.Telecom[0].Value != "217-555-0101" || patient.Address[0].City != "Springfield" ||
		patient.Address[0].Line[0] != "12 Analytical Way" || patient.Identifier[0].Value != "M-1001" ||
		patient.Identifier[0].System != DefaultMemberIDSystem {
		t.Fatalf("patient does not carry the member record: %s", rs[0].JSON)
	}
	if rs[0].ResourceType != "Patient" || rs[0].ID != SyntheticPatientID(testMember.ID) {
		t.Errorf("Patient id %s, SyntheticPatientID says %s", rs[0].ID, SyntheticPatientID(testMember.ID))
	}
	sensitive := 0
	for _, r := range rs {
		_, labelled, err := checkResource(r)
		if err != nil {
			t.Fatal(err)
		}
		if labelled != r.Sensitive {
			t.Fatalf("%s/%s: flag %v but labels say %v", r.ResourceType, r.ID, r.Sensitive, labelled)
		}
		if r.Sensitive {
			sensitive++
			if r.ResourceType != "Condition" || !strings.Contains(string(r.JSON), `"code":"PSY"`) {
				t.Fatalf("sensitive resource %s lacks the PSY label", r.ID)
			}
		}
	}
	if sensitive != 1 {
		t.Fatalf("%d sensitive resources, want 1", sensitive)
	}
}

// fixedSource returns the given resources as they are.
type fixedSource []Resource

func (f fixedSource) Resources(context.Context, member.Record) ([]Resource, error) { return f, nil }

func TestBuildChecksSourceLabels(t *testing.T) {
	// The source forgets the flag, but the resource is labelled: it must
	// still be left out under a regular consent.
	labelled := Resource{ResourceType: "Condition", ID: "c1",
		JSON: []byte(`{"resourceType": "Condition", "id": "c1",
			"meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ETH"}]}}`)}
	plain := Resource{ResourceType: "Condition", ID: "c0", JSON: []byte(`{"resourceType":"Condition","id":"c0"}`)}
	in := input(transfer.ScopeRegular, transfer.DataScope{})
	in.Source = fixedSource{labelled, plain}
	e, err := Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if e.ExcludedSensitive != 1 || len(e.Files) != 1 || e.Files[0].Count != 1 {
		t.Fatalf("labelled resource not excluded: %+v", e)
	}
	if string(e.Files[0].Data) != `{"resourceType":"Condition","id":"c0"}`+"\n" {
		t.Fatalf("data %q", e.Files[0].Data)
	}
}

func TestBuildErrors(t *testing.T) {
	ok := Resource{ResourceType: "Patient", ID: "p1", JSON: []byte(`{"resourceType":"Patient","id":"p1"}`)}
	tests := []struct {
		name   string
		mutate func(*Input)
		class  fault.Class
		typ    string
	}{
		{"unsupported type in data scope", func(in *Input) { in.DataScope.ResourceTypes = []string{"Patient", "Observation"} },
			fault.Validation, ErrTypeUnsupportedType},
		{"unknown consent scope", func(in *Input) { in.ConsentScope = "everything" }, fault.Validation, ErrTypeInvalidInput},
		{"empty consent scope", func(in *Input) { in.ConsentScope = "" }, fault.Validation, ErrTypeInvalidInput},
		{"no transfer id", func(in *Input) { in.TransferID = "" }, fault.Validation, ErrTypeInvalidInput},
		{"no created_at", func(in *Input) { in.CreatedAt = time.Time{} }, fault.Validation, ErrTypeInvalidInput},
		{"no source", func(in *Input) { in.Source = nil }, fault.Validation, ErrTypeInvalidInput},
		{"source returns an unsupported type", func(in *Input) {
			in.Source = fixedSource{{ResourceType: "Observation", ID: "o1", JSON: []byte(`{"resourceType":"Observation","id":"o1"}`)}}
		}, fault.Validation, ErrTypeInvalidResource},
		{"source returns a duplicate id", func(in *Input) { in.Source = fixedSource{ok, ok} }, fault.Validation, ErrTypeInvalidResource},
		{"source JSON is not the resource it claims", func(in *Input) {
			in.Source = fixedSource{{ResourceType: "Patient", ID: "p2", JSON: ok.JSON}}
		}, fault.Validation, ErrTypeInvalidResource},
		{"source JSON is broken", func(in *Input) {
			in.Source = fixedSource{{ResourceType: "Patient", ID: "p1", JSON: []byte(`{"resourceType":"Patient","name":"Ada`)}}
		}, fault.Validation, ErrTypeInvalidResource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(transfer.ScopeRegular, transfer.DataScope{})
			tt.mutate(&in)
			_, err := Build(context.Background(), in)
			fe, ok := fault.As(err)
			if !ok || fe.Class != tt.class || fe.Type != tt.typ {
				t.Fatalf("err = %v, want %s/%s", err, tt.class, tt.typ)
			}
			if strings.Contains(err.Error(), "Ada") {
				t.Fatal("error message leaks PHI")
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, input(transfer.ScopeRegular, transfer.DataScope{})); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled build: %v", err)
	}
}

func TestParseManifestRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"not JSON", "{"},
		{"wrong version", `{"version":2,"files":[]}`},
		{"duplicate names", `{"version":1,"files":[{"name":"a"},{"name":"a"}]}`},
		{"empty name", `{"version":1,"files":[{"name":""}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseManifest([]byte(tt.in)); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
