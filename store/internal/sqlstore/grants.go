package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/p2p-payer/p2p/store"
)

// AppendMatchGrant records a match grant.
func (s *Store) AppendMatchGrant(ctx context.Context, g store.MatchGrant) (store.MatchGrant, error) {
	return appendAlone(ctx, s, "append match grant", g, prepareGrant, s.appendGrant)
}

// appendGrant inserts a prepared grant in tx and returns it with its Seq.
func (s *Store) appendGrant(ctx context.Context, tx *sql.Tx, g store.MatchGrant) (store.MatchGrant, error) {
	err := tx.QueryRowContext(ctx, s.sql("InsertMatchGrant"), g.Requester, g.MemberID, g.ConsentID, g.ConsentScope,
		s.d.time(g.ConsentExpires), s.d.time(g.GrantedAt), g.TransferID).Scan(&g.Seq)
	return g, err
}

// MatchGrants implements store.Grants.
func (s *Store) MatchGrants(ctx context.Context, requester string) ([]store.MatchGrant, error) {
	out, err := all(ctx, s.r, func(r scanner) (store.MatchGrant, error) {
		g := store.MatchGrant{Requester: requester}
		err := r.Scan(&g.Seq, &g.MemberID, &g.ConsentID, &g.ConsentScope, timeCol{&g.ConsentExpires}, timeCol{&g.GrantedAt}, &g.TransferID)
		return g, err
	}, s.sql("MatchGrants"), requester)
	return out, s.wrap("match grants", err)
}

// AppendMatchFailure implements store.FailedMatches.
func (s *Store) AppendMatchFailure(ctx context.Context, requester string, at, forgetBefore time.Time) error {
	const op = "append match failure"
	if requester == "" {
		return s.wrap(op, errors.New("requester is required"))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.sql("ForgetMatchFailures"), requester, s.d.time(forgetBefore))
		if err == nil {
			_, err = tx.ExecContext(ctx, s.sql("InsertMatchFailure"), requester, s.d.time(at))
		}
		return err
	})
}

// MatchFailures implements store.FailedMatches.
func (s *Store) MatchFailures(ctx context.Context, requester string, after time.Time, limit int) ([]time.Time, error) {
	if limit <= 0 {
		return nil, nil
	}
	out, err := all(ctx, s.r, func(r scanner) (time.Time, error) {
		var at time.Time
		err := r.Scan(timeCol{&at})
		return at, err
	}, s.sql("MatchFailures"), requester, s.d.time(after), limit)
	return out, s.wrap("match failures", err)
}
