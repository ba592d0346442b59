package api

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/p2p-payer/p2p/member"
)

// memberIDPattern is the rule of our member ids (member.IDPattern), as
// openapi.yaml states it: the spec's request validator enforces it, and a
// schema error of this pattern is worded memberIDReason.
const memberIDPattern = member.IDPattern

// memberIDReason says what memberIDPattern asks for, without the value.
const memberIDReason = member.IDRule

// cleanText refuses a request whose text we would otherwise repair: a
// Content-Type naming a charset other than UTF-8 (415), and a body that
// is not UTF-8 or holds a NUL or an unpaired surrogate (400). Go's JSON
// decoder turns the last two into U+FFFD and keeps a NUL, so the stored
// value would differ from the sent one, or cut it short in C-string code.
// It reads the whole body (limitBody bounds it) before anything decodes it.
func cleanText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !utf8Charset(r.Header.Get("Content-Type")) {
			writeProblem(w, r, newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType,
				"Unsupported media type", "the request body must be application/json in UTF-8"))
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b, err := io.ReadAll(r.Body)
		_ = r.Body.Close() // read to the end; nothing is left to lose
		if err != nil {
			requestError(w, r, err)
			return
		}
		if !textClean(b) {
			writeProblem(w, r, newProblem(http.StatusBadRequest, ProblemInvalidText, "Body holds invalid text",
				`the request body must be UTF-8 without NUL characters (raw or as \u0000) or unpaired surrogates`))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		next.ServeHTTP(w, r)
	})
}

// utf8Charset reports whether a Content-Type names no charset or UTF-8.
// A header that does not parse is left to the spec's validator.
func utf8Charset(contentType string) bool {
	if contentType == "" {
		return true
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return true
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
}

// textClean reports whether b is UTF-8 with no NUL, raw or as the JSON
// escape \u0000, and no \u escape of an unpaired UTF-16 surrogate. A
// backslash only escapes inside a JSON string, so escapes are followed
// without tracking strings: one outside is invalid JSON either way.
func textClean(b []byte) bool {
	if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 >= len(b) || b[i+1] != 'u' {
			i++ // skip the escaped character, which may be a backslash
			continue
		}
		r, ok := hex4(b[i+2:])
		if !ok {
			i++ // a malformed escape: the decoder refuses it
			continue
		}
		switch {
		case r == 0:
			return false
		case utf16.IsSurrogate(r):
			if r >= 0xDC00 { // a low surrogate first
				return false
			}
			// A high surrogate must be followed by an escaped low one.
			rest := b[i+6:]
			if len(rest) < 2 || rest[0] != '\\' || rest[1] != 'u' {
				return false
			}
			lo, ok := hex4(rest[2:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 11 // past both escapes
		default:
			i += 5 // past \uXXXX
		}
	}
	return true
}

// hex4 reads the four hex digits that start b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
