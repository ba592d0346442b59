// Package normalize turns the free-text demographics partners send into the
// canonical forms the matcher compares: names, street addresses, phone
// numbers, postal codes, birth dates and sex. Every function is pure and
// safe for concurrent use.
package normalize

import (
	"strings"
	"unicode"
)

// fold maps the Latin letters with diacritics found in US member data to
// their ASCII base letters, so "José" and "Jose" compare equal.
var fold = map[rune]string{
	'à': "a", 'á': "a", 'â': "a", 'ã': "a", 'ä': "a", 'å': "a", 'ā': "a", 'ă': "a", 'ą': "a",
	'æ': "ae", 'ç': "c", 'ć': "c", 'č': "c", 'ď': "d", 'đ': "d", 'ð': "d",
	'è': "e", 'é': "e", 'ê': "e", 'ë': "e", 'ē': "e", 'ė': "e", 'ę': "e", 'ě': "e",
	'ì': "i", 'í': "i", 'î': "i", 'ï': "i", 'ī': "i", 'į': "i", 'ı': "i",
	'ł': "l", 'ľ': "l", 'ĺ': "l", 'ñ': "n", 'ń': "n", 'ň': "n",
	'ò': "o", 'ó': "o", 'ô': "o", 'õ': "o", 'ö': "o", 'ø': "o", 'ō': "o", 'ő': "o", 'œ': "oe",
	'ŕ': "r", 'ř': "r", 'ś': "s", 'š': "s", 'ş': "s", 'ß': "ss", 'ť': "t", 'ţ': "t", 'þ': "th",
	'ù': "u", 'ú': "u", 'û': "u", 'ü': "u", 'ū': "u", 'ů': "u", 'ű': "u", 'ų': "u",
	'ý': "y", 'ÿ': "y", 'ź': "z", 'ż': "z", 'ž': "z",
}

// Fold lower-cases s, replaces letters with diacritics by their ASCII base,
// drops apostrophes and periods (O'Brien → obrien, St. → st) and turns every
// other run of non-alphanumeric characters into a single space.
func Fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		r = unicode.ToLower(r)
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '\'' || r == '’' || r == '`' || r == '.':
			continue
		case r >= 0x80:
			if f, ok := fold[r]; ok {
				if space && b.Len() > 0 {
					b.WriteByte(' ')
				}
				space = false
				b.WriteString(f)
				continue
			}
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				break
			}
			space = true
			continue
		default:
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// nameSuffixes are generational and professional suffixes that are not part
// of a name as people compare it. They are dropped from names, and Suffix
// reports the generational ones because they tell a junior from a senior.
var nameSuffixes = map[string]string{
	"jr": "jr", "junior": "jr", "sr": "sr", "senior": "sr",
	"ii": "ii", "iii": "iii", "iv": "iv", "2nd": "ii", "3rd": "iii", "4th": "iv",
	"md": "", "phd": "", "dds": "", "esq": "",
}

// namePrefixes are titles that precede a name.
var namePrefixes = map[string]bool{"mr": true, "mrs": true, "ms": true, "miss": true, "dr": true, "rev": true}

// Name is the comparable form of a given or family name: folded, titles and
// suffixes removed, tokens joined by single spaces. "Dr. José  O'Brien-Smith Jr."
// becomes "jose obrien smith".
func Name(s string) string {
	n, _ := NameSuffix(s)
	return n
}

// NameSuffix is Name plus the generational suffix (jr, sr, ii, iii, iv)
// found in s, or "".
func NameSuffix(s string) (name, suffix string) {
	f := Fold(s)
	if f == "" {
		return "", ""
	}
	toks := strings.Fields(f)
	out := toks[:0]
	for i, t := range toks {
		if i == 0 && len(toks) > 1 && namePrefixes[t] {
			continue
		}
		if sfx, ok := nameSuffixes[t]; ok && len(toks) > 1 {
			if sfx != "" {
				suffix = sfx
			}
			continue
		}
		out = append(out, t)
	}
	return strings.Join(out, " "), suffix
}

// Compact is s without spaces: "mary ann" and "maryann", "de la cruz" and
// "delacruz" compare equal in this form.
func Compact(s string) string {
	if strings.IndexByte(s, ' ') < 0 {
		return s
	}
	return strings.ReplaceAll(s, " ", "")
}

// Sex is the canonical sex code: "F", "M", or "" when unknown.
func Sex(s string) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "F", "FEMALE", "W", "WOMAN":
		return "F"
	case "M", "MALE", "MAN":
		return "M"
	}
	return ""
}
