package export

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/member"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/synthetic.golden (only on purpose: it pins the wire output)")

// goldenMembers cover every branch of SyntheticSource: full and partial
// records (no name, given only, no phone, no address, street only), each
// sex, and a source with its own member-id system and payer name.
var goldenMembers = []struct {
	src SyntheticSource
	m   member.Record
}{
	{SyntheticSource{}, testMember},
	{SyntheticSource{}, member.Record{ID: "M-2002", Family: "Hopper", BirthDate: "1906-12-09", Sex: "M"}},
	{SyntheticSource{}, member.Record{ID: "M-3003", Given: "Alan", Sex: "U", Street: "1 Bletchley Park"}},
	{SyntheticSource{}, member.Record{ID: "M-4004", BirthDate: "2001-02-03", City: "Austin", State: "TX", PostalCode: "73301"}},
	{SyntheticSource{MemberIDSystem: "urn:oid:2.16.840.1.113883.4.1", PayerName: "Other <Plan> & Co"},
		member.Record{ID: "X/5005", Given: "Grace", Family: "O'Neil", Sex: "F", Phone: "+1 555 0100"}},
}

// TestSyntheticWireGolden pins, byte for byte, every resource the
// synthetic source writes for goldenMembers, with the fields Build reads
// beside it. The golden file was generated before the FHIR models merged
// (export/fhir into fhir/); it must not change unless the synthetic data
// changes on purpose.
func TestSyntheticWireGolden(t *testing.T) {
	var buf bytes.Buffer
	for _, g := range goldenMembers {
		rs, err := g.src.Resources(context.Background(), g.m)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			fmt.Fprintf(&buf, "%s %s %s sensitive=%t\n%s\n", r.ResourceType, r.ID, r.LastUpdated.Format(time.RFC3339Nano), r.Sensitive, r.JSON)
		}
	}
	const path = "testdata/synthetic.golden"
	if *updateGolden {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		got, wl := bytes.Split(buf.Bytes(), []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range min(len(got), len(wl)) {
			if !bytes.Equal(got[i], wl[i]) {
				t.Fatalf("line %d differs from %s\n got %s\nwant %s", i+1, path, got[i], wl[i])
			}
		}
		t.Fatalf("%d lines, %s has %d", len(got), path, len(wl))
	}
}
