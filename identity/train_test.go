package identity

import (
	"slices"
	"testing"
)

func TestSampleQueries(t *testing.T) {
	for _, tc := range []struct {
		n, most int
		want    []int
	}{
		{n: 0, most: 5, want: []int{}},
		{n: 3, most: 5, want: []int{0, 1, 2}},
		{n: 10, most: 5, want: []int{0, 2, 4, 6, 8}},
		{n: 11, most: 5, want: []int{0, 2, 4, 6, 8, 10}}, // the step rounds down: a few more than most
		{n: 10, most: 3, want: []int{0, 3, 6, 9}},
	} {
		if got := sampleQueries(tc.n, tc.most); !slices.Equal(got, tc.want) {
			t.Errorf("sampleQueries(%d, %d) = %v, want %v", tc.n, tc.most, got, tc.want)
		}
	}
}
