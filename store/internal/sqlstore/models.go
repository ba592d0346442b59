package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/identity"
)

// LatestIdentityModel implements store.IdentityModels.
func (s *Store) LatestIdentityModel(ctx context.Context) (int64, identity.ModelParams, error) {
	id, p, err := s.latestModel(ctx, s.r)
	return id, p, s.wrap("latest identity model", err)
}

// latestModel reads the model in force on q; sql.ErrNoRows when none.
func (s *Store) latestModel(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (int64, identity.ModelParams, error) {
	var (
		id     int64
		p      identity.ModelParams
		method string
		size   int64
		at     time.Time
	)
	err := q.QueryRowContext(ctx, s.sql("LatestIdentityModel")).Scan(&id, jsonCol{&p}, &method, &size, timeCol{&at})
	if err != nil {
		return 0, identity.ModelParams{}, err
	}
	// The columns are what the row was stored as; the JSON carries them too.
	p.Method, p.TrainingSize, p.TrainedAt = method, int(size), at
	return id, p, nil
}

// SaveIdentityModel implements store.IdentityModels.
func (s *Store) SaveIdentityModel(ctx context.Context, p identity.ModelParams, by string) (int64, error) {
	const op = "save identity model"
	args, err := s.modelArgs(p, by)
	if err != nil {
		return 0, s.wrap(op, err)
	}
	var id int64
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		if err := s.lockModels(ctx, tx); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, s.sql("InsertIdentityModel"), args...).Scan(&id)
	})
	return id, err
}

// InitIdentityModel implements store.IdentityModels.
func (s *Store) InitIdentityModel(ctx context.Context, p identity.ModelParams, by string) (int64, identity.ModelParams, error) {
	const op = "init identity model"
	// Most starts find a model: no write, no lock.
	id, cur, err := s.latestModel(ctx, s.r)
	if !errors.Is(err, sql.ErrNoRows) {
		return id, cur, s.wrap(op, err)
	}
	args, err := s.modelArgs(p, by)
	if err != nil {
		return 0, identity.ModelParams{}, s.wrap(op, err)
	}
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		if err := s.lockModels(ctx, tx); err != nil {
			return err
		}
		// Another process may have stored one since: theirs wins.
		id, cur, err = s.latestModel(ctx, tx)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := tx.QueryRowContext(ctx, s.sql("InsertIdentityModel"), args...).Scan(&id); err != nil {
			return err
		}
		id, cur, err = s.latestModel(ctx, tx)
		return err
	})
	if err != nil {
		return 0, identity.ModelParams{}, err
	}
	return id, cur, nil
}

// IdentityModelID implements store.IdentityModels.
func (s *Store) IdentityModelID(ctx context.Context) (int64, error) {
	var id int64
	err := s.r.QueryRowContext(ctx, s.sql("IdentityModelID")).Scan(&id)
	return id, s.wrap("identity model id", err)
}

// lockModels makes writers of models wait for each other (PostgreSQL;
// SQLite's write transaction already does).
func (s *Store) lockModels(ctx context.Context, tx *sql.Tx) error {
	if q := s.sql("LockIdentityModels"); q != "" {
		_, err := tx.ExecContext(ctx, q)
		return err
	}
	return nil
}

// modelArgs checks p and by and encodes the parameters of
// InsertIdentityModel.
func (s *Store) modelArgs(p identity.ModelParams, by string) ([]any, error) {
	if _, err := p.Model(); err != nil {
		return nil, err
	}
	switch {
	case p.Method != identity.MethodEstimated && p.Method != identity.MethodTrained:
		return nil, fmt.Errorf("identity model method %q is neither %q nor %q", p.Method, identity.MethodEstimated, identity.MethodTrained)
	case p.TrainingSize < 0:
		return nil, errors.New("identity model training size is negative")
	case p.TrainedAt.IsZero():
		return nil, errors.New("identity model training time is required")
	case strings.TrimSpace(by) == "":
		return nil, errors.New("who stores the identity model is required")
	}
	p.TrainedAt = normTime(p.TrainedAt)
	params, err := s.d.jsonParam(p)
	if err != nil {
		return nil, err
	}
	return []any{params, p.Method, p.TrainingSize, s.d.time(p.TrainedAt), s.d.time(time.Now()), by}, nil
}
