package normalize

import (
	"testing"
	"time"
)

func TestName(t *testing.T) {
	tests := []struct{ in, want, suffix string }{
		{"  José  ", "jose", ""},
		{"O'Brien-Smith", "obrien smith", ""},
		{"Dr. John  Q. Public Jr.", "john q public", "jr"},
		{"SMITH III", "smith", "iii"},
		{"Jr", "jr", ""},
		{"Zoë", "zoe", ""},
		{"Müller", "muller", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		got, sfx := NameSuffix(tt.in)
		if got != tt.want || sfx != tt.suffix {
			t.Errorf("NameSuffix(%q) = %q, %q; want %q, %q", tt.in, got, sfx, tt.want, tt.suffix)
		}
	}
}

func TestNicknames(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"william", "bill", true}, {"bill", "will", true}, {"billy", "william", true},
		{"elizabeth", "liz", true}, {"beth", "betty", true}, {"robert", "bob", true},
		{"margaret", "peggy", true}, {"chris", "christina", true}, {"chris", "christopher", true},
		{"christina", "christopher", false}, {"william", "robert", false}, {"ann", "ann", false},
	}
	for _, tt := range tests {
		if got := Nicknames(tt.a, tt.b); got != tt.want {
			t.Errorf("Nicknames(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
	if !KnownGiven("anna") || KnownGiven("anan") {
		t.Error("KnownGiven")
	}
	if NicknameGroups() < 250 {
		t.Errorf("only %d nickname groups", NicknameGroups())
	}
}

func TestStreet(t *testing.T) {
	tests := []struct{ in, want string }{
		{"123 North Main Street Apt. 4", "123 n main st apt 4"},
		{"123 N. Main St #4", "123 n main st apt 4"},
		{"45 Elm Avenue, Suite 200", "45 elm ave apt 200"},
		{"9 Stanley Street", "9 stanley st"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Street(tt.in); got != tt.want {
			t.Errorf("Street(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	n, name, unit := StreetParts("123 n main st apt 4")
	if n != "123" || name != "n main st" || unit != "4" {
		t.Errorf("StreetParts = %q %q %q", n, name, unit)
	}
}

func TestPhone(t *testing.T) {
	tests := []struct{ in, want string }{
		{"+1 (555) 201-0001", "5552010001"}, {"555.201.0001", "5552010001"}, {"15552010001", "5552010001"},
		{"201-0001", ""}, {"000-000-0000", ""}, {"555 201 0001 x12", "5552010001"}, {"", ""},
	}
	for _, tt := range tests {
		if got := Phone(tt.in); got != tt.want {
			t.Errorf("Phone(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPostalCodeAndState(t *testing.T) {
	tests := []struct{ in, want string }{{"02139-4307", "02139"}, {"021394307", "02139"}, {" 4223 ", "4223"}, {"00000", ""}, {"SW1A 1AA", "sw1a1aa"}}
	for _, tt := range tests {
		if got := PostalCode(tt.in); got != tt.want {
			t.Errorf("PostalCode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if State("New York") != "ny" || State("NY") != "ny" {
		t.Error("State")
	}
}

func TestBirthDate(t *testing.T) {
	tests := []struct {
		in   string
		want Date
	}{
		{"1971-06-24", 19710624}, {"19710624", 19710624}, {"06/24/1971", 19710624},
		{"1971-02-30", 0}, {"1899-12-31", 0}, {"2999-01-01", 0}, {"", 0}, {"1971-6-24", 0},
	}
	for _, tt := range tests {
		if got := BirthDate(tt.in); got != tt.want {
			t.Errorf("BirthDate(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if !Transposed(19800203, 19800302) || Transposed(19800303, 19800303) || Transposed(19800203, 19810302) {
		t.Error("Transposed")
	}
	edits := []struct {
		a, b Date
		want int
	}{{19800203, 19800203, 0}, {19800203, 19800204, 1}, {19800203, 19080203, 1}, {19800203, 19910203, 2}, {19800203, 0, 8}}
	for _, e := range edits {
		if got := DigitEdits(e.a, e.b); got != e.want {
			t.Errorf("DigitEdits(%d, %d) = %d, want %d", e.a, e.b, got, e.want)
		}
	}
	if DaysApart(19850521, 19850619) != 29 || DaysApart(19851231, 19860101) != 1 || DaysApart(0, 19850101) < 1000 {
		t.Error("DaysApart")
	}
	if Date(19710624).String() != "1971-06-24" {
		t.Error("String")
	}
}

func TestSex(t *testing.T) {
	for in, want := range map[string]string{"f": "F", "Male": "M", "U": "", "": "", "x": ""} {
		if got := Sex(in); got != want {
			t.Errorf("Sex(%q) = %q", in, got)
		}
	}
}

// TestDaysApartIsTimeDate: the day arithmetic agrees with the time package
// on every day from 1900 to 2030, past month ends (which time.Date rolls
// over) included.
func TestDaysApartIsTimeDate(t *testing.T) {
	base := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	for y := 1900; y <= 2030; y++ {
		for m := 1; m <= 12; m++ {
			for d := 1; d <= 31; d++ {
				date := Date(y*10000 + m*100 + d)
				want := int(time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Sub(base).Hours() / 24)
				if got := DaysApart(date, 19000101); got != want {
					t.Fatalf("DaysApart(%d, 19000101) = %d, time says %d", date, got, want)
				}
			}
		}
	}
}
