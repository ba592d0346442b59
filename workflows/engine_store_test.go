package workflows

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// engineFixture is an Engine and a ServeEngine over a real SQLite store and
// a mocked Temporal client, with one transfer, t1, initiated.
type engineFixture struct {
	st     store.Store
	c      *mocks.Client
	engine *Engine
	serve  *ServeEngine
}

func newEngineFixture(t *testing.T) *engineFixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.CreateTransfer(context.Background(), store.NewTransfer{
		ClientID: "c", IdempotencyKey: "key-t1", Fingerprint: "fp",
		Transfer: transfer.Transfer{ID: "t1", ClientID: "c", PartnerID: "sandbox", State: transfer.StateInitiated, CreatedAt: at, UpdatedAt: at},
		Request:  transfer.Request{PartnerID: "sandbox"},
		Event:    transfer.Event{At: at, State: transfer.StateInitiated, Actor: "client:c", Type: "state", Key: transfer.StateKey(transfer.StateInitiated)},
	}); err != nil {
		t.Fatal(err)
	}
	c := &mocks.Client{}
	t.Cleanup(func() { c.AssertExpectations(t) })
	return &engineFixture{st: st, c: c, engine: &Engine{Client: c, Store: st}, serve: &ServeEngine{Client: c, Store: st}}
}

// enter moves t1 to state, with identity and export if given.
func (f *engineFixture) enter(t *testing.T, state transfer.State, id *transfer.IdentityOutcome, exp *transfer.ExportInfo) {
	t.Helper()
	ev := transfer.Entered(state, nil).Stamped(at)
	if _, err := f.st.ApplyChange(context.Background(), "t1", store.Change{Event: ev, State: state, Identity: id, Export: exp}); err != nil {
		t.Fatal(err)
	}
}

// A transfer whose workflow has moved it past initiated is never started
// again: not after the namespace's retention has let Temporal forget the
// closed workflow (simulated here by a client that would start anything).
func TestStartTransferChecksTheStore(t *testing.T) {
	f := newEngineFixture(t)
	f.c.On("ExecuteWorkflow", mock.Anything, mock.Anything, TransferWorkflowName, mock.Anything).
		Return(&mocks.WorkflowRun{}, nil).Once()
	if err := f.engine.StartTransfer(context.Background(), "t1"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []transfer.State{transfer.StateIdentityPending, transfer.StateComplete} {
		f.enter(t, s, nil, nil)
		if err := f.engine.StartTransfer(context.Background(), "t1"); err != nil {
			t.Fatalf("in %s: %v", s, err)
		}
	}
	f.c.AssertNumberOfCalls(t, "ExecuteWorkflow", 1)
}

// The review update has an id derived from the decision: the same
// decision retried is the same update (the server answers it with the
// first outcome), another is not. When the workflow has ended, the store
// tells a retry of the decision it took (no error) from a late different
// one (not in review).
func TestReviewRetry(t *testing.T) {
	approve := Review{Decision: transfer.DecisionApprove, MemberID: "M1", Reviewer: "Rita"}
	again := approve // a retry of the same request
	if ReviewUpdateID(approve) != ReviewUpdateID(again) ||
		ReviewUpdateID(approve) == ReviewUpdateID(Review{Decision: transfer.DecisionApprove, MemberID: "M2", Reviewer: "Rita"}) ||
		ReviewUpdateID(approve) == ReviewUpdateID(Review{Decision: transfer.DecisionReject, Reviewer: "Rita"}) {
		t.Fatal("review update ids do not follow the decision")
	}

	f := newEngineFixture(t)
	var ids []string
	f.c.On("UpdateWorkflow", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		ids = append(ids, args.Get(1).(client.UpdateWorkflowOptions).UpdateID)
	}).Return(nil, serviceerror.NewNotFound("workflow execution already completed"))
	f.enter(t, transfer.StateComplete, &transfer.IdentityOutcome{Status: transfer.IdentityResolved, MemberID: "M1", ReviewedBy: "Rita"}, nil)
	ctx := context.Background()
	d := transfer.ReviewDecision{Decision: transfer.DecisionApprove, MemberID: "M1", Reviewer: "Rita", Reason: "phone matches"}
	if err := f.engine.Review(ctx, "t1", d); err != nil {
		t.Errorf("retry of the decision taken: %v", err)
	}
	for _, other := range []transfer.ReviewDecision{
		{Decision: transfer.DecisionReject, Reviewer: "Rita", Reason: "late"},
		{Decision: transfer.DecisionApprove, MemberID: "M2", Reviewer: "Rita", Reason: "other"},
		{Decision: transfer.DecisionApprove, MemberID: "M1", Reviewer: "Sam", Reason: "another reviewer"},
	} {
		if err := f.engine.Review(ctx, "t1", other); !errors.Is(err, transfer.ErrNotInReview) {
			t.Errorf("%+v after the workflow ended: %v, want not in review", other, err)
		}
	}
	if len(ids) != 4 || ids[0] != ReviewUpdateID(approve) {
		t.Errorf("update ids %v", ids)
	}
}

// A partner's acknowledgement of a transfer whose workflow has ended is
// answered from the store: the receipt it took already is no error,
// another is not awaited (a final answer, not a retry later).
func TestAcknowledgeAfterTheWorkflowEnded(t *testing.T) {
	f := newEngineFixture(t)
	f.c.On("SignalWorkflow", mock.Anything, WorkflowID("t1"), "", SignalPartnerAck, mock.Anything).
		Return(serviceerror.NewNotFound("workflow execution already completed"))
	ctx := context.Background()
	f.enter(t, transfer.StateSent, nil, &transfer.ExportInfo{ManifestSHA256: "m"})
	if err := f.engine.Acknowledge(ctx, "t1", "r1", ""); !errors.Is(err, transfer.ErrNotAwaitingAck) {
		t.Errorf("ended in sent: %v, want not awaiting", err)
	}
	f.enter(t, transfer.StateComplete, nil, &transfer.ExportInfo{ManifestSHA256: "m", ReceiptID: "r1"})
	if err := f.engine.Acknowledge(ctx, "t1", "r1", ""); err != nil {
		t.Errorf("the same receipt again: %v", err)
	}
	if err := f.engine.Acknowledge(ctx, "t1", "r2", ""); !errors.Is(err, transfer.ErrNotAwaitingAck) {
		t.Errorf("another receipt: %v, want not awaiting", err)
	}
}

// A served export's workflow hears of downloads only while it waits for
// them: repeated downloads of a complete export signal nothing, and a
// workflow that ended meanwhile is no error to the requester.
func TestServedDownloadsSignalOnlyWhileAwaited(t *testing.T) {
	f := newEngineFixture(t)
	ctx := context.Background()
	f.c.On("SignalWorkflow", mock.Anything, WorkflowID("t1"), "", SignalFileDownloaded, "d1").Return(nil).Once()
	f.enter(t, transfer.StateSent, nil, nil)
	if err := f.serve.FileDownloaded(ctx, "t1", "d1"); err != nil {
		t.Fatal(err)
	}
	f.c.On("SignalWorkflow", mock.Anything, WorkflowID("t1"), "", SignalFileDownloaded, "d2").
		Return(serviceerror.NewNotFound("workflow execution already completed")).Once()
	if err := f.serve.FileDownloaded(ctx, "t1", "d2"); err != nil {
		t.Errorf("a workflow that ended meanwhile: %v", err)
	}
	for _, s := range []transfer.State{transfer.StateAcknowledged, transfer.StateComplete} {
		f.enter(t, s, nil, nil)
		for range 3 {
			if err := f.serve.FileDownloaded(ctx, "t1", "d1"); err != nil {
				t.Fatal(err)
			}
			if err := f.serve.ManifestServed(ctx, "t1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.c.AssertNumberOfCalls(t, "SignalWorkflow", 2)
}
