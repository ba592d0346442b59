package bulkdata

import "net/url"

// CheckAllowedHost returns why s is not a rule Config.AllowedHosts takes
// ("host", "host:port", "*.host", "[v6]:port"), or nil: for the partner
// registry, which validates the rules when it loads.
func CheckAllowedHost(s string) error {
	_, err := parseHostRule(s)
	return err
}

// AllowedHost reports whether the rule s (as CheckAllowedHost takes it)
// allows a URL on u's host and port.
func AllowedHost(s string, u *url.URL) bool {
	r, err := parseHostRule(s)
	return err == nil && r.allows(u)
}
