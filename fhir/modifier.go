package fhir

import (
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"
)

// ModifierPaths returns where the resource JSON raw holds something that
// may change the meaning of what it says — a modifierExtension on any
// element, or implicitRules on the resource — as dotted paths
// ("Consent.provision.modifierExtension"), sorted. Contained resources are
// searched too. A reader that does not understand a modifier must not act
// on the resource (https://hl7.org/fhir/R4/extensibility.html#modifierExtension);
// it cannot ignore it like an unknown element.
func ModifierPaths(raw json.RawMessage) ([]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	root := ResourceType(raw)
	if root == "" {
		root = "$"
	}
	var out []string
	walkModifiers(v, root, &out)
	sort.Strings(out)
	return out, nil
}

func walkModifiers(v any, path string, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["resourceType"].(string); ok {
			if ir, ok := x["implicitRules"]; ok && ir != nil {
				*out = append(*out, path+".implicitRules")
			}
		}
		for k, c := range x {
			if k == "modifierExtension" {
				if a, ok := c.([]any); ok && len(a) == 0 {
					continue
				}
				*out = append(*out, path+".modifierExtension")
				continue
			}
			walkModifiers(c, path+"."+k, out)
		}
	case []any:
		for _, c := range x {
			walkModifiers(c, path, out)
		}
	}
}

var errNotDate = errors.New("not a FHIR date or dateTime")

// DateRange returns the first and the last instant that the FHIR date or
// dateTime s denotes, at its precision: "2022" is all of 2022, "2022-01-31"
// all of that day, "2022-01-31T10:00:00Z" that instant. Dates without a
// time carry no time zone in FHIR; they are read as UTC days.
func DateRange(s string) (first, last time.Time, err error) {
	var next time.Time
	switch {
	case len(s) == 4:
		first, err = time.Parse("2006", s)
		next = first.AddDate(1, 0, 0)
	case len(s) == 7:
		first, err = time.Parse("2006-01", s)
		next = first.AddDate(0, 1, 0)
	case len(s) == 10:
		first, err = time.Parse(time.DateOnly, s)
		next = first.AddDate(0, 0, 1)
	case strings.Contains(s, "T"):
		first, err = time.Parse(time.RFC3339Nano, s)
		if err == nil {
			return first, first, nil
		}
	default:
		err = errNotDate
	}
	if err != nil {
		// Without the value: birth dates go through here too.
		return time.Time{}, time.Time{}, errNotDate
	}
	return first, next.Add(-time.Nanosecond), nil
}
