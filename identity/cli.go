package identity

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// maxRejectLines is how many rejected rows the CLI lists before it only
// counts them.
const maxRejectLines = 20

// RunMatchCLI implements `p2p identity match --index INDEX.csv --queries
// QUERIES.csv [--out FILE]`: it builds an index from the canonical member
// CSV, trains the model on the queries by EM (unless --no-train), matches
// every query on all cores and writes
// query_id,decision,member_id,score,runner_up_score in query order. Rows
// that cannot be read are reported by line number on stderr, never by
// value.
func RunMatchCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("identity match", flag.ContinueOnError)
	fs.SetOutput(stderr)
	indexPath := fs.String("index", "", "canonical member CSV to match against (required)")
	queriesPath := fs.String("queries", "", "query CSV: query_id then the member columns, any may be empty (required)")
	outPath := fs.String("out", "", "output CSV (default: standard output)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "parallel matchers")
	noTrain := fs.Bool("no-train", false, "keep the index's default m probabilities instead of training them on the queries by EM")
	dedup := fs.Bool("dedup", false, "the queries are the index's own members (query_id = member_id): never match a query to itself")
	cfg := DefaultConfig()
	fs.Float64Var(&cfg.MatchThreshold, "match-threshold", cfg.MatchThreshold, "score (posterior log2-odds) from which the best candidate is matched")
	fs.Float64Var(&cfg.ReviewThreshold, "review-threshold", cfg.ReviewThreshold, "score from which a candidate not matched goes to review; below: no_match")
	fs.Float64Var(&cfg.Margin, "margin", cfg.Margin, "points the best candidate must beat a different runner-up by to be matched")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *indexPath == "" || *queriesPath == "" {
		fs.Usage()
		return errors.New("identity match: --index and --queries are required")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("identity match: %w", err)
	}
	start := time.Now()
	ids, queries, err := ReadQueries(*queriesPath, "identity match", stderr)
	if err != nil {
		return err
	}
	loaded := time.Now()
	// The member file is read, normalised and filed at once, page by page:
	// the members are never all in memory as records.
	ix, err := loadIndex(*indexPath, cfg, stderr)
	if err != nil {
		return err
	}
	built := time.Now()
	if !*noTrain {
		train := queries
		if *dedup {
			train = make([]transfer.Demographics, len(queries))
			for i, q := range queries {
				train[i] = q
				train[i].MemberID = ids[i]
			}
		}
		ix.SetModel(ix.Train(train, TrainOptions{Dedup: *dedup}))
	}
	trained := time.Now()

	decisions := make([]Decision, len(queries))
	var wg sync.WaitGroup
	next := make(chan int, 1024)
	for w := 0; w < max(*workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if *dedup {
					decisions[i] = ix.matchExcluding(queries[i], ids[i])
				} else {
					decisions[i] = ix.Match(queries[i])
				}
			}
		}()
	}
	var cancelled error
	for i := range queries {
		if i%4096 == 0 && ctx.Err() != nil {
			cancelled = ctx.Err()
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if cancelled != nil {
		return cancelled
	}
	matched := time.Now()

	counts, err := writeOutput(*outPath, stdout, ids, decisions)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "identity match: %d members, %d queries: %d match, %d review, %d no_match\n",
		ix.Len(), len(queries), counts[OutcomeMatch], counts[OutcomeReview], counts[OutcomeNoMatch])
	fmt.Fprintf(stderr, "identity match: read queries %v, read and index members %v, train %v, match %v (%.0f queries/s), total %v\n",
		loaded.Sub(start).Round(time.Millisecond), built.Sub(loaded).Round(time.Millisecond), trained.Sub(built).Round(time.Millisecond),
		matched.Sub(trained).Round(time.Millisecond), float64(len(queries))/matched.Sub(trained).Seconds(), time.Since(start).Round(time.Millisecond))
	return nil
}

// writeOutput writes the decisions as CSV to the file at path, or to stdout
// when path is "", and counts them by outcome.
func writeOutput(path string, stdout io.Writer, ids []string, decisions []Decision) (map[string]int, error) {
	if path == "" {
		return writeDecisions(stdout, ids, decisions)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("identity match: %w", err)
	}
	counts, err := writeDecisions(f, ids, decisions)
	// Closing a file written can lose its last bytes: that is an error too.
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("identity match: writing output: %w", cerr)
	}
	return counts, err
}

// writeDecisions writes query_id,decision,member_id,score,runner_up_score
// in query order, and counts the decisions by outcome.
func writeDecisions(out io.Writer, ids []string, decisions []Decision) (map[string]int, error) {
	bw := bufio.NewWriterSize(out, 1<<20)
	cw := csv.NewWriter(bw)
	_ = cw.Write([]string{"query_id", "decision", "member_id", "score", "runner_up_score"}) // an error stays in cw
	counts := map[string]int{}
	for i, d := range decisions {
		counts[d.Outcome]++
		score, runner := "", ""
		if d.Outcome != OutcomeNoMatch || d.Rationale.Rule == RuleProbabilistic {
			score = strconv.FormatFloat(d.Score, 'f', 3, 64)
		}
		if d.Rationale.RunnerUp != nil {
			runner = strconv.FormatFloat(d.Rationale.RunnerUp.Score, 'f', 3, 64)
		}
		if err := cw.Write([]string{ids[i], d.Outcome, d.MemberID, score, runner}); err != nil {
			return nil, fmt.Errorf("identity match: writing output: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return nil, fmt.Errorf("identity match: writing output: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("identity match: writing output: %w", err)
	}
	return counts, nil
}

// loadIndex builds an index from the canonical member CSV, reporting
// rejected rows by line number. It is a pipeline on every core: one
// goroutine parses the file into pages, workers normalise and key the pages
// (prepare), and this goroutine files them in file order, so that the
// index is the one AddBatch would build from the rows in order.
func loadIndex(path string, cfg Config, stderr io.Writer) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity match: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	rd, err := member.NewReader(bufio.NewReaderSize(f, 1<<20), false)
	if err != nil {
		return nil, fmt.Errorf("identity match: index: %w", err)
	}
	workers := runtime.GOMAXPROCS(0)
	pages := make(chan memberPage, workers)
	ready := make(chan preparedPage, workers)
	readErr := make(chan error, 1)
	go func() {
		defer close(pages)
		readErr <- readMemberPages(rd, pages, stderr)
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for page := range pages {
				preps := make([]prepared, len(page.recs))
				for i := range page.recs {
					preps[i] = prepare(page.recs[i])
				}
				ready <- preparedPage{seq: page.seq, preps: preps}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(ready)
	}()
	// Room for as many members as the file can hold at 64 bytes a row (few
	// rows are shorter): the member-id table grows, rehashing every id,
	// only if the file holds more.
	var rows int
	if st, err := f.Stat(); err == nil {
		rows = int(min(st.Size()/64, 1<<30))
	}
	ix := newIndex(cfg, rows)
	var addErr error
	waiting := map[int][]prepared{} // pages prepared before those ahead of them
	filed := 0
	for pp := range ready {
		waiting[pp.seq] = pp.preps
		for preps, ok := waiting[filed]; ok; preps, ok = waiting[filed] {
			delete(waiting, filed)
			filed++
			if addErr != nil {
				continue // drain the pipeline
			}
			if _, err := ix.addPrepared(preps, workers); err != nil {
				addErr = fmt.Errorf("identity match: index: %w", err)
			}
		}
	}
	if err := <-readErr; err != nil {
		return nil, err
	}
	if addErr != nil {
		return nil, addErr
	}
	ix.Reestimate()
	return ix, nil
}

// memberPage is a page of members read, and its place in the file (0 for
// the first page).
type memberPage struct {
	seq  int
	recs []member.Record
}

// preparedPage is a page of members prepared for filing, and its place.
type preparedPage struct {
	seq   int
	preps []prepared
}

// readMemberPages sends the rows of rd to pages, batchChunk at a time,
// numbered in order.
func readMemberPages(rd *member.Reader, pages chan<- memberPage, stderr io.Writer) error {
	page := make([]member.Record, 0, batchChunk)
	seq := 0
	rejected, lenient := 0, 0
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *member.RowError
		var fe *member.FieldError
		if errors.As(err, &fe) && fe.Field != "member_id" {
			// A member with an unusable birth date or sex, or without a name,
			// is still a member: keep them, the field treated as missing,
			// rather than make them unfindable.
			lenient++
			switch fe.Field {
			case "birth_date":
				row.Record.BirthDate = ""
			case "sex":
				row.Record.Sex = ""
			}
		} else if errors.As(err, &re) {
			rejected++
			if rejected <= maxRejectLines {
				fmt.Fprintf(stderr, "identity match: index: %v (skipped)\n", re)
			}
			continue
		} else if err != nil {
			return fmt.Errorf("identity match: index: %w", err)
		}
		page = append(page, row.Record)
		if len(page) == batchChunk {
			pages <- memberPage{seq: seq, recs: page}
			seq++
			page = make([]member.Record, 0, batchChunk)
		}
	}
	if len(page) > 0 {
		pages <- memberPage{seq: seq, recs: page}
	}
	if rejected > 0 {
		fmt.Fprintf(stderr, "identity match: index: %d rows skipped\n", rejected)
	}
	if lenient > 0 {
		fmt.Fprintf(stderr, "identity match: index: %d rows kept with an invalid or missing birth date, sex or name treated as missing\n", lenient)
	}
	return nil
}

// ReadQueries reads a query CSV (query_id then the member columns, any may
// be empty) for the command named cmd: the query ids and the queries, in
// file order. Rows that cannot be read are reported on report by line
// number, never by value (the first maxRejectLines, then a count), and
// skipped.
func ReadQueries(path, cmd string, report io.Writer) ([]string, []transfer.Demographics, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cmd, err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	rd, err := member.NewReader(bufio.NewReaderSize(f, 1<<20), true)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: queries: %w", cmd, err)
	}
	var ids []string
	var qs []transfer.Demographics
	rejected := 0
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *member.RowError
		if errors.As(err, &re) {
			rejected++
			if rejected <= maxRejectLines {
				fmt.Fprintf(report, "%s: queries: %v (skipped)\n", cmd, re)
			}
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: queries: %w", cmd, err)
		}
		ids = append(ids, row.QueryID)
		qs = append(qs, DemographicsOf(row.Record))
	}
	if rejected > 0 {
		fmt.Fprintf(report, "%s: queries: %d rows skipped\n", cmd, rejected)
	}
	return ids, qs, nil
}

// DemographicsOf is member record r as a query's demographics.
func DemographicsOf(r member.Record) transfer.Demographics {
	return transfer.Demographics{MemberID: r.ID, Given: r.Given, Family: r.Family, BirthDate: r.BirthDate, Sex: r.Sex, Phone: r.Phone,
		Address: transfer.Address{Street: r.Street, City: r.City, State: r.State, PostalCode: r.PostalCode}}
}
