package strsim

import (
	"math"
	"testing"
)

func TestJaroWinkler(t *testing.T) {
	tests := []struct {
		a, b string
		want float64
	}{
		{"martha", "marhta", 0.9611}, {"dwayne", "duane", 0.84}, {"dixon", "dicksonx", 0.8133},
		{"same", "same", 1}, {"", "", 0}, {"abc", "", 0}, {"abc", "xyz", 0},
	}
	for _, tt := range tests {
		if got := JaroWinkler(tt.a, tt.b); math.Abs(got-tt.want) > 1e-3 {
			t.Errorf("JaroWinkler(%q, %q) = %.4f, want %.4f", tt.a, tt.b, got, tt.want)
		}
		if got := JaroWinkler(tt.b, tt.a); math.Abs(got-tt.want) > 1e-3 {
			t.Errorf("JaroWinkler(%q, %q) not symmetric: %.4f", tt.b, tt.a, got)
		}
	}
}

func TestOSA(t *testing.T) {
	tests := []struct {
		a, b  string
		limit int
		want  int
	}{
		{"kitten", "sitting", 5, 3}, {"smith", "smiht", 2, 1}, {"ab", "ba", 2, 1}, {"", "abc", 5, 3},
		{"abcdef", "uvwxyz", 2, 3}, {"same", "same", 1, 0}, {"a", "abcd", 1, 2},
	}
	for _, tt := range tests {
		if got := OSA(tt.a, tt.b, tt.limit); got != tt.want {
			t.Errorf("OSA(%q, %q, %d) = %d, want %d", tt.a, tt.b, tt.limit, got, tt.want)
		}
	}
}
