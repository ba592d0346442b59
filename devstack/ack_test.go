package devstack

import (
	"context"
	"testing"
	"time"
)

// TestLaterSignedAcknowledgement: a partner that answers the push 202
// accepted and acknowledges afterwards, by posting its signed receipt to
// POST /v1/transfers/{id}/ack. The transfer waits in sent, then is
// acknowledged on the verified receipt, and the audit log says how.
func TestLaterSignedAcknowledgement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true, SandboxAcksLater: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	e := &e2e{t: t, s: s}
	id := e.create("ack-later-0001", request(alice, time.Now().AddDate(1, 0, 0)))
	e.await(id, "complete", 20*time.Second)

	log := e.auditLog(id)
	sent := one(t, log, "state", "sent")
	if sent.Detail["partner_status"] != "accepted" || sent.Detail["http_status"] != float64(202) {
		t.Errorf("sent %v, want the partner's 202 accepted", sent.Detail)
	}
	ack := one(t, log, "state", "acknowledged")
	var receipt string
	for _, d := range s.Sandbox.Deliveries() {
		if d.TransferID == id {
			receipt = d.ReceiptID
		}
	}
	if receipt == "" || ack.Detail["receipt_id"] != receipt || ack.Detail["ack_via"] != "signal" ||
		ack.Detail["ack_signature"] != "verified" || ack.Detail["ack_verified"] != true || ack.Detail["ack_signature_kid"] == nil {
		t.Errorf("acknowledged %v, partner receipt %q", ack.Detail, receipt)
	}
	// The same receipt again is answered, not taken twice.
	if n := len(s.Sandbox.Deliveries()); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
	bogus := e.do("POST", "/v1/transfers/"+id+"/ack", "", map[string]any{"receipt_jws": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"})
	if bogus.status != 422 {
		t.Errorf("a forged receipt: %d %s, want 422", bogus.status, bogus.body)
	}
	e.awaitClosed(id)
	e.saveHistory(id, "ack_by_signal")
}
