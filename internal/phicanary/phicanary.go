// Package phicanary helps fuzz tests check that PHI never reaches an
// error: it swaps the values of PHI-bearing JSON keys for unique canaries,
// whose appearance anywhere in an error or a response is then a leak and
// never a coincidence with the error's own words.
package phicanary

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Mark decodes data as JSON and replaces every non-blank string value
// held under one of keys (matched as encoding/json matches fields,
// ignoring case; at any depth, directly or in an array) with a canary of
// the same length where it can, so that "blank" and length limits judge
// it alike. It returns the re-encoded document and the canaries placed;
// ok is false when data is not a single JSON value.
func Mark(data []byte, keys ...string) (out []byte, canaries []string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, nil, false
	}
	want := func(k string) bool {
		for _, w := range keys {
			if strings.EqualFold(k, w) {
				return true
			}
		}
		return false
	}
	var walk func(v any, phi bool) any
	walk = func(v any, phi bool) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e, want(k))
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e, phi)
			}
		case string:
			if phi && strings.TrimSpace(x) != "" {
				c := canary(len(canaries), len(x))
				canaries = append(canaries, c)
				return c
			}
		}
		return v
	}
	v = walk(v, false)
	out, err := json.Marshal(v)
	if err != nil {
		return nil, nil, false
	}
	return out, canaries, true
}

// canary is the n-th canary: "Qz" and a number padded with 'x' to size
// when size allows, so no error vocabulary can hold it by chance.
func canary(n, size int) string {
	c := fmt.Sprintf("Qz%dQ", n)
	for len(c) < size {
		c += "x"
	}
	return c
}

// Leaked returns the canaries that text holds.
func Leaked(text string, canaries []string) []string {
	var out []string
	for _, c := range canaries {
		if strings.Contains(text, c) {
			out = append(out, c)
		}
	}
	return out
}
