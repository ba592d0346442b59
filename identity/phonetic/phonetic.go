// Package phonetic holds the phonetic codes the matcher blocks on, so that
// "Smith" and "Smyth", "Catherine" and "Kathryn" fall into one block.
package phonetic

import "strings"

var soundexCodes = [26]byte{
	//a  b    c    d    e  f    g    h  i  j    k    l    m    n    o  p    q    r    s    t    u  v    w  x    y  z
	0, '1', '2', '3', 0, '1', '2', 0, 0, '2', '2', '4', '5', '5', 0, '1', '2', '6', '2', '3', 0, '1', 0, '2', 0, '2',
}

// Soundex is the American Soundex code of s (letters only; "" when s has
// none): Robert and Rupert are R163, Smith and Smyth S530.
func Soundex(s string) string {
	var out [4]byte
	n := 0
	var last byte
	for i := 0; i < len(s) && n < 4; i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			continue
		}
		code := soundexCodes[c-'a']
		if n == 0 {
			out[0] = c - 32
			n = 1
			last = code
			continue
		}
		switch {
		case c == 'h' || c == 'w': // do not separate equal codes
		case code == 0:
			last = 0
		case code != last:
			out[n] = code
			n++
			last = code
		}
	}
	if n == 0 {
		return ""
	}
	for n < 4 {
		out[n] = '0'
		n++
	}
	return string(out[:])
}

func vowel(c byte) bool { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' }

// NYSIIS is the New York State Identification and Intelligence System code
// of s, truncated to six letters. It keeps more of a name than Soundex and
// suits surnames: Catherine and Kathryn are both CATARA.
func NYSIIS(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c >= 'a' && c <= 'z' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return ""
	}
	w := string(b)
	for _, r := range [][2]string{{"mac", "mcc"}, {"kn", "nn"}, {"k", "c"}, {"ph", "ff"}, {"pf", "ff"}, {"sch", "sss"}} {
		if strings.HasPrefix(w, r[0]) {
			w = r[1] + w[len(r[0]):]
			break
		}
	}
	for _, r := range [][2]string{{"ee", "y"}, {"ie", "y"}, {"dt", "d"}, {"rt", "d"}, {"rd", "d"}, {"nt", "d"}, {"nd", "d"}} {
		if strings.HasSuffix(w, r[0]) {
			w = w[:len(w)-len(r[0])] + r[1]
			break
		}
	}
	b = []byte(w)
	key := []byte{b[0]}
	prev := b[0] // the previous letter after translation
	for i := 1; i < len(b); i++ {
		c := b[i]
		var rep []byte
		switch {
		case c == 'e' && i+1 < len(b) && b[i+1] == 'v':
			rep = []byte("af")
			i++
		case vowel(c):
			rep = []byte("a")
		case c == 'q':
			rep = []byte("g")
		case c == 'z':
			rep = []byte("s")
		case c == 'm':
			rep = []byte("n")
		case c == 'k' && i+1 < len(b) && b[i+1] == 'n':
			rep = []byte("n")
			i++
		case c == 'k':
			rep = []byte("c")
		case c == 's' && i+2 < len(b) && b[i+1] == 'c' && b[i+2] == 'h':
			rep = []byte("sss")
			i += 2
		case c == 'p' && i+1 < len(b) && b[i+1] == 'h':
			rep = []byte("ff")
			i++
		case c == 'h' && (!vowel(b[i-1]) || (i+1 < len(b) && !vowel(b[i+1])) || i+1 == len(b)):
			rep = []byte{prev}
		case c == 'w' && vowel(b[i-1]):
			rep = []byte{prev}
		default:
			rep = []byte{c}
		}
		prev = rep[len(rep)-1]
		for _, r := range rep {
			if key[len(key)-1] != r {
				key = append(key, r)
			}
		}
	}
	if len(key) > 1 && key[len(key)-1] == 's' {
		key = key[:len(key)-1]
	}
	if len(key) > 1 && key[len(key)-1] == 'y' && key[len(key)-2] == 'a' {
		key = append(key[:len(key)-2], 'y')
	}
	if len(key) > 1 && key[len(key)-1] == 'a' {
		key = key[:len(key)-1]
	}
	if len(key) > 6 {
		key = key[:6]
	}
	return strings.ToUpper(string(key))
}
