package workflows

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

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
	Store     EngineStore
	TaskQueue string // TaskQueue when empty
	// Namespace is the client's namespace, which Ready checks exists;
	// client.DefaultNamespace when empty, as for the client.
	Namespace string
}

// EngineStore is what Engine needs of the store: the transfer it starts
// or steers, the artifact a review note is kept as, and the key the note's
// digest in the audit log is keyed with.
type EngineStore interface {
	store.Transfers
	store.Artifacts
	// PresentationKey is the store's token key (transfer.KeyedDigest).
	PresentationKey(ctx context.Context) ([]byte, error)
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
//
// The store is the lasting guard: a transfer no longer initiated has had
// its workflow (its first step records identity_pending), so it is not
// started, whatever Temporal remembers. The workflow-id reuse policy alone
// forgets a closed workflow once the namespace's retention has passed, and
// a request whose idempotency record stayed pending (ResumePending) would
// then run the transfer a second time.
func (e *Engine) StartTransfer(ctx context.Context, transferID string) error {
	t, err := e.Store.GetTransfer(ctx, transferID)
	if err != nil {
		return err
	}
	if t.State != transfer.StateInitiated {
		return nil // it ran, or runs: never again
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

// ReviewNoteName is the artifact name of a reviewer's reason.
const ReviewNoteName = "review-note.txt"

// Review delivers a person's decision to a transfer in manual review and
// records it in the timeline. The reviewer's reason is free text that may
// hold PHI: it stays out of the workflow's history and out of the audit
// log, which records its keyed digest (transfer.KeyedDigest: a short
// reason could be guessed from a plain hash); the text is an artifact of
// the transfer. This runs in the API, not in a workflow.
func (e *Engine) Review(ctx context.Context, transferID string, d transfer.ReviewDecision) error {
	// The reason is free text and may name the member: it is kept as a
	// payload by digest, before the decision takes effect so that it is
	// never lost, and the audit log holds only its keyed digest.
	note := []byte(d.Reason)
	sum := sha256.Sum256(note)
	noteDigest := hex.EncodeToString(sum[:])
	key, err := e.Store.PresentationKey(ctx)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	noteHMAC := transfer.KeyedDigest(key, d.Reason)
	if len(note) > 0 {
		if err := e.Store.PutArtifact(ctx, store.Artifact{
			Digest: noteDigest, TransferID: transferID, Name: ReviewNoteName, ContentType: "text/plain; charset=utf-8",
			Size: int64(len(note)), Data: note, CreatedAt: nowUTC(),
		}); err != nil {
			return err
		}
	}
	rv := Review{Decision: d.Decision, MemberID: d.MemberID, Reviewer: d.Reviewer}
	h, err := e.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: WorkflowID(transferID),
		// The same decision again (a client retrying after a lost
		// answer) is the same update: the server answers it with the
		// first one's outcome instead of running the validator again.
		UpdateID:     ReviewUpdateID(rv),
		UpdateName:   UpdateReview,
		Args:         []any{rv},
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
			// A workflow that has ended no longer knows its updates: the
			// store says whether this decision is the one it took.
			if applied, gerr := e.reviewApplied(ctx, transferID, rv); gerr != nil {
				return gerr
			} else if !applied {
				return transfer.ErrNotInReview
			}
		default:
			return err
		}
	}
	_, err = e.Store.ApplyChange(ctx, transferID, store.Change{Event: transfer.ReviewNoted(d.Reviewer, d.Decision, noteHMAC, len(note)).Stamped(nowUTC())})
	return err
}

// ReviewUpdateID is the update id of a review decision: a digest of the
// decision, the member approved and the reviewer, so that a retried
// request is the same update and gets the first one's answer, while a
// different decision is a new update the workflow refuses (409).
func ReviewUpdateID(rv Review) string {
	sum := sha256.Sum256([]byte(rv.Decision + "\x00" + rv.MemberID + "\x00" + rv.Reviewer))
	return "review-" + hex.EncodeToString(sum[:16])
}

// reviewApplied reports whether the transfer's recorded identity shows
// rv as the review it took: decided by the same reviewer, to the same
// outcome.
func (e *Engine) reviewApplied(ctx context.Context, transferID string, rv Review) (bool, error) {
	t, err := e.Store.GetTransfer(ctx, transferID)
	if err != nil {
		return false, err
	}
	id := t.Identity
	if id == nil || id.ReviewedBy != rv.Reviewer {
		return false, nil
	}
	if rv.Decision == transfer.DecisionApprove {
		return id.Status == transfer.IdentityResolved && id.MemberID == rv.MemberID, nil
	}
	return id.Status == transfer.IdentityNoMatch, nil
}

// Acknowledge signals a partner's verified acknowledgement to the
// transfer's workflow, which takes it while it waits in sent. A workflow
// that has ended takes no signal: that is transfer.ErrNotAwaitingAck
// unless the transfer was acknowledged with this very receipt (a repeat),
// which is no error: the partner is told where the transfer stands, not
// asked to retry.
func (e *Engine) Acknowledge(ctx context.Context, transferID, receiptID, signedBy string) error {
	err := e.Client.SignalWorkflow(ctx, WorkflowID(transferID), "", SignalPartnerAck, PartnerAck{ReceiptID: receiptID, SignedBy: signedBy})
	var nf *serviceerror.NotFound
	if !errors.As(err, &nf) {
		return err
	}
	t, gerr := e.Store.GetTransfer(ctx, transferID)
	if gerr != nil {
		return gerr
	}
	if t.Export != nil && t.Export.ReceiptID == receiptID && t.State != transfer.StateSent && t.State != transfer.StateFailed {
		return nil
	}
	return transfer.ErrNotAwaitingAck
}

// Started reports whether a workflow was ever started for the transfer:
// its own (a transfer, import or served export) or, for a
// $bulk-member-match, its batch's, whose id is the transfer's.
func (e *Engine) Started(ctx context.Context, transferID string) (bool, error) {
	for _, id := range []string{WorkflowID(transferID), BulkMatchWorkflowID(transferID)} {
		_, err := e.Client.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case err == nil:
			return true, nil
		case !errors.As(err, &nf):
			return false, fmt.Errorf("describe workflow %s: %w", id, err)
		}
	}
	return false, nil
}

// Ready reports whether Temporal answers and serves our namespace: a
// frontend without it accepts connections but starts nothing. Its error
// carries a reason that a caller may show (NotReadyError).
func (e *Engine) Ready(ctx context.Context) error {
	if _, err := e.Client.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return &NotReadyError{Reason: "the workflow engine is unavailable", Err: err}
	}
	ns := e.Namespace
	if ns == "" {
		ns = client.DefaultNamespace
	}
	resp, err := e.Client.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	var nf *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &nf):
		return &NotReadyError{Reason: "the workflow engine's namespace does not exist", Err: err}
	case err != nil:
		return &NotReadyError{Reason: "the workflow engine is unavailable", Err: err}
	case resp.GetNamespaceInfo().GetState() != enumspb.NAMESPACE_STATE_REGISTERED:
		return &NotReadyError{Reason: "the workflow engine's namespace is not active",
			Err: fmt.Errorf("namespace %q is %s", ns, resp.GetNamespaceInfo().GetState())}
	}
	return nil
}

// NotReadyError is why the workflow engine is not ready: Reason is safe to
// show to whoever asks (/readyz: it names no host or namespace), Err is
// the cause, for the log.
type NotReadyError struct {
	Reason string
	Err    error
}

func (e *NotReadyError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *NotReadyError) Unwrap() error { return e.Err }

// PublicReason is the reason without the cause.
func (e *NotReadyError) PublicReason() string { return e.Reason }

// Register registers the workflows and every group of acts on w.
func Register(w worker.Registry, acts Activities) {
	RegisterWorkflows(w)
	for _, g := range acts.groups() {
		w.RegisterActivity(g)
	}
}

// Registrar is what registering a workflow needs: a worker or a
// replayer.
type Registrar interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// RegisterWorkflows registers every workflow type under its stable name:
// on workers, and on the replay test's replayer, so that a new workflow
// type is replayed as soon as a history of it is committed.
func RegisterWorkflows(w Registrar) {
	w.RegisterWorkflowWithOptions(Transfer, workflow.RegisterOptions{Name: TransferWorkflowName})
	w.RegisterWorkflowWithOptions(ImportTransfer, workflow.RegisterOptions{Name: ImportWorkflowName})
	w.RegisterWorkflowWithOptions(AuditCheckpointWorkflow, workflow.RegisterOptions{Name: AuditCheckpointWorkflowName})
	w.RegisterWorkflowWithOptions(RetentionPurgeWorkflow, workflow.RegisterOptions{Name: RetentionPurgeWorkflowName})
	w.RegisterWorkflowWithOptions(ServeExport, workflow.RegisterOptions{Name: ServeExportWorkflowName})
	w.RegisterWorkflowWithOptions(BulkMemberMatch, workflow.RegisterOptions{Name: BulkMemberMatchWorkflowName})
}

// nowUTC is the wall clock of client-side code; workflows never call it.
func nowUTC() time.Time { return time.Now().UTC() }
