package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store/sqlite"
)

func TestImportMembersReportsRejectedLines(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	var csv strings.Builder
	csv.WriteString("member_id,given,family,birth_date,sex,street,city,state,postal_code,phone\n")
	for i := range 2500 { // more than one batch
		fmt.Fprintf(&csv, "M%06d,Ann,Lee,1980-02-03,F,,,,,\n", i)
	}
	csv.WriteString("X1,Secret,Name,1980-02-31,F,,,,,\n")    // line 2502: impossible date
	csv.WriteString("M000001,Ann,Leigh,1980-02-03,F,,,,,\n") // a repeat replaces
	var report bytes.Buffer
	res, err := importMembers(context.Background(), st, strings.NewReader(csv.String()), &report)
	if err != nil {
		t.Fatal(err)
	}
	if res.loaded != 2501 || res.rejected != 1 {
		t.Errorf("loaded %d rejected %d, want 2501 and 1", res.loaded, res.rejected)
	}
	if !strings.Contains(report.String(), "line 2502") || !strings.Contains(report.String(), "birth_date") {
		t.Errorf("report %q does not name line 2502 and its field", report.String())
	}
	if strings.Contains(report.String(), "Secret") || strings.Contains(report.String(), "1980-02-31") {
		t.Errorf("report %q echoes the row's values", report.String())
	}
	if n, _ := st.CountMembers(context.Background()); n != 2500 {
		t.Errorf("%d members stored, want 2500", n)
	}
	m, err := st.GetMember(context.Background(), "M000001")
	if err != nil || m.Family != "Leigh" {
		t.Errorf("repeated member: %+v %v, want the later row", m, err)
	}
}

// TestImportMembersMemberIDRule: rows whose member id breaks the API's
// rule are refused, each named by its line, never by its id; every other
// row is loaded, and the command fails saying how many were refused.
func TestImportMembersMemberIDRule(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	bad := []string{"Zelphina Quarrington", "-M1", strings.Repeat("x", 65), "Mé1", "M/1", "<script>"}
	csv := "member_id,given,family,birth_date,sex,street,city,state,postal_code,phone\n" +
		"M1,Ann,Lee,1980-02-03,F,,,,,\n"
	for _, id := range bad {
		csv += fmt.Sprintf("%q,Ann,Lee,1980-02-03,F,,,,,\n", id)
	}
	csv += "  M2  ,Bo,Ray,1970-01-01,M,,,,,\n" // surrounding spaces are trimmed
	var report bytes.Buffer
	res, err := importMembers(context.Background(), st, strings.NewReader(csv), &report)
	if err != nil {
		t.Fatal(err)
	}
	if res.loaded != 2 || res.rejected != len(bad) {
		t.Errorf("loaded %d rejected %d, want 2 and %d", res.loaded, res.rejected, len(bad))
	}
	for i, id := range bad {
		want := fmt.Sprintf("rejected line %d: member_id %s\n", i+3, member.IDRule)
		if !strings.Contains(report.String(), want) {
			t.Errorf("report does not hold %q:\n%s", want, report.String())
		}
		if strings.Contains(report.String(), id) {
			t.Errorf("report echoes the id %q:\n%s", id, report.String())
		}
	}
	for _, id := range []string{"M1", "M2"} {
		if _, err := st.GetMember(context.Background(), id); err != nil {
			t.Errorf("member %s: %v", id, err)
		}
	}
	if n, _ := st.CountMembers(context.Background()); n != 2 {
		t.Errorf("%d members stored, want 2", n)
	}
}
