package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

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
