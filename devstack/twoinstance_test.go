package devstack

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
)

// Routes of the old payer's /fhir, as the fault proxy tells them apart.
const (
	routeToken   = "token"
	routeConfig  = "smart-configuration"
	routeMatch   = "member-match"
	routeKickOff = "kickoff"
	routeStatus  = "status"
	routeDelete  = "delete"
	routeFile    = "file"
	routeOther   = "other"
)

func routeOf(r *http.Request) string {
	p := strings.TrimPrefix(r.URL.Path, "/fhir")
	switch {
	case p == "/auth/token":
		return routeToken
	case p == "/.well-known/smart-configuration":
		return routeConfig
	case p == "/Patient/$member-match":
		return routeMatch
	case strings.HasSuffix(p, "/$export"):
		return routeKickOff
	case strings.HasPrefix(p, "/bulk-status/") && r.Method == http.MethodDelete:
		return routeDelete
	case strings.HasPrefix(p, "/bulk-status/"):
		return routeStatus
	case strings.HasPrefix(p, "/bulk-files/"):
		return routeFile
	}
	return routeOther
}

// hit is one request the fault proxy saw, and how it was answered.
type hit struct {
	route, path string
	at          time.Time // request received
	answered    time.Time // status line written
	status      int
	retryAfter  time.Duration // the answer's Retry-After, in seconds
	injected    bool
	bearer      bool // carried an access token
	trusted     bool // carried the dev partner header
}

// faultProxy stands between the new payer and the old payer's /fhir (the
// old payer's public URL): a reverse proxy that answers chosen calls
// itself, the first of a route's calls first, and records every call.
type faultProxy struct {
	srv    *httptest.Server
	target atomic.Pointer[url.URL]

	mu     sync.Mutex
	faults map[string][]injected // by route, in order
	hits   []hit
}

type injected struct {
	status int
	header map[string]string
	body   string
}

func newFaultProxy(t *testing.T) *faultProxy {
	p := &faultProxy{faults: map[string][]injected{}}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(p.target.Load())
	}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := hit{route: routeOf(r), path: r.URL.Path, at: time.Now(),
			bearer: strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "), trusted: r.Header.Get(PartnerHeader) != ""}
		p.mu.Lock()
		var f *injected
		if fs := p.faults[h.route]; len(fs) > 0 {
			f, p.faults[h.route] = &fs[0], fs[1:]
		}
		p.mu.Unlock()
		rec := &recorder{ResponseWriter: w, h: &h}
		if f != nil {
			h.injected = true
			for k, v := range f.header {
				w.Header().Set(k, v)
			}
			rec.WriteHeader(f.status)
			_, _ = w.Write([]byte(f.body))
		} else {
			rp.ServeHTTP(rec, r)
		}
		p.mu.Lock()
		p.hits = append(p.hits, h)
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// inject makes the next call of route answer status.
func (p *faultProxy) inject(route string, f injected) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[route] = append(p.faults[route], f)
}

func (p *faultProxy) calls(route string) []hit {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []hit
	for _, h := range p.hits {
		if h.route == route || route == "" {
			out = append(out, h)
		}
	}
	return out
}

// recorder notes the status and Retry-After of an answer when its status
// line is written: before the client can read it.
type recorder struct {
	http.ResponseWriter
	h *hit
}

func (r *recorder) WriteHeader(status int) {
	if r.h.status == 0 {
		r.h.status, r.h.answered = status, time.Now()
		if n, err := strconv.Atoi(r.Header().Get("Retry-After")); err == nil {
			r.h.retryAfter = time.Duration(n) * time.Second
		}
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.h.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// newPayerNPI names the new payer in consents; the old payer is OurNPI.
const newPayerNPI = "1234567893"

// smartClientKey is the new payer's SMART Backend Services client key
// (ES384): the private JWK in a file, for its registry entry of the old
// payer, and the public JWKS served on loopback, for the old payer's entry
// of it.
func smartClientKey(t *testing.T) (keyFile, jwksURL string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: "new-payer-1", Use: "sig", Algorithm: "ES384"})
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "client-key.jwk")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "new-payer-1", Use: "sig", Algorithm: "ES384"}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	return keyFile, srv.URL
}

// twoImportRequest asks NEW to import a member from OLD.
func twoImportRequest(member map[string]any, card string, consentStart, consentEnd time.Time) map[string]any {
	return map[string]any{
		"direction":         "import",
		"coverage_to_match": map[string]any{"payer": "old-payer", "member_id": card, "period": map[string]any{"start": "2020-01-01", "end": "2025-12-31"}},
		"member":            member,
		"consent": map[string]any{
			"id": "consent-two", "status": "active", "scope": "regular",
			"period": map[string]any{"start": consentStart.Format(time.RFC3339), "end": consentEnd.Format(time.RFC3339)},
		},
		"data_scope": map[string]any{"resource_types": []string{"Patient", "Coverage", "ExplanationOfBenefit", "Encounter", "Condition"}},
	}
}

// exportFiles reads a transfer's export files.
func exportFiles(t *testing.T, tr map[string]any) []transfer.ExportFile {
	t.Helper()
	exp, _ := tr["export"].(map[string]any)
	if exp == nil {
		t.Fatalf("transfer %v has no export", tr["id"])
	}
	b, _ := json.Marshal(exp["files"])
	var fs []transfer.ExportFile
	if err := json.Unmarshal(b, &fs); err != nil {
		t.Fatal(err)
	}
	return fs
}

// digests is "type count sha256" of each file, sorted.
func digests(fs []transfer.ExportFile) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %d %s", f.Type, f.Count, f.SHA256))
	}
	slices.Sort(out)
	return out
}

// TestTwoInstances is payer-to-payer between two p2p instances: OLD (the
// demo members' old payer) serves $member-match and Bulk Data; NEW imports
// a member from it, authenticated by SMART Backend Services, through a
// proxy that fails OLD's first kick-off (500), throttles the first status
// poll (429, Retry-After 2) and expires the first file downloaded (410).
// NEW's import completes holding exactly the files OLD's export served
// (same types, counts and digests); polls never come before the
// Retry-After; OLD's exports are transfers of their own that end; an
// unknown member fails no_match and an expired consent consent_denied.
func TestTwoInstances(t *testing.T) {
	began := time.Now()
	keyFile, jwksURL := smartClientKey(t)
	proxy := newFaultProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// OLD knows NEW as a requester authenticated by SMART Backend
	// Services; partners reach it through the proxy (its public URL).
	oldStack, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true,
		PublicURL: proxy.srv.URL, ExportFileTTL: 8 * time.Second,
		Partners: []connectors.Partner{{ID: "new-payer", Name: "New Health Plan", Timeout: 10 * time.Second,
			Roles: []connectors.Role{connectors.RoleRequester}, JWKSURL: jwksURL, AllowPrivateNetwork: true,
			Auth:        connectors.Auth{Type: connectors.AuthSMARTBackend, ClientID: "new-payer-client"},
			Identifiers: []connectors.Identifier{{System: fhir.SystemNPI, Value: newPayerNPI}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oldStack.Stop)
	u, _ := url.Parse(oldStack.URL)
	proxy.target.Store(u)

	// NEW pulls from OLD, with its client key.
	newStack, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", PayerNPI: newPayerNPI,
		Partners: []connectors.Partner{{ID: "old-payer", Name: "Old Health Plan", Timeout: 10 * time.Second,
			Roles: []connectors.Role{connectors.RolePull}, FHIRBaseURL: proxy.srv.URL + "/fhir", AllowPrivateNetwork: true,
			Auth: connectors.Auth{Type: connectors.AuthSMARTBackend, ClientID: "new-payer-client", KeyFile: keyFile,
				Alg: "ES384", Scope: "system/*.rs"},
			Identifiers: []connectors.Identifier{{System: fhir.SystemNPI, Value: OurNPI}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(newStack.Stop)
	old, nw := &e2e{t: t, s: oldStack}, &e2e{t: t, s: newStack}
	t.Logf("two stacks up in %v", time.Since(began).Round(time.Millisecond))

	proxy.inject(routeKickOff, injected{status: http.StatusInternalServerError, body: `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`})
	proxy.inject(routeStatus, injected{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "2"}})
	proxy.inject(routeFile, injected{status: http.StatusGone, header: map[string]string{"Content-Type": "application/fhir+json"},
		body: `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`})

	now := time.Now().UTC()
	started := time.Now()
	aliceNew := map[string]any{"member_id": "NEW-77", "given": "Alice", "family": "Nguyen", "birth_date": "1985-04-12", "sex": "F"}
	id := nw.create("two-import-0001", twoImportRequest(aliceNew, "M100001", now.AddDate(0, -1, 0), now.AddDate(1, 0, 0)))
	tr := nw.await(id, "complete", 30*time.Second)
	t.Logf("import complete in %v", time.Since(started).Round(time.Millisecond))
	if tr["direction"] != "import" || tr["partner_id"] != "old-payer" {
		t.Errorf("import %v", tr)
	}
	if got := strings.Join(nw.states(id), ","); got != "initiated,identity_pending,consent_verified,payload_prepared,sent,acknowledged,complete" {
		t.Errorf("import states %s", got)
	}
	imported := exportFiles(t, tr)

	// OLD served two exports to NEW: the first lost a file (the proxy's
	// 410) and NEW deleted it (cancelled); the second was downloaded whole
	// (complete).
	// Its $member-match is an export transfer too, complete.
	var served, matchTrs []map[string]any
	for _, it := range old.do("GET", "/v1/transfers?direction=export", "", nil).json(t)["items"].([]any) {
		tr := it.(map[string]any)
		if old.operation(tr["id"].(string)) == pdex.OperationMemberMatch {
			matchTrs = append(matchTrs, tr)
			continue
		}
		served = append(served, tr)
	}
	if len(matchTrs) != 1 || matchTrs[0]["state"] != "complete" || matchTrs[0]["partner_id"] != "new-payer" {
		t.Errorf("OLD recorded $member-match transfers %v, want one complete", matchTrs)
	}
	if len(served) != 2 {
		t.Fatalf("OLD served %d exports, want 2 (the 410 kicked off again)", len(served))
	}
	var complete map[string]any
	for _, s := range served {
		if s["direction"] != "export" || s["partner_id"] != "new-payer" {
			t.Errorf("served export %v", s)
		}
		if ident, _ := s["identity"].(map[string]any); ident == nil || ident["member_id"] != "M100001" {
			t.Errorf("served export %v: identity %v, want M100001", s["id"], s["identity"])
		}
		if s["state"] == "complete" {
			complete = s
		}
	}
	if complete == nil {
		complete = old.await(served[0]["id"].(string), "complete", 5*time.Second)
	}
	want := exportFiles(t, old.do("GET", "/v1/transfers/"+complete["id"].(string), "", nil).json(t))
	if len(want) == 0 {
		t.Fatal("OLD's complete export has no files")
	}
	// NEW holds exactly the files OLD served: types, counts, digests.
	if got, w := digests(imported), digests(want); !slices.Equal(got, w) {
		t.Errorf("NEW imported\n%s\nOLD served\n%s", strings.Join(got, "\n"), strings.Join(w, "\n"))
	}
	wantCounts := map[string]int{}
	for _, f := range want {
		wantCounts[f.Type] += f.Count
	}
	for _, typ := range []string{"Patient", "Coverage", "ExplanationOfBenefit", "Encounter", "Condition"} {
		if wantCounts[typ] == 0 {
			t.Errorf("OLD served no %s: %v", typ, wantCounts)
		}
	}
	// And the sink holds them: resources per type, file digests.
	gotCounts := map[string]int{}
	var sinkDigests []string
	files, _ := filepath.Glob(filepath.Join(newStack.ImportDir, id, "*.ndjson"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		sinkDigests = append(sinkDigests, hex.EncodeToString(sum[:]))
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			// The matched member and nobody else.
			if r.ResourceType == "Patient" && r.ID != export.SyntheticPatientID("M100001") {
				t.Errorf("imported Patient/%s, want only %s", r.ID, export.SyntheticPatientID("M100001"))
			}
			gotCounts[r.ResourceType]++
		}
	}
	t.Logf("OLD served %d files, NEW's sink holds %v", len(want), gotCounts)
	if fmt.Sprint(gotCounts) != fmt.Sprint(wantCounts) {
		t.Errorf("NEW's sink holds %v, OLD served %v", gotCounts, wantCounts)
	}
	var wantDigests []string
	for _, f := range want {
		wantDigests = append(wantDigests, f.SHA256)
	}
	slices.Sort(sinkDigests)
	slices.Sort(wantDigests)
	if !slices.Equal(sinkDigests, wantDigests) {
		t.Errorf("sink file digests %v, OLD served %v", sinkDigests, wantDigests)
	}

	// The protocol as the proxy saw it.
	if n := len(proxy.calls(routeKickOff)); n != 3 {
		t.Errorf("%d kick-offs, want 3 (a 500 retried, then the 410's)", n)
	}
	if ts := proxy.calls(routeToken); len(ts) == 0 || ts[0].status != http.StatusOK {
		t.Errorf("token requests %+v: want SMART Backend Services", ts)
	}
	for _, h := range proxy.calls("") {
		if h.trusted {
			t.Errorf("%s %s carried %s: want SMART only", h.route, h.path, PartnerHeader)
		}
		if h.route != routeToken && h.route != routeConfig && !h.bearer {
			t.Errorf("%s %s without an access token", h.route, h.path)
		}
	}
	polls := proxy.calls(routeStatus)
	throttled := false
	for i, p := range polls {
		for _, prev := range polls[:i] {
			if prev.path == p.path && prev.retryAfter > 0 && p.at.Before(prev.answered.Add(prev.retryAfter)) {
				t.Errorf("poll of %s at %v, %v after a Retry-After of %v", p.path, p.at.Format(time.StampMilli), p.at.Sub(prev.answered), prev.retryAfter)
			}
		}
		if p.status == http.StatusTooManyRequests {
			throttled = true
			if i+1 < len(polls) && polls[i+1].path == p.path {
				t.Logf("poll after the 429 came %v later (Retry-After 2s)", polls[i+1].at.Sub(p.answered).Round(time.Millisecond))
			}
		}
	}
	if !throttled || len(polls) < 3 {
		t.Errorf("status polls %+v: want the injected 429 and a poll of each export", polls)
	}
	gone := 0
	for _, f := range proxy.calls(routeFile) {
		if f.status == http.StatusGone {
			gone++
		}
	}
	if gone != 1 {
		t.Errorf("%d file downloads answered 410, want 1", gone)
	}
	// NEW deletes the export whose file expired before kicking off again,
	// then the export it downloaded whole.
	dels := proxy.calls(routeDelete)
	if len(dels) != 2 || dels[0].status != http.StatusAccepted || strings.HasSuffix(dels[0].path, "/"+complete["id"].(string)) ||
		dels[1].status != http.StatusAccepted || !strings.HasSuffix(dels[1].path, "/"+complete["id"].(string)) {
		t.Errorf("DELETEs %+v, want the 410's export's, then %s", dels, complete["id"])
	}
	tl := string(nw.do("GET", "/v1/transfers/"+id+"/timeline?limit=1000", "", nil).body)
	for _, ev := range []string{`"member_match"`, `"bulk_kickoff"`, `"bulk_rekickoff"`, `"bulk_manifest"`, `"bulk_file"`, `"bulk_deleted"`} {
		if !strings.Contains(tl, ev) {
			t.Errorf("NEW's timeline has no %s event", ev)
		}
	}

	// A member OLD does not know, and a consent whose period is over:
	// refused by OLD's $member-match, failed on NEW, nothing kicked off.
	zed := map[string]any{"member_id": "NEW-78", "given": "Zed", "family": "Nobody", "birth_date": "1950-01-01", "sex": "M"}
	for _, c := range []struct {
		name, card string
		member     map[string]any
		start, end time.Time
		want       string
	}{
		{"no_match", "M999999", zed, now.AddDate(0, -1, 0), now.AddDate(1, 0, 0), transfer.ErrorNoMatch},
		{"consent_denied", "M100001", aliceNew, now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0), transfer.ErrorConsentDenied},
	} {
		id := nw.create("two-import-"+c.name, twoImportRequest(c.member, c.card, c.start, c.end))
		tr := nw.await(id, "failed", 20*time.Second)
		if errInfo, _ := tr["error"].(map[string]any); errInfo == nil || errInfo["type"] != c.want {
			t.Errorf("%s: transfer %v, want failed %s", c.name, tr, c.want)
		}
	}
	matches := proxy.calls(routeMatch)
	if len(matches) != 3 || matches[1].status != http.StatusUnprocessableEntity || matches[2].status != http.StatusUnprocessableEntity {
		t.Errorf("member-match calls %+v: want 200, then 422 twice", matches)
	}
	// OLD recorded each $member-match as a transfer: the 422s failed with
	// the same error types the imports ended with. Newest first.
	var outcomes []string
	for _, it := range old.do("GET", "/v1/transfers?direction=export&partner_id=new-payer", "", nil).json(t)["items"].([]any) {
		tr := it.(map[string]any)
		if old.operation(tr["id"].(string)) != pdex.OperationMemberMatch {
			continue
		}
		o := tr["state"].(string)
		if e, _ := tr["error"].(map[string]any); e != nil {
			o = e["type"].(string)
		}
		outcomes = append(outcomes, o)
	}
	if got := strings.Join(outcomes, ","); got != "consent_denied,no_match,complete" {
		t.Errorf("OLD's $member-match transfers %s, want consent_denied,no_match,complete", got)
	}
	if n := len(proxy.calls(routeKickOff)); n != 3 {
		t.Errorf("refused matches kicked off exports: %d kick-offs", n)
	}

	// Both served exports end, withdrawn on NEW's DELETEs: the complete
	// one complete, the 410's one cancelled (NEW gave it up).
	for _, s := range served {
		sid := s["id"].(string)
		old.awaitClosed(sid)
		st := old.do("GET", "/v1/transfers/"+sid, "", nil).json(t)
		switch {
		case sid == complete["id"]:
			if st["state"] != "complete" {
				t.Errorf("served export %s ended %v", sid, st["state"])
			}
		default:
			if e, _ := st["error"].(map[string]any); st["state"] != "failed" || e == nil || e["type"] != transfer.ErrorCancelled {
				t.Errorf("served export %s (the 410's) ended %v %v, want failed cancelled", sid, st["state"], st["error"])
			}
		}
		if exp, _ := st["export"].(map[string]any); exp == nil || exp["withdrawn"] != true {
			t.Errorf("served export %s: files not withdrawn: %v", sid, st["export"])
		}
	}
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
}
