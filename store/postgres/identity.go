package postgres

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
)

// pgQuerier is a pool or a transaction.
type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// AppendIdentityLink appends a link as graph.Supersede says, or an end
// record as it is.
func (s *Store) AppendIdentityLink(ctx context.Context, l graph.Link) (graph.Link, error) {
	l, err := storeutil.PrepareLink(l, time.Now())
	if err != nil {
		return graph.Link{}, fmt.Errorf("postgres: append identity link: %w", err)
	}
	var out graph.Link
	err = s.write(ctx, "append identity link", func(tx pgx.Tx) error {
		out, err = appendLink(ctx, tx, l)
		return err
	})
	return out, err
}

// appendLink appends l inside tx. The advisory lock on the external
// identity makes concurrent links of it wait for each other, so each reads
// the history the previous one left.
func appendLink(ctx context.Context, tx pgx.Tx, l graph.Link) (graph.Link, error) {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", l.Partner, l.ExternalRef); err != nil {
		return graph.Link{}, err
	}
	rows := []graph.Link{l}
	if l.Ends == 0 {
		hist, err := links(ctx, tx, l.Partner, l.ExternalRef)
		if err != nil {
			return graph.Link{}, err
		}
		var cur graph.Link
		if rows, cur = graph.Supersede(hist, l); rows == nil {
			return cur, nil
		}
	}
	for _, r := range rows {
		by, err := json.Marshal(r.MadeBy)
		if err != nil {
			return graph.Link{}, err
		}
		prov, err := json.Marshal(r.Provenance)
		if err != nil {
			return graph.Link{}, err
		}
		var validTo, ends any
		if r.Ends != 0 {
			validTo, ends = r.ValidTo, r.Ends
		}
		if err := tx.QueryRow(ctx, `INSERT INTO identity_links
			(partner_id, external_ref, member_id, valid_from, valid_to, ends, made_by, provenance)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq`,
			r.Partner, r.ExternalRef, r.MemberID, r.ValidFrom, validTo, ends, by, prov).Scan(&r.Seq); err != nil {
			return graph.Link{}, err
		}
		l = r
	}
	return l, nil
}

// IdentityLinks returns every record of one external identity, oldest
// first.
func (s *Store) IdentityLinks(ctx context.Context, partner, externalRef string) ([]graph.Link, error) {
	ls, err := links(ctx, s.pool, partner, externalRef)
	return ls, wrap("identity links", err)
}

func links(ctx context.Context, q pgQuerier, partner, externalRef string) ([]graph.Link, error) {
	rows, err := q.Query(ctx, `SELECT seq, member_id, valid_from, valid_to, ends, made_by, provenance
		FROM identity_links WHERE partner_id = $1 AND external_ref = $2 ORDER BY seq`, partner, externalRef)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []graph.Link
	for rows.Next() {
		l := graph.Link{Partner: partner, ExternalRef: externalRef}
		var to *time.Time
		var ends *int64
		var by, prov []byte
		if err := rows.Scan(&l.Seq, &l.MemberID, &l.ValidFrom, &to, &ends, &by, &prov); err != nil {
			return nil, err
		}
		l.ValidFrom = l.ValidFrom.UTC()
		if to != nil {
			l.ValidTo = to.UTC()
		}
		if ends != nil {
			l.Ends = *ends
		}
		if err := json.Unmarshal(by, &l.MadeBy); err != nil {
			return nil, fmt.Errorf("stored made_by: %w", err)
		}
		if err := json.Unmarshal(prov, &l.Provenance); err != nil {
			return nil, fmt.Errorf("stored provenance: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// AppendIdentityReview remembers a reviewer's decision.
func (s *Store) AppendIdentityReview(ctx context.Context, r graph.Review) error {
	r, err := storeutil.PrepareReview(r, time.Now())
	if err != nil {
		return fmt.Errorf("postgres: append identity review: %w", err)
	}
	return s.write(ctx, "append identity review", func(tx pgx.Tx) error { return appendReview(ctx, tx, r) })
}

func appendReview(ctx context.Context, tx pgx.Tx, r graph.Review) error {
	_, err := tx.Exec(ctx, `INSERT INTO identity_reviews
		(partner_id, presentation, decision, member_id, reviewer, decided_at, transfer_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.Partner, r.Presentation, r.Decision, r.MemberID, r.Reviewer, r.At, r.TransferID)
	return err
}

// IdentityReviews returns the decisions on one presentation, oldest first.
func (s *Store) IdentityReviews(ctx context.Context, partner, presentation string) ([]graph.Review, error) {
	rows, err := s.pool.Query(ctx, `SELECT decision, member_id, reviewer, decided_at, transfer_id
		FROM identity_reviews WHERE partner_id = $1 AND presentation = $2 ORDER BY id`, partner, presentation)
	if err != nil {
		return nil, wrap("identity reviews", err)
	}
	defer rows.Close()
	var out []graph.Review
	for rows.Next() {
		r := graph.Review{Partner: partner, Presentation: presentation}
		if err := rows.Scan(&r.Decision, &r.MemberID, &r.Reviewer, &r.At, &r.TransferID); err != nil {
			return nil, wrap("identity reviews", err)
		}
		r.At = r.At.UTC()
		out = append(out, r)
	}
	return out, wrap("identity reviews", rows.Err())
}

// PresentationKey returns the presentation key, creating it on first use.
func (s *Store) PresentationKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.pool.QueryRow(ctx, "SELECT key FROM identity_key WHERE one = 1").Scan(&key)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, wrap("presentation key", err)
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("postgres: presentation key: %w", err)
	}
	err = s.write(ctx, "presentation key", func(tx pgx.Tx) error {
		// A concurrent first use may have created it: theirs wins.
		if _, err := tx.Exec(ctx, "INSERT INTO identity_key (one, key) VALUES (1, $1) ON CONFLICT (one) DO NOTHING", fresh); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT key FROM identity_key WHERE one = 1").Scan(&key)
	})
	return key, err
}
