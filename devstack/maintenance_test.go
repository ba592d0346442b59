package devstack

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// TestMaintenanceSchedules runs the real Temporal Schedules on the
// embedded server, with short intervals and a PHI retention of a second:
// a completed transfer's events get checkpointed and its export's PHI
// purged, by the schedules alone.
func TestMaintenanceSchedules(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true, Retention: app.Retention{
		CheckpointInterval: 2 * time.Second, PHIRetention: time.Second, PurgeInterval: 2 * time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	e := &e2e{t: t, s: s}
	id := e.create("maintenance-1", request(map[string]any{"member_id": "M100001", "birth_date": "1985-04-12"}, time.Now().AddDate(1, 0, 0)))
	e.await(id, "complete", 60*time.Second)

	deadline := time.Now().Add(45 * time.Second)
	for {
		tl, err := s.Store.Timeline(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		purged := false
		for _, ev := range tl {
			purged = purged || ev.Type == "phi_purged"
		}
		size, _ := s.Store.AuditSize(ctx)
		cp, err := s.Store.LatestCheckpoint(ctx)
		if purged && err == nil && cp.Size == size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45 s: purge event %v, checkpoint %+v (%v) of a log of %d", purged, cp.Size, err, size)
		}
		time.Sleep(200 * time.Millisecond)
	}
	arts, err := s.Store.ListArtifacts(ctx, id)
	if err != nil || len(arts) == 0 {
		t.Fatalf("artifacts %v %v", arts, err)
	}
	for _, a := range arts {
		if phi := a.ContentType == "application/fhir+ndjson"; (a.WithdrawnAt != nil) != phi {
			t.Errorf("%s (%s): withdrawn %v", a.Name, a.ContentType, a.WithdrawnAt)
		}
	}
	// Record a run of each maintenance workflow for the replay test.
	for name, typ := range map[string]string{
		"maintenance_audit_checkpoint": workflows.AuditCheckpointWorkflowName,
		"maintenance_retention_purge":  workflows.RetentionPurgeWorkflowName,
	} {
		res, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", typ),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Executions) == 0 {
			t.Fatalf("no completed %s run", typ)
		}
		e.saveWorkflowHistory(res.Executions[0].Execution.WorkflowId, name)
	}
	tr, _ := s.Store.GetTransfer(ctx, id)
	if tr.State != transfer.StateComplete {
		t.Errorf("state %s", tr.State)
	}

	// Ensuring again is idempotent, and a new interval reaches the schedule.
	for _, every := range []time.Duration{2 * time.Second, time.Hour, time.Hour} {
		if err := workflows.EnsureSchedules(ctx, s.Client, workflows.ScheduleOptions{CheckpointEvery: every, PurgeEvery: 2 * time.Second}); err != nil {
			t.Fatal(err)
		}
		d, err := s.Client.ScheduleClient().GetHandle(ctx, workflows.AuditCheckpointScheduleID).Describe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Schedule.Spec.Intervals; len(got) != 1 || got[0].Every != every {
			t.Fatalf("checkpoint schedule intervals %+v, want every %v", got, every)
		}
	}
}
