package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
)

// AppendMatchGrant records a match grant.
func (s *Store) AppendMatchGrant(ctx context.Context, g store.MatchGrant) (store.MatchGrant, error) {
	g, err := storeutil.PrepareGrant(g, time.Now())
	if err != nil {
		return store.MatchGrant{}, fmt.Errorf("postgres: append match grant: %w", err)
	}
	err = s.write(ctx, "append match grant", func(tx pgx.Tx) error {
		g, err = appendGrant(ctx, tx, g)
		return err
	})
	if err != nil {
		return store.MatchGrant{}, err
	}
	return g, nil
}

// MatchGrants returns the grant in force of each member requester
// matched, by member id.
func (s *Store) MatchGrants(ctx context.Context, requester string) ([]store.MatchGrant, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (member_id) seq, member_id, consent_id, consent_scope, consent_expires, granted_at, transfer_id
		FROM match_grants WHERE requester = $1 ORDER BY member_id, seq DESC`, requester)
	if err != nil {
		return nil, wrap("match grants", err)
	}
	defer rows.Close()
	var out []store.MatchGrant
	for rows.Next() {
		g := store.MatchGrant{Requester: requester}
		if err := rows.Scan(&g.Seq, &g.MemberID, &g.ConsentID, &g.ConsentScope, &g.ConsentExpires, &g.GrantedAt, &g.TransferID); err != nil {
			return nil, wrap("match grants", err)
		}
		g.ConsentExpires, g.GrantedAt = g.ConsentExpires.UTC(), g.GrantedAt.UTC()
		out = append(out, g)
	}
	return out, wrap("match grants", rows.Err())
}

// appendGrant inserts a prepared grant in tx and returns it with its Seq.
func appendGrant(ctx context.Context, tx pgx.Tx, g store.MatchGrant) (store.MatchGrant, error) {
	err := tx.QueryRow(ctx, `INSERT INTO match_grants
		(requester, member_id, consent_id, consent_scope, consent_expires, granted_at, transfer_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`,
		g.Requester, g.MemberID, g.ConsentID, g.ConsentScope, g.ConsentExpires, g.GrantedAt, g.TransferID).Scan(&g.Seq)
	return g, err
}

// AppendMatchFailure records a failed match and forgets the requester's
// failures before forgetBefore.
func (s *Store) AppendMatchFailure(ctx context.Context, requester string, at, forgetBefore time.Time) error {
	if requester == "" {
		return fmt.Errorf("postgres: append match failure: requester is required")
	}
	return s.write(ctx, "append match failure", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM match_failures WHERE requester = $1 AND failed_at < $2",
			requester, storeutil.Time(forgetBefore)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO match_failures (requester, failed_at) VALUES ($1, $2)", requester, storeutil.Time(at))
		return err
	})
}

// MatchFailures returns the requester's failed matches after after,
// newest first, at most limit.
func (s *Store) MatchFailures(ctx context.Context, requester string, after time.Time, limit int) ([]time.Time, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT failed_at FROM match_failures
		WHERE requester = $1 AND failed_at > $2 ORDER BY failed_at DESC, id DESC LIMIT $3`, requester, storeutil.Time(after), limit)
	if err != nil {
		return nil, wrap("match failures", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at time.Time
		if err := rows.Scan(&at); err != nil {
			return nil, wrap("match failures", err)
		}
		out = append(out, at.UTC())
	}
	return out, wrap("match failures", rows.Err())
}
