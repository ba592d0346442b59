package app

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/p2p-payer/p2p/api"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// servedAPI serves the API as p2p api builds it from cfg, with a partner
// registry (so /fhir and its token endpoint are served), on a real
// listener, and returns its base URL. Its Temporal client never dials: no
// request here starts a workflow.
func servedAPI(t *testing.T, cfg Config) string {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	partners, err := connectors.NewRegistry(connectors.Partner{ID: "acme", Roles: []connectors.Role{connectors.RoleRequester},
		Identifiers: []connectors.Identifier{{System: fhir.SystemNPI, Value: "0123456789"}}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	temporal, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(temporal.Close)
	cfg.Addr = "127.0.0.1:0"
	a, err := NewAPI(ctx, cfg, Deps{Store: st, Temporal: temporal, Signer: signer, Partners: partners})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	return "http://" + ln.Addr().String()
}

type reply struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, method, u string, body io.Reader, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{res.StatusCode, res.Header, string(b)}
}

// TestPublicRateLimits: what callers reach before authenticating — the
// /fhir and /v1 token endpoints and acknowledgements — admits
// --public-rate-limit per remote address, each its own bucket, and answers
// past it 429 with Retry-After: in OAuth terms at the token endpoints,
// problem+json on /v1.
func TestPublicRateLimits(t *testing.T) {
	base := servedAPI(t, Config{FHIRTrustHeader: "X-P2P-Partner", Limits: Limits{PublicRate: 0.25, PublicBurst: 2}})
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {"not.a.jwt"}, "scope": {"system/Patient.rs"}}.Encode()
	tokenAt := func(path string) func() reply {
		return func() reply {
			return send(t, http.MethodPost, base+path, strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded")
		}
	}
	token, v1Token := tokenAt("/fhir"+SMARTTokenPath), tokenAt(V1TokenPath)
	ack := func() reply {
		return send(t, http.MethodPost, base+"/v1/transfers/0193a3b4-0000-7000-8000-000000000001/ack", strings.NewReader(`{"receipt_jws": "x.y.z"}`),
			"Content-Type", "application/json")
	}
	for i := range 2 {
		if r := token(); r.status == http.StatusTooManyRequests {
			t.Fatalf("token request %d: 429 within the burst", i)
		}
		if r := v1Token(); r.status == http.StatusTooManyRequests {
			t.Fatalf("/v1 token request %d: 429 within the burst", i)
		}
		if r := ack(); r.status == http.StatusTooManyRequests {
			t.Fatalf("ack %d: 429 within the burst", i)
		}
	}
	// A token every 4 s: Retry-After is 4, or 3 on a slow machine.
	badRetryAfter := func(r reply) bool { ra := r.header.Get("Retry-After"); return ra != "4" && ra != "3" }
	for name, endpoint := range map[string]func() reply{"/fhir token": token, "/v1 token": v1Token} {
		r := endpoint()
		var oauth struct{ Error, ErrorDescription string }
		if r.status != http.StatusTooManyRequests || badRetryAfter(r) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") ||
			json.Unmarshal([]byte(r.body), &oauth) != nil || oauth.Error != "temporarily_unavailable" {
			t.Errorf("%s past the rate: %d Retry-After %q %q %s, want 429, 4, an RFC 6749 error", name, r.status, r.header.Get("Retry-After"), r.header.Get("Content-Type"), r.body)
		}
	}
	r := ack()
	if r.status != http.StatusTooManyRequests || badRetryAfter(r) || r.header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(r.body, api.ProblemTypePrefix+api.ProblemRateLimited) {
		t.Errorf("ack past the rate: %d Retry-After %q %q %s, want 429, 4, problem+json rate-limited", r.status, r.header.Get("Retry-After"), r.header.Get("Content-Type"), r.body)
	}
}

// TestHeaderLimitServed: on a real server, header fields past
// api.MaxHeaderBytes get the API's 431; only past the server's own
// ServerMaxHeaderBytes does net/http answer, in plain text.
func TestHeaderLimitServed(t *testing.T) {
	base := servedAPI(t, Config{})
	cases := []struct {
		name  string
		size  int
		ctype string
	}{
		{"past the API's limit", api.MaxHeaderBytes + 1024, "application/problem+json"},
		{"past the server's", api.ServerMaxHeaderBytes + 8192, "text/plain; charset=utf-8"},
	}
	for _, c := range cases {
		r := send(t, http.MethodGet, base+"/healthz", nil, "X-Pad", strings.Repeat("p", c.size))
		if r.status != http.StatusRequestHeaderFieldsTooLarge || r.header.Get("Content-Type") != c.ctype {
			t.Errorf("%s: %d %q, want 431 %q: %.200s", c.name, r.status, r.header.Get("Content-Type"), c.ctype, r.body)
		}
	}
	if r := send(t, http.MethodGet, base+"/healthz", nil, "X-Pad", strings.Repeat("p", api.MaxHeaderBytes/2)); r.status != http.StatusOK {
		t.Errorf("half the limit: %d, want 200", r.status)
	}
}

// TestLimitsConfig: zero fields take the defaults, a negative rate is no
// limit, and the flags and variables set them.
func TestLimitsConfig(t *testing.T) {
	d := Limits{}.withDefaults()
	if d != (Limits{DefaultClientRate, DefaultClientBurst, DefaultPublicRate, DefaultPublicBurst}) {
		t.Errorf("defaults %+v", d)
	}
	if off := (Limits{ClientRate: -1, PublicRate: -1}); off.client().New() != nil || off.public().New() != nil {
		t.Error("a negative rate still limits")
	}
	t.Setenv("P2P_RATE_LIMIT", "7.5")
	t.Setenv("P2P_PUBLIC_RATE_BURST", "3")
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := c.Bind(fs, FlagAPI); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--rate-burst", "9"}); err != nil {
		t.Fatal(err)
	}
	if want := (Limits{7.5, 9, DefaultPublicRate, 3}); c.Limits != want {
		t.Errorf("bound %+v, want %+v", c.Limits, want)
	}
	t.Setenv("P2P_RATE_LIMIT", "fast")
	if err := new(Config).Bind(flag.NewFlagSet("test", flag.ContinueOnError), FlagAPI); err == nil || !strings.Contains(err.Error(), "P2P_RATE_LIMIT") {
		t.Errorf("a malformed P2P_RATE_LIMIT: %v", err)
	}
}
