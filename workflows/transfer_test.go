package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/fhirrest"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/transfer"
)

// harness runs the Transfer workflow over mocked activities and records
// every step the workflow asks RecordState to record.
type harness struct {
	t        *testing.T
	env      *testsuite.TestWorkflowEnvironment
	recorded []activities.RecordInput
	calls    map[string]int // every run of an activity, local or not
	local    map[string]int // the runs as local activities
	queues   map[string]string
}

// shapes are the two shapes of the workflow a test runs in: the current
// one, and the one of transfers started before versionLocalSteps.
var shapes = []struct {
	name  string
	local bool
}{{"local steps", true}, {"before local steps", false}}

func newHarness(t *testing.T) *harness { return newShapeHarness(t, true) }

// newShapeHarness is newHarness for the shape with or without local
// steps (versionLocalSteps).
func newShapeHarness(t *testing.T, local bool) *harness {
	var s testsuite.WorkflowTestSuite
	h := &harness{t: t, env: s.NewTestWorkflowEnvironment(), calls: map[string]int{}, local: map[string]int{}, queues: map[string]string{}}
	h.env.RegisterWorkflowWithOptions(Transfer, workflow.RegisterOptions{Name: TransferWorkflowName})
	registerActivities(h.env)
	if !local {
		h.env.OnGetVersion(versionLocalSteps, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	}
	h.env.OnActivity(rec.RecordState, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RecordInput) (bool, error) {
			h.recorded = append(h.recorded, in)
			return true, nil
		})
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		h.calls[info.ActivityType.Name]++
		h.queues[info.ActivityType.Name] = info.TaskQueue
	})
	h.env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
		h.calls[info.ActivityType.Name]++
		h.local[info.ActivityType.Name]++
	})
	return h
}

// wantShape checks which activities ran locally: the steps on our own
// store in the current shape, none before it.
func (h *harness) wantShape(local bool) {
	h.t.Helper()
	for name, n := range h.calls {
		want := 0
		if local && activities.Policies[name].Local {
			want = n
		}
		if h.local[name] != want {
			h.t.Errorf("%s ran %d times, %d of them locally; want %d locally", name, n, h.local[name], want)
		}
	}
	if local && h.local[activities.NameRecordState] == 0 {
		h.t.Errorf("no local RecordState: %v", h.local)
	}
}

// happy mocks every activity for a transfer that goes through; tests
// override single activities after calling it.
func (h *harness) happy() *harness {
	h.env.OnActivity(push.ResolveIdentity, mock.Anything, mock.Anything).Return(resolved, nil)
	h.env.OnActivity(push.CheckConsent, mock.Anything, mock.Anything).Return(verified, nil)
	h.env.OnActivity(push.PrepareExport, mock.Anything, mock.Anything).Return(prepared, nil)
	h.env.OnActivity(push.SendExport, mock.Anything, mock.Anything).Return(acked, nil)
	h.env.OnActivity(push.WithdrawExport, mock.Anything, mock.Anything).Return(1, nil)
	return h
}

func (h *harness) run() Result {
	h.env.ExecuteWorkflow(Transfer, Input{TransferID: "t1", PartnerID: "sandbox"})
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("workflow did not complete")
	}
	if err := h.env.GetWorkflowError(); err != nil {
		h.t.Fatalf("workflow error: %v", err)
	}
	var r Result
	if err := h.env.GetWorkflowResult(&r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// states is the sequence of states entered, in order.
func (h *harness) states() []transfer.State {
	var s []transfer.State
	for _, r := range h.recorded {
		if r.State != "" {
			s = append(s, r.State)
		}
	}
	return s
}

func (h *harness) wantStates(want ...transfer.State) {
	h.t.Helper()
	got := h.states()
	if len(got) != len(want) {
		h.t.Fatalf("states %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			h.t.Fatalf("states %v, want %v", got, want)
		}
	}
}

func (h *harness) wantCalls(activity string, n int) {
	h.t.Helper()
	if h.calls[activity] != n {
		h.t.Errorf("%s ran %d times, want %d", activity, h.calls[activity], n)
	}
}

var (
	resolved = transfer.IdentityOutcome{Status: transfer.IdentityResolved, MemberID: "M1", Score: 1,
		Rationale: &transfer.Rationale{Rule: "exact_member_id_birth_date"}}
	ambiguous = transfer.IdentityOutcome{Status: transfer.IdentityAmbiguous, MemberID: "M1", Candidates: []string{"M1", "M2"}}
	noMatch   = transfer.IdentityOutcome{Status: transfer.IdentityNoMatch}
	verified  = transfer.ConsentOutcome{Status: transfer.ConsentVerified, ConsentID: "c1", Scope: "regular"}
	denied    = transfer.ConsentOutcome{Status: transfer.ConsentDenied, ConsentID: "c1", Reason: "consent period has ended"}
	prepared  = activities.Prepared{SignatureSHA256: "sig", Export: transfer.ExportInfo{ManifestSHA256: "abc", KID: "k1",
		Files: []transfer.ExportFile{{Type: "Patient", Count: 1, SHA256: "f1"}}}}
	acked    = activities.Sent{Status: "acknowledged", ReceiptID: "r1", Acknowledged: true}
	accepted = activities.Sent{Status: "accepted"}
)

var happyPath = []transfer.State{
	transfer.StateIdentityPending, transfer.StateConsentVerified, transfer.StatePayloadPrepared,
	transfer.StateSent, transfer.StateAcknowledged, transfer.StateComplete,
}

func TestHappyPathEntersEachStateOnceInOrder(t *testing.T) {
	for _, shape := range shapes {
		t.Run(shape.name, func(t *testing.T) {
			h := newShapeHarness(t, shape.local).happy()
			r := h.run()
			if r.State != transfer.StateComplete || r.Error != nil {
				t.Fatalf("result %+v", r)
			}
			h.wantStates(happyPath...)
			h.wantCalls(activities.NameCheckConsent, 2) // before preparing and again before sending
			h.wantCalls(activities.NameWithdrawExport, 0)
			h.wantShape(shape.local)
			// Both shapes send on the partner's queue; the new one
			// without asking versionPartnerQueues.
			if q := h.queues[activities.NameSendExport]; !strings.HasSuffix(q, "-partner-sandbox") {
				t.Errorf("SendExport ran on %q, want the partner's queue", q)
			}
			last := h.recorded[len(h.recorded)-2] // acknowledged carries the receipt
			if last.Export == nil || last.Export.ReceiptID != "r1" {
				t.Errorf("acknowledged step %+v, want receipt r1", last)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	partnerRejected := temporal.NewApplicationError("partner answered 422", activities.ErrTypePartnerRejected)
	for _, tc := range []struct {
		name       string
		setup      func(h *harness)
		wantType   string
		wantStates []transfer.State
		compensate bool
		sends      int
	}{
		{
			name: "no member matches",
			setup: func(h *harness) {
				h.env.OnActivity(push.ResolveIdentity, mock.Anything, mock.Anything).Return(noMatch, nil)
			},
			wantType:   transfer.ErrorNoMatch,
			wantStates: []transfer.State{transfer.StateIdentityPending, transfer.StateFailed},
		},
		{
			name: "consent denied at the first check",
			setup: func(h *harness) {
				h.env.OnActivity(push.CheckConsent, mock.Anything, mock.Anything).Return(denied, nil)
			},
			wantType:   transfer.ErrorConsentDenied,
			wantStates: []transfer.State{transfer.StateIdentityPending, transfer.StateFailed},
		},
		{
			name: "consent lapses before sending",
			setup: func(h *harness) {
				h.env.OnActivity(push.CheckConsent, mock.Anything, mock.MatchedBy(func(in activities.ConsentInput) bool { return in.Phase == "initial" })).Return(verified, nil)
				h.env.OnActivity(push.CheckConsent, mock.Anything, mock.MatchedBy(func(in activities.ConsentInput) bool { return in.Phase == "before_send" })).Return(denied, nil)
			},
			wantType:   transfer.ErrorConsentDenied,
			wantStates: []transfer.State{transfer.StateIdentityPending, transfer.StateConsentVerified, transfer.StatePayloadPrepared, transfer.StateFailed},
			compensate: true,
		},
		{
			name: "partner refuses our credentials: its type and class as the connector gave them",
			setup: func(h *harness) {
				h.env.OnActivity(push.SendExport, mock.Anything, mock.Anything).Return(activities.Sent{},
					temporal.NewApplicationErrorWithOptions("partner answered 401", connectors.ErrTypeAuth,
						temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{fault.Auth}}))
			},
			wantType:   transfer.ErrorPartnerAuth,
			wantStates: []transfer.State{transfer.StateIdentityPending, transfer.StateConsentVerified, transfer.StatePayloadPrepared, transfer.StateFailed},
			compensate: true,
			sends:      1,
		},
		{
			name: "partner rejects: not retried, export withdrawn",
			setup: func(h *harness) {
				h.env.OnActivity(push.SendExport, mock.Anything, mock.Anything).Return(activities.Sent{}, partnerRejected)
			},
			wantType:   transfer.ErrorPartnerRejected,
			wantStates: []transfer.State{transfer.StateIdentityPending, transfer.StateConsentVerified, transfer.StatePayloadPrepared, transfer.StateFailed},
			compensate: true,
			sends:      1,
		},
		{
			name: "partner accepts but never acknowledges",
			setup: func(h *harness) {
				h.env.OnActivity(push.SendExport, mock.Anything, mock.Anything).Return(accepted, nil)
			},
			wantType:   transfer.ErrorAckTimeout,
			wantStates: []transfer.State{transfer.StateIdentityPending, transfer.StateConsentVerified, transfer.StatePayloadPrepared, transfer.StateSent, transfer.StateFailed},
			compensate: true,
			sends:      1,
		},
	} {
		for _, shape := range shapes {
			t.Run(tc.name+"/"+shape.name, func(t *testing.T) {
				h := newShapeHarness(t, shape.local)
				tc.setup(h)
				h.happy()
				r := h.run()
				if r.State != transfer.StateFailed || r.Error == nil || r.Error.Type != tc.wantType {
					t.Fatalf("result %+v, want failed/%s", r, tc.wantType)
				}
				h.wantShape(shape.local)
				h.wantStates(tc.wantStates...)
				comp := 0
				if tc.compensate {
					comp = 1
				}
				h.wantCalls(activities.NameWithdrawExport, comp)
				if tc.sends > 0 {
					h.wantCalls(activities.NameSendExport, tc.sends)
				}
				failed := h.recorded[len(h.recorded)-1]
				if failed.Error == nil || failed.Error.Type != tc.wantType {
					t.Errorf("failed step %+v, want error type %s", failed, tc.wantType)
				}
			})
		}
	}
}

func TestTransientSendFailuresAreRetried(t *testing.T) {
	h := newHarness(t)
	n := 0
	h.env.OnActivity(push.SendExport, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.SendInput) (activities.Sent, error) {
			n++
			if n < 3 {
				return activities.Sent{}, temporal.NewApplicationError("connection refused", activities.ErrTypeTransport)
			}
			return acked, nil
		})
	h.happy()
	if r := h.run(); r.State != transfer.StateComplete {
		t.Fatalf("result %+v", r)
	}
	h.wantCalls(activities.NameSendExport, 3)
	h.wantStates(happyPath...)
}

func TestLateAcknowledgementByPartnerSignal(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(push.SendExport, mock.Anything, mock.Anything).Return(accepted, nil)
	h.happy()
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(SignalPartnerAck, PartnerAck{ReceiptID: "late-1"})
	}, time.Hour)
	if r := h.run(); r.State != transfer.StateComplete {
		t.Fatalf("result %+v", r)
	}
	h.wantStates(happyPath...)
}

// review sends a review update after the workflow parked and records how
// the validator answered.
func (h *harness) review(after time.Duration, rv Review, rejected *error) {
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(UpdateReview, "u-"+rv.Decision+rv.MemberID, &testsuite.TestUpdateCallback{
			OnReject: func(err error) { *rejected = err },
			OnAccept: func() {},
			OnComplete: func(any, error) {
			},
		}, rv)
	}, after)
}

func TestManualReview(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reviews    []Review
		wantState  transfer.State
		wantType   string
		wantReject bool
	}{
		{name: "approve a candidate", reviews: []Review{{Decision: "approve", MemberID: "M2", Reviewer: "ops1"}}, wantState: transfer.StateComplete},
		{name: "reject", reviews: []Review{{Decision: "reject", Reviewer: "ops1"}}, wantState: transfer.StateFailed, wantType: transfer.ErrorReviewRejected},
		{name: "approve a non-candidate is refused, then timeout", reviews: []Review{{Decision: "approve", MemberID: "M9", Reviewer: "ops1"}},
			wantState: transfer.StateFailed, wantType: transfer.ErrorReviewTimeout, wantReject: true},
		{name: "nobody decides", wantState: transfer.StateFailed, wantType: transfer.ErrorReviewTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.env.OnActivity(push.ResolveIdentity, mock.Anything, mock.Anything).Return(ambiguous, nil)
			var prepareFor string
			h.env.OnActivity(push.PrepareExport, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in activities.PrepareInput) (activities.Prepared, error) {
					prepareFor = in.MemberID
					return prepared, nil
				})
			h.happy()
			var rejected error
			for _, rv := range tc.reviews {
				h.review(time.Hour, rv, &rejected)
			}
			r := h.run()
			if r.State != tc.wantState || (tc.wantType != "" && (r.Error == nil || r.Error.Type != tc.wantType)) {
				t.Fatalf("result %+v, want %s %s", r, tc.wantState, tc.wantType)
			}
			if (rejected != nil) != tc.wantReject {
				t.Errorf("update rejected: %v, want rejected %v", rejected, tc.wantReject)
			}
			if got := h.states(); got[1] != transfer.StateManualReview {
				t.Errorf("states %v, want manual_review second", got)
			}
			if tc.wantState == transfer.StateComplete && prepareFor != "M2" {
				t.Errorf("export prepared for %q, want the approved candidate M2", prepareFor)
			}
			// A decision taken is recorded with its reviewer, approve or reject.
			decisions := 0
			for _, rec := range h.recorded {
				if rec.Type == transfer.EventReviewDecision {
					decisions++
					if rec.Actor != "reviewer:ops1" || rec.Detail["reviewer"] != "ops1" || rec.Identity == nil || rec.Identity.ReviewedBy != "ops1" {
						t.Errorf("review decision recorded as %+v", rec)
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.wantType == "" || tc.wantType == transfer.ErrorReviewRejected]; decisions != want {
				t.Errorf("%d review decisions recorded, want %d", decisions, want)
			}
		})
	}
}

func TestCancelAfterPrepareStillCompensates(t *testing.T) {
	for _, shape := range shapes {
		t.Run(shape.name, func(t *testing.T) {
			h := newShapeHarness(t, shape.local)
			h.env.OnActivity(push.SendExport, mock.Anything, mock.Anything).Return(accepted, nil)
			h.happy()
			h.env.RegisterDelayedCallback(func() { h.env.CancelWorkflow() }, time.Hour)
			h.env.ExecuteWorkflow(Transfer, Input{TransferID: "t1", PartnerID: "sandbox"})
			var r Result
			if err := h.env.GetWorkflowResult(&r); err != nil {
				t.Fatalf("workflow error: %v", err)
			}
			if r.State != transfer.StateFailed || r.Error.Type != transfer.ErrorCancelled {
				t.Fatalf("result %+v, want failed/cancelled", r)
			}
			h.wantCalls(activities.NameWithdrawExport, 1)
			h.wantShape(shape.local) // the failure is recorded locally, on the disconnected context
			if s := h.states(); s[len(s)-1] != transfer.StateFailed {
				t.Errorf("states %v, want failed recorded after cancel", s)
			}
		})
	}
}

func TestReviewValidator(t *testing.T) {
	approve := Review{Decision: "approve", MemberID: "M2", Reviewer: "ops1"}
	for _, tc := range []struct {
		name     string
		awaiting bool
		decided  bool
		rv       Review
		wantType string // "" = accepted
	}{
		{"waiting, a candidate", true, false, approve, ""},
		{"waiting, reject", true, false, Review{Decision: "reject"}, ""},
		{"waiting, not a candidate", true, false, Review{Decision: "approve", MemberID: "M9"}, ErrTypeInvalidDecision},
		{"waiting, unknown decision", true, false, Review{Decision: "maybe"}, ErrTypeInvalidDecision},
		{"not waiting (before review, or after its timeout)", false, false, approve, ErrTypeNotInReview},
		{"already decided", true, true, approve, ErrTypeNotInReview},
	} {
		r := &run{identity: ambiguous, awaiting: tc.awaiting}
		if tc.decided {
			r.review = &Review{Decision: "reject"}
		}
		err := r.validateReview(tc.rv)
		var ae *temporal.ApplicationError
		switch {
		case tc.wantType == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.wantType != "" && (!errors.As(err, &ae) || ae.Type() != tc.wantType):
			t.Errorf("%s: %v, want %s", tc.name, err, tc.wantType)
		}
	}
}

// TestFailureOfReadsOldAndNewErrors: an activity fails with its fault's
// type and class (details); histories recorded before carry the class's
// name as the type, and read the same.
func TestFailureOfReadsOldAndNewErrors(t *testing.T) {
	fresh := func(typ string, c fault.Class) error {
		return temporal.NewApplicationErrorWithOptions("m", typ, temporal.ApplicationErrorOptions{Details: []any{c}})
	}
	legacy := func(typ string) error { return temporal.NewApplicationError("m", typ) }
	for _, tc := range []struct {
		name           string
		err            error
		push, imported string // the transfer's error type after payload_prepared
	}{
		{"auth", fresh(fhirrest.ErrTypeAuth, fault.Auth), transfer.ErrorPartnerAuth, transfer.ErrorPartnerAuth},
		{"auth, recorded before", legacy("auth"), transfer.ErrorPartnerAuth, transfer.ErrorPartnerAuth},
		{"rejected", fresh(connectors.ErrTypeRejected, fault.Business), transfer.ErrorPartnerRejected, transfer.ErrorPartnerRejected},
		{"rejected, recorded before", legacy("partner_rejected"), transfer.ErrorPartnerRejected, transfer.ErrorPartnerRejected},
		{"unreachable", fresh(connectors.ErrTypeUnreachable, fault.Transport), transfer.ErrorPartnerUnavailable, transfer.ErrorPartnerUnavailable},
		{"unreachable, recorded before", legacy("transport"), transfer.ErrorPartnerUnavailable, transfer.ErrorPartnerUnavailable},
		{"throttled, recorded before", legacy("downstream"), transfer.ErrorPartnerUnavailable, transfer.ErrorPartnerUnavailable},
		{"bad answer", fresh(bulkdata.ErrTypeBadFile, fault.Validation), transfer.ErrorPartnerUnavailable, transfer.ErrorPartnerBadResponse},
		{"bad answer, recorded before", legacy("validation"), transfer.ErrorPartnerUnavailable, transfer.ErrorPartnerBadResponse},
		{"not in our store", legacy(fault.TypeNotFound), transfer.ErrorPartnerUnavailable, transfer.ErrorInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := failureOf(tc.err, transfer.StatePayloadPrepared); got.Type != tc.push {
				t.Errorf("push: %s, want %s", got.Type, tc.push)
			}
			if got := importFailureOf(tc.err, transfer.StatePayloadPrepared); got.Type != tc.imported {
				t.Errorf("import: %s, want %s", got.Type, tc.imported)
			}
		})
	}
}
