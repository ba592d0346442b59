package activities

import (
	"context"
	"errors"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// ResolveIdentity matches the requesting partner's demographics against the
// member index. No match and an ambiguous match are outcomes, not errors:
// the workflow decides what follows.
func (a *Activities) ResolveIdentity(ctx context.Context, transferID string) (transfer.IdentityOutcome, error) {
	req, err := a.Store.GetTransferRequest(ctx, transferID)
	if err != nil {
		return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
	}
	m := a.Matcher
	if m == nil {
		m = StoreMatcher{Store: a.Store}
	}
	d, err := m.Resolve(ctx, req.Member)
	if err != nil {
		return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
	}
	o := outcome(d)
	// The decision and its rationale are evidence in their own right, with
	// the projection's identity, in one transaction. A retry records the
	// first decision once.
	if err := a.record(ctx, transferID, store.Change{
		Event:    transfer.Event{Type: transfer.EventIdentityDecision, Key: "identity:decision", Detail: IdentityDetail(o)},
		Identity: &o,
	}); err != nil {
		return transfer.IdentityOutcome{}, appError(ctx, NameResolveIdentity, err)
	}
	return o, nil
}

// outcome maps a matcher decision to the transfer's identity outcome.
func outcome(d identity.Decision) transfer.IdentityOutcome {
	rationale := d.Rationale
	o := transfer.IdentityOutcome{Score: d.Score, Rationale: &rationale}
	switch d.Outcome {
	case identity.OutcomeMatch:
		o.Status, o.MemberID = transfer.IdentityResolved, d.MemberID
	case identity.OutcomeReview:
		o.Status, o.MemberID, o.Candidates = transfer.IdentityAmbiguous, d.MemberID, d.Candidates
	default:
		o.Status = transfer.IdentityNoMatch
	}
	return o
}

// StoreMatcher is the deterministic matcher over the store: it compares the
// query with the member it names, if any, and every member born the same
// day.
type StoreMatcher struct {
	Store store.Store
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
