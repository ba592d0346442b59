package member

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Columns is the header of the canonical member CSV, in order.
var Columns = []string{"member_id", "given", "family", "birth_date", "sex", "street", "city", "state", "postal_code", "phone"}

// Reader reads the canonical member CSV. The header is required; with
// WithQueryID the first column is query_id (the identity evaluation's query
// file) and every other column may be empty.
type Reader struct {
	r       *csv.Reader
	queryID bool
	line    int
	idx     []int // position of each of Columns in the file (-1: absent)
	qidx    int
}

// Row is one data row of the CSV, with its 1-based line number in the file.
type Row struct {
	Line    int
	QueryID string
	Record  Record
}

// RowError is a rejected row: its line and why, never its values.
type RowError struct {
	Line int
	Err  error
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns the cause.
func (e *RowError) Unwrap() error { return e.Err }

// NewReader reads the header from r and returns a Reader positioned at the
// first data row. Columns may come in any order; member_id is required
// unless withQueryID, in which case query_id is.
func NewReader(r io.Reader, withQueryID bool) (*Reader, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file: the header row is required")
		}
		return nil, fmt.Errorf("reading header: %w", err)
	}
	pos := map[string]int{}
	for i, h := range head {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		pos[h] = i
	}
	rd := &Reader{r: cr, queryID: withQueryID, line: 1, qidx: -1}
	if withQueryID {
		i, ok := pos["query_id"]
		if !ok {
			return nil, errors.New("header: column query_id is required")
		}
		rd.qidx = i
	} else if _, ok := pos["member_id"]; !ok {
		return nil, fmt.Errorf("header: expected columns %s", strings.Join(Columns, ","))
	}
	known := 0
	rd.idx = make([]int, len(Columns))
	for i, c := range Columns {
		j, ok := pos[c]
		if !ok {
			j = -1
		} else {
			known++
		}
		rd.idx[i] = j
	}
	if known < 3 {
		return nil, fmt.Errorf("header: expected columns %s", strings.Join(Columns, ","))
	}
	return rd, nil
}

// Next returns the next row, a *RowError for a row that cannot be read (the
// caller may go on), or io.EOF at the end. Records are validated unless the
// reader reads queries.
func (rd *Reader) Next() (Row, error) {
	fields, err := rd.r.Read()
	rd.line, _ = rd.r.FieldPos(0)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return Row{}, &RowError{Line: pe.StartLine, Err: errors.New("malformed CSV row")}
		}
		return Row{}, err
	}
	get := func(i int) string {
		j := rd.idx[i]
		if j < 0 || j >= len(fields) {
			return ""
		}
		return strings.TrimSpace(fields[j])
	}
	rec := Record{
		ID: get(0), Given: get(1), Family: get(2), BirthDate: get(3), Sex: strings.ToUpper(get(4)),
		Street: get(5), City: get(6), State: get(7), PostalCode: get(8), Phone: get(9),
	}
	row := Row{Line: rd.line, Record: rec}
	if rd.queryID {
		if rd.qidx < len(fields) {
			row.QueryID = strings.TrimSpace(fields[rd.qidx])
		}
		if row.QueryID == "" {
			return row, &RowError{Line: rd.line, Err: errors.New("query_id is required")}
		}
		return row, nil
	}
	if err := rec.Validate(); err != nil {
		return row, &RowError{Line: rd.line, Err: err}
	}
	return row, nil
}
