package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
)

// PutArtifact stores a transfer's artifact under its digest. Storing the
// same digest for the same transfer again is a no-op, also after a
// withdrawal: a retried export never brings a withdrawn payload back.
func (s *Store) PutArtifact(ctx context.Context, a store.Artifact) error {
	if a.Digest == "" || a.TransferID == "" {
		return errors.New("postgres: put artifact: digest and transfer id are required")
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	if a.Data == nil {
		a.Data = []byte{} // NULL means withdrawn
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO artifacts
		(transfer_id, digest, name, content_type, size, data, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (transfer_id, digest) DO NOTHING`,
		a.TransferID, a.Digest, a.Name, a.ContentType, a.Size, a.Data, storeutil.Time(a.CreatedAt))
	return wrap("put artifact", err)
}

const artifactColumns = "transfer_id, digest, name, content_type, size, created_at, withdrawn_at"

// scanArtifact reads the metadata columns and, if withData, the payload.
func scanArtifact(r pgx.Row, withData bool) (store.Artifact, error) {
	var a store.Artifact
	dest := []any{&a.TransferID, &a.Digest, &a.Name, &a.ContentType, &a.Size, &a.CreatedAt, &a.WithdrawnAt}
	if withData {
		dest = append(dest, &a.Data)
	}
	if err := r.Scan(dest...); err != nil {
		return a, err
	}
	a.CreatedAt = a.CreatedAt.UTC()
	if a.WithdrawnAt != nil {
		at := a.WithdrawnAt.UTC()
		a.WithdrawnAt, a.Data = &at, nil
	} else if withData && a.Data == nil {
		a.Data = []byte{}
	}
	return a, nil
}

// GetArtifact returns the artifact with digest, store.ErrNotFound, or
// store.ErrWithdrawn with its metadata if its payload was purged. When
// several transfers hold the digest, one that still has the payload wins.
func (s *Store) GetArtifact(ctx context.Context, digest string) (store.Artifact, error) {
	a, err := scanArtifact(s.pool.QueryRow(ctx, "SELECT "+artifactColumns+`, data FROM artifacts
		WHERE digest = $1 ORDER BY withdrawn_at IS NOT NULL, created_at, transfer_id LIMIT 1`, digest), true)
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
	rows, err := s.pool.Query(ctx, "SELECT "+artifactColumns+` FROM artifacts
		WHERE transfer_id = $1 ORDER BY created_at, name, digest`, transferID)
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
	tag, err := s.pool.Exec(ctx, `UPDATE artifacts SET data = NULL, withdrawn_at = $2
		WHERE transfer_id = $1 AND withdrawn_at IS NULL`, transferID, storeutil.Time(at))
	if err != nil {
		return 0, wrap("withdraw artifacts", err)
	}
	return int(tag.RowsAffected()), nil
}

// ExpiredArtifacts lists the transfers whose artifacts of f.ContentType
// retention has expired, oldest first.
func (s *Store) ExpiredArtifacts(ctx context.Context, f store.ArtifactPurge) ([]store.ExpiredArtifacts, error) {
	if len(f.States) == 0 || f.ContentType == "" || f.Before.IsZero() {
		return nil, errors.New("postgres: expired artifacts: content type, states and a cutoff are required")
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	states := make([]string, len(f.States))
	for i, st := range f.States {
		states[i] = string(st)
	}
	rows, err := s.pool.Query(ctx, `SELECT t.id, t.updated_at, count(*) FROM transfers t
		JOIN artifacts a ON a.transfer_id = t.id AND a.withdrawn_at IS NULL AND a.content_type = $1
		WHERE t.state = ANY($2) AND t.updated_at < $3
		GROUP BY t.id, t.updated_at ORDER BY t.updated_at, t.id LIMIT $4`,
		f.ContentType, states, storeutil.Time(f.Before), f.Limit)
	if err != nil {
		return nil, wrap("expired artifacts", err)
	}
	defer rows.Close()
	var out []store.ExpiredArtifacts
	for rows.Next() {
		var e store.ExpiredArtifacts
		if err := rows.Scan(&e.TransferID, &e.UpdatedAt, &e.Artifacts); err != nil {
			return nil, wrap("expired artifacts", err)
		}
		e.UpdatedAt = e.UpdatedAt.UTC()
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
	tag, err := s.pool.Exec(ctx, `UPDATE artifacts SET data = NULL, withdrawn_at = $3
		WHERE transfer_id = $1 AND content_type = $2 AND withdrawn_at IS NULL`, transferID, contentType, storeutil.Time(at))
	if err != nil {
		return 0, wrap("purge artifacts", err)
	}
	return int(tag.RowsAffected()), nil
}
