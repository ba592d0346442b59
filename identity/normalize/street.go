package normalize

import "strings"

// streetWords maps the spelled-out and variant forms of street suffixes,
// directionals, unit designators and ordinals to one USPS-style
// abbreviation, so "123 North Main Street Apt. 4" and "123 N Main St #4"
// normalise alike.
var streetWords = map[string]string{
	// suffixes (USPS Publication 28, the common ones)
	"street": "st", "str": "st", "strt": "st", "st": "st",
	"avenue": "ave", "av": "ave", "aven": "ave", "avenu": "ave", "ave": "ave",
	"road": "rd", "rd": "rd", "drive": "dr", "drv": "dr", "dr": "dr",
	"lane": "ln", "ln": "ln", "court": "ct", "crt": "ct", "ct": "ct",
	"place": "pl", "pl": "pl", "boulevard": "blvd", "boul": "blvd", "blvd": "blvd",
	"circle": "cir", "circ": "cir", "cir": "cir", "crcl": "cir",
	"terrace": "ter", "terr": "ter", "ter": "ter", "highway": "hwy", "hwy": "hwy",
	"parkway": "pkwy", "pkwy": "pkwy", "pky": "pkwy", "way": "way", "wy": "way",
	"trail": "trl", "trl": "trl", "square": "sq", "sq": "sq",
	"crescent": "cres", "cres": "cres", "cresent": "cres", "close": "cl",
	"expressway": "expy", "freeway": "fwy", "turnpike": "tpke", "pike": "pike",
	"alley": "aly", "point": "pt", "heights": "hts", "crossing": "xing", "loop": "loop",
	"plaza": "plz", "ridge": "rdg", "run": "run", "path": "path", "walk": "walk",
	"mount": "mt", "mountain": "mtn", "center": "ctr", "centre": "ctr", "route": "rte",
	"circuit": "cct", "grove": "grv", "esplanade": "esp", "parade": "pde",
	// directionals
	"north": "n", "south": "s", "east": "e", "west": "w",
	"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw",
	// unit designators: all read as "apt"
	"apartment": "apt", "apt": "apt", "unit": "apt", "suite": "apt", "ste": "apt",
	"room": "apt", "rm": "apt", "no": "apt", "flat": "apt", "lot": "apt", "#": "apt",
	// ordinals
	"first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
	"sixth": "6th", "seventh": "7th", "eighth": "8th", "ninth": "9th", "tenth": "10th",
}

// Street is the comparable form of a street address: folded, with suffixes,
// directionals and unit designators abbreviated one way.
func Street(s string) string {
	toks := strings.Fields(Fold(strings.ReplaceAll(s, "#", " apt ")))
	for i, t := range toks {
		if a, ok := streetWords[t]; ok {
			toks[i] = a
		}
	}
	return strings.Join(toks, " ")
}

// StreetParts splits a normalised street into its house number (the first
// token when it starts with a digit), the street name and the unit after an
// "apt" designator. It slices street without allocating.
func StreetParts(street string) (number, name, unit string) {
	rest := street
	if rest != "" && rest[0] >= '0' && rest[0] <= '9' {
		if i := strings.IndexByte(rest, ' '); i >= 0 {
			number, rest = rest[:i], rest[i+1:]
		} else {
			return rest, "", ""
		}
	}
	switch {
	case strings.HasPrefix(rest, "apt "):
		return number, "", rest[4:]
	case rest == "apt":
		return number, "", ""
	}
	if i := strings.Index(rest, " apt"); i >= 0 && (i+4 == len(rest) || rest[i+4] == ' ') {
		unit = rest[i+4:]
		if unit != "" {
			unit = unit[1:]
		}
		rest = rest[:i]
	}
	return number, rest, unit
}
