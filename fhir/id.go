package fhir

import "regexp"

// FHIR R4's grammar of resource type names and logical ids
// (https://hl7.org/fhir/R4/datatypes.html#id): anything else must not be
// put in a URL or a reference.
var (
	typeName  = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
	logicalID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// ValidID reports whether s is a FHIR logical id.
func ValidID(s string) bool { return logicalID.MatchString(s) }

// ValidTypeName reports whether s has the shape of a FHIR resource type name.
func ValidTypeName(s string) bool { return typeName.MatchString(s) }
