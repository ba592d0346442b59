package workflows

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
)

// The maintenance workflows run their activity under its policy: a
// failure is retried, and the result is the workflow's.
func TestMaintenanceWorkflows(t *testing.T) {
	t.Run("checkpoint", func(t *testing.T) {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		env.RegisterWorkflowWithOptions(AuditCheckpointWorkflow, workflow.RegisterOptions{Name: AuditCheckpointWorkflowName})
		registerActivities(env)
		calls := 0
		env.OnActivity(maint.AuditCheckpoint, mock.Anything).Return(func(context.Context) (activities.CheckpointResult, error) {
			calls++
			if calls == 1 {
				return activities.CheckpointResult{}, errors.New("store unreachable")
			}
			return activities.CheckpointResult{Size: 42, Signed: true, KID: "k"}, nil
		})
		env.ExecuteWorkflow(AuditCheckpointWorkflowName)
		var r activities.CheckpointResult
		if err := env.GetWorkflowResult(&r); err != nil || r.Size != 42 || !r.Signed || calls != 2 {
			t.Fatalf("result %+v %v after %d calls", r, err, calls)
		}
	})
	t.Run("purge", func(t *testing.T) {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		env.RegisterWorkflowWithOptions(RetentionPurgeWorkflow, workflow.RegisterOptions{Name: RetentionPurgeWorkflowName})
		registerActivities(env)
		env.OnActivity(maint.PurgePHI, mock.Anything).Return(activities.PurgeResult{Transfers: 3, Artifacts: 9}, nil)
		env.ExecuteWorkflow(RetentionPurgeWorkflowName)
		var r activities.PurgeResult
		if err := env.GetWorkflowResult(&r); err != nil || r.Transfers != 3 || r.Artifacts != 9 {
			t.Fatalf("result %+v %v", r, err)
		}
	})
}
