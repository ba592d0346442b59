package sqlstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"

	"github.com/p2p-payer/p2p/identity/graph"
)

// AppendIdentityLink implements store.IdentityGraph.
func (s *Store) AppendIdentityLink(ctx context.Context, l graph.Link) (graph.Link, error) {
	return appendAlone(ctx, s, "append identity link", l, prepareLink, s.appendLink)
}

// appendLink appends l inside tx, after the dialect's LockIdentity: the
// history it reads is the latest, and no other link of the identity is
// decided until the transaction ends.
func (s *Store) appendLink(ctx context.Context, tx *sql.Tx, l graph.Link) (graph.Link, error) {
	if q := s.sql("LockIdentity"); q != "" {
		if _, err := tx.ExecContext(ctx, q, l.Partner, l.ExternalRef); err != nil {
			return graph.Link{}, err
		}
	}
	rows := []graph.Link{l}
	if l.Ends == 0 {
		hist, err := s.links(ctx, tx, l.Partner, l.ExternalRef)
		if err != nil {
			return graph.Link{}, err
		}
		var cur graph.Link
		if rows, cur = graph.Supersede(hist, l); rows == nil {
			return cur, nil
		}
	}
	for _, r := range rows {
		by, err := s.d.jsonParam(r.MadeBy)
		prov, err2 := s.d.jsonParam(r.Provenance)
		var validTo, ends any
		if r.Ends != 0 {
			validTo, ends = s.d.time(r.ValidTo), r.Ends
		}
		if err = cmp.Or(err, err2); err == nil {
			err = tx.QueryRowContext(ctx, s.sql("InsertIdentityLink"), r.Partner, r.ExternalRef, r.MemberID,
				s.d.time(r.ValidFrom), validTo, ends, by, prov).Scan(&r.Seq)
		}
		if err != nil {
			return graph.Link{}, err
		}
		l = r
	}
	return l, nil
}

// IdentityLinks implements store.IdentityGraph.
func (s *Store) IdentityLinks(ctx context.Context, partner, externalRef string) ([]graph.Link, error) {
	ls, err := s.links(ctx, s.r, partner, externalRef)
	return ls, s.wrap("identity links", err)
}

func (s *Store) links(ctx context.Context, q querier, partner, externalRef string) ([]graph.Link, error) {
	return all(ctx, q, func(r scanner) (graph.Link, error) {
		l := graph.Link{Partner: partner, ExternalRef: externalRef}
		var ends sql.NullInt64
		err := r.Scan(&l.Seq, &l.MemberID, timeCol{&l.ValidFrom}, timeCol{&l.ValidTo}, &ends,
			jsonCol{&l.MadeBy}, jsonCol{&l.Provenance})
		l.Ends = ends.Int64
		return l, err
	}, s.sql("IdentityLinks"), partner, externalRef)
}

// AppendIdentityReview remembers a reviewer's decision.
func (s *Store) AppendIdentityReview(ctx context.Context, r graph.Review) error {
	_, err := appendAlone(ctx, s, "append identity review", r, prepareReview, s.appendReview)
	return err
}

func (s *Store) appendReview(ctx context.Context, tx *sql.Tx, r graph.Review) (graph.Review, error) {
	_, err := tx.ExecContext(ctx, s.sql("InsertIdentityReview"),
		r.Partner, r.Presentation, r.Decision, r.MemberID, r.Reviewer, s.d.time(r.At), r.TransferID)
	return r, err
}

// IdentityReviews returns the decisions on one presentation, oldest first.
func (s *Store) IdentityReviews(ctx context.Context, partner, presentation string) ([]graph.Review, error) {
	out, err := all(ctx, s.r, func(sc scanner) (graph.Review, error) {
		r := graph.Review{Partner: partner, Presentation: presentation}
		err := sc.Scan(&r.Decision, &r.MemberID, &r.Reviewer, timeCol{&r.At}, &r.TransferID)
		return r, err
	}, s.sql("IdentityReviews"), partner, presentation)
	return out, s.wrap("identity reviews", err)
}

// PresentationKey returns the presentation key, creating it on first use.
func (s *Store) PresentationKey(ctx context.Context) ([]byte, error) {
	const op = "presentation key"
	var key []byte
	err := s.r.QueryRowContext(ctx, s.sql("PresentationKey")).Scan(&key)
	if !errors.Is(err, sql.ErrNoRows) {
		return key, s.wrap(op, err)
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, s.wrap(op, err)
	}
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		// A concurrent first use (or another process) may have created
		// it: theirs wins.
		if _, err := tx.ExecContext(ctx, s.sql("InsertPresentationKey"), fresh); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, s.sql("PresentationKey")).Scan(&key)
	})
	return key, err
}
