package devstack

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata/bulktest"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// The paths below end in ways the other end-to-end tests do not reach;
// each is asserted here and its history saved for the replay test
// (workflows/testdata/histories) when P2P_RECORD_HISTORIES is set.

// importStack is a stack with the fake old payer as partner oldco.
func importStack(t *testing.T, old *oldPayer) *e2e {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Partners: []connectors.Partner{{
		ID: "oldco", Name: "Old Co Health", Roles: []connectors.Role{connectors.RolePull}, FHIRBaseURL: old.srv.URL + "/fhir",
		AllowPrivateNetwork: true,
		Auth:                connectors.Auth{Type: connectors.AuthNone, ClientID: "newco"},
		Identifiers:         []connectors.Identifier{{System: fhir.SystemNPI, Value: oldPayerNPI}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &e2e{t: t, s: s}
}

// An export the old payer reports failed after the kick-off fails the
// import export_failed, and the compensation DELETEs it at the old payer.
func TestImportFailsAfterKickOff(t *testing.T) {
	old := newOldPayer(t)
	_ = old.bulk.Add("pt-M1", resourceJSON("Patient", "p", time.Now().AddDate(0, -1, 0)))
	old.bulk.Inject(bulktest.RouteStatus, bulktest.Answer{Status: http.StatusBadRequest,
		Header: map[string]string{"Content-Type": "application/fhir+json"},
		Body:   `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"too-costly"}]}`})
	e := importStack(t, old)
	id := e.create("import-fails-0001", importRequest("OLD-1", "active"))
	tr := e.await(id, "failed", 30*time.Second)
	if tr["error"].(map[string]any)["type"] != transfer.ErrorExportFailed {
		t.Fatalf("transfer %v, want failed %s", tr, transfer.ErrorExportFailed)
	}
	ks := old.bulk.KickOffs()
	if d := old.bulk.Deleted(); len(ks) != 1 || len(d) != 1 || d[0] != ks[0].Job {
		t.Errorf("kick-offs %d, deleted %v: want the failed export deleted", len(ks), d)
	}
	e.awaitClosed(id)
	e.saveHistory(id, "import_failed_after_kickoff")
}

// An import polled past ImportPollsPerRun continues as new and completes
// in its next run; the first run's history ends continued-as-new.
func TestImportContinuesAsNew(t *testing.T) {
	oldRun, oldPolicy := workflows.ImportPollsPerRun, workflows.ImportPollPolicy
	t.Cleanup(func() { workflows.ImportPollsPerRun, workflows.ImportPollPolicy = oldRun, oldPolicy })
	workflows.ImportPollsPerRun, workflows.ImportPollPolicy.MinDelay = 2, time.Second
	old := newOldPayer(t)
	_ = old.bulk.Add("pt-M1", resourceJSON("Patient", "p", time.Now().AddDate(0, -1, 0)))
	old.bulk.PollsBeforeDone, old.bulk.RetryAfter = 3, "1"
	e := importStack(t, old)
	id := e.create("import-can-0001", importRequest("OLD-1", "active"))
	e.await(id, "complete", 45*time.Second)
	e.awaitClosed(id)
	runs := e.runs(workflows.WorkflowID(id))
	if len(runs) != 2 {
		t.Fatalf("runs %v, want 2", runs)
	}
	if n := len(old.bulk.KickOffs()); n != 1 || len(old.bulk.Requests(bulktest.RouteStatus)) != 4 {
		t.Errorf("kick-offs %d, polls %d: want 1 and 4", n, len(old.bulk.Requests(bulktest.RouteStatus)))
	}
	if v := old.bulk.Violations(); len(v) != 0 {
		t.Errorf("polls earlier than Retry-After: %v", v)
	}
	e.saveRunHistory(workflows.WorkflowID(id), runs[0], "import_continued_as_new")
	e.saveRunHistory(workflows.WorkflowID(id), runs[1], "import_resumed_complete")
}

// A served export whose manifest is fetched but whose files are not
// downloaded before they expire fails ack_timeout, its files withdrawn.
func TestServedExportExpires(t *testing.T) {
	e := startBulkStack(t, 3*time.Second)
	if r := e.memberMatch(SandboxPartnerID, hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")); r.status != http.StatusOK {
		t.Fatalf("$member-match: %d %s", r.status, r.body)
	}
	status := e.kickoff("")
	id := status[strings.LastIndex(status, "/")+1:]
	e.poll(status, 30*time.Second)
	tr := e.await(id, "failed", 30*time.Second)
	if tr["error"].(map[string]any)["type"] != transfer.ErrorAckTimeout || tr["export"].(map[string]any)["withdrawn"] != true {
		t.Errorf("expired export %v", tr)
	}
	e.awaitClosed(id)
	e.saveHistory(id, "serve_export_expired")
}

// Ops cancelling a $bulk-member-match batch's workflow: the members not
// decided are not, their demographics are withdrawn, and the batch fails
// cancelled.
func TestBulkMemberMatchCancelled(t *testing.T) {
	e := startBulkStack(t, 30*time.Second)
	const members = 200
	var params []any
	for range members {
		params = append(params, map[string]any{"name": pdex.ParamMemberBundle,
			"part": hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")["parameter"]})
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	_, batch := e.bulkMatchKickoff(body)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wid := workflows.BulkMatchWorkflowID(batch)
	if err := e.s.Client.CancelWorkflow(ctx, wid, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Client.GetWorkflow(ctx, wid, "").Get(ctx, nil); err == nil {
		t.Fatal("a cancelled batch's workflow ended without an error")
	}
	tr := e.do("GET", "/v1/transfers/"+batch, "", nil).json(t)
	if tr["state"] != "failed" || tr["error"].(map[string]any)["type"] != transfer.ErrorCancelled {
		t.Fatalf("batch transfer %v, want failed cancelled", tr)
	}
	arts, err := e.s.Store.ListArtifacts(context.Background(), pdex.BulkMatchRequestOwner(SandboxPartnerID, batch))
	if err != nil || len(arts) != members {
		t.Fatalf("request artifacts: %d, %v", len(arts), err)
	}
	for _, a := range arts {
		if a.WithdrawnAt == nil {
			t.Fatalf("%s not withdrawn", a.Name)
		}
	}
	e.saveWorkflowHistory(wid, "bulk_member_match_cancelled")
}

// runs returns the run ids of workflowID, first to last, walking back
// from the latest run through each run's predecessor.
func (e *e2e) runs(workflowID string) []string {
	e.t.Helper()
	ctx := context.Background()
	d, err := e.s.Client.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for run := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); run != ""; {
		out = append([]string{run}, out...)
		it := e.s.Client.GetWorkflowHistory(ctx, workflowID, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		ev, err := it.Next()
		if err != nil {
			e.t.Fatal(err)
		}
		run = ev.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
	}
	return out
}
