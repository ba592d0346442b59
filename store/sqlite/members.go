package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store/internal/storeutil"
)

// memberBatch is how many members one INSERT carries: 10 parameters each,
// well under SQLite's limit of 32,766, and few statements for a big import.
const memberBatch = 500

const memberColumns = "id, given, family, birth_date, sex, street, city, state, postal_code, phone"

// UpsertMembers inserts or replaces members of the index, all or none, in
// one transaction of multi-row statements.
func (s *Store) UpsertMembers(ctx context.Context, ms []member.Record) error {
	if len(ms) == 0 {
		return nil
	}
	if err := storeutil.CheckMembers(ms); err != nil {
		return fmt.Errorf("sqlite: upsert members: %w", err)
	}
	return s.write(ctx, "upsert members", func(tx *sql.Tx) error {
		var full *sql.Stmt // the statement for a whole batch, prepared once
		defer func() {
			if full != nil {
				full.Close()
			}
		}()
		for start := 0; start < len(ms); start += memberBatch {
			chunk := ms[start:min(start+memberBatch, len(ms))]
			q := upsertMembersSQL(len(chunk))
			args := make([]any, 0, 10*len(chunk))
			for _, m := range chunk {
				args = append(args, m.ID, m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone)
			}
			var err error
			if len(chunk) == memberBatch {
				if full == nil {
					if full, err = tx.PrepareContext(ctx, q); err != nil {
						return err
					}
				}
				_, err = full.ExecContext(ctx, args...)
			} else {
				_, err = tx.ExecContext(ctx, q, args...)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// upsertMembersSQL inserts n members; a repeated id within the statement
// is applied in order, so the last one wins.
func upsertMembersSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO members (" + memberColumns + ") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(` ON CONFLICT (id) DO UPDATE SET
		given = excluded.given, family = excluded.family, birth_date = excluded.birth_date,
		sex = excluded.sex, street = excluded.street, city = excluded.city, state = excluded.state,
		postal_code = excluded.postal_code, phone = excluded.phone`)
	return b.String()
}

func scanMember(r rowScanner) (member.Record, error) {
	var m member.Record
	err := r.Scan(&m.ID, &m.Given, &m.Family, &m.BirthDate, &m.Sex, &m.Street, &m.City, &m.State, &m.PostalCode, &m.Phone)
	return m, err
}

func (s *Store) queryMembers(ctx context.Context, op, q string, args ...any) ([]member.Record, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
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
	m, err := scanMember(s.r.QueryRowContext(ctx, "SELECT "+memberColumns+" FROM members WHERE id = ?", id))
	return m, wrap("get member", err)
}

// MembersByBirthDate returns every member born on date, ordered by id.
func (s *Store) MembersByBirthDate(ctx context.Context, date string) ([]member.Record, error) {
	return s.queryMembers(ctx, "members by birth date",
		"SELECT "+memberColumns+" FROM members WHERE birth_date = ? ORDER BY id", date)
}

// ListMembers pages through the index in id order, after afterID. A limit
// of zero or less means 1,000.
func (s *Store) ListMembers(ctx context.Context, afterID string, limit int) ([]member.Record, error) {
	if limit <= 0 {
		limit = 1000
	}
	return s.queryMembers(ctx, "list members",
		"SELECT "+memberColumns+" FROM members WHERE id > ? ORDER BY id LIMIT ?", afterID, limit)
}

// CountMembers returns the size of the index.
func (s *Store) CountMembers(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM members").Scan(&n)
	return n, wrap("count members", err)
}
