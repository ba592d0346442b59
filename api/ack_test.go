package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// fakeAcks verifies receipts by their text.
type fakeAcks struct{}

func (fakeAcks) VerifyAck(_ context.Context, t transfer.Transfer, jws string) (string, string, error) {
	switch jws {
	case "good":
		return "rcpt-1", "partner-kid", nil
	case "keys-down":
		return "", "", fault.New(fault.Downstream, "partner_unavailable", "JWKS unavailable")
	}
	return "", "", fault.New(fault.Validation, "partner_bad_receipt", "receipt signature does not verify")
}

func TestAcknowledgeTransfer(t *testing.T) {
	e := newEnv(t, func(d *Deps) { d.Acks = fakeAcks{} })
	created := decode[Transfer](t, e.post(key, body("sandbox")))
	path := "/v1/transfers/" + created.Id + "/ack"

	problem(t, e.do(http.MethodPost, "/v1/transfers/no-such/ack", `{"receipt_jws":"good"}`), http.StatusNotFound, ProblemNotFound)
	problem(t, e.do(http.MethodPost, path, `{}`), http.StatusBadRequest, ProblemValidation)
	// Not yet sent: nothing to acknowledge.
	problem(t, e.do(http.MethodPost, path, `{"receipt_jws":"good"}`), http.StatusConflict, ProblemNotAwaitingAck)

	ctx := context.Background()
	now := time.Now().UTC()
	if _, err := e.store.ApplyChange(ctx, created.Id, store.Change{
		Event: transfer.Event{At: now, State: transfer.StateSent, Type: "state", Key: transfer.StateKey(transfer.StateSent)},
		State: transfer.StateSent, Export: &transfer.ExportInfo{ManifestSHA256: "m", KID: "k"},
	}); err != nil {
		t.Fatal(err)
	}
	problem(t, e.do(http.MethodPost, path, `{"receipt_jws":"forged"}`), http.StatusUnprocessableEntity, ProblemReceiptInvalid)
	problem(t, e.do(http.MethodPost, path, `{"receipt_jws":"keys-down"}`), http.StatusServiceUnavailable, ProblemUnavailable)
	if len(e.engine.acks) != 0 {
		t.Fatalf("unverified receipts reached the workflow: %v", e.engine.acks)
	}
	if w := e.do(http.MethodPost, path, `{"receipt_jws":"good"}`); w.Code != http.StatusAccepted {
		t.Fatalf("good receipt: %d %s", w.Code, w.Body)
	}
	if len(e.engine.acks) != 1 || e.engine.acks[0] != created.Id+"/rcpt-1/partner-kid" {
		t.Fatalf("signalled %v", e.engine.acks)
	}

	// Once acknowledged, the same receipt is answered as is; another one
	// is refused.
	if _, err := e.store.ApplyChange(ctx, created.Id, store.Change{
		Event: transfer.Event{At: now, State: transfer.StateAcknowledged, Type: "state", Key: transfer.StateKey(transfer.StateAcknowledged)},
		State: transfer.StateAcknowledged, Export: &transfer.ExportInfo{ManifestSHA256: "m", KID: "k", ReceiptID: "rcpt-1"},
	}); err != nil {
		t.Fatal(err)
	}
	if w := e.do(http.MethodPost, path, `{"receipt_jws":"good"}`); w.Code != http.StatusAccepted || len(e.engine.acks) != 1 {
		t.Fatalf("repeat: %d, signalled %v", w.Code, e.engine.acks)
	}
}

func TestAcknowledgeWithoutVerifier(t *testing.T) {
	e := newEnv(t)
	created := decode[Transfer](t, e.post(key, body("sandbox")))
	problem(t, e.do(http.MethodPost, "/v1/transfers/"+created.Id+"/ack", `{"receipt_jws":"good"}`), http.StatusUnprocessableEntity, ProblemReceiptInvalid)
}
