package fhir

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../pdex/testdata/hrex/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRoundTripHRexExamples decodes the official HRex examples into the
// model and writes them back: every element of them is modelled, so the
// result must be the same JSON, resource by resource.
func TestRoundTripHRexExamples(t *testing.T) {
	for _, name := range []string{"member-match-in.json", "member-match-out.json", "member-match-out-stu1.json"} {
		t.Run(name, func(t *testing.T) {
			in := readFixture(t, name)
			var p Parameters
			if err := json.Unmarshal(in, &p); err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, in, out) {
				t.Errorf("Parameters round trip differs:\n in: %s\nout: %s", in, out)
			}
			for _, prm := range p.Parameter {
				if prm.Resource == nil {
					continue
				}
				var typed any
				switch rt := ResourceType(prm.Resource); rt {
				case "Patient":
					typed = &Patient{}
				case "Coverage":
					typed = &Coverage{}
				case "Consent":
					typed = &Consent{}
				default:
					t.Fatalf("unexpected %s", rt)
				}
				if err := DecodeResource(prm.Resource, ResourceType(prm.Resource), typed); err != nil {
					t.Fatal(err)
				}
				b, err := json.Marshal(typed)
				if err != nil {
					t.Fatal(err)
				}
				if !sameJSON(t, prm.Resource, b) {
					t.Errorf("%s round trip differs:\n in: %s\nout: %s", prm.Name, prm.Resource, b)
				}
			}
		})
	}
}

func TestParameterValue(t *testing.T) {
	var p Parameters
	if err := json.Unmarshal(readFixture(t, "member-match-out.json"), &p); err != nil {
		t.Fatal(err)
	}
	mi := p.Param("MemberIdentifier")
	if len(mi) != 1 {
		t.Fatalf("MemberIdentifier: %d parameters", len(mi))
	}
	var id Identifier
	if ok, err := mi[0].Value.Decode("Identifier", &id); !ok || err != nil {
		t.Fatalf("Decode Identifier: %v %v", ok, err)
	}
	if id.Value != "55678" || !id.Type.Has(SystemHRexTemp, "UMB") || id.Assigner == nil || id.Assigner.Display != "Old Payer" {
		t.Errorf("identifier = %+v", id)
	}
	var ref Reference
	if ok, _ := mi[0].Value.Decode("Reference", &ref); ok {
		t.Error("an Identifier value decoded as a Reference")
	}

	// Any value[x] type survives, modelled or not.
	in := `{"name":"x","valueQuantity":{"value":1.5,"unit":"mg"},"part":[{"name":"y","valueBoolean":true}]}`
	var q Parameter
	if err := json.Unmarshal([]byte(in), &q); err != nil {
		t.Fatal(err)
	}
	if q.Value == nil || q.Value.Type != "Quantity" || q.Part[0].Value.Type != "Boolean" {
		t.Fatalf("values = %+v", q)
	}
	out, _ := json.Marshal(q)
	if !sameJSON(t, []byte(in), out) {
		t.Errorf("round trip: %s", out)
	}

	// Two value[x] in one parameter is malformed.
	if err := json.Unmarshal([]byte(`{"name":"x","valueString":"a","valueBoolean":true}`), &q); err == nil {
		t.Error("two value[x] accepted")
	}
	// "valueset" is not a value[x]: the letter after "value" must be upper case.
	if err := json.Unmarshal([]byte(`{"name":"x","valueset":"a"}`), &q); err != nil || q.Value != nil {
		t.Errorf("valueset read as value[x]: %v %+v", err, q.Value)
	}
}

func TestExtensionRoundTrip(t *testing.T) {
	in := `{"url":"http://example.org/a","extension":[{"url":"b","valueCode":"c"}],"valueString":"v"}`
	var e Extension
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		t.Fatal(err)
	}
	if e.Value == nil || e.Value.Type != "String" || e.Extension[0].Value.Type != "Code" {
		t.Fatalf("%+v", e)
	}
	out, _ := json.Marshal(e)
	if !sameJSON(t, []byte(in), out) {
		t.Errorf("round trip: %s", out)
	}
	if !strings.HasPrefix(string(out), `{"url":`) {
		t.Errorf("url not first: %s", out)
	}
}

func TestModifierPaths(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"none", `{"resourceType":"Consent","status":"active","extension":[{"url":"x","valueString":"y"}]}`, nil},
		{"root", `{"resourceType":"Consent","modifierExtension":[{"url":"x","valueBoolean":true}]}`, []string{"Consent.modifierExtension"}},
		{"empty list", `{"resourceType":"Consent","modifierExtension":[]}`, nil},
		{"deep, unmodelled element", `{"resourceType":"Consent","verification":[{"modifierExtension":[{"url":"x"}]}]}`, []string{"Consent.verification.modifierExtension"}},
		{"nested provision", `{"resourceType":"Consent","provision":{"provision":[{"modifierExtension":[{"url":"x"}]}]}}`, []string{"Consent.provision.provision.modifierExtension"}},
		{"implicitRules", `{"resourceType":"Patient","implicitRules":"http://example.org/rules"}`, []string{"Patient.implicitRules"}},
		{"contained", `{"resourceType":"Consent","contained":[{"resourceType":"Organization","implicitRules":"x"}]}`, []string{"Consent.contained.implicitRules"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ModifierPaths(json.RawMessage(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	// The official example has none.
	p := readFixture(t, "member-match-in.json")
	if got, _ := ModifierPaths(p); got != nil {
		t.Errorf("official example: %v", got)
	}
}

func TestDateRange(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		in          string
		first, last string
		bad         bool
	}{
		{in: "2022", first: "2022-01-01T00:00:00Z", last: "2022-12-31T23:59:59.999999999Z"},
		{in: "2022-02", first: "2022-02-01T00:00:00Z", last: "2022-02-28T23:59:59.999999999Z"},
		{in: "2022-01-31", first: "2022-01-31T00:00:00Z", last: "2022-01-31T23:59:59.999999999Z"},
		{in: "2022-01-31T10:00:00-05:00", first: "2022-01-31T15:00:00Z", last: "2022-01-31T15:00:00Z"},
		{in: "2022-13-01", bad: true},
		{in: "31/01/2022", bad: true},
		{in: "", bad: true},
		{in: "2022-01-31T10:00", bad: true}, // FHIR requires seconds and a zone
	}
	for _, c := range cases {
		f, l, err := DateRange(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: accepted", c.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !f.Equal(utc(c.first)) || !l.Equal(utc(c.last)) {
			t.Errorf("%q: [%v, %v], want [%s, %s]", c.in, f, l, c.first, c.last)
		}
	}
}

func TestDecodeResource(t *testing.T) {
	var c Consent
	if err := DecodeResource(json.RawMessage(`{"resourceType":"Patient"}`), "Consent", &c); err == nil {
		t.Error("a Patient decoded as a Consent")
	}
	if err := DecodeResource(nil, "Consent", &c); err == nil {
		t.Error("nothing decoded as a Consent")
	}
	if err := DecodeResource(json.RawMessage(`[1]`), "Consent", &c); err == nil {
		t.Error("an array decoded as a Consent")
	}
}

func TestTransmitter(t *testing.T) {
	a := Transmitter(Reference{Reference: "Organization/us"})
	b, _ := json.Marshal(a)
	want := `{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"transmitter"}]},"who":{"reference":"Organization/us"}}`
	if string(b) != want {
		t.Errorf("got %s", b)
	}
}

// TestWireShapes pins the JSON of the constructors and of elements that
// are written even when empty (required by R4, or zero amounts).
func TestWireShapes(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"Code has no display", Code(SystemSNOMED, "185349003"),
			`{"coding":[{"system":"http://snomed.info/sct","code":"185349003"}]}`},
		{"CodeDisplay", CodeDisplay(SystemICD10CM, "I10", "Essential (primary) hypertension"),
			`{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"I10","display":"Essential (primary) hypertension"}]}`},
		{"CodeDisplay without display is Code", CodeDisplay(SystemICD10CM, "I10", ""),
			`{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"I10"}]}`},
		{"zero Money keeps its value", Money{}, `{"value":0}`},
		{"Encounter requires status and class", Encounter{ResourceType: "Encounter"},
			`{"resourceType":"Encounter","status":"","class":{}}`},
		{"Condition requires subject", Condition{ResourceType: "Condition"},
			`{"resourceType":"Condition","subject":{}}`},
		{"ExplanationOfBenefit requires its 1..1 elements", ExplanationOfBenefit{ResourceType: "ExplanationOfBenefit", Insurance: []EOBInsurance{}},
			`{"resourceType":"ExplanationOfBenefit","status":"","type":{},"use":"","patient":{},"created":"","insurer":{},"provider":{},"outcome":"","insurance":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}
