package normalize

import "strings"

// Phone is the ten-digit US number in s, without country code or
// formatting: "+1 (555) 010-2345" → "5550102345". Numbers that are not ten
// digits after dropping a leading 1, or that are obvious fillers (all one
// digit, 1234567890), come back as "" so that they never count as agreement.
func Phone(s string) string {
	var b [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			if n == len(b) {
				return ""
			}
			b[n] = c
			n++
		} else if c == 'x' || c == 'X' || c == '#' {
			break // an extension follows
		}
	}
	d := b[:n]
	if len(d) == 11 && d[0] == '1' {
		d = d[1:]
	}
	if len(d) != 10 {
		return ""
	}
	p := string(d)
	if strings.Count(p, p[:1]) == 10 || p == "1234567890" {
		return ""
	}
	return p
}

// PostalCode is the comparable prefix of a postal code: the five digits of a
// US ZIP or ZIP+4 ("02139-4307" → "02139"), other all-digit codes as they are
// (FEBRL's four-digit postcodes), anything else folded without spaces.
func PostalCode(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		if c == '-' || c == ' ' {
			if b.Len() == 5 {
				break
			}
			continue
		}
		return Compact(Fold(s))
	}
	d := b.String()
	if len(d) == 9 {
		d = d[:5]
	}
	if strings.Trim(d, "0") == "" {
		return ""
	}
	return d
}

// State is the comparable form of a US state: the two-letter code, whether
// the input was a code or a full name. Anything else is folded.
func State(s string) string {
	f := Fold(s)
	if len(f) == 2 {
		return f
	}
	if c, ok := stateCodes[f]; ok {
		return c
	}
	return f
}

var stateCodes = map[string]string{
	"alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
	"colorado": "co", "connecticut": "ct", "delaware": "de", "district of columbia": "dc",
	"florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
	"indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
	"maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
	"mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv",
	"new hampshire": "nh", "new jersey": "nj", "new mexico": "nm", "new york": "ny",
	"north carolina": "nc", "north dakota": "nd", "ohio": "oh", "oklahoma": "ok", "oregon": "or",
	"pennsylvania": "pa", "rhode island": "ri", "south carolina": "sc", "south dakota": "sd",
	"tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va",
	"washington": "wa", "west virginia": "wv", "wisconsin": "wi", "wyoming": "wy",
	"puerto rico": "pr", "guam": "gu", "virgin islands": "vi",
}
