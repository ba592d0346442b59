package workflows

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// ServeEngine runs the bulk exports we serve to partners (pdex.Exports):
// each is a transfer, direction export, driven by ServeExport.
type ServeEngine struct {
	Client    client.Client
	Store     ServeStore
	TaskQueue string        // TaskQueue when empty
	FileTTL   time.Duration // how long files stay downloadable; 0: DefaultFileTTL
}

// ServeStore is what ServeEngine needs of the store: it creates each
// export's transfer under an idempotency key and completes the key once the
// workflow runs.
type ServeStore interface {
	store.Transfers
	store.Idempotency
}

// StartExport records the export's transfer (created by the requester,
// client transfer.PartnerClientID) and starts its workflow. The workflow id is the
// transfer's (WorkflowID), so that nothing else can ever start a second
// workflow for it.
func (e *ServeEngine) StartExport(ctx context.Context, k transfer.Kickoff) error {
	cid := transfer.PartnerClientID(k.Requester)
	now := k.TransactionTime.UTC().Truncate(time.Microsecond)
	fp := sha256.Sum256([]byte(k.Request + "\x00" + strings.Join(k.MemberIDs, ",")))
	res, err := e.Store.CreateTransfer(ctx, store.NewTransfer{
		ClientID: cid, IdempotencyKey: "bulk-export:" + k.TransferID, Fingerprint: hex.EncodeToString(fp[:]),
		Transfer: transfer.Transfer{ID: k.TransferID, ClientID: cid, PartnerID: k.Requester, Direction: transfer.DirectionExport,
			State: transfer.StateInitiated, CreatedAt: now, UpdatedAt: now},
		Request: transfer.Request{PartnerID: k.Requester, DataScope: transfer.DataScope{ResourceTypes: k.Types, Since: k.Since}},
		Event:   transfer.ExportRequested(k.Requester, k.Request, k.MemberIDs, k.Types, now, k.MatchTransfers).Stamped(now),
	})
	if err != nil {
		return fmt.Errorf("create export transfer: %w", err)
	}
	if !res.Created {
		return fmt.Errorf("export transfer %s exists already", k.TransferID)
	}
	q := e.TaskQueue
	if q == "" {
		q = TaskQueue
	}
	if _, err := e.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: WorkflowID(k.TransferID), TaskQueue: q,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, ServeExportWorkflowName, ServeInput{
		TransferID: k.TransferID, Requester: k.Requester, MemberIDs: k.MemberIDs, Types: k.Types, Since: k.Since,
		TransactionTime: now, Request: k.Request, FileTTL: e.FileTTL,
	}); err != nil {
		return fmt.Errorf("start export workflow: %w", err)
	}
	// The workflow runs: nothing is pending for api.ResumePending, which
	// would otherwise start the push transfer workflow under this id.
	_, err = e.Store.CompleteIdempotency(ctx, cid, "bulk-export:"+k.TransferID, 202, []byte(`{"id":"`+k.TransferID+`"}`))
	return err
}

// ManifestServed signals the export's workflow while it waits for the
// manifest to be served (payload_prepared).
func (e *ServeEngine) ManifestServed(ctx context.Context, transferID string) error {
	return e.signalWhile(ctx, transferID, SignalManifestServed, nil, transfer.StatePayloadPrepared)
}

// FileDownloaded signals the export's workflow while it waits for its
// files to be downloaded (payload_prepared, sent).
func (e *ServeEngine) FileDownloaded(ctx context.Context, transferID, digest string) error {
	return e.signalWhile(ctx, transferID, SignalFileDownloaded, digest, transfer.StatePayloadPrepared, transfer.StateSent)
}

// signalWhile signals the export's workflow while the transfer is in one
// of states, those in which the workflow waits for the signal. Afterwards
// it has no use for it: the requester may download the files again and
// again until they expire, and each signal would only grow the history of
// a workflow that waits for the expiry, or fail on one that has ended. A
// workflow that ends between the read and the signal is no error either:
// the download happened, and its access record is in the store.
func (e *ServeEngine) signalWhile(ctx context.Context, transferID, signal string, arg any, states ...transfer.State) error {
	t, err := e.Store.GetTransfer(ctx, transferID)
	if err != nil {
		return err
	}
	if !slices.Contains(states, t.State) {
		return nil
	}
	err = e.Client.SignalWorkflow(ctx, WorkflowID(transferID), "", signal, arg)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil
	}
	return err
}

// DeleteExport asks the export's workflow to delete the export and waits
// until its files are withdrawn. An export whose workflow has ended is
// gone already.
func (e *ServeEngine) DeleteExport(ctx context.Context, transferID string) error {
	return updateIfRunning(ctx, e.Client, WorkflowID(transferID), UpdateDeleteExport)
}

// updateIfRunning sends update to workflow id and waits until it has
// completed. A workflow that does not exist or has ended takes no update:
// nil, what a delete of what is gone already wants.
func updateIfRunning(ctx context.Context, c client.Client, id, update string) error {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: update, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil
	}
	return err
}
