package workflows

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
)

// BulkMemberMatch decides a PDex $bulk-member-match (package pdex serves
// the HTTP side): each member by its own activity (MatchBulkMember), a
// few at a time, so that a crash loses nothing and one member's failure
// never fails the batch; then FinishBulkMatch stores the result and
// withdraws the members' demographics. Its input names members by the
// digests of what was stored: no PHI crosses the workflow.
//
// Registered under a name that is part of its contract with running
// histories: never rename it.
const BulkMemberMatchWorkflowName = "BulkMemberMatch"

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
	// (pdex.BulkMatchRequestOwner, pdex.BulkMatchResultOwner).
	RequestOwner string
	ResultOwner  string
}

// BulkMatchOutput is a decided batch: the result's digest and its counts.
type BulkMatchOutput struct {
	ResultSHA256                       string
	Matched, NonMatched, ConsentDenied int
}

// BulkMemberMatch is the batch workflow.
func BulkMemberMatch(ctx workflow.Context, in BulkMatchInput) (BulkMatchOutput, error) {
	log := workflow.GetLogger(ctx)
	actx := activities.WithOptions(ctx, activities.NameMatchBulkMember)
	futures := make([]workflow.Future, len(in.Members))
	outcomes := make([]transfer.BulkMemberOutcome, len(in.Members))
	collect := func(i int) {
		if err := futures[i].Get(ctx, &outcomes[i]); err != nil {
			// Retries spent (or the member unreadable): this member is not
			// matched, the batch goes on.
			log.Warn("bulk member failed", "batch_id", in.BatchID, "index", i, "error", err)
			outcomes[i] = transfer.BulkMemberOutcome{Outcome: pdex.OutcomeError, Why: "the member could not be matched"}
		}
		outcomes[i].Index = i
	}
	for i, digest := range in.Members {
		if i >= bulkMatchWindow {
			collect(i - bulkMatchWindow)
		}
		futures[i] = workflow.ExecuteActivity(actx, a.MatchBulkMember,
			activities.BulkMemberInput{BatchID: in.BatchID, Requester: in.Requester, Index: i, Digest: digest})
	}
	for i := max(0, len(in.Members)-bulkMatchWindow); i < len(in.Members); i++ {
		collect(i)
	}
	var out BulkMatchOutput
	for _, o := range outcomes {
		switch o.Outcome {
		case pdex.OutcomeMatched:
			out.Matched++
		case pdex.OutcomeConsentDenied:
			out.ConsentDenied++
		default:
			out.NonMatched++
		}
	}
	err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NameFinishBulkMatch), a.FinishBulkMatch,
		activities.FinishBulkInput{Result: transfer.BulkMatchResult{BatchID: in.BatchID, Requester: in.Requester, Members: outcomes},
			ResultOwner: in.ResultOwner, RequestOwner: in.RequestOwner}).Get(ctx, &out.ResultSHA256)
	return out, err
}

// BulkMatchWorkflowID is the workflow id of batch id.
func BulkMatchWorkflowID(id string) string { return "bulk-member-match-" + id }

// BulkMatchEngine runs the batches of $bulk-member-match (pdex.BulkMatches).
type BulkMatchEngine struct {
	Client    client.Client
	TaskQueue string // TaskQueue when empty
}

var _ pdex.BulkMatches = (*BulkMatchEngine)(nil)

// StartBulkMatch starts the batch's workflow, once: its id is the batch's.
func (e *BulkMatchEngine) StartBulkMatch(ctx context.Context, b pdex.BulkMatch) error {
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
		RequestOwner: pdex.BulkMatchRequestOwner(b.Requester, b.ID), ResultOwner: pdex.BulkMatchResultOwner(b.Requester, b.ID),
	}); err != nil {
		return fmt.Errorf("start bulk member match workflow: %w", err)
	}
	return nil
}
