package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
)

// AppendIdentityLink appends a link as graph.Supersede says, or an end
// record as it is.
func (s *Store) AppendIdentityLink(ctx context.Context, l graph.Link) (graph.Link, error) {
	l, err := storeutil.PrepareLink(l, time.Now())
	if err != nil {
		return graph.Link{}, fmt.Errorf("sqlite: append identity link: %w", err)
	}
	var out graph.Link
	err = s.write(ctx, "append identity link", func(tx *sql.Tx) error {
		out, err = appendLink(ctx, tx, l)
		return err
	})
	return out, err
}

// appendLink appends l inside tx; the write lock, held from BEGIN
// IMMEDIATE, makes the history it reads the latest.
func appendLink(ctx context.Context, tx *sql.Tx, l graph.Link) (graph.Link, error) {
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
			validTo, ends = fmtTime(r.ValidTo), r.Ends
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO identity_links
			(partner_id, external_ref, member_id, valid_from, valid_to, ends, made_by, provenance)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
			r.Partner, r.ExternalRef, r.MemberID, fmtTime(r.ValidFrom), validTo, ends, string(by), string(prov)).Scan(&r.Seq); err != nil {
			return graph.Link{}, err
		}
		l = r
	}
	return l, nil
}

// IdentityLinks returns every record of one external identity, oldest
// first.
func (s *Store) IdentityLinks(ctx context.Context, partner, externalRef string) ([]graph.Link, error) {
	ls, err := links(ctx, s.r, partner, externalRef)
	return ls, wrap("identity links", err)
}

func links(ctx context.Context, q querier, partner, externalRef string) ([]graph.Link, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq, member_id, valid_from, valid_to, ends, made_by, provenance
		FROM identity_links WHERE partner_id = ? AND external_ref = ? ORDER BY seq`, partner, externalRef)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []graph.Link
	for rows.Next() {
		l := graph.Link{Partner: partner, ExternalRef: externalRef}
		var from string
		var to sql.NullString
		var ends sql.NullInt64
		var by, prov string
		if err := rows.Scan(&l.Seq, &l.MemberID, &from, &to, &ends, &by, &prov); err != nil {
			return nil, err
		}
		if l.ValidFrom, err = parseTime(from); err != nil {
			return nil, err
		}
		if to.Valid {
			if l.ValidTo, err = parseTime(to.String); err != nil {
				return nil, err
			}
		}
		l.Ends = ends.Int64
		if err := json.Unmarshal([]byte(by), &l.MadeBy); err != nil {
			return nil, fmt.Errorf("stored made_by: %w", err)
		}
		if err := json.Unmarshal([]byte(prov), &l.Provenance); err != nil {
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
		return fmt.Errorf("sqlite: append identity review: %w", err)
	}
	return s.write(ctx, "append identity review", func(tx *sql.Tx) error { return appendReview(ctx, tx, r) })
}

func appendReview(ctx context.Context, tx *sql.Tx, r graph.Review) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO identity_reviews
		(partner_id, presentation, decision, member_id, reviewer, decided_at, transfer_id)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.Partner, r.Presentation, r.Decision, r.MemberID, r.Reviewer, fmtTime(r.At), r.TransferID)
	return err
}

// IdentityReviews returns the decisions on one presentation, oldest first.
func (s *Store) IdentityReviews(ctx context.Context, partner, presentation string) ([]graph.Review, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT decision, member_id, reviewer, decided_at, transfer_id
		FROM identity_reviews WHERE partner_id = ? AND presentation = ? ORDER BY id`, partner, presentation)
	if err != nil {
		return nil, wrap("identity reviews", err)
	}
	defer rows.Close()
	var out []graph.Review
	for rows.Next() {
		r := graph.Review{Partner: partner, Presentation: presentation}
		var at string
		if err := rows.Scan(&r.Decision, &r.MemberID, &r.Reviewer, &at, &r.TransferID); err != nil {
			return nil, wrap("identity reviews", err)
		}
		if r.At, err = parseTime(at); err != nil {
			return nil, wrap("identity reviews", err)
		}
		out = append(out, r)
	}
	return out, wrap("identity reviews", rows.Err())
}

// PresentationKey returns the presentation key, creating it on first use.
func (s *Store) PresentationKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.r.QueryRowContext(ctx, "SELECT key FROM identity_key WHERE one = 1").Scan(&key)
	if err == nil {
		return key, nil
	}
	if err != sql.ErrNoRows {
		return nil, wrap("presentation key", err)
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("sqlite: presentation key: %w", err)
	}
	err = s.write(ctx, "presentation key", func(tx *sql.Tx) error {
		// Another process may have created it first: theirs wins.
		if _, err := tx.ExecContext(ctx, "INSERT INTO identity_key (one, key) VALUES (1, ?) ON CONFLICT (one) DO NOTHING", fresh); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT key FROM identity_key WHERE one = 1").Scan(&key)
	})
	return key, err
}
