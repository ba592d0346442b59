package fhir

import (
	"strings"
	"testing"
)

func TestValidIDAndTypeName(t *testing.T) {
	ids := map[string]bool{
		"abc-123.X": true, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false,
		"": false, "a/b": false, "a b": false, "../x": false, "a?b": false,
	}
	for s, want := range ids {
		if ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v, want %v", s, !want, want)
		}
	}
	types := map[string]bool{"Patient": true, "ExplanationOfBenefit": true, "patient": false, "Pa tient": false, "P": false, "Patient/1": false}
	for s, want := range types {
		if ValidTypeName(s) != want {
			t.Errorf("ValidTypeName(%q) = %v, want %v", s, !want, want)
		}
	}
}
