package app

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/p2p-payer/p2p/internal/ratelimit"
)

// LimitTokenRequests admits the requests of a token endpoint (h) that lim
// admits per remote address: callers there have not authenticated yet,
// and each request costs a signature check and maybe a fetch of the
// client's keys. Past the rate: 429 with Retry-After and an RFC 6749
// error body, temporarily_unavailable (RFC 6749 names no error for rate
// limits; that one says "retry later").
func LimitTokenRequests(lim *ratelimit.Keyed, h http.Handler) http.Handler {
	if lim == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait := lim.Allow(ratelimit.RemoteKey(r), time.Now())
		if wait == 0 {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(map[string]string{ // the client sees a short body
			"error":             "temporarily_unavailable",
			"error_description": "too many token requests from this address; retry after the Retry-After seconds",
		})
	})
}
