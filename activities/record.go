package activities

import (
	"context"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// RecorderStore is what RecordState uses of the store: the transfer it
// records on, and the identity graph a reviewer's decision goes into.
type RecorderStore interface {
	store.Transfers
	store.IdentityGraph
}

// Recorder records the steps of every workflow (RecordState): the
// transfer, import and served export workflows name it.
type Recorder struct {
	Env
	Store RecorderStore

	key presentationKey
}

// RecordInput is one step of a transfer to record: the event and what it
// changes in the projection.
type RecordInput struct {
	TransferID string
	State      transfer.State // "" for an event that enters no state
	Type       string         // "state" when empty and State is set
	Key        string         // idempotency key; transfer.StateKey(State) when empty
	Actor      string
	Detail     map[string]any // never PHI
	Identity   *transfer.IdentityOutcome
	Consent    *transfer.ConsentOutcome
	Export     *transfer.ExportInfo
	Error      *transfer.ErrorInfo
}

// Step is the RecordInput of event ev (a transfer constructor's): its
// state, type, key, actor and detail.
func Step(ev transfer.Event) RecordInput {
	return RecordInput{State: ev.State, Type: ev.Type, Key: ev.Key, Actor: ev.Actor, Detail: ev.Detail}
}

// RecordState records a step in the timeline and the projection, once: a
// retried or replayed call with the same key records nothing more.
func (r *Recorder) RecordState(ctx context.Context, in RecordInput) (bool, error) {
	ev := transfer.Event{At: r.now(), State: in.State, Actor: in.Actor, Type: in.Type, Detail: in.Detail, Key: in.Key}
	if ev.Type == "" {
		ev.Type = transfer.EventState
	}
	if ev.Key == "" {
		ev.Key = transfer.StateKey(in.State)
	}
	if ev.Actor == "" {
		ev.Actor = "workflow"
	}
	// A review's decision goes into the identity graph in the same
	// transaction as the step that records it.
	link, review, err := r.graphChange(ctx, in)
	if err != nil {
		return false, appError(ctx, NameRecordState, err)
	}
	ok, err := r.Store.ApplyChange(ctx, in.TransferID, store.Change{
		Event: ev, State: in.State, Identity: in.Identity, Consent: in.Consent, Export: in.Export, Error: in.Error,
		Link: link, Review: review,
	})
	if err != nil {
		return false, appError(ctx, NameRecordState, err)
	}
	if ok {
		r.log(in.TransferID).Info("transfer step recorded", zap.String("state", string(in.State)), zap.String("event", ev.Type))
	}
	return ok, nil
}

// graphChange is what a recorded step writes to the identity graph: a
// review's approval links the presentation to the chosen member and is
// remembered; a rejection is remembered. Other steps write nothing.
func (r *Recorder) graphChange(ctx context.Context, in RecordInput) (*graph.Link, *graph.Review, error) {
	id := in.Identity
	var decision string
	switch {
	case id == nil || id.ReviewedBy == "":
		return nil, nil, nil
	case in.Type == transfer.EventReviewDecision && id.Status == transfer.IdentityResolved && id.MemberID != "":
		decision = transfer.DecisionApprove
	case in.State == transfer.StateFailed && in.Error != nil && in.Error.Type == transfer.ErrorReviewRejected:
		decision = transfer.DecisionReject
	default:
		return nil, nil, nil
	}
	req, err := r.Store.GetTransferRequest(ctx, in.TransferID)
	if err != nil {
		return nil, nil, err
	}
	pres, err := r.key.presentation(ctx, r.Store, req)
	if err != nil {
		return nil, nil, err
	}
	rv := &graph.Review{Partner: req.PartnerID, Presentation: pres, Decision: decision, Reviewer: id.ReviewedBy, TransferID: in.TransferID}
	if decision == transfer.DecisionReject {
		return nil, rv, nil
	}
	rv.MemberID = id.MemberID
	o := *id
	o.Presentation = pres
	return identity.LinkOf(req.PartnerID, in.TransferID, o, "manual review"), rv, nil
}
