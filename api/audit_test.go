package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/internal/rfc6962"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

var auditT0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

// auditEnv is a server whose key signs checkpoints, over a log of 13
// events: transfers a and b with partner p1, c with p2, each created, then
// a resolved and sent, b reviewed, c failed.
func auditEnv(t *testing.T) *env {
	t.Helper()
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(d *Deps) { d.Keys = signer })
	ctx := context.Background()
	at := func(i int) time.Time { return auditT0.Add(time.Duration(i) * time.Minute) }
	for i, id := range []string{"a", "b", "c"} {
		partner := "p1"
		if id == "c" {
			partner = "p2"
		}
		if _, err := e.store.CreateTransfer(ctx, store.NewTransfer{
			ClientID: "client-x", IdempotencyKey: "key-" + id, Fingerprint: "fp",
			Transfer: transfer.Transfer{ID: id, ClientID: "client-x", PartnerID: partner, CorrelationID: id,
				State: transfer.StateInitiated, CreatedAt: at(i), UpdatedAt: at(i)},
			Event: transfer.Event{At: at(i), State: transfer.StateInitiated, Actor: "client:client-x", Type: "state"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		id string
		ev transfer.Event
	}{
		{"a", transfer.Event{State: transfer.StateIdentityPending, Type: "state", Actor: "workflow", Detail: map[string]any{"member_id": "M100001", "score": 12.5}}},
		{"a", transfer.Event{State: transfer.StateConsentVerified, Type: "state", Actor: "workflow"}},
		{"a", transfer.Event{State: transfer.StatePayloadPrepared, Type: "state", Actor: "workflow", Detail: map[string]any{"manifest_sha256": "ab"}}},
		{"a", transfer.Event{State: transfer.StateSent, Type: "state", Actor: "workflow"}},
		{"b", transfer.Event{State: transfer.StateManualReview, Type: "state", Actor: "workflow"}},
		{"b", transfer.Event{Type: "review_decision", Actor: "reviewer:kim", Detail: map[string]any{"decision": "approve", "member_id": "M100004"}}},
		// Free text a reviewer typed: the FHIR form must not copy it.
		{"b", transfer.Event{Type: "review_note", Actor: "reviewer:kim", Detail: map[string]any{"reason": "Zelphina Quarrington called"}}},
		{"c", transfer.Event{State: transfer.StateFailed, Type: "state", Actor: "workflow", Detail: map[string]any{"error_type": "no_match"}}},
		{"a", transfer.Event{State: transfer.StateAcknowledged, Type: "state", Actor: "partner:p1"}},
		{"a", transfer.Event{State: transfer.StateComplete, Type: "state", Actor: "workflow"}},
	}
	for i, s := range steps {
		s.ev.At = at(10 + i)
		s.ev.Key = fmt.Sprintf("k%d", i)
		if _, err := e.store.ApplyChange(ctx, s.id, store.Change{Event: s.ev, State: s.ev.State}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// wireAuditEvent is an AuditEvent line as openapi.yaml describes it.
type wireAuditEvent struct {
	Position    int64          `json:"position"`
	TransferID  string         `json:"transfer_id"`
	PartnerID   *string        `json:"partner_id"`
	Seq         int64          `json:"seq"`
	At          time.Time      `json:"at"`
	State       string         `json:"state"`
	Actor       string         `json:"actor"`
	Type        string         `json:"type"`
	Detail      map[string]any `json:"detail"`
	EventKey    string         `json:"event_key"`
	LeafVersion int            `json:"leaf_version"`
	Hash        []byte         `json:"hash"`
}

// recomputeLeaf is the leaf hash of a line from what the line says alone,
// as openapi.yaml documents the encoding, written here without the
// package that encodes leaves.
func recomputeLeaf(t *testing.T, l wireAuditEvent) [32]byte {
	t.Helper()
	at := l.At.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	var detail any // nil: null
	if l.Detail != nil {
		detail = l.Detail // encoding/json sorts map keys
	}
	var fields []any
	switch l.LeafVersion {
	case 1:
		if l.PartnerID != nil {
			t.Errorf("position %d: a version 1 line shows partner_id, which its leaf does not cover", l.Position)
		}
		fields = []any{"p2p-audit/1", l.TransferID, l.Seq, at, l.State, l.Actor, l.Type, l.EventKey, detail}
	case 2:
		if l.PartnerID == nil {
			t.Fatalf("position %d: a version 2 line without partner_id", l.Position)
		}
		fields = []any{"p2p-audit/2", l.TransferID, *l.PartnerID, l.Seq, at, l.State, l.Actor, l.Type, l.EventKey, detail}
	default:
		t.Fatalf("position %d: leaf_version %d", l.Position, l.LeafVersion)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(append([]byte{0}, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...))
}

// auditLines GETs path and decodes each line of its NDJSON answer.
func auditLines[T any](t *testing.T, e *env, path, contentType string) []T {
	t.Helper()
	w := e.do(http.MethodGet, path, "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != contentType {
		t.Fatalf("GET %s: Content-Type %q, want %q", path, ct, contentType)
	}
	var out []T
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		var v T
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("GET %s: line %q: %v", path, sc.Text(), err)
		}
		if dec.More() {
			t.Fatalf("GET %s: line %q holds more than one object", path, sc.Text())
		}
		out = append(out, v)
	}
	if !bytes.HasSuffix(w.Body.Bytes(), []byte("\n")) && w.Body.Len() > 0 {
		t.Errorf("GET %s: the last line is not terminated", path)
	}
	return out
}

func positions(ls []wireAuditEvent) []int64 {
	var out []int64
	for _, l := range ls {
		out = append(out, l.Position)
	}
	return out
}

func TestAuditEventsNDJSON(t *testing.T) {
	e := auditEnv(t)
	all := auditLines[wireAuditEvent](t, e, "/v1/audit/events", "application/x-ndjson")
	if len(all) != 13 {
		t.Fatalf("%d events, want 13", len(all))
	}
	for i, l := range all {
		if l.Position != int64(i) {
			t.Fatalf("line %d has position %d", i, l.Position)
		}
		// The hash is SHA-256(0x00 || the canonical leaf) of what the line
		// says, and of nothing else.
		if h := recomputeLeaf(t, l); !bytes.Equal(h[:], l.Hash) || l.LeafVersion != 2 {
			t.Errorf("line %d: hash %x is not %x, its leaf's from the line (version %d)", i, l.Hash, h, l.LeafVersion)
		}
		if want := map[string]string{"a": "p1", "b": "p1", "c": "p2"}[l.TransferID]; l.PartnerID == nil || *l.PartnerID != want {
			t.Errorf("line %d: partner %v, want %s", i, l.PartnerID, want)
		}
	}
	at := func(i int) string { return auditT0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339) }
	cases := []struct {
		query string
		want  []int64
	}{
		{"transfer_id=b", []int64{1, 7, 8, 9}},
		{"partner_id=p2", []int64{2, 10}},
		{"partner_id=p1&type=review_note", []int64{9}},
		{"type=review_decision", []int64{8}},
		{"since=" + at(12) + "&until=" + at(15), []int64{5, 6, 7}},
		{"since=" + at(19), []int64{12}},
		{"until=" + at(1), []int64{0}},
		{"transfer_id=nope", nil},
		{"format=ndjson&transfer_id=c", []int64{2, 10}},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			got := positions(auditLines[wireAuditEvent](t, e, "/v1/audit/events?"+c.query, "application/x-ndjson"))
			if !slices.Equal(got, c.want) {
				t.Errorf("positions %v, want %v", got, c.want)
			}
		})
	}
}

func TestAuditEventsBadParameters(t *testing.T) {
	e := auditEnv(t)
	for _, q := range []string{"since=yesterday", "until=2026-13-01T00:00:00Z", "format=xml", "transfer_id="} {
		t.Run(q, func(t *testing.T) {
			problem(t, e.do(http.MethodGet, "/v1/audit/events?"+q, ""), http.StatusBadRequest, ProblemValidation)
		})
	}
}

func TestAuditEventsFHIR(t *testing.T) {
	e := auditEnv(t)
	w := e.do(http.MethodGet, "/v1/audit/events?format=fhir", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/fhir+ndjson" {
		t.Fatalf("%d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if strings.Contains(w.Body.String(), "Zelphina") {
		t.Fatalf("the FHIR form copies free text of an event's detail: %s", w.Body)
	}
	rs := auditLines[fhirAuditEvent](t, e, "/v1/audit/events?format=fhir", "application/fhir+ndjson")
	if len(rs) != 13 {
		t.Fatalf("%d resources, want 13", len(rs))
	}
	ndjson := auditLines[wireAuditEvent](t, e, "/v1/audit/events", "application/x-ndjson")
	for i, r := range rs {
		checkFHIRAuditEvent(t, r)
		if r.ID != fmt.Sprintf("p2p-audit-%d", i) {
			t.Errorf("resource %d id %q", i, r.ID)
		}
		tr := r.Entity[0]
		if tr.What.Identifier.System != sysP2PTransfer || tr.What.Identifier.Value != ndjson[i].TransferID {
			t.Errorf("resource %d: transfer entity %+v", i, tr.What)
		}
		var hash []byte
		for _, d := range tr.Detail {
			if d.Type == "leaf_hash" {
				hash = d.ValueBase64Binary
			}
		}
		if !bytes.Equal(hash, ndjson[i].Hash) {
			t.Errorf("resource %d: leaf hash %x, want %x", i, hash, ndjson[i].Hash)
		}
		if got, _ := time.Parse(time.RFC3339Nano, r.Recorded); !got.Equal(ndjson[i].At) {
			t.Errorf("resource %d: recorded %s, want %s", i, r.Recorded, ndjson[i].At)
		}
	}
	type want struct {
		typ, action, outcome, member string
		requestor                    bool
	}
	for pos, w := range map[int]want{
		0:  {"rest", "C", "0", "", true},           // created by a client
		3:  {"110112", "E", "0", "M100001", false}, // identity: a query of the index
		5:  {"110106", "C", "0", "", false},        // payload prepared: export
		6:  {"110106", "R", "0", "", false},        // sent
		8:  {"110110", "U", "0", "M100004", true},  // a reviewer's decision
		10: {"110110", "E", "8", "", false},        // failed
	} {
		r := rs[pos]
		member := ""
		for _, en := range r.Entity[1:] {
			if en.What.Identifier.System == sysP2PMember {
				member = en.What.Identifier.Value
			}
		}
		if r.Type.Code != w.typ || r.Action != w.action || r.Outcome != w.outcome || member != w.member || r.Agent[0].Requestor != w.requestor {
			t.Errorf("resource %d: type %s action %s outcome %s member %q requestor %v, want %+v",
				pos, r.Type.Code, r.Action, r.Outcome, member, r.Agent[0].Requestor, w)
		}
	}
	got := auditLines[fhirAuditEvent](t, e, "/v1/audit/events?format=fhir&transfer_id=c", "application/fhir+ndjson")
	if len(got) != 2 || got[0].ID != "p2p-audit-2" || got[1].ID != "p2p-audit-10" {
		t.Errorf("filtered FHIR: %+v", got)
	}
}

// checkFHIRAuditEvent checks the R4 cardinalities and value sets of the
// elements we fill.
func checkFHIRAuditEvent(t *testing.T, r fhirAuditEvent) {
	t.Helper()
	switch {
	case r.ResourceType != "AuditEvent":
		t.Errorf("resourceType %q", r.ResourceType)
	case r.Type.System == "" || r.Type.Code == "":
		t.Errorf("%s: type %+v", r.ID, r.Type)
	case !strings.Contains("CRUDE", r.Action) || len(r.Action) != 1:
		t.Errorf("%s: action %q", r.ID, r.Action)
	case !slices.Contains([]string{"0", "4", "8", "12"}, r.Outcome):
		t.Errorf("%s: outcome %q", r.ID, r.Outcome)
	case len(r.Agent) == 0 || r.Agent[0].Who.Identifier == nil || r.Agent[0].Who.Identifier.Value == "":
		t.Errorf("%s: agent %+v", r.ID, r.Agent)
	case r.Source.Observer.Display != "p2p":
		t.Errorf("%s: source %+v", r.ID, r.Source)
	case len(r.Entity) == 0:
		t.Errorf("%s: no entity", r.ID)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Recorded); err != nil {
		t.Errorf("%s: recorded %q", r.ID, r.Recorded)
	}
}

func TestAuditEventsFHIRBundle(t *testing.T) {
	e := auditEnv(t)
	w := e.do(http.MethodGet, "/v1/audit/events?format=fhir-bundle&partner_id=p1", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/fhir+json" {
		t.Fatalf("%d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Timestamp    string `json:"timestamp"`
		Entry        []struct {
			Resource fhirAuditEvent `json:"resource"`
		} `json:"entry"`
	}
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("the bundle is not one JSON object: %v", err)
	}
	if b.ResourceType != "Bundle" || b.Type != "collection" || len(b.Entry) != 11 {
		t.Fatalf("bundle %s %s with %d entries, want a collection of 11", b.ResourceType, b.Type, len(b.Entry))
	}
	if _, err := time.Parse(time.RFC3339Nano, b.Timestamp); err != nil {
		t.Errorf("timestamp %q", b.Timestamp)
	}
	for _, en := range b.Entry {
		checkFHIRAuditEvent(t, en.Resource)
	}
	// An empty selection is an empty bundle, still valid JSON.
	w = e.do(http.MethodGet, "/v1/audit/events?format=fhir-bundle&transfer_id=none", "")
	var empty map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &empty); err != nil || len(empty["entry"].([]any)) != 0 {
		t.Errorf("empty bundle %s: %v", w.Body, err)
	}
}

// checkpointPayload verifies a checkpoint's JWS with lestrrat-go/jwx
// against the JWKS the server publishes, as a partner would, and returns
// its payload.
func checkpointPayload(t *testing.T, e *env, c Checkpoint) audit.CheckpointPayload {
	t.Helper()
	w := e.do(http.MethodGet, "/.well-known/jwks.json", "")
	if w.Code != http.StatusOK {
		t.Fatalf("jwks: %d", w.Code)
	}
	set, err := jwk.Parse(w.Body.Bytes())
	if err != nil {
		t.Fatalf("jwx cannot parse our JWKS: %v", err)
	}
	payload, err := jws.Verify([]byte(c.Jws), jws.WithKeySet(set, jws.WithRequireKid(true)))
	if err != nil {
		t.Fatalf("jwx does not verify the checkpoint: %v", err)
	}
	msg, _ := jws.Parse([]byte(c.Jws))
	if kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID(); kid != c.Kid {
		t.Errorf("kid %q, checkpoint says %q", kid, c.Kid)
	}
	var p audit.CheckpointPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.V != audit.CheckpointVersion || p.Size != c.Size || p.Root != base64.StdEncoding.EncodeToString(c.Root) {
		t.Fatalf("payload %+v does not match the checkpoint %+v", p, c)
	}
	if at, err := time.Parse(time.RFC3339Nano, p.Time); err != nil || !at.Equal(c.Time) {
		t.Errorf("payload time %q, checkpoint %v", p.Time, c.Time)
	}
	return p
}

// leavesOf returns the leaf hashes the NDJSON export lists.
func leavesOf(t *testing.T, e *env) [][32]byte {
	var out [][32]byte
	for _, l := range auditLines[wireAuditEvent](t, e, "/v1/audit/events", "application/x-ndjson") {
		out = append(out, [32]byte(l.Hash))
	}
	return out
}

func TestAuditCheckpoint(t *testing.T) {
	e := auditEnv(t)
	w := e.do(http.MethodGet, "/v1/audit/checkpoint", "")
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	c := decode[Checkpoint](t, w)
	checkpointPayload(t, e, c)
	leaves := leavesOf(t, e)
	if root := rfc6962.MTH(leaves); c.Size != 13 || !bytes.Equal(c.Root, root[:]) {
		t.Fatalf("checkpoint size %d root %x; the exported leaves give 13 and %x", c.Size, c.Root, root)
	}
	// While the log does not grow, the same checkpoint answers.
	again := decode[Checkpoint](t, e.do(http.MethodGet, "/v1/audit/checkpoint", ""))
	if again.Jws != c.Jws {
		t.Error("a second checkpoint was signed for the same log")
	}
	if _, err := e.store.ApplyChange(context.Background(), "c", store.Change{Event: transfer.Event{
		At: auditT0.Add(time.Hour), Type: "note", Actor: "ops", Key: "later"}}); err != nil {
		t.Fatal(err)
	}
	grown := decode[Checkpoint](t, e.do(http.MethodGet, "/v1/audit/checkpoint", ""))
	checkpointPayload(t, e, grown)
	if root := rfc6962.MTH(leavesOf(t, e)); grown.Size != 14 || !bytes.Equal(grown.Root, root[:]) {
		t.Fatalf("after an event: size %d root %x, want 14 and %x", grown.Size, grown.Root, root)
	}
	if cps, _ := e.store.Checkpoints(context.Background()); len(cps) != 2 {
		t.Errorf("%d checkpoints stored, want 2", len(cps))
	}
}

func TestAuditProof(t *testing.T) {
	e := auditEnv(t)
	leaves := leavesOf(t, e)
	for seq := range leaves {
		w := e.do(http.MethodGet, fmt.Sprintf("/v1/audit/proof?seq=%d", seq), "")
		if w.Code != http.StatusOK {
			t.Fatalf("seq %d: %d %s", seq, w.Code, w.Body)
		}
		p := decode[InclusionProof](t, w)
		cp := checkpointPayload(t, e, p.Checkpoint)
		root, _ := base64.StdEncoding.DecodeString(cp.Root)
		if p.Seq != int64(seq) || p.TreeSize != cp.Size || !bytes.Equal(p.LeafHash, leaves[seq][:]) {
			t.Fatalf("seq %d: proof %+v, leaf %x", seq, p, leaves[seq])
		}
		path := make([][32]byte, len(p.Path))
		for i, h := range p.Path {
			path[i] = [32]byte(h)
		}
		if !rfc6962.VerifyInclusion(uint64(seq), uint64(p.TreeSize), leaves[seq], path, [32]byte(root)) {
			t.Fatalf("seq %d: the proof does not verify (RFC 9162 §2.1.3.2)", seq)
		}
		// The proof is of this leaf at this position only.
		if seq > 0 && rfc6962.VerifyInclusion(uint64(seq), uint64(p.TreeSize), leaves[seq-1], path, [32]byte(root)) {
			t.Fatalf("seq %d: the proof verifies another leaf", seq)
		}
	}
	problem(t, e.do(http.MethodGet, "/v1/audit/proof?seq=13", ""), http.StatusNotFound, ProblemNotFound)
	problem(t, e.do(http.MethodGet, "/v1/audit/proof?seq=999999", ""), http.StatusNotFound, ProblemNotFound)
	for _, q := range []string{"seq=-1", "seq=abc", "", "seq=1.5"} {
		problem(t, e.do(http.MethodGet, "/v1/audit/proof?"+q, ""), http.StatusBadRequest, ProblemValidation)
	}
}
