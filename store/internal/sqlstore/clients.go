package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/store"
)

// CreateClient implements store.Clients.
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	return s.putClient(ctx, "create client", "CreateClient", c)
}

// UpsertClient implements store.Clients.
func (s *Store) UpsertClient(ctx context.Context, c store.Client) error {
	return s.putClient(ctx, "upsert client", "UpsertClient", c)
}

// putClient writes c with query and replaces its certificates, in one
// transaction. CreateClient's query changes no row when the id is taken.
func (s *Store) putClient(ctx context.Context, op, query string, c store.Client) error {
	if c.ID == "" {
		return s.wrap(op, errors.New("client id is required"))
	}
	now := time.Now()
	var disabled any
	if c.Disabled {
		disabled = s.d.time(now)
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, s.sql(query), c.ID, c.Name, strings.Join(c.Scopes, " "), c.JWKSURL, string(c.JWKS),
			c.Person, disabled, s.d.time(now))
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrExists
		}
		if _, err := tx.ExecContext(ctx, s.sql("DeleteClientCerts"), c.ID); err != nil {
			return err
		}
		for _, fp := range c.CertSHA256 {
			if _, err := tx.ExecContext(ctx, s.sql("InsertClientCert"), strings.ToLower(fp), c.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// scanClient reads a row of GetClient or ListClients.
func scanClient(r scanner) (store.Client, error) {
	var c store.Client
	var scopes, jwks string
	err := r.Scan(&c.ID, &c.Name, &scopes, &c.JWKSURL, &jwks, &c.Person, timeCol{&c.DisabledAt}, timeCol{&c.CreatedAt}, timeCol{&c.UpdatedAt})
	c.Scopes = strings.Fields(scopes)
	if jwks != "" {
		c.JWKS = []byte(jwks)
	}
	c.Disabled = !c.DisabledAt.IsZero()
	return c, err
}

// GetClient implements store.Clients.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := scanClient(s.r.QueryRowContext(ctx, s.sql("GetClient"), id))
	if err == nil {
		c.CertSHA256, err = all(ctx, s.r, func(r scanner) (string, error) {
			var fp string
			return fp, r.Scan(&fp)
		}, s.sql("ClientCerts"), id)
	}
	return c, s.wrap("get client", err)
}

// ClientByCert implements store.Clients.
func (s *Store) ClientByCert(ctx context.Context, sha256 string) (store.Client, error) {
	var id string
	if err := s.r.QueryRowContext(ctx, s.sql("ClientByCert"), strings.ToLower(sha256)).Scan(&id); err != nil {
		return store.Client{}, s.wrap("client by certificate", err)
	}
	return s.GetClient(ctx, id)
}

// ListClients implements store.Clients.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	cs, err := all(ctx, s.r, scanClient, s.sql("ListClients"))
	if err != nil {
		return nil, s.wrap("list clients", err)
	}
	type cert struct{ client, fp string }
	certs, err := all(ctx, s.r, func(r scanner) (cert, error) {
		var c cert
		return c, r.Scan(&c.client, &c.fp)
	}, s.sql("AllClientCerts"))
	if err != nil {
		return nil, s.wrap("list clients", err)
	}
	byID := map[string]int{}
	for i, c := range cs {
		byID[c.ID] = i
	}
	for _, c := range certs {
		if i, ok := byID[c.client]; ok {
			cs[i].CertSHA256 = append(cs[i].CertSHA256, c.fp)
		}
	}
	return cs, nil
}

// DisableClient implements store.Clients.
func (s *Store) DisableClient(ctx context.Context, id string, at time.Time) error {
	n, err := s.exec(ctx, "disable client", "DisableClient", id, s.d.time(at))
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}

// UseAssertion implements store.AssertionReplay: the expired entries go,
// then the insert either adds the entry or finds it (a replay).
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, expires, now time.Time) (bool, error) {
	const op = "use assertion"
	if clientID == "" || jti == "" {
		return false, s.wrap(op, errors.New("client id and jti are required"))
	}
	fresh := false
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.sql("ForgetAssertions"), s.d.time(now)); err != nil {
			return err
		}
		r, err := tx.ExecContext(ctx, s.sql("InsertAssertion"), clientID, jti, s.d.time(expires))
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		fresh = n == 1
		return err
	})
	return fresh, err
}
