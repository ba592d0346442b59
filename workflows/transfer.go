// Package workflows holds the durable state machine of a transfer and the
// client that starts and steers it. transfer.go is the state machine:
//
//	initiated → identity_pending → consent_verified → payload_prepared → sent → acknowledged → complete
//	                  ↘ manual_review (a person approves → on; rejects → failed)
//	any step → failed (with an error type), after undoing what must be undone
//
// The workflow is deterministic: it decides on outcomes the activities
// return and carries transfer ids, member ids and digests, never PHI.
package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/transfer"
)

// Names under which the workflow and its messages are registered. They are
// part of the workflow's contract with running histories: never rename.
const (
	TransferWorkflowName = "Transfer"
	TaskQueue            = "p2p-transfers"
	UpdateReview         = "review"
	SignalPartnerAck     = "partner-ack"
	QueryState           = "state"
)

// Change ids of workflow.GetVersion: each marks where a change to the
// workflow's commands begins, so that histories recorded before it replay.
const (
	// versionPartnerQueues: calls to a partner go to its own task queue.
	versionPartnerQueues = "partner-task-queues"
	// versionLocalSteps: the steps on our own store (RecordState,
	// ResolveIdentity, CheckConsent) run as local activities, one marker
	// each in the history instead of six events, and calls to a partner
	// go to its own queue without asking versionPartnerQueues (a
	// transfer of this shape is newer than partner queues).
	versionLocalSteps = "local-steps"
)

// How long a transfer waits for a person, and for a partner that accepted a
// delivery to acknowledge it, before it fails.
const (
	ReviewTimeout = 7 * 24 * time.Hour
	AckTimeout    = 24 * time.Hour
)

// WorkflowID is the id of the workflow of a transfer. One transfer has one
// workflow id, so starting it twice never runs it twice.
func WorkflowID(transferID string) string { return "transfer-" + transferID }

// Input starts a transfer workflow.
type Input struct {
	TransferID string
	PartnerID  string
	// Resume is set only when an import continues as new while it polls
	// (ImportTransfer): where the previous run stopped. Omitted when nil,
	// so that every other input is encoded as before.
	Resume *ImportResume `json:",omitempty"`
}

// Result is how a transfer ended. A failed transfer is a completed workflow
// with State failed: the failure is the transfer's, not the workflow's.
type Result struct {
	State transfer.State
	Error *transfer.ErrorInfo
}

// Review is a person's decision on a transfer in manual review, as the
// workflow receives it. The free-text reason stays in the store.
type Review struct {
	Decision string // transfer.DecisionApprove or transfer.DecisionReject
	MemberID string // the chosen candidate when approving
	Reviewer string
}

// PartnerAck is a partner's later acknowledgement of an accepted delivery.
type PartnerAck struct {
	ReceiptID string
	// SignedBy is the kid of the partner key whose signature on the
	// acknowledgement was verified before it was signalled; "" if unsigned.
	SignedBy string
}

// Error types of a review refused by the workflow's validator.
const (
	ErrTypeNotInReview     = "not_in_review"
	ErrTypeInvalidDecision = "invalid_decision"
)

// The groups that name activities for ExecuteActivity (method values:
// Temporal takes the method's name); their methods are never called on
// these nil values. rec records the steps of every workflow; push is the
// push export's.
var (
	rec  *activities.Recorder
	push *activities.Transfer
)

// Transfer is the transfer workflow.
func Transfer(ctx workflow.Context, in Input) (Result, error) {
	r := &run{in: in, state: transfer.StateInitiated}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (transfer.State, error) { return r.state, nil }); err != nil {
		return Result{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReview, r.onReview,
		workflow.UpdateHandlerOptions{Validator: r.validateReview}); err != nil {
		return Result{}, err
	}
	// Asked before the first step, whose command it decides: histories
	// recorded before it begin with RecordState as an activity.
	r.local = workflow.GetVersion(ctx, versionLocalSteps, workflow.DefaultVersion, localStepsMax) == 1
	failure, err := r.steps(ctx)
	if err != nil {
		failure = failureOf(err, r.state)
	}
	if failure == nil {
		return Result{State: r.state}, nil
	}
	return r.fail(ctx, failure)
}

// run is the state of one transfer workflow.
type run struct {
	in       Input
	state    transfer.State
	identity transfer.IdentityOutcome
	review   *Review
	awaiting bool // a review decision is wanted
	prepared *activities.Prepared
	local    bool // versionLocalSteps: the store's steps run as local activities
}

// steps walks the happy path. It returns the failure that ends the
// transfer, or an error an activity gave up with.
func (r *run) steps(ctx workflow.Context) (*transfer.ErrorInfo, error) {
	if err := r.enter(ctx, activities.Step(transfer.Entered(transfer.StateIdentityPending, nil))); err != nil {
		return nil, err
	}
	if err := r.step(ctx, activities.NameResolveIdentity, push.ResolveIdentity, r.in.TransferID).Get(ctx, &r.identity); err != nil {
		return nil, err
	}
	switch r.identity.Status {
	case transfer.IdentityResolved:
	case transfer.IdentityAmbiguous:
		if f, err := r.awaitReview(ctx); f != nil || err != nil {
			return f, err
		}
	default:
		return &transfer.ErrorInfo{Type: transfer.ErrorNoMatch, Detail: "no member of the index matches the demographics"}, nil
	}

	consent, err := r.checkConsent(ctx, "initial")
	if err != nil || consent.Status != transfer.ConsentVerified {
		return consentFailure(consent), err
	}
	verified := activities.Step(transfer.ConsentVerifiedFor(r.identity.MemberID, consent))
	verified.Identity, verified.Consent = &r.identity, &consent
	if err := r.enter(ctx, verified); err != nil {
		return nil, err
	}

	var p activities.Prepared
	if err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NamePrepareExport),
		push.PrepareExport, activities.PrepareInput{TransferID: r.in.TransferID, MemberID: r.identity.MemberID}).Get(ctx, &p); err != nil {
		return nil, err
	}
	r.prepared = &p // from here on, a failure withdraws the export
	prepared := activities.Step(transfer.ExportPrepared(p.Export, p.SignatureSHA256))
	prepared.Export = &p.Export
	if err := r.enter(ctx, prepared); err != nil {
		return nil, err
	}

	// Consent may have lapsed while the export was prepared: check again
	// right before anything leaves.
	consent, err = r.checkConsent(ctx, "before_send")
	if err != nil || consent.Status != transfer.ConsentVerified {
		return consentFailure(consent), err
	}
	rechecked := activities.Step(transfer.ConsentRechecked(consent))
	rechecked.Consent = &consent
	if err := r.enter(ctx, rechecked); err != nil {
		return nil, err
	}

	var sent activities.Sent
	if err := workflow.ExecuteActivity(r.partnerCtx(ctx, activities.NameSendExport), push.SendExport, activities.SendInput{
		TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, ManifestSHA256: p.Export.ManifestSHA256,
		SignatureSHA256: p.SignatureSHA256, Files: p.Export.Files,
	}).Get(ctx, &sent); err != nil {
		return nil, err
	}
	if err := r.enter(ctx, activities.Step(transfer.Delivered(transfer.SentDetail{PartnerID: r.in.PartnerID, Endpoint: sent.Endpoint,
		Attempt: sent.Attempt, HTTPStatus: sent.HTTPStatus, PartnerStatus: sent.Status, Duplicate: sent.Duplicate,
		DeliveryKey: sent.DeliveryKey}))); err != nil {
		return nil, err
	}
	receipt, via, signedBy := sent.ReceiptID, transfer.AckInResponse, sent.ReceiptKID
	if !sent.Acknowledged {
		var ack PartnerAck
		ch := workflow.GetSignalChannel(ctx, SignalPartnerAck)
		if ok, _ := ch.ReceiveWithTimeout(ctx, AckTimeout, &ack); !ok {
			return &transfer.ErrorInfo{Type: transfer.ErrorAckTimeout, Detail: "the partner did not acknowledge the delivery in time"}, ctx.Err()
		}
		receipt, via, signedBy = ack.ReceiptID, transfer.AckBySignal, ack.SignedBy
	}
	acked := p.Export
	acked.ReceiptID = receipt
	ackStep := activities.Step(transfer.Acknowledged(r.in.PartnerID, receipt, via, signedBy))
	ackStep.Export = &acked
	if err := r.enter(ctx, ackStep); err != nil {
		return nil, err
	}
	return nil, r.enter(ctx, activities.Step(transfer.Entered(transfer.StateComplete, nil)))
}

// awaitReview parks the transfer in manual review until a person decides.
func (r *run) awaitReview(ctx workflow.Context) (*transfer.ErrorInfo, error) {
	// Take decisions from the moment the store can show manual_review,
	// which is before the activity recording it returns.
	r.awaiting = true
	review := activities.Step(transfer.InReview(len(r.identity.Candidates)))
	review.Identity = &r.identity
	if err := r.enter(ctx, review); err != nil {
		return nil, err
	}
	decided, err := workflow.AwaitWithTimeout(ctx, ReviewTimeout, func() bool { return r.review != nil })
	r.awaiting = false
	if err != nil {
		return nil, err
	}
	if !decided {
		return &transfer.ErrorInfo{Type: transfer.ErrorReviewTimeout, Detail: "no review decision in time"}, nil
	}
	rv := *r.review
	candidates := r.identity.Candidates
	if rv.Decision == transfer.DecisionReject {
		r.identity.Status, r.identity.ReviewedBy = transfer.IdentityNoMatch, rv.Reviewer
		// Rejections recorded only the failure before they were audited
		// as decisions: histories from then must replay without this step.
		if workflow.GetVersion(ctx, "audit-review-reject", workflow.DefaultVersion, 1) == 1 {
			record := activities.Step(transfer.ReviewDecided(rv.Decision, rv.Reviewer, candidates, ""))
			record.Identity = &r.identity
			if err := r.enter(ctx, record); err != nil {
				return nil, err
			}
		}
		return &transfer.ErrorInfo{Type: transfer.ErrorReviewRejected, Detail: "rejected in manual review"}, nil
	}
	r.identity.Status, r.identity.MemberID, r.identity.ReviewedBy = transfer.IdentityResolved, rv.MemberID, rv.Reviewer
	record := activities.Step(transfer.ReviewDecided(rv.Decision, rv.Reviewer, candidates, rv.MemberID))
	record.Identity = &r.identity
	return nil, r.enter(ctx, record)
}

func (r *run) validateReview(rv Review) error {
	if !r.awaiting || r.review != nil {
		return temporal.NewApplicationError("transfer is not waiting in manual review", ErrTypeNotInReview)
	}
	switch rv.Decision {
	case transfer.DecisionReject:
		return nil
	case transfer.DecisionApprove:
		for _, c := range r.identity.Candidates {
			if c == rv.MemberID {
				return nil
			}
		}
		return temporal.NewApplicationError("member_id must be one of the candidates", ErrTypeInvalidDecision)
	}
	return temporal.NewApplicationError("decision must be approve or reject", ErrTypeInvalidDecision)
}

func (r *run) onReview(_ workflow.Context, rv Review) error {
	r.review = &rv
	return nil
}

func (r *run) checkConsent(ctx workflow.Context, phase string) (transfer.ConsentOutcome, error) {
	var c transfer.ConsentOutcome
	err := r.step(ctx, activities.NameCheckConsent, push.CheckConsent,
		activities.ConsentInput{TransferID: r.in.TransferID, Phase: phase}).Get(ctx, &c)
	return c, err
}

// partnerCtx returns ctx with the options of the named partner-facing
// activity, on the partner's own task queue. Transfers started before
// partner queues existed keep the transfers' queue, as their histories
// say; a transfer of versionLocalSteps is newer and does not ask.
func (r *run) partnerCtx(ctx workflow.Context, name string) workflow.Context {
	ctx = activities.WithOptions(ctx, name)
	if !r.local && workflow.GetVersion(ctx, versionPartnerQueues, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ctx
	}
	return workflow.WithTaskQueue(ctx, PartnerTaskQueue(workflow.GetInfo(ctx).TaskQueueName, r.in.PartnerID))
}

// step runs the named step on our own store (a row of activities.Policies
// that may run locally): as a local activity in transfers of
// versionLocalSteps, as an activity on the transfers' queue in those
// recorded before. Either way with its row's timeouts and retry policy.
func (r *run) step(ctx workflow.Context, name string, fn any, args ...any) workflow.Future {
	if r.local {
		return workflow.ExecuteLocalActivity(activities.WithLocalOptions(ctx, name), fn, args...)
	}
	return workflow.ExecuteActivity(activities.WithOptions(ctx, name), fn, args...)
}

// enter records a step; with State set, it is the transfer entering it.
func (r *run) enter(ctx workflow.Context, in activities.RecordInput) error {
	in.TransferID = r.in.TransferID
	if err := r.step(ctx, activities.NameRecordState, rec.RecordState, in).Get(ctx, nil); err != nil {
		return err
	}
	if in.State != "" {
		r.state = in.State
	}
	return nil
}

// fail undoes what must be undone and records the failure. Both run on a
// disconnected context, so that a cancelled transfer is compensated too.
func (r *run) fail(ctx workflow.Context, f *transfer.ErrorInfo) (Result, error) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if r.prepared != nil {
		comp := activities.Policies[activities.NamePrepareExport].Compensation
		if err := workflow.ExecuteActivity(activities.WithOptions(dctx, comp), push.WithdrawExport,
			activities.WithdrawInput{TransferID: r.in.TransferID, Reason: f.Type}).Get(dctx, nil); err != nil {
			return Result{}, err
		}
	}
	d := transfer.FailedDetail{ErrorType: f.Type, AfterState: r.state, ExportWithdrawn: r.prepared != nil}
	var id *transfer.IdentityOutcome
	if r.identity.Status != "" {
		id, d.ReviewedBy = &r.identity, r.identity.ReviewedBy
	}
	failed := activities.Step(transfer.Failed(d))
	failed.Error, failed.Identity = f, id
	if err := r.enter(dctx, failed); err != nil {
		return Result{}, err
	}
	return Result{State: transfer.StateFailed, Error: f}, nil
}

func consentFailure(c transfer.ConsentOutcome) *transfer.ErrorInfo {
	return &transfer.ErrorInfo{Type: transfer.ErrorConsentDenied, Detail: c.Reason}
}

// failureOf is the transfer's failure after an activity gave up with err.
// A partner's refusal passes through as the type the connector gave it,
// an auth fault is partner_auth; anything else says which step could not
// be completed.
func failureOf(err error, state transfer.State) *transfer.ErrorInfo {
	if ae, class := activityFault(err); ae != nil {
		switch {
		case passesThrough(ae.Type()):
			return &transfer.ErrorInfo{Type: ae.Type(), Detail: ae.Message()}
		case class == fault.Auth:
			return &transfer.ErrorInfo{Type: transfer.ErrorPartnerAuth, Detail: ae.Message()}
		}
	}
	if temporal.IsCanceledError(err) {
		return &transfer.ErrorInfo{Type: transfer.ErrorCancelled, Detail: "the transfer was cancelled"}
	}
	if state == transfer.StatePayloadPrepared {
		return &transfer.ErrorInfo{Type: transfer.ErrorPartnerUnavailable, Detail: "the partner could not be reached: " + err.Error()}
	}
	return &transfer.ErrorInfo{Type: transfer.ErrorInternal, Detail: "step after " + string(state) + " failed: " + err.Error()}
}

// activityFault is the classified error an activity gave up with: its
// application error, whose type is the fault's type (fault.TypeOf), and
// the fault's class, from its details. It is nil for any other error.
func activityFault(err error) (*temporal.ApplicationError, fault.Class) {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		return nil, ""
	}
	var class fault.Class
	if ae.HasDetails() && ae.Details(&class) == nil && class != "" {
		return ae, class
	}
	return ae, legacyClass(ae.Type())
}

// legacyClass is the class of a failure recorded without one: histories
// from before activities failed with their fault's own type carry, as the
// type, the class's name for transport, downstream, auth and validation
// faults, the business type itself for business ones, and not_found
// (no class) for what our store did not have.
func legacyClass(typ string) fault.Class {
	switch c := fault.Class(typ); c {
	case fault.Transport, fault.Downstream, fault.Auth, fault.Validation:
		return c
	case fault.TypeNotFound:
		return ""
	}
	return fault.Business
}

// passesThrough reports whether a failure of type typ is the transfer's
// failure as it is: the partner's refusal, or a partner we cannot use.
func passesThrough(typ string) bool {
	return typ == fault.TypePartnerRejected || typ == fault.TypeUnknownPartner
}
