package activities

import (
	"context"
	"errors"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// ResolveIdentity matches the requesting partner's demographics against the
// member index. No match and an ambiguous match are outcomes, not errors:
// the workflow decides what follows. A reviewer's decision on the same
// presentation (the same partner and normalised demographics) is applied
// at once instead: a person is not asked twice. A member found without a
// review in this transfer (by an exact rule, the score, or a remembered
// review) is linked to the presentation in the identity graph.
func (a *Transfer) ResolveIdentity(ctx context.Context, transferID string) (transfer.IdentityOutcome, error) {
	req, err := a.Store.GetTransferRequest(ctx, transferID)
	if err != nil {
		return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
	}
	pres, err := a.key.presentation(ctx, a.Store, req)
	if err != nil {
		return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
	}
	// A person already decided on this presentation: their decision
	// stands, and is recorded as this transfer's identity decision.
	o, remembered, err := a.recallReview(ctx, req.PartnerID, pres)
	if err != nil {
		return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
	}
	if !remembered {
		m := a.Matcher
		if m == nil {
			m = StoreMatcher{Store: a.Store}
		}
		d, err := m.Resolve(ctx, req.Member)
		if err != nil {
			return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
		}
		o = outcome(d)
	}
	o.Presentation = pres
	// The decision and its rationale are evidence in their own right, with
	// the projection's identity and the link it makes, in one transaction.
	// A retry records the first decision once, and links once.
	ch := store.Change{
		Event:    transfer.IdentityDecided(o).Stamped(a.now()).By("workflow"),
		Identity: &o,
		Link:     identity.LinkOf(req.PartnerID, transferID, o, resolutionNote(o)),
	}
	fresh, err := a.Store.ApplyChange(ctx, transferID, ch)
	if err != nil {
		return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
	}
	if !fresh {
		// A retry after the first attempt's decision was committed (its
		// reply lost): the workflow goes on with the recorded decision,
		// not with this one, which the index, refreshed since, may have
		// changed. The timeline, the link and the workflow then agree.
		t, err := a.Store.GetTransfer(ctx, transferID)
		if err != nil {
			return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
		}
		if t.Identity != nil {
			return *t.Identity, nil
		}
	}
	return o, nil
}

// resolutionNote is the provenance note of a link made by identity
// resolution: the rationale's summary, which holds no PHI.
func resolutionNote(o transfer.IdentityOutcome) string {
	if o.Rationale == nil || o.Rationale.Summary == "" {
		return "identity resolution"
	}
	return "identity resolution: " + o.Rationale.Summary
}

// outcome maps a matcher decision to the transfer's identity outcome.
func outcome(d identity.Decision) transfer.IdentityOutcome { return d.IdentityOutcome() }

// StoreMatcher is the deterministic matcher over the store: it compares the
// query with the member it names, if any, and every member born the same
// day.
type StoreMatcher struct {
	Store store.Members
}

// Resolve implements Matcher.
func (s StoreMatcher) Resolve(ctx context.Context, q transfer.Demographics) (identity.Decision, error) {
	var cands []member.Record
	seen := map[string]bool{}
	if q.MemberID != "" {
		m, err := s.Store.GetMember(ctx, q.MemberID)
		switch {
		case err == nil:
			cands = append(cands, m)
			seen[m.ID] = true
		case !errors.Is(err, store.ErrNotFound):
			return identity.Decision{}, err
		}
	}
	if q.BirthDate != "" {
		ms, err := s.Store.MembersByBirthDate(ctx, q.BirthDate)
		if err != nil {
			return identity.Decision{}, err
		}
		for _, m := range ms {
			if !seen[m.ID] {
				cands = append(cands, m)
				seen[m.ID] = true
			}
		}
	}
	return identity.ResolveDeterministic(q, cands), nil
}

// recallReview is the outcome a reviewer already decided for presentation
// pres of partner, if any. An approval stands only while its member is still
// in the index; otherwise the matcher decides afresh.
func (a *Transfer) recallReview(ctx context.Context, partner, pres string) (transfer.IdentityOutcome, bool, error) {
	rs, err := a.Store.IdentityReviews(ctx, partner, pres)
	if err != nil || len(rs) == 0 {
		return transfer.IdentityOutcome{}, false, err
	}
	r := rs[len(rs)-1]
	when := r.At.Format(time.DateOnly)
	switch r.Decision {
	case transfer.DecisionApprove:
		if _, err := a.Store.GetMember(ctx, r.MemberID); errors.Is(err, store.ErrNotFound) {
			return transfer.IdentityOutcome{}, false, nil
		} else if err != nil {
			return transfer.IdentityOutcome{}, false, err
		}
		return transfer.IdentityOutcome{Status: transfer.IdentityResolved, MemberID: r.MemberID, ReviewedBy: r.Reviewer,
			Rationale: &transfer.Rationale{Rule: identity.RuleRememberedReview,
				Summary: "a reviewer approved this member for the same presentation on " + when + " (transfer " + r.TransferID + "); not reviewed again"}}, true, nil
	case transfer.DecisionReject:
		return transfer.IdentityOutcome{Status: transfer.IdentityNoMatch, ReviewedBy: r.Reviewer,
			Rationale: &transfer.Rationale{Rule: identity.RuleRememberedReview,
				Summary: "a reviewer rejected every candidate for the same presentation on " + when + " (transfer " + r.TransferID + "); not reviewed again"}}, true, nil
	}
	return transfer.IdentityOutcome{}, false, nil
}
