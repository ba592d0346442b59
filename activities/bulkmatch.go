package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// A $bulk-member-match (PDex) decides each submitted member on its own, as
// $member-match would (pdex.Matching): MatchBulkMember per member, then
// FinishBulkMatch stores the result and withdraws the members as received
// (their demographics). Only member ids, digests and outcome codes cross
// the workflow.

// BulkMatchStore is what a $bulk-member-match's activities use of the
// store.
type BulkMatchStore interface {
	store.Transfers     // the batch's transfer: each outcome, its end
	store.Timelines     // the outcomes recorded, when cancelled
	store.Artifacts     // the members as received, and the result
	store.IdentityGraph // the presentation key, a match's link
	store.Grants        // a match's grant
}

// BulkMatch holds the activities of a $bulk-member-match
// (workflows.BulkMemberMatch): MatchBulkMember, FinishBulkMatch and
// CancelBulkMatch.
type BulkMatch struct {
	Env
	Store BulkMatchStore
	// Matcher decides the members (pdex.Matching); nil: MatchBulkMember
	// fails (validation).
	Matcher MemberMatcher

	key presentationKey
}

// MemberMatcher decides one member of a batch, sent by requester as a
// $member-match Parameters resource (pdex.Matching). A member it cannot
// read, or whose consent or match fails, is an outcome; a match comes with
// the grant it gives and the identity link it makes (the requester's
// presentation, its graph.Presentation digest under key, to our member;
// no transfer named); the error is an infrastructure failure, retried.
type MemberMatcher interface {
	DecideMember(ctx context.Context, requester string, key, member []byte) (transfer.BulkMemberOutcome, *store.MatchGrant, *graph.Link, error)
}

// BulkMemberInput names one stored member of a batch.
type BulkMemberInput struct {
	BatchID   string
	Requester string
	Index     int
	Digest    string // of the member's stored Parameters
}

// MatchBulkMember decides one member of a batch and records its outcome
// on the batch's transfer, a match's grant and identity link in the same
// transaction (the event says what was matched, the grant lets the
// requester export it, the link remembers the requester's presentation as
// our member's: none exists without the others). A retry whose outcome is
// recorded records nothing again. FinishBulkMatch gathers the outcomes.
func (a *BulkMatch) MatchBulkMember(ctx context.Context, in BulkMemberInput) (transfer.BulkMemberOutcome, error) {
	if a.Matcher == nil {
		return transfer.BulkMemberOutcome{}, temporal.NewNonRetryableApplicationError("bulk member match is not configured", ErrTypeValidation, nil)
	}
	art, err := a.Store.GetArtifact(ctx, in.Digest)
	if errors.Is(err, store.ErrWithdrawn) {
		err = fmt.Errorf("member %d of batch %s: withdrawn: %w", in.Index, in.BatchID, store.ErrNotFound)
	}
	if err != nil {
		return transfer.BulkMemberOutcome{}, appError(ctx, NameMatchBulkMember, err)
	}
	key, err := a.key.get(ctx, a.Store)
	if err != nil {
		return transfer.BulkMemberOutcome{}, appError(ctx, NameMatchBulkMember, err)
	}
	out, grant, link, err := a.Matcher.DecideMember(ctx, in.Requester, key, art.Data)
	if err != nil {
		return transfer.BulkMemberOutcome{}, appError(ctx, NameMatchBulkMember, err)
	}
	out.Index = in.Index
	if link != nil {
		link.Provenance.TransferID = in.BatchID
	}
	if err := a.recordMember(ctx, in.BatchID, out, grant, link); err != nil {
		return transfer.BulkMemberOutcome{}, appError(ctx, NameMatchBulkMember, err)
	}
	a.log(in.BatchID).Info("bulk member decided", zap.String("requester", in.Requester), zap.Int("index", in.Index),
		zap.String("outcome", out.Outcome), zap.String("reason", out.Reason))
	return out, nil
}

// FinishBulkInput is a decided batch to store: its result goes under
// ResultOwner, and the members as received, under RequestOwner, are
// withdrawn.
type FinishBulkInput struct {
	Result       transfer.BulkMatchResult
	ResultOwner  string
	RequestOwner string
}

// FinishBulkMatch stores the batch's result, then withdraws the members as
// received: their demographics are not kept once decided. It returns the
// result's digest. Retried, it stores the same digest (a no-op).
func (a *BulkMatch) FinishBulkMatch(ctx context.Context, in FinishBulkInput) (string, error) {
	b, err := json.Marshal(in.Result)
	if err != nil {
		return "", temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeValidation, err)
	}
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:])
	if err := a.Store.PutArtifact(ctx, store.Artifact{Digest: digest, TransferID: in.ResultOwner, Name: transfer.BulkMatchResultName,
		ContentType: "application/json", Size: int64(len(b)), Data: b, CreatedAt: a.now()}); err != nil {
		return "", appError(ctx, NameFinishBulkMatch, err)
	}
	if _, err := a.Store.WithdrawArtifacts(ctx, in.RequestOwner, a.now()); err != nil {
		return "", appError(ctx, NameFinishBulkMatch, err)
	}
	// The batch's transfer: the members the workflow gave up on, then
	// complete with the counts and the result's digest.
	counts := map[string]int{}
	for _, o := range in.Result.Members {
		counts[o.Outcome]++
		if o.Outcome == transfer.BulkOutcomeError {
			if err := a.recordMember(ctx, in.Result.BatchID, o, nil, nil); err != nil {
				return "", appError(ctx, NameFinishBulkMatch, err)
			}
		}
	}
	if err := a.recordBatch(ctx, in.Result.BatchID, store.Change{State: transfer.StateComplete,
		Event: transfer.BulkMatchComplete(len(in.Result.Members), counts, digest)}); err != nil {
		return "", appError(ctx, NameFinishBulkMatch, err)
	}
	return digest, nil
}

// Why a batch was cancelled (CancelBulkInput.Reason), in its failed
// event's detail.
const (
	BulkDeleted   = "deleted_by_requester" // DELETE on the status URL
	BulkCancelled = "workflow_cancelled"   // the workflow was cancelled
)

// CancelBulkInput is a batch to cancel: its members as received, under
// RequestOwner, are withdrawn; its transfer fails cancelled.
type CancelBulkInput struct {
	BatchID      string
	RequestOwner string
	Members      int    // how many the batch had
	Reason       string // BulkDeleted or BulkCancelled
	Actor        string // who cancelled: "partner:<id>", or "workflow"
}

// CancelBulkMatch ends a batch that will not be decided further: it
// withdraws the members as received (their demographics), then records on
// the batch's transfer that it failed cancelled, with how many members
// had been decided (their outcomes and grants stay recorded). Retried, it
// withdraws nothing more and records nothing again.
func (a *BulkMatch) CancelBulkMatch(ctx context.Context, in CancelBulkInput) error {
	if _, err := a.Store.WithdrawArtifacts(ctx, in.RequestOwner, a.now()); err != nil {
		return appError(ctx, NameCancelBulkMatch, err)
	}
	decided := 0
	evs, err := a.Store.Timeline(ctx, in.BatchID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return appError(ctx, NameCancelBulkMatch, err)
	}
	for _, e := range evs {
		if e.Type == transfer.EventMemberDecided {
			decided++
		}
	}
	f := &transfer.ErrorInfo{Type: transfer.ErrorCancelled, Detail: "the batch was cancelled: " + in.Reason}
	if err := a.recordBatch(ctx, in.BatchID, store.Change{State: transfer.StateFailed, Error: f,
		Event: transfer.BulkMatchCancelled(in.Actor, in.Reason, in.Members, decided)}); err != nil {
		return appError(ctx, NameCancelBulkMatch, err)
	}
	a.log(in.BatchID).Info("bulk member match cancelled", zap.String("reason", in.Reason), zap.Int("decided", decided),
		zap.Int("members", in.Members))
	return nil
}

// recordMember records one member's outcome on its batch's transfer, once
// (keyed by its index), with grant and link if the member was matched. No
// PHI: the index, codes, our member id, the presentation's digest. A batch
// without a transfer (accepted before batches were transfers) still
// records the grant and the link, each on its own.
func (a *BulkMatch) recordMember(ctx context.Context, batchID string, o transfer.BulkMemberOutcome, grant *store.MatchGrant, link *graph.Link) error {
	err := a.record(ctx, a.Store, batchID, store.Change{Grant: grant, Link: link, Event: transfer.MemberDecided(o)})
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if grant != nil {
		if _, err := a.Store.AppendMatchGrant(ctx, *grant); err != nil {
			return err
		}
	}
	if link != nil {
		// Its own write: a retry finds the link current, adds nothing.
		l := *link
		l.ValidFrom = a.now()
		if _, err := a.Store.AppendIdentityLink(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

// recordBatch applies ch to the batch's transfer. A batch accepted before
// batches were transfers has none: nothing to record.
func (a *BulkMatch) recordBatch(ctx context.Context, batchID string, ch store.Change) error {
	if err := a.record(ctx, a.Store, batchID, ch); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}
