package activities

import (
	"context"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// ConsentInput names the transfer whose consent to check and why: once
// before anything is prepared and again right before sending, so that a
// consent that lapses in between stops the send.
type ConsentInput struct {
	TransferID string
	Phase      string // "initial" or "before_send"
}

// CheckConsent evaluates the member's consent against the clock. A denial
// is an outcome, not an error. A check run again for a phase already
// recorded answers the recorded outcome.
func (a *Transfer) CheckConsent(ctx context.Context, in ConsentInput) (transfer.ConsentOutcome, error) {
	req, err := a.Store.GetTransferRequest(ctx, in.TransferID)
	if err != nil {
		return transfer.ConsentOutcome{}, appError(ctx, NameCheckConsent, err)
	}
	now := a.now()
	out := transfer.ConsentOutcome{ConsentID: req.Consent.ID, Scope: req.Consent.Scope, CheckedAt: now, Status: transfer.ConsentVerified}
	if r := req.Consent.Refusal(now); r != nil {
		out.Status, out.Reason = transfer.ConsentDenied, r.Why
	}
	// The consent basis and the check's result, whatever it is, with the
	// projection's consent: once per phase.
	fresh, err := a.Store.ApplyChange(ctx, in.TransferID, store.Change{
		Event:   transfer.ConsentChecked(in.Phase, req.Consent, out).Stamped(now).By("workflow"),
		Consent: &out,
	})
	if err != nil {
		return transfer.ConsentOutcome{}, appError(ctx, NameCheckConsent, err)
	}
	if !fresh {
		// Run again after this phase's check was committed: a retry
		// whose reply was lost, or a local activity run again with the
		// workflow task that lost it. The clock may have moved past the
		// consent's end since; the workflow goes on with the outcome
		// recorded, which is the projection's (every later step that
		// sets it sets the same), so the timeline and the workflow agree.
		t, err := a.Store.GetTransfer(ctx, in.TransferID)
		if err != nil {
			return transfer.ConsentOutcome{}, appError(ctx, NameCheckConsent, err)
		}
		if t.Consent != nil {
			return *t.Consent, nil
		}
	}
	return out, nil
}
