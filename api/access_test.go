package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// auditEntries returns every entry of the audit log.
func (e *env) auditEntries() []store.AuditEvent {
	e.t.Helper()
	var out []store.AuditEvent
	if err := e.store.AuditEvents(context.Background(), store.AuditFilter{}, func(ae store.AuditEvent) error {
		out = append(out, ae)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestRequestReceivedEvent: the first event says who sent the request,
// under which key (hashed, never the key), and with which ids.
func TestRequestReceivedEvent(t *testing.T) {
	e := newEnv(t)
	w := e.post(key, body("sandbox"))
	tr := decode[Transfer](t, w)
	evs := e.auditEntries()
	if len(evs) != 1 {
		t.Fatalf("%d audit entries after one POST, want 1", len(evs))
	}
	ev := evs[0].Event
	tokenKey, err := e.store.PresentationKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"client_id": testClient, "partner_id": "sandbox", "correlation_id_hmac": transfer.KeyedDigest(tokenKey, "corr-1"), "consent_id": "c-1",
		"idempotency_key_hmac": KeyToken(tokenKey, key), "request_id": w.Header().Get("X-Request-Id"),
		"resource_types": []any{"Patient", "Coverage"},
	}
	if evs[0].TransferID != tr.Id || ev.State != transfer.StateInitiated || ev.Actor != "client:"+testClient ||
		!reflect.DeepEqual(ev.Detail, want) {
		t.Errorf("request received = %s %+v, want detail %v", evs[0].TransferID, ev, want)
	}
	raw, _ := json.Marshal(evs)
	for _, v := range append([]string{key}, phi...) {
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("the audit log holds %q", v)
		}
	}
}

// TestReadsAreAudited: each answer that shows a transfer is recorded as a
// read by the client, with the request's id, and changes neither the
// transfer nor the stored answer of its POST.
func TestReadsAreAudited(t *testing.T) {
	e := newEnv(t)
	first := e.post(key, body("sandbox"))
	tr := decode[Transfer](t, first)
	other := decode[Transfer](t, e.post("key-0000-0002", strings.Replace(body("sandbox"), "corr-1", "corr-2", 1)))
	ctx := context.Background()
	before, err := e.store.GetTransfer(ctx, tr.Id)
	if err != nil {
		t.Fatal(err)
	}
	reads := []struct{ path, route string }{
		{"/v1/transfers/" + tr.Id, routeTransfer},
		{"/v1/transfers/" + tr.Id + "/timeline", routeTimeline},
		{"/v1/transfers?limit=10", routeList},
	}
	var reqIDs []string
	for _, r := range reads {
		w := e.do(http.MethodGet, r.path, "")
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", r.path, w.Code, w.Body)
		}
		reqIDs = append(reqIDs, w.Header().Get("X-Request-Id"))
	}
	// Unknown transfers: 404, and nothing recorded.
	n := len(e.auditEntries())
	problem(t, e.do(http.MethodGet, "/v1/transfers/nope", ""), http.StatusNotFound, ProblemNotFound)
	problem(t, e.do(http.MethodGet, "/v1/transfers/nope/timeline", ""), http.StatusNotFound, ProblemNotFound)
	if got := len(e.auditEntries()); got != n {
		t.Errorf("reads of unknown transfers added %d audit entries", got-n)
	}

	type read struct{ transfer, route, reqID string }
	var got []read
	for _, ae := range e.auditEntries() {
		ev := ae.Event
		if ev.Type != transfer.EventRead {
			continue
		}
		if ev.Actor != "client:"+testClient || ev.State != "" || ev.Key != "read:"+ev.Detail["request_id"].(string) {
			t.Errorf("read event %+v", ev)
		}
		got = append(got, read{ae.TransferID, ev.Detail["route"].(string), ev.Detail["request_id"].(string)})
	}
	want := []read{
		{tr.Id, routeTransfer, reqIDs[0]},
		{tr.Id, routeTimeline, reqIDs[1]},
		{other.Id, routeList, reqIDs[2]}, // newest first, as listed
		{tr.Id, routeList, reqIDs[2]},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reads recorded %+v, want %+v", got, want)
	}

	after, err := e.store.GetTransfer(ctx, tr.Id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("reads changed the transfer:\n%+v\nwant\n%+v", after, before)
	}
	again := e.post(key, body("sandbox"))
	if again.Code != first.Code || !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay after reads: %d %s, want the first answer %d %s", again.Code, again.Body, first.Code, first.Body)
	}
}
