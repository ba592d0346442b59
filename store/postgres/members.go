package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
)

// memberBatch is how many members one statement carries, as ten arrays
// unnested server-side: a million-member import is 200 round trips.
const memberBatch = 5000

const memberColumns = "id, given, family, birth_date, sex, street, city, state, postal_code, phone"

const upsertMembersSQL = `INSERT INTO members (` + memberColumns + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
		$6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
	ON CONFLICT (id) DO UPDATE SET
		given = excluded.given, family = excluded.family, birth_date = excluded.birth_date,
		sex = excluded.sex, street = excluded.street, city = excluded.city, state = excluded.state,
		postal_code = excluded.postal_code, phone = excluded.phone`

// UpsertMembers inserts or replaces members of the index, all or none, in
// one transaction of batched statements. Of several records with one id,
// the last wins.
func (s *Store) UpsertMembers(ctx context.Context, ms []member.Record) error {
	if len(ms) == 0 {
		return nil
	}
	if err := storeutil.CheckMembers(ms); err != nil {
		return fmt.Errorf("postgres: upsert members: %w", err)
	}
	// A statement may not update one row twice.
	ms = storeutil.DedupeMembers(ms)
	return s.write(ctx, "upsert members", func(tx pgx.Tx) error {
		for start := 0; start < len(ms); start += memberBatch {
			chunk := ms[start:min(start+memberBatch, len(ms))]
			cols := make([][]string, 10)
			for i := range cols {
				cols[i] = make([]string, len(chunk))
			}
			for j, m := range chunk {
				for i, v := range []string{m.ID, m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone} {
					cols[i][j] = v
				}
			}
			if _, err := tx.Exec(ctx, upsertMembersSQL, cols[0], cols[1], cols[2], cols[3], cols[4],
				cols[5], cols[6], cols[7], cols[8], cols[9]); err != nil {
				return err
			}
		}
		return nil
	})
}

func scanMember(r pgx.Row) (member.Record, error) {
	var m member.Record
	err := r.Scan(&m.ID, &m.Given, &m.Family, &m.BirthDate, &m.Sex, &m.Street, &m.City, &m.State, &m.PostalCode, &m.Phone)
	return m, err
}

func (s *Store) queryMembers(ctx context.Context, op, q string, args ...any) ([]member.Record, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []member.Record
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, m)
	}
	return out, wrap(op, rows.Err())
}

// GetMember returns the member with id, or store.ErrNotFound.
func (s *Store) GetMember(ctx context.Context, id string) (member.Record, error) {
	m, err := scanMember(s.pool.QueryRow(ctx, "SELECT "+memberColumns+" FROM members WHERE id = $1", id))
	return m, wrap("get member", err)
}

// MembersByBirthDate returns every member born on date, ordered by id.
func (s *Store) MembersByBirthDate(ctx context.Context, date string) ([]member.Record, error) {
	return s.queryMembers(ctx, "members by birth date",
		"SELECT "+memberColumns+" FROM members WHERE birth_date = $1 ORDER BY id", date)
}

// ListMembers pages through the index in id order, after afterID. A limit
// of zero or less means 1,000.
func (s *Store) ListMembers(ctx context.Context, afterID string, limit int) ([]member.Record, error) {
	if limit <= 0 {
		limit = 1000
	}
	return s.queryMembers(ctx, "list members",
		"SELECT "+memberColumns+" FROM members WHERE id > $1 ORDER BY id LIMIT $2", afterID, limit)
}

// CountMembers returns the size of the index.
func (s *Store) CountMembers(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM members").Scan(&n)
	return n, wrap("count members", err)
}
