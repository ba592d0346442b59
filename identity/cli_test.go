package identity

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/p2p-payer/p2p/identity/internal/evaldata"
	"github.com/p2p-payer/p2p/identity/internal/synth"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

func writeFile(t testing.TB, path string, recs []member.Record, queries, keepIDs bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := evaldata.WriteCanonical(f, recs, queries, keepIDs); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRunMatchCLI(t *testing.T) {
	dir := t.TempDir()
	idx := mustLoad(t, func() ([]evaldata.Labelled, error) {
		return evaldata.ReadFEBRL(filepath.Join(dataDir, "febrl4a.csv"), true)
	})
	qs := mustLoad(t, func() ([]evaldata.Labelled, error) {
		return evaldata.ReadFEBRL(filepath.Join(dataDir, "febrl4b.csv"), true)
	})
	writeFile(t, filepath.Join(dir, "index.csv"), records(idx), false, false)
	writeFile(t, filepath.Join(dir, "queries.csv"), records(qs), true, false)
	// A row the reader rejects: reported by line, and the rest goes on.
	f, err := os.OpenFile(filepath.Join(dir, "index.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(",Secret,Name,1970-01-01,,,,,,\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	err = RunMatchCLI(context.Background(), []string{"--index", filepath.Join(dir, "index.csv"), "--queries", filepath.Join(dir, "queries.csv")}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("RunMatchCLI: %v\n%s", err, stderr.String())
	}
	if bytes.Contains(stderr.Bytes(), []byte("Secret")) || !bytes.Contains(stderr.Bytes(), []byte("line 5002")) {
		t.Errorf("stderr must name the rejected line and no values:\n%s", stderr.String())
	}
	rows, err := csv.NewReader(&stdout).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rows); got != len(qs)+1 {
		t.Fatalf("%d rows, want %d", got, len(qs)+1)
	}
	if h := rows[0]; len(h) != 5 || h[0] != "query_id" || h[1] != "decision" || h[2] != "member_id" || h[3] != "score" || h[4] != "runner_up_score" {
		t.Fatalf("header %v", h)
	}
	truth := map[string]string{}
	for _, l := range idx {
		truth[l.Entity] = l.Record.ID
	}
	correct, matched := 0, 0
	for i, r := range rows[1:] {
		if r[0] != qs[i].Record.ID {
			t.Fatalf("row %d: query %s out of order", i, r[0])
		}
		switch r[1] {
		case OutcomeMatch:
			matched++
			if r[2] == truth[qs[i].Entity] {
				correct++
			}
			if _, err := strconv.ParseFloat(r[3], 64); err != nil {
				t.Fatalf("row %d: score %q", i, r[3])
			}
		case OutcomeReview, OutcomeNoMatch:
		default:
			t.Fatalf("row %d: decision %q", i, r[1])
		}
	}
	if p := float64(correct) / float64(matched); p < 0.995 || matched < 4800 {
		t.Errorf("precision %.4f over %d matches", p, matched)
	}

	if err := RunMatchCLI(context.Background(), []string{"--index", filepath.Join(dir, "index.csv")}, &stdout, &stderr); err == nil {
		t.Error("missing --queries accepted")
	}
	args := []string{"--index", filepath.Join(dir, "index.csv"), "--queries", filepath.Join(dir, "queries.csv")}
	if err := RunMatchCLI(context.Background(), append(args, "--match-threshold", "-7"), &stdout, &stderr); err == nil {
		t.Error("a match threshold below the review threshold accepted")
	}
	// The thresholds are the flags': at 60 (odds no score reaches) only the
	// member-id rule matches, and FEBRL4b garbles about one id in eleven.
	stdout.Reset()
	if err := RunMatchCLI(context.Background(), append(args, "--match-threshold", "60"), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	strict, err := csv.NewReader(&stdout).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range strict[1:] {
		if r[1] == OutcomeMatch {
			n++
		}
	}
	if n >= matched {
		t.Errorf("--match-threshold 60 matched %d, the default %d", n, matched)
	}
}

// BenchmarkMatchCLI runs `p2p identity match` end to end (reading both
// CSVs, building, training, matching on every core, writing) on 100,000
// queries against benchN() generated members, and reports its time and
// accuracy. It is heavy: P2P_IDENTITY_BENCH_CLI=1 runs it (with
// P2P_IDENTITY_BENCH_N=10000000 for the 10 M figure).
func BenchmarkMatchCLI(b *testing.B) {
	if os.Getenv("P2P_IDENTITY_BENCH_CLI") == "" {
		b.Skip("set P2P_IDENTITY_BENCH_CLI=1 to run the CLI on 100,000 queries against P2P_IDENTITY_BENCH_N members")
	}
	dir := b.TempDir()
	pop := synth.GenerateMembers(benchN(), 0.02, 1)
	writeFile(b, filepath.Join(dir, "index.csv"), pop.Index(), false, false)
	qs := pop.Queries(100_000, 2)
	recs := make([]member.Record, len(qs))
	for i, q := range qs {
		d := q.Demographics
		recs[i] = member.Record{ID: q.ID, Given: d.Given, Family: d.Family, BirthDate: d.BirthDate, Sex: d.Sex,
			Street: d.Address.Street, City: d.Address.City, State: d.Address.State, PostalCode: d.Address.PostalCode, Phone: d.Phone}
	}
	writeFile(b, filepath.Join(dir, "queries.csv"), recs, true, false)
	pop, recs = nil, nil
	truth := map[string]string{}
	for _, q := range qs {
		truth[q.ID] = q.Truth
	}
	qs = nil
	runtime.GC()
	b.ResetTimer()
	for range b.N {
		var stderr bytes.Buffer
		err := RunMatchCLI(context.Background(), []string{"--index", filepath.Join(dir, "index.csv"), "--queries", filepath.Join(dir, "queries.csv"), "--out", filepath.Join(dir, "out.csv")}, os.Stdout, &stderr)
		b.Log(stderr.String())
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	out, _ := os.ReadFile(filepath.Join(dir, "out.csv"))
	rows, _ := csv.NewReader(bytes.NewReader(out)).ReadAll()
	matched, wrong, held, reviewHit := 0, 0, 0, 0
	for _, r := range rows[1:] {
		if truth[r[0]] != "" {
			held++
		}
		switch {
		case r[1] == OutcomeMatch:
			matched++
			if r[2] != truth[r[0]] {
				wrong++
			}
		case r[1] == OutcomeReview && r[2] == truth[r[0]]:
			reviewHit++
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "total-s")
	b.ReportMetric(float64(wrong), "wrong-matches")
	b.ReportMetric(float64(matched), "matches")
	b.ReportMetric(float64(matched-wrong)/float64(held), "match-recall")
	b.ReportMetric(float64(matched-wrong+reviewHit)/float64(held), "recall+review")
}

// TestWriteOutput: --out writes to a file what standard output gets
// without it, and an output that cannot be created is an error.
func TestWriteOutput(t *testing.T) {
	dir := t.TempDir()
	ids := []string{"q1", "q2"}
	decisions := []Decision{
		{Outcome: OutcomeMatch, MemberID: "M1", Score: 12.5, Rationale: transfer.Rationale{Rule: RuleProbabilistic, RunnerUp: &transfer.RunnerUp{Score: 1}}},
		{Outcome: OutcomeNoMatch, Rationale: transfer.Rationale{Rule: RuleNone}},
	}
	const want = "query_id,decision,member_id,score,runner_up_score\nq1,match,M1,12.500,1.000\nq2,no_match,,,\n"
	for _, tc := range []struct {
		name, path string
		wantErr    bool
	}{
		{"standard output", "", false},
		{"a file", filepath.Join(dir, "out.csv"), false},
		{"a file in a missing directory", filepath.Join(dir, "missing", "out.csv"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout bytes.Buffer
			counts, err := writeOutput(tc.path, &stdout, ids, decisions)
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := stdout.String()
			if tc.path != "" {
				b, err := os.ReadFile(tc.path)
				if err != nil {
					t.Fatal(err)
				}
				got = string(b)
				if stdout.Len() != 0 {
					t.Errorf("standard output got %q", stdout.String())
				}
			}
			if got != want {
				t.Errorf("output %q, want %q", got, want)
			}
			if counts[OutcomeMatch] != 1 || counts[OutcomeNoMatch] != 1 {
				t.Errorf("counts %v", counts)
			}
		})
	}
}
