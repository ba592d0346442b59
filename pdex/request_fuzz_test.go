package pdex

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/internal/phicanary"
)

// phiKeys are the FHIR elements of a $member-match request that hold PHI
// as strings: names, addresses, telecom and identifier values.
var phiKeys = []string{"family", "given", "text", "line", "city", "district", "state", "postalCode", "value", "subscriberId"}

// inputCodes are the issue types an InputError may carry.
var inputCodes = []string{"structure", "not-supported", "invalid", "required", "too-costly"}

// checkInputError fails when err's code is unknown or its text holds one
// of canaries.
func checkInputError(t *testing.T, err *InputError, canaries []string) {
	t.Helper()
	if !slices.Contains(inputCodes, err.Code) {
		t.Fatalf("InputError code %q", err.Code)
	}
	if l := phicanary.Leaked(err.Error(), canaries); len(l) > 0 {
		t.Fatalf("InputError %q holds the request's values %v", err.Error(), l)
	}
}

// memberMatchSeeds are the official HRex example and variants of it that
// break each rule ParseMemberMatch checks.
func memberMatchSeeds(f *testing.F) [][]byte {
	f.Helper()
	ex, err := os.ReadFile("testdata/hrex/member-match-in.json")
	if err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{ex}
	for _, r := range []struct{ old, new string }{
		{`"birthDate"`, `"birthdate"`},
		{`"1974-12-25"`, `"1974-12"`},
		{`"name": "Consent"`, `"name": "Other"`},
		{`"name": "CoverageToLink"`, `"name": "CoverageToMatch"`},
		{`"resourceType": "Coverage"`, `"resourceType": "Patient"`},
		{`"family":`, `"modifierExtension": [{"url": "u", "valueBoolean": true}], "family":`},
	} {
		if !strings.Contains(string(ex), r.old) {
			f.Fatalf("seed: the example has no %s", r.old)
		}
		seeds = append(seeds, []byte(strings.Replace(string(ex), r.old, r.new, 1)))
	}
	return append(seeds, []byte(`{"resourceType":"Parameters","implicitRules":"x"}`), []byte(`{"resourceType":"Parameters","parameter":[{"name":"MemberPatient","valueString":"x"}]}`))
}

// FuzzParseMemberMatch reads $member-match bodies: an accepted request
// has a name and a full birth date that Demographics carries over; the
// same parameters sent as the one MemberBundle of a $bulk-member-match
// read the same; an error has a known code and, once the request's PHI
// is swapped for canaries, holds none of it.
func FuzzParseMemberMatch(f *testing.F) {
	for _, s := range memberMatchSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, perr := ParseMemberMatch(body)
		if (req == nil) == (perr == nil) {
			t.Fatalf("request %v with error %v", req, perr)
		}
		if marked, canaries, ok := phicanary.Mark(body, phiKeys...); ok {
			if _, merr := ParseMemberMatch(marked); merr != nil {
				checkInputError(t, merr, canaries)
			}
		}
		if perr != nil {
			checkInputError(t, perr, nil)
			return
		}
		d := req.Demographics()
		if _, err := time.Parse(time.DateOnly, d.BirthDate); err != nil || d.BirthDate != req.Patient.BirthDate {
			t.Fatalf("accepted birth date %q", d.BirthDate)
		}
		if d.Given == "" && d.Family == "" {
			t.Fatal("accepted a member without a name")
		}
		if len(req.ConsentJSON) == 0 {
			t.Fatal("accepted a request without its Consent")
		}

		var p fhir.Parameters
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("an accepted body does not decode: %v", err)
		}
		bulk, err := json.Marshal(fhir.Parameters{ResourceType: "Parameters", Parameter: []fhir.Parameter{{Name: ParamMemberBundle, Part: p.Parameter}}})
		if err != nil {
			t.Fatal(err)
		}
		members, berr := ParseBulkMemberMatch(bulk, 1)
		if berr != nil || len(members) != 1 {
			t.Fatalf("as a MemberBundle: %d members, error %v", len(members), berr)
		}
		breq, perr := ParseMemberMatch(members[0])
		if perr != nil {
			t.Fatalf("as a MemberBundle: %v", perr)
		}
		if breq.Demographics() != d {
			t.Fatalf("as a MemberBundle the member reads %+v, want %+v", breq.Demographics(), d)
		}
	})
}

// FuzzParseBulkMemberMatch reads $bulk-member-match bodies: an accepted
// batch has 1..max members, each a Parameters resource that
// ParseMemberMatch reads without failing the batch; an error has a known
// code and holds none of the request's PHI.
func FuzzParseBulkMemberMatch(f *testing.F) {
	for _, s := range memberMatchSeeds(f) {
		var p fhir.Parameters
		if json.Unmarshal(s, &p) != nil {
			continue
		}
		one := fhir.Parameter{Name: ParamMemberBundle, Part: p.Parameter}
		for _, ps := range [][]fhir.Parameter{{one}, {one, one}, {one, {Name: ParamMemberBundle}}, {one, {Name: "Consent"}}} {
			b, err := json.Marshal(fhir.Parameters{ResourceType: "Parameters", Parameter: ps})
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, uint8(2))
		}
	}
	f.Add([]byte(`{"resourceType":"Parameters"}`), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, max uint8) {
		members, perr := ParseBulkMemberMatch(body, int(max))
		if marked, canaries, ok := phicanary.Mark(body, phiKeys...); ok {
			if _, merr := ParseBulkMemberMatch(marked, int(max)); merr != nil {
				checkInputError(t, merr, canaries)
			}
		}
		if perr != nil {
			if members != nil {
				t.Fatalf("members with error %v", perr)
			}
			checkInputError(t, perr, nil)
			return
		}
		if len(members) == 0 || len(members) > int(max) {
			t.Fatalf("accepted %d members, at most %d", len(members), max)
		}
		for i, m := range members {
			var p fhir.Parameters
			if err := json.Unmarshal(m, &p); err != nil || p.ResourceType != "Parameters" || len(p.Parameter) == 0 {
				t.Fatalf("member %d is not a Parameters resource with parameters: %s", i, m)
			}
			if marked, canaries, ok := phicanary.Mark(m, phiKeys...); ok {
				if _, merr := ParseMemberMatch(marked); merr != nil {
					checkInputError(t, merr, canaries)
				}
			}
		}
	})
}
