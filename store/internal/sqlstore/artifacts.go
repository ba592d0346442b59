package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/p2p-payer/p2p/store"
)

// PutArtifact stores a transfer's artifact under its digest. Storing the
// same digest for the same transfer again is a no-op, also after a
// withdrawal: a retried export never brings a withdrawn payload back.
func (s *Store) PutArtifact(ctx context.Context, a store.Artifact) error {
	const op = "put artifact"
	if a.Digest == "" || a.TransferID == "" {
		return s.wrap(op, errors.New("digest and transfer id are required"))
	}
	if a.Data == nil {
		a.Data = []byte{} // NULL means withdrawn
	}
	_, err := s.exec(ctx, op, "PutArtifact",
		a.TransferID, a.Digest, a.Name, a.ContentType, a.Size, a.Data, s.d.time(orNow(a.CreatedAt, time.Now())))
	return err
}

// scanArtifact reads the metadata columns and, if withData, the payload.
func scanArtifact(r scanner, withData bool) (store.Artifact, error) {
	var a store.Artifact
	var withdrawn time.Time
	dest := []any{&a.TransferID, &a.Digest, &a.Name, &a.ContentType, &a.Size, timeCol{&a.CreatedAt}, timeCol{&withdrawn}}
	if withData {
		dest = append(dest, &a.Data)
	}
	if err := r.Scan(dest...); err != nil {
		return a, err
	}
	if !withdrawn.IsZero() {
		a.WithdrawnAt, a.Data = &withdrawn, nil
	} else if withData && a.Data == nil {
		a.Data = []byte{}
	}
	return a, nil
}

// GetArtifact returns the artifact with digest, store.ErrNotFound, or
// store.ErrWithdrawn with its metadata if its payload was purged. When
// several transfers hold the digest, one that still has the payload wins.
func (s *Store) GetArtifact(ctx context.Context, digest string) (store.Artifact, error) {
	a, err := scanArtifact(s.r.QueryRowContext(ctx, s.sql("GetArtifact"), digest), true)
	if err == nil && a.WithdrawnAt != nil {
		err = store.ErrWithdrawn
	}
	return a, s.wrap("get artifact", err)
}

// ListArtifacts implements store.Artifacts, in the order they were stored.
func (s *Store) ListArtifacts(ctx context.Context, transferID string) ([]store.Artifact, error) {
	out, err := all(ctx, s.r, func(r scanner) (store.Artifact, error) { return scanArtifact(r, false) },
		s.sql("ListArtifacts"), transferID)
	return out, s.wrap("list artifacts", err)
}

// WithdrawArtifacts implements store.Artifacts.
func (s *Store) WithdrawArtifacts(ctx context.Context, transferID string, at time.Time) (int, error) {
	return s.exec(ctx, "withdraw artifacts", "WithdrawArtifacts", transferID, s.d.time(orNow(at, time.Now())))
}

// ExpiredArtifacts implements store.Artifacts.
func (s *Store) ExpiredArtifacts(ctx context.Context, f store.ArtifactPurge) ([]store.ExpiredArtifacts, error) {
	const op = "expired artifacts"
	if len(f.States) == 0 || f.ContentType == "" || f.Before.IsZero() {
		return nil, s.wrap(op, errors.New("content type, states and a cutoff are required"))
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	states := make([][]any, len(f.States))
	for i, st := range f.States {
		states[i] = []any{string(st)}
	}
	q, args := s.d.withRows(s.sql("ExpiredArtifacts"), []any{f.ContentType, s.d.time(f.Before), f.Limit}, states)
	out, err := all(ctx, s.r, func(r scanner) (e store.ExpiredArtifacts, err error) {
		err = r.Scan(&e.TransferID, timeCol{&e.UpdatedAt}, &e.Artifacts)
		return e, err
	}, q, args...)
	return out, s.wrap(op, err)
}

// PurgeArtifacts implements store.Artifacts.
func (s *Store) PurgeArtifacts(ctx context.Context, transferID, contentType string, at time.Time) (int, error) {
	return s.exec(ctx, "purge artifacts", "PurgeArtifacts", transferID, contentType, s.d.time(orNow(at, time.Now())))
}
