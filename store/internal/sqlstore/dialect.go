package sqlstore

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Dialect is what differs between the engines, besides the queries of
// their own file.
type Dialect struct {
	name string // the error prefix, and the queries file
	// sqlite: times are fixed-width UTC TEXT and JSON is TEXT (STRICT
	// tables), not timestamptz and jsonb; placeholders are ?, not $N; bulk
	// rows are a multi-row VALUES, not one unnest array per column.
	sqlite bool
	// bulkRows is how many rows one bulk statement carries: PostgreSQL's
	// arrays make a million-member import 200 round trips; SQLite's VALUES
	// stay far under its 32,766 parameters.
	bulkRows int
}

// The dialects.
var (
	Postgres = Dialect{name: "postgres", bulkRows: 5000}
	SQLite   = Dialect{name: "sqlite", sqlite: true, bulkRows: 500}
)

// timeLayout is how SQLite stores times: fixed-width UTC with
// microseconds, so that stored times sort as strings in the order they
// compare as times.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// normTime is t as the store keeps it: UTC, truncated to the microsecond
// (PostgreSQL would round, which no caller expects).
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// time encodes a time parameter.
func (d Dialect) time(t time.Time) any {
	if d.sqlite {
		return normTime(t).Format(timeLayout)
	}
	return normTime(t)
}

// timeCol scans a time column of either encoding into t: timestamptz
// arrives as a time.Time, SQLite's TEXT as a string. NULL leaves t zero.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	var err error
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case time.Time:
		*c.t = v.UTC()
	case string:
		*c.t, err = time.Parse(timeLayout, v)
	default:
		err = fmt.Errorf("a %T", src)
	}
	if err != nil {
		return fmt.Errorf("stored time is malformed: %w", err)
	}
	return nil
}

// jsonCol scans a JSON column of either encoding (jsonb, or SQLite's
// TEXT) into v, a pointer. NULL leaves *v as it is: a nil pointer stays
// nil. json's errors quote no stored values, only types and offsets.
type jsonCol struct{ v any }

func (c jsonCol) Scan(src any) error {
	switch b := src.(type) {
	case nil:
		return nil
	case string:
		return json.Unmarshal([]byte(b), c.v)
	case []byte:
		return json.Unmarshal(b, c.v)
	}
	return fmt.Errorf("stored JSON is a %T", src)
}

var (
	paramRE = regexp.MustCompile(`\$([0-9]+)`)
	rowsRE  = regexp.MustCompile(`\{\{rows ([a-z ]+)\}\}`)
)

// placeholders rewrites $N to the dialect's form. No query has a $ in a
// string literal. On SQLite, parameters that come in order, each once,
// are plain ?: binding ?N looks its name up in a list, which makes a bulk
// statement of thousands of parameters slow.
func (d Dialect) placeholders(q string) string {
	if !d.sqlite {
		return q
	}
	ps := paramRE.FindAllStringSubmatch(q, -1)
	for i, p := range ps {
		if p[1] != strconv.Itoa(i+1) {
			return paramRE.ReplaceAllString(q, "?$1")
		}
	}
	return paramRE.ReplaceAllLiteralString(q, "?")
}

// withRows expands the {{rows TYPE…}} of query q for rows (each as wide as
// its types) and returns its parameters: args (the query's own), then the
// rows'.
func (d Dialect) withRows(q string, args []any, rows [][]any) (string, []any) {
	param := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	var list []string
	if d.sqlite {
		for _, row := range rows {
			tuple := make([]string, len(row))
			for c, v := range row {
				tuple[c] = param(v)
			}
			list = append(list, "("+strings.Join(tuple, ", ")+")")
		}
		q = rowsRE.ReplaceAllLiteralString(q, "VALUES "+strings.Join(list, ", "))
	} else {
		for c, typ := range strings.Fields(rowsRE.FindStringSubmatch(q)[1]) {
			col := make([]any, len(rows))
			for i, row := range rows {
				col[i] = row[c]
			}
			list = append(list, param(col)+"::"+typ+"[]")
		}
		q = rowsRE.ReplaceAllLiteralString(q, "SELECT * FROM unnest("+strings.Join(list, ", ")+")")
	}
	return d.placeholders(q), args
}

// filters are the parameters of a listing's query, its own first, and
// the conditions it asks for, ANDed in at its {{filters}}.
type filters struct {
	args  []any
	conds string
}

// add adds cond, whose ?s are args, if the listing asks for it.
func (f *filters) add(asked bool, cond string, args ...any) {
	if asked {
		for _, a := range args {
			f.args = append(f.args, a)
			cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(f.args)), 1)
		}
		f.conds += " AND " + cond
	}
}

// withFilters expands the {{filters}} of query q and returns its
// parameters.
func (d Dialect) withFilters(q string, f filters) (string, []any) {
	return d.placeholders(strings.Replace(q, "{{filters}}", f.conds, 1)), f.args
}
