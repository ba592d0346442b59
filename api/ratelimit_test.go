package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/internal/ratelimit"
)

var fixedNow = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// limited is a request of TestRateLimit: who sends what, and the answer.
type limited struct {
	method, path string
	client       string // "": no Principal
	remote       string // host of RemoteAddr
	status       int
}

// TestRateLimit drives the middleware with the Principal authentication
// would have set: clients and remote addresses each have their bucket,
// acknowledgements theirs, and /fhir and health are not limited here.
func TestRateLimit(t *testing.T) {
	const tooMany = http.StatusTooManyRequests
	two := ratelimit.Limit{Rate: 1, Burst: 2}
	cases := []struct {
		name   string
		limits RateLimits
		reqs   []limited
	}{
		{"client past its burst", RateLimits{Client: two}, []limited{
			{"GET", "/v1/transfers", "payer-a", "192.0.2.1", 200},
			{"POST", "/v1/transfers", "payer-a", "192.0.2.2", 200},
			{"GET", "/v1/transfers/x", "payer-a", "192.0.2.3", tooMany}, // the client, whatever its address
			{"GET", "/v1/transfers", "payer-b", "192.0.2.1", 200},       // another client, same address
		}},
		{"no principal: by remote address", RateLimits{Client: two}, []limited{
			{"GET", "/v1/transfers", "", "192.0.2.1", 200},
			{"GET", "/v1/transfers", "", "192.0.2.1", 200},
			{"GET", "/v1/transfers", "", "192.0.2.1", tooMany},
			{"GET", "/v1/transfers", "", "192.0.2.9", 200},
			{"GET", "/v1/transfers", "payer-a", "192.0.2.1", 200}, // a client is not its address
		}},
		{"acks by remote address, apart from clients", RateLimits{Client: two, Ack: ratelimit.Limit{Rate: 1, Burst: 1}}, []limited{
			{"POST", "/v1/transfers/t1/ack", "", "192.0.2.1", 200},
			{"POST", "/v1/transfers/t2/ack", "payer-a", "192.0.2.1", tooMany},
			{"POST", "/v1/transfers/t2/ack", "", "192.0.2.2", 200},
			{"GET", "/v1/transfers/t1", "", "192.0.2.1", 200}, // the client bucket is untouched
			{"GET", "/v1/transfers/t1", "", "192.0.2.1", 200},
			{"GET", "/v1/transfers/t1/ack", "", "192.0.2.1", tooMany}, // not an ack: the client bucket
		}},
		{"other routes are not limited here", RateLimits{Client: ratelimit.Limit{Rate: 1, Burst: 1}}, []limited{
			{"GET", "/v1/transfers", "", "192.0.2.1", 200},
			{"POST", "/fhir/Patient/$member-match", "", "192.0.2.1", 200},
			{"GET", "/healthz", "", "192.0.2.1", 200},
			{"GET", "/.well-known/jwks.json", "", "192.0.2.1", 200},
			{"GET", "/v1/transfers", "", "192.0.2.1", tooMany},
		}},
		{"zero limits admit everything", RateLimits{}, func() []limited {
			var rs []limited
			for range 200 {
				rs = append(rs, limited{"POST", "/v1/transfers", "payer-a", "192.0.2.1", 200}, limited{"POST", "/v1/transfers/t/ack", "", "192.0.2.1", 200})
			}
			return rs
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(d *Deps) {
				d.RateLimits = c.limits
				d.Now = func() time.Time { return fixedNow }
			})
			// withInfo, as in the router: problems name their request.
			h := withInfo(e.srv.rateLimit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
			for i, q := range c.reqs {
				r := httptest.NewRequest(q.method, q.path, nil)
				r.RemoteAddr = q.remote + ":40000"
				if q.client != "" {
					r = r.WithContext(caller.With(r.Context(), caller.Principal{ClientID: q.client, Scopes: []caller.Scope{caller.Admin}}))
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != q.status {
					t.Fatalf("request %d %s %s as %q from %s: %d, want %d", i, q.method, q.path, q.client, q.remote, w.Code, q.status)
				}
				if q.status == tooMany {
					p := problem(t, w, tooMany, ProblemRateLimited)
					if ra := w.Header().Get("Retry-After"); ra != "1" {
						t.Errorf("Retry-After = %q, want 1; problem %+v", ra, p)
					}
				}
			}
		})
	}
}

// TestRateLimitInstalled: the API's router limits, and answers 429 as
// problem+json with Retry-After, before anything else reads the request.
func TestRateLimitInstalled(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.RateLimits = RateLimits{Ack: ratelimit.Limit{Rate: 0.5, Burst: 2}}
		d.Now = func() time.Time { return fixedNow }
	})
	path := "/v1/transfers/0193a3b4-0000-7000-8000-000000000001/ack"
	for i := range 2 {
		if w := e.do(http.MethodPost, path, `{"receipt_jws": "x.y.z"}`); w.Code == http.StatusTooManyRequests {
			t.Fatalf("ack %d: 429 within the burst", i)
		}
	}
	w := e.do(http.MethodPost, path, `{"receipt_jws": "x.y.z"}`)
	problem(t, w, http.StatusTooManyRequests, ProblemRateLimited)
	if ra := w.Header().Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After = %q, want 2 (a token every 2 s)", ra)
	}
}
