package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
)

// The periodic maintenance of p2p, run by Temporal Schedules: a signed
// checkpoint of the audit log, and the retention purge of PHI.
const (
	AuditCheckpointWorkflowName = "AuditCheckpointWorkflow"
	RetentionPurgeWorkflowName  = "RetentionPurgeWorkflow"

	// Schedule ids, also the prefix of the ids of the workflows they start.
	AuditCheckpointScheduleID = "p2p-audit-checkpoint"
	RetentionPurgeScheduleID  = "p2p-retention-purge"
)

// Defaults of ScheduleOptions.
const (
	DefaultCheckpointInterval = 10 * time.Minute
	DefaultPurgeInterval      = 24 * time.Hour
)

// maint names the maintenance activities for ExecuteActivity.
var maint *activities.Maintenance

// AuditCheckpointWorkflow signs a checkpoint of the audit log if it grew.
func AuditCheckpointWorkflow(ctx workflow.Context) (activities.CheckpointResult, error) {
	var r activities.CheckpointResult
	err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NameAuditCheckpoint), maint.AuditCheckpoint).Get(ctx, &r)
	return r, err
}

// RetentionPurgeWorkflow deletes the PHI whose retention has expired.
func RetentionPurgeWorkflow(ctx workflow.Context) (activities.PurgeResult, error) {
	var r activities.PurgeResult
	err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NamePurgePHI), maint.PurgePHI).Get(ctx, &r)
	return r, err
}

// ScheduleOptions are the intervals of the maintenance schedules.
type ScheduleOptions struct {
	TaskQueue       string        // TaskQueue when empty
	CheckpointEvery time.Duration // DefaultCheckpointInterval when 0
	PurgeEvery      time.Duration // DefaultPurgeInterval when 0
}

// EnsureSchedules creates the maintenance schedules, or brings existing
// ones to o's intervals and task queue. It is idempotent: every worker
// calls it at start, and a second caller finds the schedule there. A run
// still going when the next is due is not doubled (overlap: skip).
func EnsureSchedules(ctx context.Context, c client.Client, o ScheduleOptions) error {
	if o.TaskQueue == "" {
		o.TaskQueue = TaskQueue
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointInterval
	}
	if o.PurgeEvery <= 0 {
		o.PurgeEvery = DefaultPurgeInterval
	}
	for _, s := range []struct {
		id, workflow string
		every        time.Duration
	}{
		{AuditCheckpointScheduleID, AuditCheckpointWorkflowName, o.CheckpointEvery},
		{RetentionPurgeScheduleID, RetentionPurgeWorkflowName, o.PurgeEvery},
	} {
		if err := ensureSchedule(ctx, c, s.id, s.workflow, o.TaskQueue, s.every); err != nil {
			return fmt.Errorf("schedule %s: %w", s.id, err)
		}
	}
	return nil
}

func ensureSchedule(ctx context.Context, c client.Client, id, wf, queue string, every time.Duration) error {
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}}
	action := &client.ScheduleWorkflowAction{
		ID: id, Workflow: wf, TaskQueue: queue,
		// A run never outlives its interval by much: the next one does the work.
		WorkflowExecutionTimeout: max(every, time.Hour),
	}
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: id, Spec: spec, Action: action, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	})
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return err
	}
	return c.ScheduleClient().GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			cur, ok := s.Action.(*client.ScheduleWorkflowAction)
			if ok && cur.TaskQueue == queue && len(s.Spec.Intervals) == 1 && s.Spec.Intervals[0].Every == every &&
				len(s.Spec.Calendars)+len(s.Spec.CronExpressions) == 0 {
				return nil, temporal.ErrSkipScheduleUpdate
			}
			s.Spec = &spec
			s.Action = action
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
}
