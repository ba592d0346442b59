// Package member holds the canonical member record of the member index and
// its CSV form (member_id,given,family,birth_date,sex,street,city,state,postal_code,phone).
package member

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// IDPattern is the rule of our member ids, the one openapi.yaml states
// (and the API's request validator enforces): safe in a URL path, a log
// line, a FHIR identifier and a file name. Every way a member id enters
// the index (PUT /v1/members/{member_id}, p2p members import, the demo
// data) checks it through Record.Validate.
const IDPattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`

// IDRule says what IDPattern asks for, without the value.
const IDRule = "must be 1 to 64 letters, digits, '.', '_' or '-', beginning with a letter or digit"

var idPattern = regexp.MustCompile(IDPattern)

// ValidID reports whether id follows IDPattern.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Record is one member of the index as the payer knows them. It is PHI:
// it lives in the store and never in logs, metrics or Temporal payloads.
type Record struct {
	ID         string `json:"member_id"`
	Given      string `json:"given"`
	Family     string `json:"family"`
	BirthDate  string `json:"birth_date"` // YYYY-MM-DD
	Sex        string `json:"sex"`        // F, M or U
	Street     string `json:"street"`
	City       string `json:"city"`
	State      string `json:"state"`
	PostalCode string `json:"postal_code"`
	Phone      string `json:"phone"`
}

// Validate reports the first field of r that breaks the canonical rules.
// The error names the field but never echoes its value (it may be PHI).
func (r Record) Validate() error {
	switch {
	case strings.TrimSpace(r.ID) == "":
		return &FieldError{Field: "member_id", Reason: "is required"}
	case !ValidID(r.ID):
		return &FieldError{Field: "member_id", Reason: IDRule}
	case strings.TrimSpace(r.Given) == "" && strings.TrimSpace(r.Family) == "":
		return &FieldError{Field: "family", Reason: "given or family name is required"}
	}
	if err := ValidBirthDate(r.BirthDate); err != nil {
		return &FieldError{Field: "birth_date", Reason: err.Error()}
	}
	switch r.Sex {
	case "F", "M", "U", "":
	default:
		return &FieldError{Field: "sex", Reason: "must be F, M or U"}
	}
	return nil
}

// ValidBirthDate checks that s is a real calendar date in YYYY-MM-DD form,
// not in the future and not before 1900.
func ValidBirthDate(s string) error {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return fmt.Errorf("must be a date in YYYY-MM-DD form")
	}
	if t.Year() < 1900 || t.After(time.Now().AddDate(0, 0, 1)) {
		return fmt.Errorf("is out of range")
	}
	return nil
}

// FieldError names the field of a record that is invalid and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Reason }
