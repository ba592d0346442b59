package member

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderReportsRejectedLines(t *testing.T) {
	in := "member_id,given,family,birth_date,sex,street,city,state,postal_code,phone\n" +
		"M1,Ann,Lee,1980-02-03,F,1 Main St,Springfield,IL,62701,2175550100\n" +
		"M2,Bob,Ray,1980-02-30,M,,,,,\n" + // impossible date
		",Cy,Li,1990-01-01,U,,,,,\n" + // no id
		"M4,Di,Yu,1991-01-01,X,,,,,\n" + // bad sex
		"M5,Ed,Oh,1992-03-04,m,,,,,\n"
	rd, err := NewReader(strings.NewReader(in), false)
	if err != nil {
		t.Fatal(err)
	}
	var ok []string
	bad := map[int]string{}
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *RowError
		if errors.As(err, &re) {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("line %d: want a FieldError, got %v", re.Line, err)
			}
			bad[re.Line] = fe.Field
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ok = append(ok, row.Record.ID)
	}
	if strings.Join(ok, ",") != "M1,M5" {
		t.Errorf("loaded %v, want M1,M5", ok)
	}
	want := map[int]string{3: "birth_date", 4: "member_id", 5: "sex"}
	for line, field := range want {
		if bad[line] != field {
			t.Errorf("line %d: rejected field %q, want %q", line, bad[line], field)
		}
	}
	if len(bad) != len(want) {
		t.Errorf("rejected %v, want %v", bad, want)
	}
}

func TestReaderNeedsHeader(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"no header": "M1,Ann,Lee,1980-02-03,F,,,,,\n",
	} {
		if _, err := NewReader(strings.NewReader(in), false); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestQueryReaderAllowsEmptyFields(t *testing.T) {
	in := "query_id,member_id,given,family,birth_date,sex,street,city,state,postal_code,phone\nq1,,,Lee,,,,,,,\n"
	rd, err := NewReader(strings.NewReader(in), true)
	if err != nil {
		t.Fatal(err)
	}
	row, err := rd.Next()
	if err != nil {
		t.Fatal(err)
	}
	if row.QueryID != "q1" || row.Record.Family != "Lee" || row.Line != 2 {
		t.Errorf("got %+v", row)
	}
}

// TestMemberIDRule: a member id enters the index only if it follows
// IDPattern; a row that breaks it is refused naming member_id and the rule.
func TestMemberIDRule(t *testing.T) {
	long := strings.Repeat("a", 64)
	cases := []struct {
		id string
		ok bool
	}{
		{"M100001", true},
		{"a.b_c-1", true},
		{"0", true},
		{long, true},
		{long + "a", false},
		{"M 1", false},
		{"-M1", false},
		{".M1", false},
		{"_M1", false},
		{"M/1", false},
		{"M;1", false},
		{"Mé1", false},
		{"M\u00a01", false},
		{"M<1>", false},
		{`"M1"`, false},
	}
	for _, c := range cases {
		if got := ValidID(c.id); got != c.ok {
			t.Errorf("ValidID(%q) = %v, want %v", c.id, got, c.ok)
		}
		err := Record{ID: c.id, Family: "Lee", BirthDate: "1980-02-03"}.Validate()
		var fe *FieldError
		switch {
		case c.ok && err != nil:
			t.Errorf("%q: %v, want valid", c.id, err)
		case !c.ok && (!errors.As(err, &fe) || fe.Field != "member_id" || fe.Reason != IDRule):
			t.Errorf("%q: %v, want member_id %s", c.id, err, IDRule)
		case !c.ok && strings.Contains(err.Error(), c.id):
			t.Errorf("%q: the error %q echoes the id", c.id, err)
		}
	}
}
