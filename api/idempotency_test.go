package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

const key = "key-0000-0001"

func TestCreateTransferReplaysByteForByte(t *testing.T) {
	e := newEnv(t)
	first := e.post(key, body("sandbox"))
	if first.Code != http.StatusAccepted {
		t.Fatalf("first POST = %d %s", first.Code, first.Body)
	}
	if h := first.Header().Get("Idempotent-Replayed"); h != "" {
		t.Errorf("first answer Idempotent-Replayed = %q, want absent", h)
	}
	tr := decode[Transfer](t, first)
	if tr.State != TransferStateInitiated || tr.PartnerId != "sandbox" || deref(tr.CorrelationId) != "corr-1" ||
		tr.Links.Self != "/v1/transfers/"+tr.Id || tr.Links.Timeline != "/v1/transfers/"+tr.Id+"/timeline" {
		t.Errorf("transfer = %+v", tr)
	}
	if loc := first.Header().Get("Location"); loc != tr.Links.Self {
		t.Errorf("Location = %q, want %q", loc, tr.Links.Self)
	}

	for i := range 3 {
		again := e.post(key, body("sandbox"))
		if again.Code != first.Code || !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) {
			t.Fatalf("repeat %d = %d %s, want %d %s", i, again.Code, again.Body, first.Code, first.Body)
		}
		if h := again.Header().Get("Idempotent-Replayed"); h != "true" {
			t.Errorf("repeat %d Idempotent-Replayed = %q, want true", i, h)
		}
		if again.Header().Get("Location") != tr.Links.Self {
			t.Errorf("repeat %d Location = %q", i, again.Header().Get("Location"))
		}
	}
	if n := e.countTransfers(); n != 1 {
		t.Errorf("transfers = %d, want 1", n)
	}
	if got := e.engine.started(); len(got) != 1 || got[tr.Id] == 0 {
		t.Errorf("started = %v, want only %s", got, tr.Id)
	}
}

// The answer is the transfer as created even when the workflow has moved
// on before a concurrent twin stores it.
func TestCreateTransferBodyIsAsCreated(t *testing.T) {
	e := newEnv(t)
	first := e.post(key, body("sandbox"))
	tr := decode[Transfer](t, first)
	if _, err := e.store.ApplyChange(context.Background(), tr.Id, store.Change{
		Event: transfer.Event{At: time.Now(), State: transfer.StateIdentityPending, Actor: "workflow", Type: "state",
			Key: transfer.StateKey(transfer.StateIdentityPending)},
		State: transfer.StateIdentityPending,
	}); err != nil {
		t.Fatal(err)
	}
	again := e.post(key, body("sandbox"))
	if !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) {
		t.Errorf("replay after progress = %s, want %s", again.Body, first.Body)
	}
}

func TestCreateTransferConcurrent(t *testing.T) {
	e := newEnv(t)
	const n = 50
	answers := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = e.post(key, body("sandbox"))
		}()
	}
	close(start)
	wg.Wait()

	fresh := 0
	for i, w := range answers {
		if w.Code != http.StatusAccepted {
			t.Fatalf("answer %d = %d %s", i, w.Code, w.Body)
		}
		if !bytes.Equal(w.Body.Bytes(), answers[0].Body.Bytes()) {
			t.Errorf("answer %d body differs:\n%s\n%s", i, w.Body, answers[0].Body)
		}
		if w.Header().Get("Idempotent-Replayed") != "true" {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d answers not marked replayed, want exactly 1 (the creator)", fresh)
	}
	if c := e.countTransfers(); c != 1 {
		t.Errorf("transfers = %d, want 1", c)
	}
	id := decode[Transfer](t, answers[0]).Id
	if got := e.engine.started(); len(got) != 1 || got[id] == 0 {
		t.Errorf("started = %v, want only %s", got, id)
	}
}

func TestCreateTransferKeyRules(t *testing.T) {
	cases := []struct {
		name   string
		key    string
		status int
		slug   string
	}{
		{"no key", "", http.StatusBadRequest, ProblemIdempotencyKeyMissing},
		{"short key", "1234567", http.StatusBadRequest, ProblemIdempotencyKeyInvalid},
		{"long key", strings.Repeat("k", 256), http.StatusBadRequest, ProblemIdempotencyKeyInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			p := problem(t, e.post(c.key, body("sandbox")), c.status, c.slug)
			if !hasField(p, "Idempotency-Key") {
				t.Errorf("errors = %v, want Idempotency-Key named", fields(p))
			}
			if n := e.countTransfers(); n != 0 {
				t.Errorf("transfers = %d, want 0", n)
			}
		})
	}
	t.Run("bounds accepted", func(t *testing.T) {
		e := newEnv(t)
		for _, k := range []string{"12345678", strings.Repeat("k", 255)} {
			if w := e.post(k, body("sandbox")); w.Code != http.StatusAccepted {
				t.Errorf("key of %d chars = %d %s", len(k), w.Code, w.Body)
			}
		}
	})
}

func TestCreateTransferKeyReusedWithOtherBody(t *testing.T) {
	e := newEnv(t)
	if w := e.post(key, body("sandbox")); w.Code != http.StatusAccepted {
		t.Fatalf("first = %d %s", w.Code, w.Body)
	}
	problem(t, e.post(key, body("other-partner")), http.StatusUnprocessableEntity, ProblemIdempotencyKeyReused)
	if n := e.countTransfers(); n != 1 {
		t.Errorf("transfers = %d, want 1", n)
	}
}

// reformat re-encodes a JSON document with other whitespace, member order
// (maps sort keys) and, for the consent period, another offset for the same
// instant.
func reformat(t *testing.T, doc string) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	v["consent"].(map[string]any)["period"].(map[string]any)["start"] = "2025-01-01T01:00:00+01:00"
	b, err := json.MarshalIndent(v, "", "\t\t")
	if err != nil {
		t.Fatal(err)
	}
	return "\n  " + string(b) + "\n\n"
}

func TestCreateTransferSemanticallyEqualBodyReplays(t *testing.T) {
	e := newEnv(t)
	first := e.post(key, body("sandbox"))
	again := e.post(key, reformat(t, body("sandbox")))
	if again.Code != http.StatusAccepted || !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) {
		t.Fatalf("reformatted repeat = %d %s, want %s", again.Code, again.Body, first.Body)
	}
	if again.Header().Get("Idempotent-Replayed") != "true" {
		t.Error("reformatted repeat not marked replayed")
	}
}

// crash creates a transfer under key as the first request would and then
// "crashes": no workflow start, no stored answer.
func crash(t *testing.T, e *env, key, doc string) string {
	t.Helper()
	return crashAs(t, e, key, doc, "0190f0aa-0000-7000-8000-000000000001", time.Minute)
}

// crashAs is crash for transfer id, accepted age ago.
func crashAs(t *testing.T, e *env, key, doc, id string, age time.Duration) string {
	t.Helper()
	var b NewTransfer
	if err := json.Unmarshal([]byte(doc), &b); err != nil {
		t.Fatal(err)
	}
	fp, err := fingerprint(b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Add(-age).Truncate(time.Microsecond)
	res, err := e.store.CreateTransfer(context.Background(), store.NewTransfer{
		ClientID: testClient, IdempotencyKey: key, Fingerprint: fp,
		Transfer: transfer.Transfer{ID: id, ClientID: testClient, PartnerID: partnerOf(b),
			State: transfer.StateInitiated, CreatedAt: now, UpdatedAt: now},
		Request: toRequest(b),
		Event: transfer.Event{At: now, State: transfer.StateInitiated, Actor: "client:" + testClient, Type: "state",
			Key: transfer.StateKey(transfer.StateInitiated)},
	})
	if err != nil || !res.Created {
		t.Fatalf("crash create = %+v, %v", res, err)
	}
	return id
}

func TestCreateTransferCompletesPendingRecord(t *testing.T) {
	e := newEnv(t)
	id := crash(t, e, key, body("sandbox"))

	w := e.post(key, body("sandbox"))
	if w.Code != http.StatusAccepted {
		t.Fatalf("retry = %d %s", w.Code, w.Body)
	}
	if tr := decode[Transfer](t, w); tr.Id != id || tr.State != TransferStateInitiated {
		t.Errorf("retry answered %+v, want the crashed transfer %s", tr, id)
	}
	if w.Header().Get("Idempotent-Replayed") != "true" {
		t.Error("retry of a transfer it did not create not marked replayed")
	}
	if got := e.engine.started(); got[id] == 0 {
		t.Errorf("started = %v, want %s", got, id)
	}
	rec, err := e.store.GetIdempotency(context.Background(), testClient, key)
	if err != nil || rec.Status != store.IdempotencyComplete || !bytes.Equal(rec.ResponseBody, w.Body.Bytes()) {
		t.Errorf("record = %+v, %v; want complete with the answer", rec, err)
	}
	if n := e.countTransfers(); n != 1 {
		t.Errorf("transfers = %d, want 1", n)
	}
}

func TestCreateTransferStartFailureThenRetry(t *testing.T) {
	e := newEnv(t)
	e.engine.set(func(e *fakeEngine) { e.startErr = errBoom })
	p := problem(t, e.post(key, body("sandbox")), http.StatusServiceUnavailable, ProblemUnavailable)
	if strings.Contains(deref(p.Detail), "10.0.0.7") {
		t.Errorf("503 leaks the engine error: %s", deref(p.Detail))
	}
	rec, err := e.store.GetIdempotency(context.Background(), testClient, key)
	if err != nil || rec.Status != store.IdempotencyPending {
		t.Fatalf("record after failed start = %+v, %v; want pending", rec, err)
	}

	e.engine.set(func(e *fakeEngine) { e.startErr = nil })
	w := e.post(key, body("sandbox"))
	if w.Code != http.StatusAccepted || decode[Transfer](t, w).Id != rec.TransferID {
		t.Fatalf("retry = %d %s, want 202 for %s", w.Code, w.Body, rec.TransferID)
	}
	again := e.post(key, body("sandbox"))
	if !bytes.Equal(again.Body.Bytes(), w.Body.Bytes()) {
		t.Errorf("later replay differs: %s vs %s", again.Body, w.Body)
	}
	if n := e.countTransfers(); n != 1 {
		t.Errorf("transfers = %d, want 1", n)
	}
}

// A record whose start keeps failing does not hold back the records
// behind it; a run of failures in a row (Temporal down) ends the pass
// rather than waiting out every start.
func TestResumePendingPastAFailure(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, crashAs(t, e, fmt.Sprintf("key-0000-resume-%d", i), body("sandbox"),
			fmt.Sprintf("0190f0aa-0000-7000-8000-00000000010%d", i), time.Duration(10-i)*time.Minute))
	}
	e.engine.set(func(e *fakeEngine) { e.failFor = map[string]bool{ids[0]: true} }) // the oldest
	n, err := e.srv.ResumePending(context.Background(), 30*time.Second)
	if n != 4 || err == nil || !strings.Contains(err.Error(), ids[0]) {
		t.Fatalf("ResumePending with the oldest failing = %d, %v; want 4 and an error naming %s", n, err, ids[0])
	}
	for _, id := range ids[1:] {
		if e.engine.started()[id] != 1 {
			t.Errorf("transfer %s behind a failing one was not started: %v", id, e.engine.started())
		}
	}
	e.engine.set(func(e *fakeEngine) { e.failFor = nil })
	if n, err := e.srv.ResumePending(context.Background(), 30*time.Second); n != 1 || err != nil {
		t.Fatalf("ResumePending once the start works = %d, %v; want 1", n, err)
	}

	for i := 0; i < 5; i++ {
		crashAs(t, e, fmt.Sprintf("key-0000-down-%d", i), body("sandbox"),
			fmt.Sprintf("0190f0aa-0000-7000-8000-00000000020%d", i), time.Duration(10-i)*time.Minute)
	}
	e.engine.set(func(e *fakeEngine) { e.startErr = errBoom; e.attempts = 0 })
	if n, err := e.srv.ResumePending(context.Background(), 30*time.Second); n != 0 || err == nil {
		t.Fatalf("ResumePending with the engine down = %d, %v; want 0 and an error", n, err)
	}
	e.engine.set(func(e *fakeEngine) {
		if e.attempts != resumeGiveUp {
			t.Errorf("with the engine down a pass tried %d starts, want %d", e.attempts, resumeGiveUp)
		}
	})
}

func TestResumePending(t *testing.T) {
	e := newEnv(t)
	id := crash(t, e, key, body("sandbox"))
	fresh := e.post("key-0000-fresh", body("sandbox")) // complete: not resumed
	freshID := decode[Transfer](t, fresh).Id

	e.engine.set(func(e *fakeEngine) { e.startErr = errBoom })
	if n, err := e.srv.ResumePending(context.Background(), 30*time.Second); err == nil || n != 0 {
		t.Fatalf("ResumePending with a failing engine = %d, %v; want 0 and an error", n, err)
	}
	e.engine.set(func(e *fakeEngine) { e.startErr = nil })
	// Too young to resume: the first request may still be answering.
	if n, err := e.srv.ResumePending(context.Background(), time.Hour); err != nil || n != 0 {
		t.Fatalf("ResumePending(1h) = %d, %v; want 0", n, err)
	}
	n, err := e.srv.ResumePending(context.Background(), 30*time.Second)
	if err != nil || n != 1 {
		t.Fatalf("ResumePending = %d, %v; want 1", n, err)
	}
	if got := e.engine.started(); got[id] != 1 || got[freshID] != 1 {
		t.Errorf("started = %v, want %s and %s once each", got, id, freshID)
	}
	if n, err := e.srv.ResumePending(context.Background(), 0); err != nil || n != 0 {
		t.Errorf("second ResumePending = %d, %v; want 0", n, err)
	}
	// A late retry of the crashed request replays what recovery stored.
	rec, err := e.store.GetIdempotency(context.Background(), testClient, key)
	if err != nil {
		t.Fatal(err)
	}
	w := e.post(key, body("sandbox"))
	if w.Code != http.StatusAccepted || !bytes.Equal(w.Body.Bytes(), rec.ResponseBody) || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after recovery = %d %s, want replay of %s", w.Code, w.Body, rec.ResponseBody)
	}
}

func TestCreateTransferUnknownPartner(t *testing.T) {
	known := PartnersFunc(func(id string) bool { return id == "sandbox" })
	e := newEnv(t, func(d *Deps) { d.Partners = known })
	p := problem(t, e.post(key, body("nobody")), http.StatusUnprocessableEntity, ProblemUnknownPartner)
	if !hasField(p, "partner_id") {
		t.Errorf("errors = %v", fields(p))
	}
	if w := e.post("key-0000-0002", body("sandbox")); w.Code != http.StatusAccepted {
		t.Errorf("known partner = %d %s", w.Code, w.Body)
	}
	if n := e.countTransfers(); n != 1 {
		t.Errorf("transfers = %d, want 1", n)
	}
}

func TestCreateTransferAbsoluteLinks(t *testing.T) {
	e := newEnv(t, func(d *Deps) { d.BaseURL = "https://p2p.example/" })
	w := e.post(key, body("sandbox"))
	tr := decode[Transfer](t, w)
	if want := "https://p2p.example/v1/transfers/" + tr.Id; tr.Links.Self != want || w.Header().Get("Location") != want {
		t.Errorf("links = %+v, Location %q; want %s", tr.Links, w.Header().Get("Location"), want)
	}
}

func TestFingerprintIgnoresFormatting(t *testing.T) {
	decodeBody := func(doc string) NewTransfer {
		var b NewTransfer
		if err := json.Unmarshal([]byte(doc), &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, err := fingerprint(decodeBody(body("sandbox")))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		doc  string
		same bool
	}{
		{"reformatted", reformat(t, body("sandbox")), true},
		{"other partner", body("other"), false},
		{"other scope", strings.Replace(body("sandbox"), `"regular"`, `"sensitive"`, 1), false},
		{"no data scope", strings.Replace(body("sandbox"), `,
  "data_scope": {"resource_types": ["Patient", "Coverage"]}`, "", 1), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := fingerprint(decodeBody(c.doc))
			if err != nil {
				t.Fatal(err)
			}
			if (a == b) != c.same {
				t.Errorf("same fingerprint = %v, want %v", a == b, c.same)
			}
			if len(b) != 64 {
				t.Errorf("fingerprint %q is not hex SHA-256", b)
			}
		})
	}
}

// A served export whose kick-off crashed before its workflow started is
// closed failed, never started (least of all as a push transfer).
func TestResumePendingClosesInterruptedKickoff(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.pendingServed(t, "x1", "bulk-export:x1")
	if n, err := e.srv.ResumePending(ctx, 30*time.Second); err != nil || n != 1 {
		t.Fatalf("ResumePending = %d, %v; want 1", n, err)
	}
	if got := e.engine.started(); got["x1"] != 0 {
		t.Errorf("the interrupted export was started: %v", got)
	}
	tr, err := e.store.GetTransfer(ctx, "x1")
	if err != nil || tr.State != transfer.StateFailed || tr.Error == nil || tr.Error.Type != transfer.ErrorCancelled {
		t.Fatalf("transfer %+v %v, want failed cancelled", tr, err)
	}
	if n, err := e.srv.ResumePending(ctx, 0); err != nil || n != 0 {
		t.Errorf("second ResumePending = %d, %v; want 0", n, err)
	}
}

// A served kick-off interrupted after its workflow started (before its
// 202 was stored) is left to that workflow: the transfer is not closed
// under it, nor started again; its record is completed.
func TestResumePendingLeavesStartedKickoff(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.pendingServed(t, "b1", "bulk-member-match:b1")
	e.engine.set(func(f *fakeEngine) { f.running = map[string]bool{"b1": true} })
	if n, err := e.srv.ResumePending(ctx, 30*time.Second); err != nil || n != 1 {
		t.Fatalf("ResumePending = %d, %v; want 1", n, err)
	}
	if got := e.engine.started(); got["b1"] != 0 {
		t.Errorf("the batch was started again: %v", got)
	}
	if tr, err := e.store.GetTransfer(ctx, "b1"); err != nil || tr.State != transfer.StateInitiated || tr.Error != nil {
		t.Fatalf("transfer %+v %v: closed under its running workflow", tr, err)
	}
	rec, err := e.store.GetIdempotency(ctx, "fhir:new-payer", "bulk-member-match:b1")
	if err != nil || rec.Status != store.IdempotencyComplete || rec.ResponseStatus != http.StatusAccepted {
		t.Errorf("record %+v %v, want complete 202", rec, err)
	}
}

// A $member-match decided and recorded (complete) whose answer was not
// stored keeps its outcome: ResumePending completes its record only.
func TestResumePendingKeepsEndedMatch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.pendingServed(t, "m1", "member-match:m1", store.Change{State: transfer.StateComplete,
		Event: transfer.Event{State: transfer.StateComplete, Actor: "pdex", Type: transfer.EventState}})
	if n, err := e.srv.ResumePending(ctx, 30*time.Second); err != nil || n != 1 {
		t.Fatalf("ResumePending = %d, %v; want 1", n, err)
	}
	tr, err := e.store.GetTransfer(ctx, "m1")
	if err != nil || tr.State != transfer.StateComplete || tr.Error != nil {
		t.Fatalf("transfer %+v %v, want complete still", tr, err)
	}
	if rec, err := e.store.GetIdempotency(ctx, "fhir:new-payer", "member-match:m1"); err != nil || rec.Status != store.IdempotencyComplete {
		t.Errorf("record %+v %v, want complete", rec, err)
	}
}

// pendingServed stores a transfer a partner's request on /fhir created a
// minute ago (with changes, at the same time), its idempotency record
// still pending: as a crash before the answer was stored leaves it.
func (e *env) pendingServed(t *testing.T, id, key string, changes ...store.Change) {
	t.Helper()
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	for i := range changes {
		changes[i].Event.At = at
	}
	if _, err := e.store.CreateTransfer(context.Background(), store.NewTransfer{
		ClientID: "fhir:new-payer", IdempotencyKey: key, Fingerprint: "fp",
		Transfer: transfer.Transfer{ID: id, ClientID: "fhir:new-payer", PartnerID: "new-payer", Direction: transfer.DirectionExport,
			State: transfer.StateInitiated, CreatedAt: at, UpdatedAt: at},
		Request: transfer.Request{PartnerID: "new-payer"},
		Event: transfer.Event{At: at, State: transfer.StateInitiated, Actor: "partner:new-payer", Type: transfer.EventState,
			Key: transfer.StateKey(transfer.StateInitiated)},
		Changes: changes,
	}); err != nil {
		t.Fatal(err)
	}
}
