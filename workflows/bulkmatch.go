package workflows

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/transfer"
)

// bulk names a $bulk-member-match's activities for ExecuteActivity.
var bulk *activities.BulkMatch

// BulkMemberMatch decides a PDex $bulk-member-match (package pdex serves
// the HTTP side): each member by its own activity (MatchBulkMember), a
// few at a time, so that a crash loses nothing and one member's failure
// never fails the batch; then FinishBulkMatch stores the result and
// withdraws the members' demographics. Its input names members by the
// digests of what was stored: no PHI crosses the workflow.
//
// The requester may delete the batch (DELETE on its status URL: the
// UpdateDeleteBulkMatch update), and ops may cancel the workflow: then no
// member is decided after it, and CancelBulkMatch withdraws the members
// and records the cancellation, on a disconnected context so that the
// cancellation cannot skip it. A delete that arrives once the members are
// all decided lets the batch finish; the caller removes its result.
//
// Registered under a name that is part of its contract with running
// histories: never rename it.
const BulkMemberMatchWorkflowName = "BulkMemberMatch"

// UpdateDeleteBulkMatch is the update by which the requester deletes a
// batch: it completes once the batch is closed (cancelled, or finished if
// it was finishing already). Part of the workflow's contract: never
// rename it.
const UpdateDeleteBulkMatch = "delete-bulk-match"

// versionBulkMatchDelete is the GetVersion change id of deletion and
// cancellation: histories from before it decide every member whatever
// happens.
const versionBulkMatchDelete = "bulk-match-delete"

// bulkMatchWindow is how many members are decided at once: enough to keep
// a batch moving, few enough that the failed-match cap is checked between
// decisions rather than overrun by a whole batch at once.
const bulkMatchWindow = 4

// BulkMatchInput starts a batch.
type BulkMatchInput struct {
	BatchID   string
	Requester string
	Members   []string // digests of the stored members, in order
	// RequestOwner and ResultOwner own the stored members and the result
	// (transfer.BulkMatchRequestOwner, transfer.BulkMatchResultOwner).
	RequestOwner string
	ResultOwner  string
}

// BulkMatchOutput is a decided batch: the result's digest and its counts;
// or a deleted one (Deleted, and no result).
type BulkMatchOutput struct {
	ResultSHA256                       string
	Matched, NonMatched, ConsentDenied int
	Deleted                            bool `json:",omitempty"`
}

// BulkMemberMatch is the batch workflow.
func BulkMemberMatch(ctx workflow.Context, in BulkMatchInput) (BulkMatchOutput, error) {
	log := workflow.GetLogger(ctx)
	v := workflow.GetVersion(ctx, versionBulkMatchDelete, workflow.DefaultVersion, 1)
	deleted, closed := false, false
	if v >= 1 {
		if err := workflow.SetUpdateHandler(ctx, UpdateDeleteBulkMatch, func(ctx workflow.Context) error {
			deleted = true
			return workflow.Await(ctx, func() bool { return closed })
		}); err != nil {
			return BulkMatchOutput{}, err
		}
	}
	stop := func() bool { return v >= 1 && (deleted || ctx.Err() != nil) }

	actx := activities.WithOptions(ctx, activities.NameMatchBulkMember)
	futures := make([]workflow.Future, len(in.Members))
	outcomes := make([]transfer.BulkMemberOutcome, len(in.Members))
	collect := func(i int) {
		if err := futures[i].Get(ctx, &outcomes[i]); err != nil {
			// Retries spent (or the member unreadable): this member is not
			// matched, the batch goes on.
			log.Warn("bulk member failed", "batch_id", in.BatchID, "index", i, "error", err)
			outcomes[i] = transfer.BulkMemberOutcome{Outcome: transfer.BulkOutcomeError, Why: "the member could not be matched"}
		}
		outcomes[i].Index = i
	}
	scheduled, next := 0, 0 // members scheduled; the first not collected
	for i, digest := range in.Members {
		if i-next >= bulkMatchWindow {
			collect(next)
			next++
		}
		if stop() {
			break
		}
		futures[i] = workflow.ExecuteActivity(actx, bulk.MatchBulkMember,
			activities.BulkMemberInput{BatchID: in.BatchID, Requester: in.Requester, Index: i, Digest: digest})
		scheduled = i + 1
	}
	for ; next < scheduled; next++ {
		collect(next)
	}
	if stop() {
		return cancelBulkMatch(ctx, in, deleted, &closed)
	}
	var out BulkMatchOutput
	for _, o := range outcomes {
		switch o.Outcome {
		case transfer.BulkOutcomeMatched:
			out.Matched++
		case transfer.BulkOutcomeConsentDenied:
			out.ConsentDenied++
		default:
			out.NonMatched++
		}
	}
	fctx := ctx
	if v >= 1 {
		// Every member is decided: the batch finishes (and its PHI goes)
		// even if cancelled now.
		fctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	err := workflow.ExecuteActivity(activities.WithOptions(fctx, activities.NameFinishBulkMatch), bulk.FinishBulkMatch,
		activities.FinishBulkInput{Result: transfer.BulkMatchResult{BatchID: in.BatchID, Requester: in.Requester, Members: outcomes},
			ResultOwner: in.ResultOwner, RequestOwner: in.RequestOwner}).Get(fctx, &out.ResultSHA256)
	if v >= 1 {
		// Let a delete that came while finishing answer before the end.
		closed = true
		if werr := workflow.Await(fctx, func() bool { return workflow.AllHandlersFinished(fctx) }); werr != nil && err == nil {
			err = werr
		}
	}
	return out, err
}

// cancelBulkMatch ends a deleted or cancelled batch: the members decided
// stay recorded (and their grants); the members as received are withdrawn
// and the batch's transfer fails cancelled, on a disconnected context.
func cancelBulkMatch(ctx workflow.Context, in BulkMatchInput, deleted bool, closed *bool) (BulkMatchOutput, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	reason, actor := activities.BulkCancelled, "workflow"
	if deleted {
		reason, actor = activities.BulkDeleted, "partner:"+in.Requester
	}
	err := workflow.ExecuteActivity(activities.WithOptions(dctx, activities.NameCancelBulkMatch), bulk.CancelBulkMatch,
		activities.CancelBulkInput{BatchID: in.BatchID, RequestOwner: in.RequestOwner, Members: len(in.Members),
			Reason: reason, Actor: actor}).Get(dctx, nil)
	*closed = true
	if werr := workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) }); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return BulkMatchOutput{}, err
	}
	if !deleted {
		return BulkMatchOutput{}, temporal.NewCanceledError()
	}
	return BulkMatchOutput{Deleted: true}, nil
}

// BulkMatchWorkflowID is the workflow id of batch id.
func BulkMatchWorkflowID(id string) string { return "bulk-member-match-" + id }

// BulkMatchEngine runs the batches of $bulk-member-match (pdex.BulkMatches).
type BulkMatchEngine struct {
	Client    client.Client
	TaskQueue string // TaskQueue when empty
}

// DeleteBulkMatch asks the batch's workflow to delete it and waits until
// it is closed: cancelled (members withdrawn, cancellation recorded) or,
// if it was finishing, finished. A batch whose workflow has ended is not
// touched: nil.
func (e *BulkMatchEngine) DeleteBulkMatch(ctx context.Context, id string) error {
	if err := updateIfRunning(ctx, e.Client, BulkMatchWorkflowID(id), UpdateDeleteBulkMatch); err != nil {
		return fmt.Errorf("delete bulk member match: %w", err)
	}
	return nil
}

// StartBulkMatch starts the batch's workflow, once: its id is the batch's.
func (e *BulkMatchEngine) StartBulkMatch(ctx context.Context, b transfer.BulkMatch) error {
	q := e.TaskQueue
	if q == "" {
		q = TaskQueue
	}
	if _, err := e.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: BulkMatchWorkflowID(b.ID), TaskQueue: q,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, BulkMemberMatchWorkflowName, BulkMatchInput{
		BatchID: b.ID, Requester: b.Requester, Members: b.Members,
		RequestOwner: transfer.BulkMatchRequestOwner(b.Requester, b.ID), ResultOwner: transfer.BulkMatchResultOwner(b.Requester, b.ID),
	}); err != nil {
		return fmt.Errorf("start bulk member match workflow: %w", err)
	}
	return nil
}
