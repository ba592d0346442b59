package identity

import (
	"fmt"
	"testing"

	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/member"
)

func TestCompareDateLevels(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want uint8
	}{
		{"1980-03-04", "1980-03-04", lExact},
		{"1980-03-04", "1980-04-03", lTransposed},
		{"1980-03-04", "1980-03-05", lClose},
		{"1980-03-04", "1980-04-20", lNearby},
		{"1980-03-04", "1980-11-04", lFuzzy},     // same year and day
		{"1980-03-04", "1981-02-10", lYear},      // a year out, and the rest with it
		{"1973-03-23", "1983-03-01", lDecade},    // the decade and the day
		{"1950-03-04", "1980-07-19", lDifferent}, // a generation apart
		{"1980-03-04", "", lMissing},
	} {
		got := compareDate(normalize.BirthDate(tc.a), normalize.BirthDate(tc.b))
		if got != tc.want {
			t.Errorf("compareDate(%s, %s) = %s, want %s", tc.a, tc.b, levelNames[got], levelNames[tc.want])
		}
	}
	for _, l := range []uint8{lDifferent, lYear, lDecade} {
		if !outright(l) {
			t.Errorf("%s is an outright birth-date disagreement", levelNames[l])
		}
	}
}

// TestEstimateUSetsAsideDuplicates: in an index holding four records of
// every person, random pairs include records of one person; u must be
// what strangers show, not inflated by them.
func TestEstimateUSetsAsideDuplicates(t *testing.T) {
	var recs []member.Record
	for p := 0; p < 60; p++ {
		for k := 0; k < 4; k++ {
			recs = append(recs, member.Record{
				ID:    fmt.Sprintf("P%d-%d", p, k),
				Given: []string{"Ava", "Ben", "Cleo", "Dan", "Eve", "Finn"}[p%6] + string(rune('a'+p/6)), Family: fmt.Sprintf("Fam%c%c", 'a'+p%26, 'a'+p/26),
				BirthDate: fmt.Sprintf("19%02d-%02d-%02d", 40+p%50, 1+p%12, 1+p%28),
			})
		}
	}
	ix := NewIndex(recs, DefaultConfig())
	m := ix.Model()
	// The 60 people's birth dates are all distinct, so strangers never
	// share one; a record shares it with 3 of its 239 others, so u counting
	// every random pair as strangers would be about 3/239.
	raw := *m
	raw.estimateU(false)
	if raw.U[fBirthDate][lExact] < 0.008 {
		t.Fatalf("unweighted u(birth date exact) = %.4f: expected duplicates to inflate it", raw.U[fBirthDate][lExact])
	}
	if u := m.U[fBirthDate][lExact]; u > 0.002 {
		t.Errorf("u(birth date exact) = %.5f, want the strangers' rate (below 0.002)", u)
	}
}
