package devstack

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/temporaltest"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// The acceptance bound on a real server (temporaltest, in memory): an
// import whose export stays in progress for 10,000 polls completes, and no
// run's history exceeds 10,000 events, the server suggesting
// Continue-As-New at its default (4,096 events) and ImportPollsPerRun
// bounding a run where it does not. Activities are stubs answering at
// once; the floor between polls is lowered to a millisecond, since the
// test measures history, not time (TestImportPollFloor checks the floor).
func TestImportHistoryBoundOnServer(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 polls on a real server")
	}
	exportTime, one := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC), int64(1)
	polls := int64(10000)
	if v, err := strconv.Atoi(os.Getenv("P2P_IMPORT_POLLS")); err == nil && v > 0 {
		polls = int64(v) // a shorter run, to time a poll
	}
	oldPolicy, oldCap := workflows.ImportPollPolicy, workflows.ImportPollFloorCap
	t.Cleanup(func() { workflows.ImportPollPolicy, workflows.ImportPollFloorCap = oldPolicy, oldCap })
	workflows.ImportPollPolicy.MinDelay, workflows.ImportPollPolicy.Budget, workflows.ImportPollFloorCap = time.Millisecond, 30*24*time.Hour, time.Millisecond

	ts := temporaltest.NewServer(temporaltest.WithT(t), temporaltest.WithBaseServerOptions(temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
		// One shard polls its task queues 20 times a second by default:
		// each of the 20,000 workflow tasks would wait for it.
		dynamicconfig.TransferProcessorMaxPollRPS.Key(): []dynamicconfig.ConstrainedValue{{Value: 10000}},
		dynamicconfig.TimerProcessorMaxPollRPS.Key():    []dynamicconfig.ConstrainedValue{{Value: 10000}},
		// A timer fires up to this late (default 1 s): the floor between
		// polls is a millisecond here.
		dynamicconfig.TimerProcessorMaxTimeShift.Key(): []dynamicconfig.ConstrainedValue{{Value: 5 * time.Millisecond}},
	})))
	c := ts.GetDefaultClient()
	const queue = "import-bound"
	var n atomic.Int64
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(workflows.ImportTransfer, workflow.RegisterOptions{Name: workflows.ImportWorkflowName})
	stub := func(name string, fn any) {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	stub(activities.NameRecordState, func(context.Context, activities.RecordInput) (bool, error) { return true, nil })
	stub(activities.NamePlanImport, func(context.Context, activities.ImportInput) (activities.Plan, error) {
		return activities.Plan{Types: []string{"Patient"}, Since: exportTime}, nil
	})
	stub(activities.NameDeliverImport, func(context.Context, activities.DeliverInput) (activities.Delivered, error) {
		return activities.Delivered{Sink: "ndjson-dir", Location: "t1", ReceiptID: "rcpt", Files: 1}, nil
	})
	stub(activities.NameDiscardImport, func(context.Context, activities.DiscardInput) (bool, error) { return true, nil })
	partnerWorkers := map[string]worker.Worker{}
	pstub := func(name string, fn any) {
		q := workflows.PartnerActivityQueue(queue, "oldco", name)
		if partnerWorkers[q] == nil {
			partnerWorkers[q] = worker.New(c, q, worker.Options{})
		}
		partnerWorkers[q].RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	pstub(activities.NameMatchAtPartner, func(context.Context, activities.ImportInput) (activities.Matched, error) {
		return activities.Matched{Status: transfer.IdentityResolved, MemberID: "OLD-M1", PatientID: "p1", HTTPStatus: 200, ConsentID: "c1", Scope: "regular"}, nil
	})
	pstub(activities.NameKickOffImport, func(context.Context, activities.KickOffInput) (activities.KickedOff, error) {
		return activities.KickedOff{StatusURL: "https://old.example/fhir/bulkstatus/1", At: time.Now()}, nil
	})
	pstub(activities.NamePollImport, func(_ context.Context, in activities.PollInput) (activities.Polled, error) {
		if n.Add(1) <= polls {
			return activities.Polled{Status: bulkdata.Status{State: bulkdata.StateInProgress,
				InProgress: &bulkdata.InProgress{RetryAfter: "0", ReceivedAt: time.Now()}}}, nil
		}
		m := bulkdata.Manifest{TransactionTime: exportTime, Request: "https://old.example/fhir/Patient/$export",
			Output: []bulkdata.OutputFile{{Type: "Patient", URL: in.StatusURL + "/f/0", Count: &one}}, Error: []bulkdata.OutputFile{}}
		return activities.Polled{Status: bulkdata.Status{State: bulkdata.StateComplete, Complete: &bulkdata.Complete{Manifest: m}}, ManifestSHA256: "man1"}, nil
	})
	pstub(activities.NameDownloadImportFile, func(_ context.Context, in activities.DownloadInput) (transfer.ExportFile, error) {
		return transfer.ExportFile{Type: in.File.Type, Count: 1, SHA256: "sha", Bytes: 10}, nil
	})
	pstub(activities.NameDeleteImport, func(context.Context, activities.DeleteInput) error { return nil })
	workers := []worker.Worker{w}
	for _, pw := range partnerWorkers {
		workers = append(workers, pw)
	}
	for _, w := range workers {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID("t1"), TaskQueue: queue}, workflows.ImportWorkflowName,
		workflows.Input{TransferID: "t1", PartnerID: "oldco"})
	if err != nil {
		t.Fatal(err)
	}
	var r workflows.Result
	if err := c.GetWorkflow(ctx, run.GetID(), "").Get(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.State != transfer.StateComplete || n.Load() != polls+1 {
		t.Fatalf("result %+v after %d polls", r, n.Load())
	}
	// Walk the runs, first to last, counting each one's events.
	var sizes []int
	for runID := run.GetRunID(); runID != ""; {
		it := c.GetWorkflowHistory(ctx, run.GetID(), runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		events, next := 0, ""
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			events++
			if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
				next = a.GetNewExecutionRunId()
			}
		}
		sizes = append(sizes, events)
		runID = next
	}
	most := 0
	for _, s := range sizes {
		most = max(most, s)
	}
	t.Logf("%d polls in %v: %d runs, events per run %v", n.Load(), time.Since(start).Round(time.Second), len(sizes), sizes)
	if most > 10000 || (polls > int64(workflows.ImportPollsPerRun) && len(sizes) < 2) {
		t.Errorf("runs %d, the largest %d events: want every run at most 10,000", len(sizes), most)
	}
}
