package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/transfer"
)

// env is our side (signer, JWKS endpoint, pusher) and the sandbox partner.
type env struct {
	signer   atomic.Pointer[signing.Signer] // whose JWKS we serve and sign with
	jwksHits atomic.Int32
	jwksDown atomic.Bool
	jwks     *httptest.Server
	partner  *Partner
	srv      *httptest.Server
	pusher   *connectors.HTTPPusher
	cp       connectors.Partner
	skew     atomic.Int64 // added to the sandbox's JWKS cache clock: steps past its refetch interval
}

func mustSigner(t *testing.T) *signing.Signer {
	t.Helper()
	s, err := signing.GenerateFor(signing.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newEnv(t *testing.T, dir string) *env {
	t.Helper()
	e := &env{}
	e.signer.Store(mustSigner(t))
	e.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.jwksHits.Add(1)
		if e.jwksDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		b, _ := e.signer.Load().PublicJWKS()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	t.Cleanup(e.jwks.Close)
	e.start(t, dir)
	return e
}

// start (re)starts the sandbox on dir.
func (e *env) start(t *testing.T, dir string) {
	t.Helper()
	p, err := New(Options{Dir: dir, JWKSURL: e.jwks.URL + "/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	e.partner = p
	p.keys.Now = func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }
	e.srv = httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		e.srv.Close()
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	e.pusher = connectors.NewHTTPPusher(e.srv.Client())
	e.cp = connectors.Partner{ID: "sandbox", PushURL: e.srv.URL + "/exports", Timeout: 5 * time.Second, AllowPrivateNetwork: true}
}

var alice = member.Record{ID: "M-1", Given: "Alice", Family: "Example", BirthDate: "1970-01-01", Sex: "F"}

// delivery builds and signs a real export for transferID.
func (e *env) delivery(t *testing.T, transferID, scope string) connectors.Delivery {
	t.Helper()
	x, err := export.Build(context.Background(), export.Input{
		TransferID: transferID, PartnerID: "sandbox", ConsentID: "c", ConsentScope: scope,
		Member: alice, Source: export.SyntheticSource{}, CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := e.signer.Load().Sign(x.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	d := connectors.Delivery{TransferID: transferID, IdempotencyKey: "key-" + transferID + "-" + x.ManifestSHA256[:8], Signature: sig}
	for _, f := range x.Files {
		d.Files = append(d.Files, connectors.DeliveryFile{Name: f.Name, Type: f.Type, SHA256: f.SHA256, Data: f.Data})
	}
	return d
}

func (e *env) push(t *testing.T, d connectors.Delivery) (connectors.Receipt, error) {
	t.Helper()
	return e.pusher.Push(context.Background(), e.cp, d)
}

func TestAcknowledgeAndDeduplicate(t *testing.T) {
	e := newEnv(t, "")
	d := e.delivery(t, "tr-1", transfer.ScopeRegular)
	r1, err := e.push(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Status != connectors.StatusAcknowledged || r1.ReceiptID == "" || r1.Duplicate || r1.ReceivedAt.IsZero() {
		t.Fatalf("receipt %+v", r1)
	}
	r2, err := e.push(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ReceiptID != r1.ReceiptID || !r2.Duplicate || !r2.ReceivedAt.Equal(r1.ReceivedAt) {
		t.Fatalf("repeat got %+v, want the first receipt marked duplicate", r2)
	}
	got := e.partner.Deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	g := got[0]
	// Regular scope: 9 synthetic resources less the sensitive condition.
	if g.TransferID != "tr-1" || g.Files != 5 || g.Resources != 8 || g.Duplicates != 1 ||
		g.KID != e.signer.Load().KID() || g.ReceiptID != r1.ReceiptID || len(g.ManifestSHA256) != 64 {
		t.Fatalf("delivery %+v", g)
	}

	// The same log over HTTP.
	resp, err := http.Get(e.srv.URL + "/deliveries")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var listed []Delivery
	if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != g {
		t.Fatalf("GET /deliveries = %+v", listed)
	}

	// Same key, another export: refused, not recorded.
	other := e.delivery(t, "tr-1", transfer.ScopeSensitive)
	other.IdempotencyKey = d.IdempotencyKey
	if _, err := e.push(t, other); !isClass(err, fault.Business) {
		t.Fatalf("key reuse: %v", err)
	}
	if n := len(e.partner.Deliveries()); n != 1 {
		t.Fatalf("%d deliveries after key reuse", n)
	}
}

func isClass(err error, c fault.Class) bool {
	fe, ok := fault.As(err)
	return ok && fe.Class == c
}

// stop shuts the partner down, as before a restart.
func (e *env) stop(t *testing.T) {
	t.Helper()
	e.srv.Close()
	if err := e.partner.Close(); err != nil {
		t.Fatal(err)
	}
}

// post sends a raw delivery body, for requests our pusher would refuse to
// send.
func (e *env) post(t *testing.T, key string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/exports", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr struct {
		Type string `json:"type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Fatalf("answer %d: %v", resp.StatusCode, err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode >= 400 && ct != "application/problem+json" {
		t.Errorf("error answered as %q", ct)
	}
	return resp.StatusCode, pr.Type
}

type wireFile struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	SHA256 string `json:"sha256"`
	NDJSON string `json:"ndjson"`
}

type wireBody struct {
	TransferID string     `json:"transfer_id"`
	Signature  string     `json:"signature"`
	Files      []wireFile `json:"files"`
}

func toWire(d connectors.Delivery) wireBody {
	w := wireBody{TransferID: d.TransferID, Signature: d.Signature}
	for _, f := range d.Files {
		w.Files = append(w.Files, wireFile{f.Name, f.Type, f.SHA256, string(f.Data)})
	}
	return w
}

func TestRejections(t *testing.T) {
	e := newEnv(t, "")
	stranger := mustSigner(t)
	base := e.delivery(t, "tr-1", transfer.ScopeRegular)
	x, _ := export.Build(context.Background(), export.Input{TransferID: "tr-1", ConsentScope: "regular", Member: alice,
		Source: export.SyntheticSource{}, CreatedAt: time.Unix(0, 0)})
	strangerSig, _ := stranger.Sign(x.Manifest)
	notManifest, _ := e.signer.Load().Sign([]byte(`{"hello":"world"}`))
	// The manifest signed with the sender's key as something else.
	asCheckpoint, _ := e.signer.Load().WithPurpose(signing.Checkpoint)
	checkpointSig, _ := asCheckpoint.Sign(x.Manifest)
	asJOSE, _ := e.signer.Load().WithPurpose("")
	untypedSig, _ := asJOSE.Sign(x.Manifest)

	tests := []struct {
		name   string
		key    string
		body   func() any
		status int
		typ    string
	}{
		{"no idempotency key", "", func() any { return toWire(base) }, 400, ProblemMissingKey},
		{"not JSON", "k", func() any { return json.RawMessage(`{"transfer_id":`) }, 400, ProblemMalformed},
		{"no signature", "k", func() any { w := toWire(base); w.Signature = ""; return w }, 400, ProblemMalformed},
		{"signature garbage", "k", func() any { w := toWire(base); w.Signature = "a.b.c"; return w }, 403, ProblemInvalidSignature},
		{"signed by an unknown key", "k", func() any { w := toWire(base); w.Signature = strangerSig; return w }, 403, ProblemUnknownKey},
		{"tampered signature", "k", func() any {
			w := toWire(base)
			parts := strings.Split(w.Signature, ".")
			parts[2] = strings.Repeat("A", len(parts[2]))
			w.Signature = strings.Join(parts, ".")
			return w
		}, 403, ProblemInvalidSignature},
		{"signed as a checkpoint", "k", func() any { w := toWire(base); w.Signature = checkpointSig; return w }, 403, ProblemInvalidSignature},
		{"signed untyped (typ JOSE)", "k", func() any { w := toWire(base); w.Signature = untypedSig; return w }, 403, ProblemInvalidSignature},
		{"payload is not a manifest", "k", func() any { w := toWire(base); w.Signature = notManifest; return w }, 422, ProblemInvalidManifest},
		{"manifest of another transfer", "k", func() any { w := toWire(base); w.TransferID = "tr-2"; return w }, 422, ProblemInvalidManifest},
		{"a file missing", "k", func() any { w := toWire(base); w.Files = w.Files[1:]; return w }, 422, ProblemFileMismatch},
		{"a file too many", "k", func() any {
			w := toWire(base)
			w.Files = append(w.Files, wireFile{"Extra.ndjson", "Patient", w.Files[0].SHA256, w.Files[0].NDJSON})
			return w
		}, 422, ProblemFileMismatch},
		{"a file twice", "k", func() any { w := toWire(base); w.Files[1] = w.Files[0]; return w }, 422, ProblemFileMismatch},
		{"wrong type", "k", func() any { w := toWire(base); w.Files[0].Type = "Patient"; return w }, 422, ProblemFileMismatch},
		{"data altered, digest recomputed", "k", func() any {
			w := toWire(base)
			w.Files[0].NDJSON = strings.Replace(w.Files[0].NDJSON, "active", "inactive", 1)
			w.Files[0].SHA256 = export.Digest([]byte(w.Files[0].NDJSON))
			return w
		}, 422, ProblemDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := json.Marshal(tt.body())
			status, typ := e.post(t, tt.key, b)
			if status != tt.status || typ != tt.typ {
				t.Fatalf("answer %d %s, want %d %s", status, typ, tt.status, tt.typ)
			}
		})
	}
	if n := len(e.partner.Deliveries()); n != 0 {
		t.Fatalf("rejected requests recorded %d deliveries", n)
	}
	// The unknown kid came within the refetch interval of the first
	// fetch: no second fetch (a sender of random kids cannot make the
	// sandbox hammer our JWKS).
	if n := e.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

func TestJWKSCacheAndRotation(t *testing.T) {
	e := newEnv(t, "")
	for i := range 3 {
		if _, err := e.push(t, e.delivery(t, fmt.Sprint("tr-", i), transfer.ScopeRegular)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for 3 deliveries, want 1 (cached)", n)
	}
	// We rotate: the cached JWKS lacks the new kid, so the sandbox
	// refetches once (past the refetch interval since the last fetch).
	e.skew.Add(int64(signing.DefaultRefetchInterval))
	e.signer.Store(mustSigner(t))
	if _, err := e.push(t, e.delivery(t, "tr-rotated", transfer.ScopeRegular)); err != nil {
		t.Fatal(err)
	}
	if n := e.jwksHits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times after a rotation, want 2", n)
	}
	// Our JWKS endpoint is down and the kid is unknown: retryable.
	e.jwksDown.Store(true)
	e.skew.Add(int64(signing.DefaultRefetchInterval))
	e.signer.Store(mustSigner(t))
	if _, err := e.push(t, e.delivery(t, "tr-down", transfer.ScopeRegular)); !isClass(err, fault.Downstream) {
		t.Fatalf("JWKS down: %v", err)
	}
}

func TestFaultInjection(t *testing.T) {
	tests := []struct {
		name       string
		f          Failure
		class      fault.Class
		retryAfter time.Duration
	}{
		{"503", Failure{Status: 503}, fault.Downstream, 0},
		{"503 with Retry-After", Failure{Status: 503, RetryAfter: "3"}, fault.Downstream, 3 * time.Second},
		{"429", Failure{Status: 429, RetryAfter: "2"}, fault.Downstream, 2 * time.Second},
		{"422 reject", Failure{Status: 422}, fault.Business, 0},
		{"401", Failure{Status: 401}, fault.Auth, 0},
		{"no status means 500", Failure{}, fault.Downstream, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "")
			d := e.delivery(t, "tr-1", transfer.ScopeRegular)
			e.partner.FailNext(2, tt.f)
			for range 2 {
				_, err := e.push(t, d)
				fe, ok := fault.As(err)
				if !ok || fe.Class != tt.class || fe.RetryAfter != tt.retryAfter {
					t.Fatalf("err = %v, want %s after %v", err, tt.class, tt.retryAfter)
				}
			}
			if n := len(e.partner.Deliveries()); n != 0 {
				t.Fatalf("an injected failure recorded %d deliveries", n)
			}
			r, err := e.push(t, d)
			if err != nil || r.Duplicate {
				t.Fatalf("third push: %+v %v", r, err)
			}
		})
	}
}

func TestLostAcknowledgement(t *testing.T) {
	e := newEnv(t, "")
	d := e.delivery(t, "tr-1", transfer.ScopeRegular)
	e.partner.FailNext(1, Failure{Status: 503, AfterRecord: true})
	if _, err := e.push(t, d); !isClass(err, fault.Downstream) {
		t.Fatalf("first push: %v", err)
	}
	r, err := e.push(t, d)
	if err != nil || !r.Duplicate {
		t.Fatalf("retry: %+v %v, want a duplicate receipt", r, err)
	}
	got := e.partner.Deliveries()
	if len(got) != 1 || got[0].Duplicates != 1 || got[0].ReceiptID != r.ReceiptID {
		t.Fatalf("deliveries %+v", got)
	}
}

func TestConcurrentRepeatsAreOneDelivery(t *testing.T) {
	e := newEnv(t, t.TempDir())
	d := e.delivery(t, "tr-1", transfer.ScopeRegular)
	other := e.delivery(t, "tr-2", transfer.ScopeRegular)
	const n = 16
	receipts := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := e.push(t, d)
			if err != nil {
				t.Error(err)
				return
			}
			receipts[i] = r.ReceiptID
		})
	}
	wg.Go(func() {
		if _, err := e.push(t, other); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	for _, r := range receipts {
		if r != receipts[0] {
			t.Fatal("concurrent repeats got different receipts")
		}
	}
	got := e.partner.Deliveries()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	for _, g := range got {
		if g.TransferID == "tr-1" && g.Duplicates != n-1 {
			t.Fatalf("tr-1 duplicates %d, want %d", g.Duplicates, n-1)
		}
	}
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sandbox")
	e := newEnv(t, dir)
	d1, d2 := e.delivery(t, "tr-1", transfer.ScopeRegular), e.delivery(t, "tr-2", transfer.ScopeSensitive)
	for _, d := range []connectors.Delivery{d1, d2, d1} {
		if _, err := e.push(t, d); err != nil {
			t.Fatal(err)
		}
	}
	before := e.partner.Deliveries()
	e.stop(t)
	if fi, _ := os.Stat(filepath.Join(dir, LogFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode %v", fi.Mode().Perm())
	}

	// A crash mid-write leaves a torn last line: it is dropped.
	log := filepath.Join(dir, LogFile)
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"op":"delivery","delivery":{"idempotency_`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	e.start(t, dir)
	after := e.partner.Deliveries()
	if len(after) != 2 || after[0] != before[0] || after[1] != before[1] || after[0].Duplicates != 1 {
		t.Fatalf("after restart %+v, want %+v", after, before)
	}
	// The repeat after the restart is still a duplicate, and new records
	// land on a clean line.
	r, err := e.push(t, d2)
	if err != nil || !r.Duplicate || r.ReceiptID != before[1].ReceiptID {
		t.Fatalf("repeat after restart: %+v %v", r, err)
	}
	if _, err := e.push(t, e.delivery(t, "tr-3", transfer.ScopeRegular)); err != nil {
		t.Fatal(err)
	}
	e.stop(t)
	e.start(t, dir)
	if got := e.partner.Deliveries(); len(got) != 3 || got[1].Duplicates != 1 {
		t.Fatalf("after second restart %+v", got)
	}
	e.stop(t)

	// Corruption before the last record is an error, not silent loss.
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, append([]byte("not json\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: dir, JWKSURL: "http://127.0.0.1:1/jwks"}); err == nil {
		t.Fatal("corrupt log accepted")
	}
}

// TestSandboxChild is the child process of TestSurvivesKill9; it serves a
// sandbox on the given dir until killed.
func TestSandboxChild(t *testing.T) {
	dir := os.Getenv("P2P_SANDBOX_CHILD_DIR")
	if dir == "" {
		t.Skip("helper process for TestSurvivesKill9")
	}
	p, err := New(Options{Dir: dir, JWKSURL: os.Getenv("P2P_SANDBOX_CHILD_JWKS")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("LISTENING", ln.Addr())
	t.Fatal(http.Serve(ln, p.Handler())) // serves until killed
}

// TestSurvivesKill9 kills a sandbox process with SIGKILL right after it
// acknowledged deliveries, and checks that a new one on the same dir knows
// every acknowledged delivery.
func TestSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	e := newEnv(t, "")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSandboxChild$")
	cmd.Env = append(os.Environ(), "P2P_SANDBOX_CHILD_DIR="+dir, "P2P_SANDBOX_CHILD_JWKS="+e.jwks.URL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil { // the test stopped before it killed the child
			if err := cmd.Process.Kill(); err != nil {
				t.Error(err)
			}
			if err := cmd.Wait(); !errors.As(err, new(*exec.ExitError)) {
				t.Errorf("child after SIGKILL: %v, want its exit status", err)
			}
		}
	}()
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("child did not start")
	}
	child := connectors.Partner{ID: "sandbox", PushURL: "http://" + addr + "/exports", Timeout: 5 * time.Second, AllowPrivateNetwork: true}
	pusher := connectors.NewHTTPPusher(nil)
	var acked []string
	for i := range 5 {
		r, err := pusher.Push(context.Background(), child, e.delivery(t, fmt.Sprint("tr-", i), transfer.ScopeRegular))
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, r.ReceiptID)
	}
	if _, err := pusher.Push(context.Background(), child, e.delivery(t, "tr-0", transfer.ScopeRegular)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no chance to flush
		t.Fatal(err)
	}
	if err := cmd.Wait(); !errors.As(err, new(*exec.ExitError)) {
		t.Fatalf("child after SIGKILL: %v, want its exit status", err)
	}

	p, err := New(Options{Dir: dir, JWKSURL: e.jwks.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	got := p.Deliveries()
	if len(got) != len(acked) {
		t.Fatalf("%d deliveries survived, %d were acknowledged", len(got), len(acked))
	}
	for i, g := range got {
		if g.ReceiptID != acked[i] {
			t.Fatalf("delivery %d: receipt %s, acknowledged %s", i, g.ReceiptID, acked[i])
		}
	}
	if got[0].Duplicates != 1 {
		t.Fatalf("duplicate count lost: %+v", got[0])
	}
}
