package sqlstore

import (
	"context"
	"database/sql"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
)

// UpsertMembers inserts or replaces members of the index, all or none, in
// one transaction of bulk statements. Of several records with one id, the
// last wins.
func (s *Store) UpsertMembers(ctx context.Context, ms []member.Record) error {
	const op = "upsert members"
	if len(ms) == 0 {
		return nil
	}
	ms, err := dedupeMembers(ms) // a statement may not update one row twice
	if err != nil {
		return s.wrap(op, err)
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		// The write's version is one more than the last committed, taken
		// under the members lock: versions commit in order (see
		// MemberChanges).
		if q := s.sql("LockMembers"); q != "" {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		var version int64
		if err := tx.QueryRowContext(ctx, s.sql("MemberVersion")).Scan(&version); err != nil {
			return err
		}
		version++
		for start := 0; start < len(ms); start += s.d.bulkRows {
			chunk := ms[start:min(start+s.d.bulkRows, len(ms))]
			rows := make([][]any, len(chunk))
			for i, m := range chunk {
				rows[i] = []any{m.ID, m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone, version}
			}
			q, args := s.d.withRows(s.sql("UpsertMembers"), nil, rows)
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

func scanMember(r scanner) (member.Record, error) {
	var m member.Record
	err := r.Scan(&m.ID, &m.Given, &m.Family, &m.BirthDate, &m.Sex, &m.Street, &m.City, &m.State, &m.PostalCode, &m.Phone)
	return m, err
}

// GetMember returns the member with id, or store.ErrNotFound.
func (s *Store) GetMember(ctx context.Context, id string) (member.Record, error) {
	m, err := scanMember(s.r.QueryRowContext(ctx, s.sql("GetMember"), id))
	return m, s.wrap("get member", err)
}

// MembersByBirthDate returns every member born on date, ordered by id.
func (s *Store) MembersByBirthDate(ctx context.Context, date string) ([]member.Record, error) {
	out, err := all(ctx, s.r, scanMember, s.sql("MembersByBirthDate"), date)
	return out, s.wrap("members by birth date", err)
}

// ListMembers pages through the index in id order, after afterID. A limit
// of zero or less means 1,000.
func (s *Store) ListMembers(ctx context.Context, afterID string, limit int) ([]member.Record, error) {
	if limit <= 0 {
		limit = 1000
	}
	out, err := all(ctx, s.r, scanMember, s.sql("ListMembers"), afterID, limit)
	return out, s.wrap("list members", err)
}

// CountMembers returns the size of the index.
func (s *Store) CountMembers(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, s.sql("CountMembers")).Scan(&n)
	return n, s.wrap("count members", err)
}

// MemberVersion returns the version of the last member write, 0 before any.
func (s *Store) MemberVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.r.QueryRowContext(ctx, s.sql("MemberVersion")).Scan(&v)
	return v, s.wrap("member version", err)
}

// MemberChanges returns up to limit members written after the cursor
// (afterVersion, afterID), in (version, id) order; an empty afterID stands
// after every member of afterVersion. A limit of zero or less means 1,000.
func (s *Store) MemberChanges(ctx context.Context, afterVersion int64, afterID string, limit int) ([]store.MemberChange, error) {
	if limit <= 0 {
		limit = 1000
	}
	if afterID == "" {
		// Member ids are never empty: (v+1, "") is before every member of
		// version v+1 and after every member of v.
		afterVersion++
	}
	out, err := all(ctx, s.r, func(r scanner) (store.MemberChange, error) {
		var c store.MemberChange
		m := &c.Record
		err := r.Scan(&c.Version, &m.ID, &m.Given, &m.Family, &m.BirthDate, &m.Sex, &m.Street, &m.City, &m.State, &m.PostalCode, &m.Phone)
		return c, err
	}, s.sql("MemberChanges"), afterVersion, afterID, limit)
	return out, s.wrap("member changes", err)
}
