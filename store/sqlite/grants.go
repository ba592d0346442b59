package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
)

// AppendMatchGrant records a match grant.
func (s *Store) AppendMatchGrant(ctx context.Context, g store.MatchGrant) (store.MatchGrant, error) {
	g, err := storeutil.PrepareGrant(g, time.Now())
	if err != nil {
		return store.MatchGrant{}, fmt.Errorf("sqlite: append match grant: %w", err)
	}
	err = s.write(ctx, "append match grant", func(tx *sql.Tx) error {
		g, err = appendGrant(ctx, tx, g)
		return err
	})
	if err != nil {
		return store.MatchGrant{}, err
	}
	return g, nil
}

// appendGrant inserts a prepared grant in tx and returns it with its Seq.
func appendGrant(ctx context.Context, tx *sql.Tx, g store.MatchGrant) (store.MatchGrant, error) {
	err := tx.QueryRowContext(ctx, `INSERT INTO match_grants
		(requester, member_id, consent_id, consent_scope, consent_expires, granted_at, transfer_id)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		g.Requester, g.MemberID, g.ConsentID, g.ConsentScope, fmtTime(g.ConsentExpires), fmtTime(g.GrantedAt), g.TransferID).Scan(&g.Seq)
	return g, err
}

// MatchGrants returns the grant in force of each member requester
// matched, by member id.
func (s *Store) MatchGrants(ctx context.Context, requester string) ([]store.MatchGrant, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, member_id, consent_id, consent_scope, consent_expires, granted_at, transfer_id
		FROM match_grants g WHERE requester = ?
		AND seq = (SELECT max(seq) FROM match_grants l WHERE l.requester = g.requester AND l.member_id = g.member_id)
		ORDER BY member_id`, requester)
	if err != nil {
		return nil, wrap("match grants", err)
	}
	defer rows.Close()
	var out []store.MatchGrant
	for rows.Next() {
		g := store.MatchGrant{Requester: requester}
		var exp, at string
		if err := rows.Scan(&g.Seq, &g.MemberID, &g.ConsentID, &g.ConsentScope, &exp, &at, &g.TransferID); err != nil {
			return nil, wrap("match grants", err)
		}
		if g.ConsentExpires, err = parseTime(exp); err != nil {
			return nil, wrap("match grants", err)
		}
		if g.GrantedAt, err = parseTime(at); err != nil {
			return nil, wrap("match grants", err)
		}
		out = append(out, g)
	}
	return out, wrap("match grants", rows.Err())
}

// AppendMatchFailure records a failed match and forgets the requester's
// failures before forgetBefore.
func (s *Store) AppendMatchFailure(ctx context.Context, requester string, at, forgetBefore time.Time) error {
	if requester == "" {
		return fmt.Errorf("sqlite: append match failure: requester is required")
	}
	return s.write(ctx, "append match failure", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM match_failures WHERE requester = ? AND failed_at < ?",
			requester, fmtTime(forgetBefore)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO match_failures (requester, failed_at) VALUES (?, ?)", requester, fmtTime(at))
		return err
	})
}

// MatchFailures returns the requester's failed matches after after,
// newest first, at most limit.
func (s *Store) MatchFailures(ctx context.Context, requester string, after time.Time, limit int) ([]time.Time, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT failed_at FROM match_failures
		WHERE requester = ? AND failed_at > ? ORDER BY failed_at DESC, id DESC LIMIT ?`, requester, fmtTime(after), limit)
	if err != nil {
		return nil, wrap("match failures", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at string
		if err := rows.Scan(&at); err != nil {
			return nil, wrap("match failures", err)
		}
		t, err := parseTime(at)
		if err != nil {
			return nil, wrap("match failures", err)
		}
		out = append(out, t)
	}
	return out, wrap("match failures", rows.Err())
}
