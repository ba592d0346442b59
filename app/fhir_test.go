package app

import (
	"testing"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/fhir"
)

func TestParseIdentifier(t *testing.T) {
	for in, want := range map[string]*fhir.Identifier{
		"http://hl7.org/fhir/sid/us-npi|1234567893": {System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"},
		"urn:oid:1.2.3|a|b":                         {System: "urn:oid:1.2.3", Value: "a|b"},
		"1234567893":                                nil,
		"|1234567893":                               nil,
		"http://hl7.org/fhir/sid/us-npi|":           nil,
	} {
		got, err := ParseIdentifier(in)
		if want == nil {
			if err == nil {
				t.Errorf("%q: accepted", in)
			}
			continue
		}
		if err != nil || got.System != want.System || got.Value != want.Value {
			t.Errorf("%q: %+v %v", in, got, err)
		}
	}
}

func TestPartyOf(t *testing.T) {
	r, err := connectors.NewRegistry(connectors.Partner{
		ID: "acme", PushURL: "https://acme.example/x",
		Identifiers: []connectors.Identifier{{System: fhir.SystemNPI, Value: "0123456789"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := PartyOf(r, "acme")
	if !ok || p.ID != "acme" || !p.Named(fhir.Reference{Identifier: &fhir.Identifier{System: fhir.SystemNPI, Value: "0123456789"}}) {
		t.Errorf("PartyOf = %+v, %v", p, ok)
	}
	if _, ok := PartyOf(r, "nobody"); ok {
		t.Error("unknown partner found")
	}
}
