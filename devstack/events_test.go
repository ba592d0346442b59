package devstack

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/p2p-payer/p2p/connectors/sandbox"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// maxHappyPathEvents bounds the Temporal history of a transfer that goes
// through: each event is work for the Temporal server and its database,
// where most of a transfer's CPU goes. It was 79 while every step was an
// activity; with the steps on our own store as local activities it is 29.
const maxHappyPathEvents = 35

// TestHappyPathHistoryEvents counts the history events of a transfer that
// goes through on the embedded server, and fails above maxHappyPathEvents.
func TestHappyPathHistoryEvents(t *testing.T) {
	e := startStack(t)
	id := e.create("history-events-0001", request(alice, time.Now().AddDate(1, 0, 0)))
	e.await(id, "complete", 10*time.Second)
	e.awaitClosed(id)
	types := e.historyTypes(workflows.WorkflowID(id))
	n := 0
	for _, c := range types {
		n += c
	}
	t.Logf("a happy-path transfer writes %d history events: %v", n, types)
	if n > maxHappyPathEvents {
		t.Errorf("a happy-path transfer wrote %d history events, want at most %d", n, maxHappyPathEvents)
	}
	// The steps on our own store are markers; only the export and the
	// send are activities.
	if n := types[enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED.String()]; n != 2 {
		t.Errorf("%d activities scheduled, want 2 (PrepareExport, SendExport)", n)
	}
}

// historyTypes counts the events of the workflow's latest run by type
// (the type's name, as ActivityTaskScheduled).
func (e *e2e) historyTypes(workflowID string) map[string]int {
	e.t.Helper()
	it := e.s.Client.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	types := map[string]int{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			e.t.Fatal(err)
		}
		types[ev.GetEventType().String()]++
	}
	return types
}

// A partner that refuses the delivery (422) fails the transfer
// partner_rejected after the export was prepared: the compensation
// withdraws the export, and the failure is recorded after it.
func TestPartnerRejectionWithdrawsTheExport(t *testing.T) {
	e := startStack(t)
	e.s.Sandbox.FailNext(1, sandbox.Failure{Status: 422})
	id := e.create("partner-rejects-0001", request(alice, time.Now().AddDate(1, 0, 0)))
	tr := e.await(id, "failed", 10*time.Second)
	if tr["error"].(map[string]any)["type"] != transfer.ErrorPartnerRejected {
		t.Errorf("error %v, want %s", tr["error"], transfer.ErrorPartnerRejected)
	}
	if exp, _ := tr["export"].(map[string]any); exp == nil || exp["withdrawn"] != true {
		t.Errorf("export %v, want withdrawn", tr["export"])
	}
	want := "initiated,identity_pending,consent_verified,payload_prepared,failed"
	if got := strings.Join(e.states(id), ","); got != want {
		t.Errorf("timeline states %v, want %s", got, want)
	}
	e.awaitClosed(id)
	e.saveHistory(id, "partner_rejected")
}
