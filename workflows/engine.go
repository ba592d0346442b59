package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// PriorityMemberRequest is the Temporal priority key of a transfer a
// member is waiting on (1 runs first, 5 last; unset is 3): its workflow
// and activity tasks go before bulk work such as backfills sharing the
// queues.
const PriorityMemberRequest = 1

// Engine starts and steers transfer workflows for the API.
type Engine struct {
	Client    client.Client
	Store     store.Store
	TaskQueue string // TaskQueue when empty
}

func (e *Engine) queue() string {
	if e.TaskQueue != "" {
		return e.TaskQueue
	}
	return TaskQueue
}

// StartTransfer starts the workflow of a stored transfer. It is idempotent:
// the workflow id is derived from the transfer id, a running workflow is
// reused and a closed one is never started again.
func (e *Engine) StartTransfer(ctx context.Context, transferID string) error {
	t, err := e.Store.GetTransfer(ctx, transferID)
	if err != nil {
		return err
	}
	name := TransferWorkflowName
	if t.Direction == transfer.DirectionImport {
		name = ImportWorkflowName
	}
	_, err = e.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       WorkflowID(transferID),
		TaskQueue:                e.queue(),
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		Priority:                 temporal.Priority{PriorityKey: PriorityMemberRequest},
	}, name, Input{TransferID: transferID, PartnerID: t.PartnerID})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil // closed already: it ran, exactly once
	}
	return err
}

// Review delivers a person's decision to a transfer in manual review and
// records the reviewer's reason in the timeline (the reason stays out of
// the workflow's history: free text may hold PHI).
func (e *Engine) Review(ctx context.Context, transferID string, d transfer.ReviewDecision) error {
	h, err := e.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   WorkflowID(transferID),
		UpdateName:   UpdateReview,
		Args:         []any{Review{Decision: d.Decision, MemberID: d.MemberID, Reviewer: d.Reviewer}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		var ae *temporal.ApplicationError
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &ae) && ae.Type() == ErrTypeInvalidDecision:
			return fmt.Errorf("%w: %s", transfer.ErrInvalidDecision, ae.Message())
		case errors.As(err, &ae) && ae.Type() == ErrTypeNotInReview, errors.As(err, &nf):
			return transfer.ErrNotInReview
		}
		return err
	}
	_, err = e.Store.ApplyChange(ctx, transferID, store.Change{Event: transfer.Event{
		At: nowUTC(), Actor: "reviewer:" + d.Reviewer, Type: "review_note", Key: "review:note",
		Detail: map[string]any{"decision": d.Decision, "reason": d.Reason},
	}})
	return err
}

// Ready reports whether Temporal answers.
func (e *Engine) Ready(ctx context.Context) error {
	_, err := e.Client.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

// NewWorker returns a worker on the transfer task queue with the workflow
// and acts registered under their stable names.
func NewWorker(c client.Client, taskQueue string, acts *activities.Activities, o worker.Options) worker.Worker {
	if taskQueue == "" {
		taskQueue = TaskQueue
	}
	w := worker.New(c, taskQueue, o)
	Register(w, acts)
	return w
}

// Register registers the workflows and activities on w.
func Register(w worker.Registry, acts *activities.Activities) {
	w.RegisterWorkflowWithOptions(Transfer, workflow.RegisterOptions{Name: TransferWorkflowName})
	w.RegisterWorkflowWithOptions(ImportTransfer, workflow.RegisterOptions{Name: ImportWorkflowName})
	w.RegisterWorkflowWithOptions(AuditCheckpointWorkflow, workflow.RegisterOptions{Name: AuditCheckpointWorkflowName})
	w.RegisterWorkflowWithOptions(RetentionPurgeWorkflow, workflow.RegisterOptions{Name: RetentionPurgeWorkflowName})
	w.RegisterActivity(acts)
}

// nowUTC is the wall clock of client-side code; workflows never call it.
func nowUTC() time.Time { return time.Now().UTC() }
