package egress

import (
	"errors"
	"net/url"
	"strings"
)

// Rule is one host a call may go to: an exact host name (or IP literal)
// or, with a leading "*.", any subdomain of it; on any port, or on one.
type Rule struct {
	host     string
	port     string // "" any port
	wildcard bool
}

// ParseRule reads a host rule: "files.a.example" (any port),
// "files.a.example:8443" (that port), "*.blob.a.example" (any subdomain),
// "[::1]:8080".
func ParseRule(s string) (Rule, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	var r Rule
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		r.wildcard, s = true, rest
	}
	u, err := url.Parse("//" + s)
	if err != nil || u.Hostname() == "" || u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return r, errors.New("want host or host:port")
	}
	r.host, r.port = u.Hostname(), u.Port()
	return r, nil
}

// MustRules parses rules, panicking on a bad one: for rules built from
// URLs already validated.
func MustRules(ss ...string) []Rule {
	rs := make([]Rule, 0, len(ss))
	for _, s := range ss {
		r, err := ParseRule(s)
		if err != nil {
			panic("egress: rule " + s + ": " + err.Error())
		}
		rs = append(rs, r)
	}
	return rs
}

// HostOf is the rule naming u's host on any port ("" host: no rule, ok
// false).
func HostOf(u *url.URL) (Rule, bool) {
	h := strings.ToLower(u.Hostname())
	return Rule{host: h}, h != ""
}

// RuleOf is the rule naming u's host on the port u names, or on any
// port when u names none.
func RuleOf(u *url.URL) (Rule, bool) {
	h := strings.ToLower(u.Hostname())
	return Rule{host: h, port: u.Port()}, h != ""
}

// OriginOf is the rule naming u's host on u's port (the scheme's default
// when u names none): where a token configured for u may go.
func OriginOf(u *url.URL) (Rule, bool) {
	h := strings.ToLower(u.Hostname())
	return Rule{host: h, port: Port(u)}, h != ""
}

// Port is u's port, or its scheme's default (443 for https, 80 for http).
func Port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// Allows reports whether r names u's host and port.
func (r Rule) Allows(u *url.URL) bool {
	h := strings.ToLower(u.Hostname())
	if r.port != "" && Port(u) != r.port {
		return false
	}
	if r.wildcard {
		return strings.HasSuffix(h, "."+r.host)
	}
	return h == r.host
}

// String is the rule as ParseRule reads it.
func (r Rule) String() string {
	s := r.host
	if strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	if r.wildcard {
		s = "*." + s
	}
	if r.port != "" {
		s += ":" + r.port
	}
	return s
}

// anyAllows reports whether one of rules names u's host and port.
func anyAllows(rules []Rule, u *url.URL) bool {
	for _, r := range rules {
		if r.Allows(u) {
			return true
		}
	}
	return false
}
