package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/dsn"
)

// importBatch is how many members go into the store per transaction.
const importBatch = 1000

func runMembersImport(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("p2p members import", flag.ContinueOnError)
	file := fs.String("file", "", "canonical member CSV (member_id,given,family,birth_date,sex,street,city,state,postal_code,phone)")
	db := fs.String("database-url", app.Env("P2P_DATABASE_URL", filepath.Join(defaultDataDir, "p2p.db")),
		"postgres://… or a SQLite file path (P2P_DATABASE_URL)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *file == "" {
		return usageError(errors.New("members import: --file is required"))
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // opened read-only: nothing to lose
	st, err := dsn.Open(ctx, *db)
	if err != nil {
		return err
	}
	defer func() { // the store was written: a failure to close it is reported
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	res, err := importMembers(ctx, st, f, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "members import: %d rows loaded, %d rows rejected\n", res.loaded, res.rejected)
	if res.rejected > 0 {
		return fmt.Errorf("%d rows rejected (lines listed above)", res.rejected)
	}
	return nil
}

type importResult struct{ loaded, rejected int }

// importMembers loads the CSV in r into st in batches, reporting each
// rejected row's line and reason (never its values) on report.
func importMembers(ctx context.Context, st store.Members, r io.Reader, report io.Writer) (importResult, error) {
	rd, err := member.NewReader(r, false)
	if err != nil {
		return importResult{}, err
	}
	var res importResult
	batch := make([]member.Record, 0, importBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.UpsertMembers(ctx, batch); err != nil {
			return err
		}
		res.loaded += len(batch)
		batch = batch[:0]
		return nil
	}
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *member.RowError
		if errors.As(err, &re) {
			res.rejected++
			fmt.Fprintf(report, "rejected %v\n", re)
			continue
		}
		if err != nil {
			return res, err
		}
		batch = append(batch, row.Record)
		if len(batch) == importBatch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	return res, flush()
}
