package api

import (
	"net/http"
	"strings"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/internal/ratelimit"
)

// RateLimits are the request rates /v1 admits, each a token bucket per
// key in this process's memory: N API processes admit up to N times them.
// A zero Limit admits everything.
type RateLimits struct {
	// Client limits each authenticated client (caller.Principal), or, for
	// a request that carries none, its remote address.
	Client ratelimit.Limit
	// Ack limits POST /v1/transfers/{id}/ack per remote address: partners
	// call it unauthenticated (the signed receipt is the credential), and
	// each call may fetch the partner's keys.
	Ack ratelimit.Limit
}

// limiters are the buckets of RateLimits.
type limiters struct {
	client, ack *ratelimit.Keyed
}

func newLimiters(l RateLimits) limiters {
	return limiters{client: l.Client.New(), ack: l.Ack.New()}
}

// rateLimit answers 429 rate-limited, with Retry-After, to a /v1 request
// past its key's rate. It must run after authentication, which names the
// client it keys on; other routes (/fhir, health, JWKS) are not its.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		lim, key := s.limits.client, ratelimit.RemoteKey(r)
		if isAck(r) {
			lim = s.limits.ack
		} else if p, ok := caller.From(r.Context()); ok && p.ClientID != "" {
			key = "client:" + p.ClientID
		}
		if wait := lim.Allow(key, s.now()); wait > 0 {
			w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
			writeProblem(w, r, newProblem(http.StatusTooManyRequests, ProblemRateLimited, "Too many requests",
				"this client sent more requests than its rate allows; retry after the Retry-After seconds"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isAck reports whether r is POST /v1/transfers/{id}/ack.
func isAck(r *http.Request) bool {
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/transfers/")
	id, ack := strings.CutSuffix(id, "/ack")
	return r.Method == http.MethodPost && ok && ack && id != "" && !strings.Contains(id, "/")
}
