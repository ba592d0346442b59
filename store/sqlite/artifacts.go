package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/store"
)

// PutArtifact stores a transfer's artifact under its digest. Storing the
// same digest for the same transfer again is a no-op, also after a
// withdrawal: a retried export never brings a withdrawn payload back.
func (s *Store) PutArtifact(ctx context.Context, a store.Artifact) error {
	if a.Digest == "" || a.TransferID == "" {
		return errors.New("sqlite: put artifact: digest and transfer id are required")
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	if a.Data == nil {
		a.Data = []byte{} // NULL means withdrawn
	}
	return s.write(ctx, "put artifact", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO artifacts
			(transfer_id, digest, name, content_type, size, data, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (transfer_id, digest) DO NOTHING`,
			a.TransferID, a.Digest, a.Name, a.ContentType, a.Size, a.Data, fmtTime(a.CreatedAt))
		return err
	})
}

// scanArtifact reads the metadata columns and, if withData, the payload.
func scanArtifact(r rowScanner, withData bool) (store.Artifact, error) {
	var a store.Artifact
	var created string
	var withdrawn sql.NullString
	dest := []any{&a.TransferID, &a.Digest, &a.Name, &a.ContentType, &a.Size, &created, &withdrawn}
	if withData {
		dest = append(dest, &a.Data)
	}
	if err := r.Scan(dest...); err != nil {
		return a, err
	}
	var err error
	if a.CreatedAt, err = parseTime(created); err != nil {
		return a, err
	}
	if withdrawn.Valid {
		at, err := parseTime(withdrawn.String)
		if err != nil {
			return a, err
		}
		a.WithdrawnAt, a.Data = &at, nil
	} else if withData && a.Data == nil {
		a.Data = []byte{}
	}
	return a, nil
}

const artifactColumns = "transfer_id, digest, name, content_type, size, created_at, withdrawn_at"

// GetArtifact returns the artifact with digest, store.ErrNotFound, or
// store.ErrWithdrawn with its metadata if its payload was purged. When
// several transfers hold the digest, one that still has the payload wins.
func (s *Store) GetArtifact(ctx context.Context, digest string) (store.Artifact, error) {
	a, err := scanArtifact(s.r.QueryRowContext(ctx, "SELECT "+artifactColumns+`, data FROM artifacts
		WHERE digest = ? ORDER BY withdrawn_at IS NOT NULL, created_at, transfer_id LIMIT 1`, digest), true)
	if err != nil {
		return store.Artifact{}, wrap("get artifact", err)
	}
	if a.WithdrawnAt != nil {
		return a, store.ErrWithdrawn
	}
	return a, nil
}

// ListArtifacts returns the metadata (no Data) of a transfer's artifacts
// in the order they were stored.
func (s *Store) ListArtifacts(ctx context.Context, transferID string) ([]store.Artifact, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+artifactColumns+` FROM artifacts
		WHERE transfer_id = ? ORDER BY created_at, name, digest`, transferID)
	if err != nil {
		return nil, wrap("list artifacts", err)
	}
	defer rows.Close()
	var out []store.Artifact
	for rows.Next() {
		a, err := scanArtifact(rows, false)
		if err != nil {
			return nil, wrap("list artifacts", err)
		}
		out = append(out, a)
	}
	return out, wrap("list artifacts", rows.Err())
}

// WithdrawArtifacts deletes the payloads of a transfer's artifacts, keeps
// their metadata as evidence, and returns how many it withdrew now.
func (s *Store) WithdrawArtifacts(ctx context.Context, transferID string, at time.Time) (int, error) {
	if at.IsZero() {
		at = time.Now()
	}
	var n int64
	err := s.write(ctx, "withdraw artifacts", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `UPDATE artifacts SET data = NULL, withdrawn_at = ?
			WHERE transfer_id = ? AND withdrawn_at IS NULL`, fmtTime(at), transferID)
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	return int(n), err
}

// ExpiredArtifacts lists the transfers whose artifacts of f.ContentType
// retention has expired, oldest first.
func (s *Store) ExpiredArtifacts(ctx context.Context, f store.ArtifactPurge) ([]store.ExpiredArtifacts, error) {
	if len(f.States) == 0 || f.ContentType == "" || f.Before.IsZero() {
		return nil, errors.New("sqlite: expired artifacts: content type, states and a cutoff are required")
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	args := []any{f.ContentType}
	for _, st := range f.States {
		args = append(args, string(st))
	}
	args = append(args, fmtTime(f.Before), f.Limit)
	rows, err := s.r.QueryContext(ctx, `SELECT t.id, t.updated_at, count(*) FROM transfers t
		JOIN artifacts a ON a.transfer_id = t.id AND a.withdrawn_at IS NULL AND a.content_type = ?
		WHERE t.state IN (?`+strings.Repeat(", ?", len(f.States)-1)+`) AND t.updated_at < ?
		GROUP BY t.id, t.updated_at ORDER BY t.updated_at, t.id LIMIT ?`, args...)
	if err != nil {
		return nil, wrap("expired artifacts", err)
	}
	defer rows.Close()
	var out []store.ExpiredArtifacts
	for rows.Next() {
		var e store.ExpiredArtifacts
		var at string
		if err := rows.Scan(&e.TransferID, &at, &e.Artifacts); err != nil {
			return nil, wrap("expired artifacts", err)
		}
		if e.UpdatedAt, err = parseTime(at); err != nil {
			return nil, wrap("expired artifacts", err)
		}
		out = append(out, e)
	}
	return out, wrap("expired artifacts", rows.Err())
}

// PurgeArtifacts deletes the payloads of a transfer's artifacts of
// contentType, keeps their rows, and returns how many it purged now.
func (s *Store) PurgeArtifacts(ctx context.Context, transferID, contentType string, at time.Time) (int, error) {
	if at.IsZero() {
		at = time.Now()
	}
	var n int64
	err := s.write(ctx, "purge artifacts", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `UPDATE artifacts SET data = NULL, withdrawn_at = ?
			WHERE transfer_id = ? AND content_type = ? AND withdrawn_at IS NULL`, fmtTime(at), transferID, contentType)
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	return int(n), err
}
