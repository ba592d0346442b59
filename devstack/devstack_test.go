package devstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/api/temporalproto"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// saveHistory writes the transfer's workflow history to
// $P2P_RECORD_HISTORIES/name.json, for the replay test in workflows/: run
// `P2P_RECORD_HISTORIES=$PWD/workflows/testdata/histories go test ./devstack/`
// and commit the files when the workflow's behaviour changes on purpose.
func (e *e2e) saveHistory(id, name string) {
	e.t.Helper()
	e.saveWorkflowHistory(workflows.WorkflowID(id), name)
}

// saveWorkflowHistory is saveHistory for any workflow, by workflow id.
func (e *e2e) saveWorkflowHistory(workflowID, name string) {
	e.t.Helper()
	e.saveRunHistory(workflowID, "", name)
}

// saveRunHistory is saveWorkflowHistory for one run of the workflow (""
// the latest): a workflow that continued as new has one history per run.
func (e *e2e) saveRunHistory(workflowID, runID, name string) {
	e.t.Helper()
	dir := os.Getenv("P2P_RECORD_HISTORIES")
	if dir == "" {
		return
	}
	it := e.s.Client.GetWorkflowHistory(context.Background(), workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			e.t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	// Committed histories hold plain payloads: the replay test has no
	// payload key, and needs none to check determinism.
	if err := proxy.VisitPayloads(context.Background(), h, proxy.VisitPayloadsOptions{
		Visitor: func(_ *proxy.VisitPayloadsContext, p []*commonpb.Payload) ([]*commonpb.Payload, error) {
			return e.s.Codec.Decode(p)
		},
	}); err != nil {
		e.t.Fatal(err)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// e2e drives one in-process stack over HTTP, as a client would.
type e2e struct {
	t *testing.T
	s *Stack
}

func startStack(t *testing.T) *e2e {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &e2e{t: t, s: s}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return m
}

func (e *e2e) do(method, path, key string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.s.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.s.Tokens[roleFor(method, path)])
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// roleFor is the dev client a request goes as: transfers are submitted by
// the submitter, reviews decided by the reviewer (a person), and the rest
// read by the admin, which every /v1 route takes (the public ones ignore
// it).
func roleFor(method, path string) string {
	switch {
	case method == http.MethodPost && path == "/v1/transfers":
		return "submitter"
	case method == http.MethodPost && strings.HasSuffix(path, "/review"):
		return "reviewer"
	}
	return "admin"
}

// request is a transfer request body for the demo member set.
func request(member map[string]any, consentEnd time.Time) map[string]any {
	now := time.Now().UTC()
	return map[string]any{
		"partner_id": SandboxPartnerID,
		"member":     member,
		"consent": map[string]any{
			"id": "consent-1", "status": "active", "scope": "regular",
			"period":     map[string]any{"start": now.AddDate(0, -1, 0).Format(time.RFC3339), "end": consentEnd.Format(time.RFC3339)},
			"granted_at": now.AddDate(0, -1, 0).Format(time.RFC3339),
		},
		"data_scope": map[string]any{"resource_types": []string{"Patient", "Coverage", "ExplanationOfBenefit", "Encounter", "Condition"}},
	}
}

var alice = map[string]any{"given": "Alice", "family": "Nguyen", "birth_date": "1985-04-12", "sex": "F"}

// await polls the transfer until it is in state want or time runs out.
func (e *e2e) await(id, want string, within time.Duration) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(within)
	var tr map[string]any
	for time.Now().Before(deadline) {
		tr = e.do("GET", "/v1/transfers/"+id, "", nil).json(e.t)
		if tr["state"] == want {
			return tr
		}
		if tr["state"] == "complete" || tr["state"] == "failed" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("transfer %s is %v, want %s within %v: %v", id, tr["state"], want, within, tr)
	return nil
}

func (e *e2e) create(key string, body map[string]any) string {
	e.t.Helper()
	r := e.do("POST", "/v1/transfers", key, body)
	if r.status != http.StatusAccepted {
		e.t.Fatalf("POST /v1/transfers: %d %s", r.status, r.body)
	}
	return r.json(e.t)["id"].(string)
}

func (e *e2e) states(id string) []string {
	e.t.Helper()
	tl := e.do("GET", "/v1/transfers/"+id+"/timeline?limit=1000", "", nil).json(e.t)
	var states []string
	for _, ev := range tl["events"].([]any) {
		if s, ok := ev.(map[string]any)["state"].(string); ok && s != "" {
			states = append(states, s)
		}
	}
	return states
}

// operation is the "operation" of the transfer's initiated event: what a
// partner's request on /fhir created it for ("bulk-export",
// pdex.OperationMemberMatch), "" for others.
func (e *e2e) operation(id string) string {
	e.t.Helper()
	tl := e.do("GET", "/v1/transfers/"+id+"/timeline?limit=1000", "", nil).json(e.t)
	evs := tl["events"].([]any)
	if len(evs) == 0 {
		return ""
	}
	d, _ := evs[0].(map[string]any)["detail"].(map[string]any)
	op, _ := d["operation"].(string)
	return op
}

func TestTransferReachesCompleteWithSignedExport(t *testing.T) {
	e := startStack(t)
	start := time.Now()
	id := e.create("happy-path-0001", request(alice, time.Now().AddDate(1, 0, 0)))
	tr := e.await(id, "complete", 10*time.Second)
	t.Logf("transfer complete in %v", time.Since(start))
	e.saveHistory(id, "complete")

	want := "initiated,identity_pending,consent_verified,payload_prepared,sent,acknowledged,complete"
	if got := strings.Join(e.states(id), ","); got != want {
		t.Errorf("timeline states %s, want %s", got, want)
	}
	ident := tr["identity"].(map[string]any)
	if ident["member_id"] != "M100001" || ident["status"] != "resolved" || ident["rationale"] == nil {
		t.Errorf("identity %v", ident)
	}
	// The rationale's field weights add up to the score, and the
	// resolution linked what the partner presented to the member, made
	// by the rule (or score) that decided, in this transfer.
	rationale := ident["rationale"].(map[string]any)
	total := 0.0
	fields, _ := rationale["fields"].([]any)
	for _, f := range fields {
		total += f.(map[string]any)["weight"].(float64)
	}
	if score := ident["score"].(float64); len(fields) == 0 || math.Abs(total-score) > 1e-9 {
		t.Errorf("%d rationale fields add up to %v, score %v", len(fields), total, score)
	}
	wantKind := "rule"
	if rationale["rule"] == "fellegi_sunter" {
		wantKind = "score"
	}
	if links, _ := ident["link_history"].([]any); len(links) != 1 {
		t.Errorf("link history %v, want one link", ident["link_history"])
	} else if l := links[0].(map[string]any); l["member_id"] != "M100001" || l["made_by"].(map[string]any)["kind"] != wantKind ||
		l["made_by"].(map[string]any)["rule"] != rationale["rule"] || l["provenance"].(map[string]any)["transfer_id"] != id {
		t.Errorf("link %v, want M100001 made by %s %v in %s", l, wantKind, rationale["rule"], id)
	}
	exp := tr["export"].(map[string]any)
	if exp["receipt_id"] == "" || exp["excluded_sensitive"].(float64) != 1 {
		t.Errorf("export %v: want a receipt and one sensitive resource left out (regular consent)", exp)
	}

	// The partner received it exactly once.
	n := 0
	for _, d := range e.s.Sandbox.Deliveries() {
		if d.TransferID == id {
			n++
		}
	}
	if n != 1 {
		t.Errorf("sandbox deliveries of %s: %d, want 1", id, n)
	}

	// The manifest's signature verifies with the published JWKS, checked
	// by an independent JOSE implementation.
	jwksRes := e.do("GET", "/.well-known/jwks.json", "", nil)
	set, err := jwk.Parse(jwksRes.body)
	if err != nil {
		t.Fatal(err)
	}
	// ... fetched as a partner's auditor would, from the API.
	sigRes := e.do("GET", "/v1/transfers/"+id+"/manifest", "", nil)
	if sigRes.status != http.StatusOK || sigRes.header.Get("Content-Type") != "application/jose" {
		t.Fatalf("GET manifest: %d %s", sigRes.status, sigRes.header.Get("Content-Type"))
	}
	sig := store.Artifact{Data: sigRes.body}
	payload, err := jws.Verify(sig.Data, jws.WithKeySet(set, jws.WithRequireKid(true)))
	if err != nil {
		t.Fatalf("signature does not verify with the JWKS: %v", err)
	}
	sum := sha256.Sum256(payload)
	if hex.EncodeToString(sum[:]) != exp["manifest_sha256"] {
		t.Errorf("signed manifest digest %x, transfer says %v", sum, exp["manifest_sha256"])
	}
	var manifest struct {
		Files []struct {
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	if err := json.Unmarshal(payload, &manifest); err != nil || len(manifest.Files) == 0 {
		t.Fatalf("manifest %s: %v", payload, err)
	}
	for _, f := range manifest.Files {
		a, err := e.s.Store.GetArtifact(context.Background(), f.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if s := sha256.Sum256(a.Data); hex.EncodeToString(s[:]) != f.SHA256 {
			t.Errorf("file digest mismatch for %s", f.SHA256)
		}
	}
}

func TestOutcomes(t *testing.T) {
	e := startStack(t)
	year := time.Now().AddDate(1, 0, 0)

	t.Run("unknown member fails no_match", func(t *testing.T) {
		id := e.create("unknown-member-01", request(map[string]any{"given": "Nobody", "family": "Known", "birth_date": "1950-05-05"}, year))
		tr := e.await(id, "failed", 10*time.Second)
		if tr["error"].(map[string]any)["type"] != "no_match" {
			t.Errorf("error %v", tr["error"])
		}
		e.saveHistory(id, "no_match")
	})
	t.Run("expired consent fails consent_denied", func(t *testing.T) {
		body := request(alice, year)
		body["consent"].(map[string]any)["period"] = map[string]any{
			"start": time.Now().AddDate(-2, 0, 0).Format(time.RFC3339), "end": time.Now().AddDate(0, -1, 0).Format(time.RFC3339)}
		id := e.create("expired-consent-01", body)
		tr := e.await(id, "failed", 10*time.Second)
		if tr["error"].(map[string]any)["type"] != "consent_denied" {
			t.Errorf("error %v", tr["error"])
		}
		e.saveHistory(id, "consent_denied")
	})
	t.Run("two equal candidates go to manual review; approving one completes", func(t *testing.T) {
		id := e.create("manual-review-01", request(map[string]any{"given": "Jordan", "family": "Lee", "birth_date": "1995-03-08"}, year))
		tr := e.await(id, "manual_review", 10*time.Second)
		cands := tr["identity"].(map[string]any)["candidates"].([]any)
		if len(cands) != 2 {
			t.Fatalf("candidates %v, want 2", cands)
		}
		bad := e.do("POST", "/v1/transfers/"+id+"/review", "", map[string]any{"decision": "approve", "member_id": "M100001", "reason": "wrong one"})
		if bad.status != http.StatusUnprocessableEntity && bad.status != http.StatusBadRequest {
			t.Errorf("approving a non-candidate: %d %s", bad.status, bad.body)
		}
		decision := map[string]any{"decision": "approve", "member_id": "M100007", "reason": "phone on file matches"}
		ok := e.do("POST", "/v1/transfers/"+id+"/review", "", decision)
		if ok.status/100 != 2 {
			t.Fatalf("review: %d %s", ok.status, ok.body)
		}
		// A client retrying after a lost answer gets the decision's
		// answer, not 409: while the workflow runs (the same update)
		// and after it ended (the store shows the decision taken).
		if r := e.do("POST", "/v1/transfers/"+id+"/review", "", decision); r.status/100 != 2 {
			t.Errorf("review retried at once: %d %s", r.status, r.body)
		}
		tr = e.await(id, "complete", 10*time.Second)
		e.awaitClosed(id)
		if r := e.do("POST", "/v1/transfers/"+id+"/review", "", decision); r.status/100 != 2 {
			t.Errorf("review retried after completion: %d %s", r.status, r.body)
		}
		if tr["identity"].(map[string]any)["member_id"] != "M100007" {
			t.Errorf("identity %v", tr["identity"])
		}
		e.saveHistory(id, "manual_review_approved")
		again := e.do("POST", "/v1/transfers/"+id+"/review", "", map[string]any{"decision": "reject", "reason": "late"})
		if again.status != http.StatusConflict {
			t.Errorf("review after completion: %d, want 409", again.status)
		}

		// The same presentation again is not reviewed twice: the
		// reviewer's decision resolves it, and the rationale says so.
		id2 := e.create("manual-review-01-again", request(map[string]any{"given": "Jordan", "family": "Lee", "birth_date": "1995-03-08"}, year))
		tr = e.await(id2, "complete", 10*time.Second)
		ident := tr["identity"].(map[string]any)
		if ident["member_id"] != "M100007" || ident["rationale"].(map[string]any)["rule"] != "remembered_review" {
			t.Errorf("same presentation again: identity %v", ident)
		}
		if slices.Contains(e.states(id2), "manual_review") {
			t.Errorf("same presentation again went through manual review: %v", e.states(id2))
		}
		// The review linked the presentation; remembering it added nothing.
		if links, _ := ident["link_history"].([]any); len(links) != 1 {
			t.Errorf("link history %v, want the review's link", ident["link_history"])
		} else if l := links[0].(map[string]any); l["member_id"] != "M100007" || l["made_by"].(map[string]any)["kind"] != "reviewer" ||
			l["made_by"].(map[string]any)["reviewer"] != "Dev Reviewer" || l["provenance"].(map[string]any)["transfer_id"] != id {
			t.Errorf("link %v, want M100007 made by reviewer Dev Reviewer in %s", l, id)
		}
	})
	t.Run("rejecting in manual review fails review_rejected, with the reviewer on record", func(t *testing.T) {
		// Another presentation of the same pair (with their shared
		// address), so that the approval above is not remembered for it.
		id := e.create("manual-review-02", request(map[string]any{"given": "Jordan", "family": "Lee", "birth_date": "1995-03-08",
			"address": map[string]any{"street": "18 Cedar Way", "city": "Portland", "state": "OR", "postal_code": "97201"}}, year))
		e.await(id, "manual_review", 10*time.Second)
		if r := e.do("POST", "/v1/transfers/"+id+"/review", "", map[string]any{"decision": "reject", "reason": "neither candidate confirmed"}); r.status/100 != 2 {
			t.Fatalf("review: %d %s", r.status, r.body)
		}
		tr := e.await(id, "failed", 10*time.Second)
		if tr["error"].(map[string]any)["type"] != "review_rejected" || tr["identity"].(map[string]any)["reviewed_by"] != "Dev Reviewer" {
			t.Errorf("transfer %v", tr)
		}
		// The reason is kept by digest: the text is the transfer's
		// artifact, the audit log has its keyed digest only.
		note := one(t, e.auditLog(id), "review_note", "")
		sum := sha256.Sum256([]byte("neither candidate confirmed"))
		key, err := e.s.Store.PresentationKey(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, has := note.Detail["reason"]; has || note.Detail["reason_sha256"] != nil ||
			note.Detail["reason_hmac"] != transfer.KeyedDigest(key, "neither candidate confirmed") {
			t.Errorf("review note detail %v, want the reason's digest only", note.Detail)
		}
		if a, err := e.s.Store.GetArtifact(context.Background(), hex.EncodeToString(sum[:])); err != nil || string(a.Data) != "neither candidate confirmed" {
			t.Errorf("review note artifact: %v", err)
		}
		d := one(t, e.auditLog(id), "review_decision", "")
		if d.Actor != "reviewer:Dev Reviewer" || d.Detail["decision"] != "reject" || d.Detail["reviewer"] != "Dev Reviewer" {
			t.Errorf("review decision %+v", d)
		}
		e.saveHistory(id, "manual_review_rejected")
	})
}

func TestIdempotencyAgainstRealWorkflows(t *testing.T) {
	e := startStack(t)
	body := request(alice, time.Now().AddDate(1, 0, 0))
	first := e.do("POST", "/v1/transfers", "same-key-000001", body)
	again := e.do("POST", "/v1/transfers", "same-key-000001", body)
	if first.status != 202 || again.status != 202 || !bytes.Equal(first.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %d equal=%v replayed=%q", first.status, again.status, bytes.Equal(first.body, again.body), again.header.Get("Idempotent-Replayed"))
	}
	if r := e.do("POST", "/v1/transfers", "", body); r.status != 400 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("no key: %d %s", r.status, r.header.Get("Content-Type"))
	}
	other := request(map[string]any{"given": "Maria", "family": "Garcia", "birth_date": "1990-07-21"}, time.Now().AddDate(1, 0, 0))
	if r := e.do("POST", "/v1/transfers", "same-key-000001", other); r.status != 422 {
		t.Errorf("same key, other body: %d", r.status)
	}
	bad := request(map[string]any{"given": "Alice", "family": "Nguyen", "birth_date": "1985-13-45"}, time.Now().AddDate(1, 0, 0))
	if r := e.do("POST", "/v1/transfers", "malformed-0001", bad); r.status != 400 || !bytes.Contains(r.body, []byte("birth_date")) || bytes.Contains(r.body, []byte("1985-13-45")) {
		t.Errorf("malformed body: %d %s (want 400 naming birth_date without echoing it)", r.status, r.body)
	}

	// 50 concurrent identical POSTs: one transfer, one workflow, one delivery.
	conc := request(map[string]any{"given": "Robert", "family": "Okafor", "birth_date": "1972-11-03"}, time.Now().AddDate(1, 0, 0))
	var wg sync.WaitGroup
	bodies := make([][]byte, 50)
	codes := make([]int, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do("POST", "/v1/transfers", "concurrent-000001", conc)
			bodies[i], codes[i] = r.body, r.status
		}()
	}
	wg.Wait()
	var id string
	for i := range 50 {
		switch codes[i] {
		case 202:
			var m map[string]any
			if err := json.Unmarshal(bodies[i], &m); err != nil {
				t.Fatal(err)
			}
			if id == "" {
				id = m["id"].(string)
			} else if m["id"] != id {
				t.Fatalf("two transfers for one key: %s and %v", id, m["id"])
			}
		case 409:
		default:
			t.Fatalf("concurrent POST %d: %d %s", i, codes[i], bodies[i])
		}
	}
	e.await(id, "complete", 15*time.Second)
	page := e.do("GET", "/v1/transfers?limit=200", "", nil).json(t)
	n := 0
	for _, it := range page["items"].([]any) {
		if strings.Contains(fmt.Sprint(it), "Okafor") {
			t.Fatal("a transfer listing shows PHI")
		}
	}
	deliveries := 0
	for _, d := range e.s.Sandbox.Deliveries() {
		if d.TransferID == id {
			deliveries++
		}
	}
	for _, it := range page["items"].([]any) {
		if it.(map[string]any)["id"] == id {
			n++
		}
	}
	if n != 1 || deliveries != 1 {
		t.Errorf("transfers with the key: %d, deliveries: %d; want 1 and 1", n, deliveries)
	}
	total := len(page["items"].([]any))
	if total != 2 { // the alice transfer above and this one
		t.Errorf("%d transfers in all, want 2", total)
	}
}
