package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

// PHI of the sample request: no log line and no error body may hold any.
var phi = []string{"Zelphina", "Quarrington", "1984-07-19", "555-0199", "17 Larkspur Lane", "Springfield"}

// sampleBody is a valid transfer request; %s is the partner.
const sampleBody = `{
  "partner_id": %q,
  "correlation_id": "corr-1",
  "member": {
    "given": "Zelphina", "family": "Quarrington", "birth_date": "1984-07-19", "sex": "F",
    "address": {"street": "17 Larkspur Lane", "city": "Springfield", "state": "IL", "postal_code": "62701"},
    "phone": "555-0199"
  },
  "consent": {
    "id": "c-1", "status": "active", "scope": "regular",
    "period": {"start": "2025-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"},
    "granted_at": "2025-01-01T00:00:00Z"
  },
  "data_scope": {"resource_types": ["Patient", "Coverage"]}
}`

func body(partner string) string { return fmt.Sprintf(sampleBody, partner) }

// fakeEngine counts workflow starts per transfer and answers as told.
type fakeEngine struct {
	mu        sync.Mutex
	starts    map[string]int
	startErr  error
	failFor   map[string]bool // transfers whose start fails with errBoom
	attempts  int             // StartTransfer calls, failed ones included
	reviewErr error
	readyErr  error
	reviews   []transfer.ReviewDecision
	acks      []string        // transfer id/receipt id/signed by
	panicked  bool            // Ready panics
	running   map[string]bool // transfers whose workflow Started reports (besides those started here)
}

func (e *fakeEngine) Started(_ context.Context, id string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running[id] || e.starts[id] > 0, nil
}

func (e *fakeEngine) Acknowledge(_ context.Context, id, receiptID, signedBy string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.acks = append(e.acks, id+"/"+receiptID+"/"+signedBy)
	return nil
}

func (e *fakeEngine) StartTransfer(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.attempts++
	if e.startErr != nil {
		return e.startErr
	}
	if e.failFor[id] {
		return errBoom
	}
	if e.starts == nil {
		e.starts = map[string]int{}
	}
	e.starts[id]++
	return nil
}

func (e *fakeEngine) Review(_ context.Context, _ string, d transfer.ReviewDecision) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reviewErr != nil {
		return e.reviewErr
	}
	e.reviews = append(e.reviews, d)
	return nil
}

func (e *fakeEngine) Ready(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.panicked {
		panic("engine exploded for Zelphina")
	}
	return e.readyErr
}

func (e *fakeEngine) set(f func(e *fakeEngine)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// started returns the transfer ids started so far.
func (e *fakeEngine) started() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.starts {
		out[k] = v
	}
	return out
}

type fakeKeys struct {
	jwks []byte
	err  error
}

func (k fakeKeys) PublicJWKS() ([]byte, error) { return k.jwks, k.err }

const testJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"AA","y":"BB","use":"sig","alg":"ES256"}]}`

// env is a Server over a real SQLite store on a temp file.
type env struct {
	t      *testing.T
	srv    *Server
	h      http.Handler
	store  *sqlite.Store
	engine *fakeEngine
	logs   *observer.ObservedLogs
}

type envOption func(*Deps)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	eng := &fakeEngine{}
	d := Deps{
		Store: st, Engine: eng, Keys: fakeKeys{jwks: []byte(testJWKS)}, Auth: testAuth, Logger: zap.New(core),
		Now: func() time.Time { return time.Now() },
	}
	for _, o := range opts {
		o(&d)
	}
	srv, err := NewServer(d)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	e := &env{t: t, srv: srv, h: srv.Handler(), store: st, engine: eng, logs: logs}
	t.Cleanup(e.assertNoPHILogged)
	return e
}

// assertNoPHILogged fails if any log line holds the sample's PHI.
func (e *env) assertNoPHILogged() {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, entry := range e.logs.All() {
		buf, err := enc.EncodeEntry(entry.Entry, entry.Context)
		if err != nil {
			e.t.Fatalf("encode log entry: %v", err)
		}
		line := buf.String()
		buf.Free()
		for _, v := range phi {
			if strings.Contains(line, v) {
				e.t.Errorf("log line holds PHI %q: %s", v, line)
			}
		}
	}
}

// do serves one request and returns its recorder. Unless header sets
// Authorization (to "" for none), the request authenticates as testClient
// with scope admin.
func (e *env) do(method, path, body string, header ...string) *httptest.ResponseRecorder {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", bearer(testClient, "", caller.Admin))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	if r.Header.Get("Authorization") == "" {
		r.Header.Del("Authorization")
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// post POSTs a transfer under key.
func (e *env) post(key, body string) *httptest.ResponseRecorder {
	if key == "" {
		return e.do(http.MethodPost, "/v1/transfers", body)
	}
	return e.do(http.MethodPost, "/v1/transfers", body, "Idempotency-Key", key)
}

// problem decodes a problem+json answer and checks its basics.
func problem(t *testing.T, w *httptest.ResponseRecorder, status int, slug string) Problem {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode problem: %v; body %s", err, w.Body)
	}
	if want := ProblemTypePrefix + slug; p.Type != want || p.Status != status || p.Title == "" {
		t.Fatalf("problem = %+v, want type %s status %d", p, want, status)
	}
	if p.Instance == nil || !strings.HasPrefix(*p.Instance, "urn:p2p:request:") {
		t.Errorf("problem instance = %v", p.Instance)
	}
	for _, v := range phi {
		if strings.Contains(w.Body.String(), v) {
			t.Errorf("problem echoes PHI %q: %s", v, w.Body)
		}
	}
	return p
}

// fields lists a problem's "field: reason" pairs.
func fields(p Problem) []string {
	var out []string
	if p.Errors != nil {
		for _, f := range *p.Errors {
			out = append(out, f.Field+": "+f.Reason)
		}
	}
	return out
}

func hasField(p Problem, field string) bool {
	for _, f := range fields(p) {
		if strings.HasPrefix(f, field+": ") {
			return true
		}
	}
	return false
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T: %v; body %s", v, err, w.Body)
	}
	return v
}

// countTransfers counts every transfer in the store.
func (e *env) countTransfers() int {
	e.t.Helper()
	page, err := e.store.ListTransfers(context.Background(), store.ListFilter{Limit: 200})
	if err != nil {
		e.t.Fatalf("list transfers: %v", err)
	}
	return len(page.Items)
}

var errBoom = errors.New("temporal frontend unreachable at 10.0.0.7:7233")

// testClient is the client env.do authenticates as by default.
const testClient = "ops-test"

// bearer is the Authorization header testAuth takes for client with
// scopes, and person acting through it ("" for none).
func bearer(client, person string, scopes ...caller.Scope) string {
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	return "Bearer tok." + client + "." + strings.Join(names, ",") + "." + person
}

// badToken is a bearer token testAuth refuses.
const badToken = "Bearer forged"

// testAuth is a fake Authenticator: a token "tok.CLIENT.SCOPES.PERSON"
// (scopes comma-separated) authenticates CLIENT; any other bearer token
// is invalid, and no Authorization header is no credentials.
var testAuth = caller.AuthenticatorFunc(func(r *http.Request) (caller.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return caller.Principal{}, caller.ErrNoCredentials
	}
	parts := strings.Split(strings.TrimPrefix(h, "Bearer "), ".")
	if len(parts) != 4 || parts[0] != "tok" || parts[1] == "" {
		return caller.Principal{}, fmt.Errorf("%w: not a test token", caller.ErrInvalidCredentials)
	}
	p := caller.Principal{ClientID: parts[1], Person: parts[3], Method: "bearer"}
	for _, sc := range strings.Split(parts[2], ",") {
		if sc != "" {
			p.Scopes = append(p.Scopes, caller.Scope(sc))
		}
	}
	return p, nil
})
