package payloadcodec

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/internal/ratelimit"
)

// testAuth: "Bearer ok:SCOPE,SCOPE" authenticates with those scopes,
// any other bearer is invalid, none is no credentials.
var testAuth = caller.AuthenticatorFunc(func(r *http.Request) (caller.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return caller.Principal{}, caller.ErrNoCredentials
	}
	scopes, ok := strings.CutPrefix(h, "Bearer ok:")
	if !ok {
		return caller.Principal{}, caller.ErrInvalidCredentials
	}
	var p caller.Principal
	p.ClientID = "ops"
	for _, s := range strings.Split(scopes, ",") {
		p.Scopes = append(p.Scopes, caller.Scope(s))
	}
	return p, nil
})

const uiOrigin = "https://temporal-ui.example"

func newServer(t *testing.T) (*Server, *Codec) {
	t.Helper()
	c := newCodec(t, newKeySet(t))
	return &Server{Codec: c, Auth: testAuth, Scope: caller.PayloadsRead, Origins: []string{uiOrigin}}, c
}

// encryptedBody is a decode request holding alice, encrypted by c.
func encryptedBody(t *testing.T, c *Codec) string {
	t.Helper()
	p, err := c.DataConverter().ToPayload(alice)
	if err != nil {
		t.Fatal(err)
	}
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{p}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServerAuthorisation: only a caller with payloads:read (or admin)
// sees decoded payloads; the others get a problem and no payload.
func TestServerAuthorisation(t *testing.T) {
	s, c := newServer(t)
	body := encryptedBody(t, c)
	tests := []struct {
		name, auth, origin string
		want               int
		wantType           string
		challenge          string
	}{
		{"payloads:read", "Bearer ok:payloads:read", "", 200, "", ""},
		{"admin", "Bearer ok:admin", "", 200, "", ""},
		{"payloads:read from the Web UI", "Bearer ok:payloads:read", uiOrigin, 200, "", ""},
		{"no credentials", "", "", 401, "urn:p2p:problem:unauthenticated", `Bearer realm="p2p"`},
		{"invalid credentials", "Bearer forged", "", 401, "urn:p2p:problem:unauthenticated", `error="invalid_token"`},
		{"another scope", "Bearer ok:transfers:read,audit:read", "", 403, "urn:p2p:problem:forbidden", `scope="payloads:read"`},
		{"another origin", "Bearer ok:payloads:read", "https://evil.example", 403, "urn:p2p:problem:forbidden", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/codec/decode", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Namespace", "default")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want != 200 {
				var p map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p["type"] != tt.wantType ||
					rec.Header().Get("Content-Type") != "application/problem+json" {
					t.Errorf("problem %s (%s), want type %s", rec.Body, rec.Header().Get("Content-Type"), tt.wantType)
				}
				if !strings.Contains(rec.Header().Get("WWW-Authenticate"), tt.challenge) {
					t.Errorf("challenge %q, want %q in it", rec.Header().Get("WWW-Authenticate"), tt.challenge)
				}
				if strings.Contains(rec.Body.String(), alice.MemberID) {
					t.Error("a refused caller saw the payload")
				}
				return
			}
			var out commonpb.Payloads
			if err := protojson.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			var got secret
			if err := converter.GetDefaultDataConverter().FromPayload(out.Payloads[0], &got); err != nil || got != alice {
				t.Errorf("decoded %+v (%v), want %+v", got, err, alice)
			}
			if tt.origin != "" && rec.Header().Get("Access-Control-Allow-Origin") != tt.origin {
				t.Errorf("CORS headers %v", rec.Header())
			}
		})
	}
}

// TestServerRequests: the protocol's edges: preflight, methods, paths,
// bodies.
func TestServerRequests(t *testing.T) {
	s, _ := newServer(t)
	tests := []struct {
		name, method, path, origin, body string
		want                             int
	}{
		{"preflight from the Web UI", http.MethodOptions, "/codec/decode", uiOrigin, "", 204},
		{"preflight from another origin", http.MethodOptions, "/codec/decode", "https://evil.example", "", 403},
		{"GET", http.MethodGet, "/codec/decode", "", "", 405},
		{"another path", http.MethodPost, "/codec/download", "", `{"payloads":[]}`, 404},
		{"the CLI's namespace template", http.MethodPost, "/codec/default/decode", "", `{"payloads":[]}`, 200},
		{"encode", http.MethodPost, "/codec/encode", "", `{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IngiCg=="}]}`, 200},
		{"not JSON", http.MethodPost, "/codec/decode", "", `payloads`, 400},
		{"not a payload's key", http.MethodPost, "/codec/decode", "", `{"payloads":[{"metadata":{"encoding":"YmluYXJ5L2VuY3J5cHRlZA==","encryption-key-id":"eA=="},"data":"AAAA"}]}`, 400},
		{"too large", http.MethodPost, "/codec/decode", "", `{"payloads":[{"data":"` + strings.Repeat("A", MaxBody) + `"}]}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer ok:payloads:read")
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want == 204 {
				h := rec.Header()
				if h.Get("Access-Control-Allow-Origin") != uiOrigin || h.Get("Access-Control-Allow-Credentials") != "true" ||
					!strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-Namespace") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
					t.Errorf("preflight headers %v", h)
				}
			}
			if tt.want >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

// TestServerRateLimit: past the rate, 429 with Retry-After, before
// authentication.
func TestServerRateLimit(t *testing.T) {
	s, _ := newServer(t)
	s.Limiter = ratelimit.Limit{Rate: 1, Burst: 1}.New()
	codes := []int{}
	for range 2 {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/codec/decode", strings.NewReader(`{"payloads":[]}`)))
		codes = append(codes, rec.Code)
		if rec.Code == 429 && rec.Header().Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[0] != 401 || codes[1] != 429 {
		t.Errorf("codes %v, want [401 429]", codes)
	}
}

// TestRemoteCodecClient: the SDK's own codec-server client (what the
// Temporal CLI's --codec-endpoint runs) reads what the worker wrote,
// through the server, authenticated.
func TestRemoteCodecClient(t *testing.T) {
	s, c := newServer(t)
	mux := http.NewServeMux()
	mux.Handle("/codec/", s)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	remote := converter.NewRemoteDataConverter(converter.GetDefaultDataConverter(), converter.RemoteDataConverterOptions{
		Endpoint: srv.URL + "/codec",
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer ok:payloads:read")
			return nil
		},
	})
	p, err := c.DataConverter().ToPayload(alice)
	if err != nil {
		t.Fatal(err)
	}
	var got secret
	if err := remote.FromPayload(p, &got); err != nil || got != alice {
		t.Fatalf("remote decode %+v (%v), want %+v", got, err, alice)
	}
	// And the other way: what the remote encodes, the worker reads.
	enc, err := remote.ToPayload(alice)
	if err != nil {
		t.Fatal(err)
	}
	if string(enc.Metadata[MetadataKeyID]) != c.ActiveKeyID() {
		t.Fatalf("remote encode metadata %v", enc.Metadata)
	}
	got = secret{}
	if err := c.DataConverter().FromPayload(enc, &got); err != nil || got != alice {
		t.Fatalf("local decode %+v (%v)", got, err)
	}
}
