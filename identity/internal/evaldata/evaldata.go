// Package evaldata converts the public record-linkage sets used to evaluate
// the matcher (FEBRL, Splink's fake_1000) into canonical member records,
// keeping their truth apart from the records the matcher sees.
package evaldata

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/p2p-payer/p2p/member"
)

// Labelled is a record with the key of the entity it belongs to (equal keys:
// the same person). The key never reaches the matcher.
type Labelled struct {
	Record member.Record
	Entity string
}

// ReadFEBRL reads a FEBRL file (rec_id, given_name, surname, street_number,
// address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id).
// The member id is soc_sec_id when withIDs, else rec_id's position (a
// meaningless surrogate); the entity is the N of rec-N-org / rec-N-dup-k.
func ReadFEBRL(path string, withIDs bool) ([]Labelled, error) {
	rows, err := readCSV(path)
	if err != nil {
		return nil, err
	}
	var out []Labelled
	for i, f := range rows {
		if len(f) < 11 {
			return nil, fmt.Errorf("%s: line %d: want 11 fields", path, i+2)
		}
		ent := strings.TrimPrefix(f[0], "rec-")
		if j := strings.IndexByte(ent, '-'); j >= 0 {
			ent = ent[:j]
		}
		street := strings.TrimSpace(strings.Join(nonEmpty(f[3], f[4], f[5]), " "))
		dob := f[9]
		if len(dob) == 8 {
			dob = dob[:4] + "-" + dob[4:6] + "-" + dob[6:]
		}
		id := fmt.Sprintf("R%05d", i)
		if withIDs {
			id = f[10]
		}
		out = append(out, Labelled{Entity: ent, Record: member.Record{
			ID: id, Given: f[1], Family: f[2], BirthDate: dob, Street: street,
			City: f[6], PostalCode: f[7], State: f[8],
		}})
	}
	return out, nil
}

// ReadFake1000 reads Splink's fake_1000 (unique_id, first_name, surname,
// dob, city, email, cluster). The member id is unique_id; email has no
// canonical column and is dropped; the entity is cluster.
func ReadFake1000(path string) ([]Labelled, error) {
	rows, err := readCSV(path)
	if err != nil {
		return nil, err
	}
	var out []Labelled
	for i, f := range rows {
		if len(f) < 7 {
			return nil, fmt.Errorf("%s: line %d: want 7 fields", path, i+2)
		}
		out = append(out, Labelled{Entity: f[6], Record: member.Record{
			ID: f[0], Given: f[1], Family: f[2], BirthDate: f[3], City: f[4],
		}})
	}
	return out, nil
}

func readCSV(path string) ([][]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = fh.Close() }() // read only: nothing to lose
	r := csv.NewReader(fh)
	r.TrimLeadingSpace = true
	r.FieldsPerRecord = -1
	if _, err := r.Read(); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	var out [][]string
	for {
		f, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		out = append(out, f)
	}
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// WriteCanonical writes records as the canonical member CSV; with queries
// the first column is query_id (the record's id) and member_id is written
// only when keepIDs.
func WriteCanonical(w io.Writer, recs []member.Record, queries, keepIDs bool) error {
	cw := csv.NewWriter(w)
	head := member.Columns
	if queries {
		head = append([]string{"query_id"}, head...)
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, r := range recs {
		row := []string{r.ID, r.Given, r.Family, r.BirthDate, r.Sex, r.Street, r.City, r.State, r.PostalCode, r.Phone}
		if queries {
			id := ""
			if keepIDs {
				id = r.ID
			}
			row = append([]string{r.ID}, append([]string{id}, row[1:]...)...)
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
