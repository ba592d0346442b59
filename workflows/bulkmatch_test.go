package workflows

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
)

// TestBulkMemberMatch: members decided one by one, a member whose
// activity fails lands in the result as an error and the batch completes
// with every member, in order, and the members withdrawn.
func TestBulkMemberMatch(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(BulkMemberMatch, workflow.RegisterOptions{Name: BulkMemberMatchWorkflowName})
	registerActivities(env)
	decided := map[string]transfer.BulkMemberOutcome{
		"d0": {Outcome: pdex.OutcomeMatched, MemberID: "M1"},
		"d1": {Outcome: pdex.OutcomeNoMatch},
		"d3": {Outcome: pdex.OutcomeConsentDenied, Reason: pdex.ConsentPeriod},
		"d4": {Outcome: pdex.OutcomeMatched, MemberID: "M2"},
		"d5": {Outcome: pdex.OutcomeInvalid, Why: "MemberPatient: is required"},
	}
	env.OnActivity(bulk.MatchBulkMember, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.BulkMemberInput) (transfer.BulkMemberOutcome, error) {
			if in.Requester != "p1" || in.BatchID != "b1" {
				t.Errorf("member input %+v", in)
			}
			o, ok := decided[in.Digest]
			if !ok { // the matcher is down for this one
				return o, temporal.NewNonRetryableApplicationError("index unavailable", activities.ErrTypeValidation, nil)
			}
			return o, nil
		})
	var finished activities.FinishBulkInput
	env.OnActivity(bulk.FinishBulkMatch, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.FinishBulkInput) (string, error) {
			finished = in
			return "result-digest", nil
		})
	env.ExecuteWorkflow(BulkMemberMatch, BulkMatchInput{BatchID: "b1", Requester: "p1",
		Members: []string{"d0", "d1", "d2", "d3", "d4", "d5"}, RequestOwner: "req", ResultOwner: "res"})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed %v, error %v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	var out BulkMatchOutput
	if err := env.GetWorkflowResult(&out); err != nil {
		t.Fatal(err)
	}
	if want := (BulkMatchOutput{ResultSHA256: "result-digest", Matched: 2, NonMatched: 3, ConsentDenied: 1}); out != want {
		t.Errorf("output %+v, want %+v", out, want)
	}
	if finished.RequestOwner != "req" || finished.ResultOwner != "res" || finished.Result.BatchID != "b1" || finished.Result.Requester != "p1" {
		t.Errorf("finish input %+v", finished)
	}
	want := []string{pdex.OutcomeMatched, pdex.OutcomeNoMatch, pdex.OutcomeError, pdex.OutcomeConsentDenied, pdex.OutcomeMatched, pdex.OutcomeInvalid}
	if len(finished.Result.Members) != len(want) {
		t.Fatalf("result members %+v", finished.Result.Members)
	}
	for i, m := range finished.Result.Members {
		if m.Index != i || m.Outcome != want[i] {
			t.Errorf("member %d: %+v, want outcome %s", i, m, want[i])
		}
	}
	if finished.Result.Members[4].MemberID != "M2" || finished.Result.Members[3].Reason != pdex.ConsentPeriod {
		t.Errorf("members lost their detail: %+v", finished.Result.Members)
	}
}

// bulkEnv runs BulkMemberMatch over members that take a second each to
// decide, recording which members were decided and how the batch ended.
type bulkEnv struct {
	env      *testsuite.TestWorkflowEnvironment
	mu       sync.Mutex
	decided  []int
	cancel   []activities.CancelBulkInput
	finished bool
}

// newBulkEnv's FinishBulkMatch takes finish (test time).
func newBulkEnv(finish time.Duration) *bulkEnv {
	var s testsuite.WorkflowTestSuite
	b := &bulkEnv{env: s.NewTestWorkflowEnvironment()}
	b.env.RegisterWorkflowWithOptions(BulkMemberMatch, workflow.RegisterOptions{Name: BulkMemberMatchWorkflowName})
	registerActivities(b.env)
	b.env.OnActivity(bulk.MatchBulkMember, mock.Anything, mock.Anything).After(time.Second).Return(
		func(_ context.Context, in activities.BulkMemberInput) (transfer.BulkMemberOutcome, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.decided = append(b.decided, in.Index)
			return transfer.BulkMemberOutcome{Outcome: pdex.OutcomeNoMatch}, nil
		})
	b.env.OnActivity(bulk.FinishBulkMatch, mock.Anything, mock.Anything).After(finish).Return(
		func(context.Context, activities.FinishBulkInput) (string, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.finished = true
			return "result-digest", nil
		})
	b.env.OnActivity(bulk.CancelBulkMatch, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.CancelBulkInput) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.cancel = append(b.cancel, in)
			return nil
		})
	return b
}

func (b *bulkEnv) run(members int) {
	in := BulkMatchInput{BatchID: "b1", Requester: "p1", RequestOwner: "req", ResultOwner: "res"}
	for i := range members {
		in.Members = append(in.Members, fmt.Sprintf("d%d", i))
	}
	b.env.ExecuteWorkflow(BulkMemberMatch, in)
}

// TestBulkMemberMatchDeleted: a delete stops the batch: no member is
// scheduled after it, the batch is cancelled (members withdrawn, why
// recorded) and never finished, and the update returns once it is.
func TestBulkMemberMatchDeleted(t *testing.T) {
	b := newBulkEnv(0)
	var updErr error
	updated := false
	b.env.RegisterDelayedCallback(func() {
		b.env.UpdateWorkflow(UpdateDeleteBulkMatch, "del-1", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { updErr = err },
			OnAccept:   func() {},
			OnComplete: func(_ any, err error) { updated, updErr = true, err },
		})
	}, 2500*time.Millisecond)
	b.run(20)
	if !b.env.IsWorkflowCompleted() || b.env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed %v, error %v", b.env.IsWorkflowCompleted(), b.env.GetWorkflowError())
	}
	var out BulkMatchOutput
	if err := b.env.GetWorkflowResult(&out); err != nil || !out.Deleted || out.ResultSHA256 != "" {
		t.Errorf("output %+v, %v; want deleted", out, err)
	}
	if !updated || updErr != nil {
		t.Errorf("update completed %v, error %v", updated, updErr)
	}
	// Four at a time, a second each: members 0-3 at 0 s, 4-7 at 1 s, 8-11
	// at 2 s; the delete at 2.5 s lets none start at 3 s.
	if len(b.decided) != 12 || b.finished {
		t.Errorf("decided %v, finished %v; want 12 and not finished", b.decided, b.finished)
	}
	if len(b.cancel) != 1 || b.cancel[0] != (activities.CancelBulkInput{BatchID: "b1", RequestOwner: "req", Members: 20,
		Reason: activities.BulkDeleted, Actor: "partner:p1"}) {
		t.Errorf("cancel %+v", b.cancel)
	}
}

// TestBulkMemberMatchCancelled: ops cancelling the workflow cancels the
// batch the same way (members withdrawn on a disconnected context), and
// the workflow ends cancelled.
func TestBulkMemberMatchCancelled(t *testing.T) {
	b := newBulkEnv(0)
	b.env.RegisterDelayedCallback(b.env.CancelWorkflow, 1500*time.Millisecond)
	b.run(20)
	if err := b.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error %v, want cancelled", err)
	}
	if b.finished || len(b.decided) >= 20 {
		t.Errorf("decided %v, finished %v", b.decided, b.finished)
	}
	if len(b.cancel) != 1 || b.cancel[0].Reason != activities.BulkCancelled || b.cancel[0].Actor != "workflow" {
		t.Errorf("cancel %+v", b.cancel)
	}
}

// TestBulkMemberMatchDeletedWhileFinishing: a delete once every member is
// decided lets the batch finish (the caller removes the result) and
// returns when it has.
func TestBulkMemberMatchDeletedWhileFinishing(t *testing.T) {
	b := newBulkEnv(time.Minute)
	updated := false
	b.env.RegisterDelayedCallback(func() {
		b.env.UpdateWorkflow(UpdateDeleteBulkMatch, "del-1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("rejected: %v", err) }, OnAccept: func() {},
			OnComplete: func(_ any, err error) {
				b.mu.Lock()
				defer b.mu.Unlock()
				updated = err == nil && b.finished
			},
		})
	}, 10*time.Second) // 4 members: decided by 1 s; finishing until 61 s
	b.run(4)
	var out BulkMatchOutput
	if err := b.env.GetWorkflowResult(&out); err != nil || out.Deleted || out.ResultSHA256 != "result-digest" {
		t.Errorf("output %+v, %v; want finished", out, err)
	}
	if !updated || len(b.cancel) != 0 {
		t.Errorf("update answered after finishing: %v; cancels %+v", updated, b.cancel)
	}
}

// The engines are what package pdex runs served exports and batches with.
var (
	_ pdex.BulkMatches = (*BulkMatchEngine)(nil)
	_ pdex.Exports     = (*ServeEngine)(nil)
)
