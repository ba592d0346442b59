package bulkdata

import (
	"net/url"

	"github.com/p2p-payer/p2p/internal/egress"
)

// CheckAllowedHost returns why s is not a rule Config.AllowedHosts takes
// ("host", "host:port", "*.host", "[v6]:port"), or nil: for the partner
// registry, which validates the rules when it loads.
func CheckAllowedHost(s string) error {
	_, err := egress.ParseRule(s)
	return err
}

// AllowedHost reports whether the rule s (as CheckAllowedHost takes it)
// allows a URL on u's host and port.
func AllowedHost(s string, u *url.URL) bool {
	r, err := egress.ParseRule(s)
	return err == nil && r.Allows(u)
}
