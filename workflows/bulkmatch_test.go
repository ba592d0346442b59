package workflows

import (
	"context"
	"testing"

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
	env.RegisterActivity(&activities.Activities{})
	decided := map[string]transfer.BulkMemberOutcome{
		"d0": {Outcome: pdex.OutcomeMatched, MemberID: "M1"},
		"d1": {Outcome: pdex.OutcomeNoMatch},
		"d3": {Outcome: pdex.OutcomeConsentDenied, Reason: pdex.ConsentPeriod},
		"d4": {Outcome: pdex.OutcomeMatched, MemberID: "M2"},
		"d5": {Outcome: pdex.OutcomeInvalid, Why: "MemberPatient: is required"},
	}
	env.OnActivity(a.MatchBulkMember, mock.Anything, mock.Anything).Return(
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
	env.OnActivity(a.FinishBulkMatch, mock.Anything, mock.Anything).Return(
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
