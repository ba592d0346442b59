//go:build !nodev

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

// Synthetic names, distinctive so that a test finds them in any output.
var (
	testGiven  = []string{"Zelphina", "Quorwin", "Marvessa", "Tobrecht", "Ilvanya", "Dorquin", "Esmelda", "Parvik", "Unetta", "Galwyn", "Orsolya"}
	testFamily = []string{"Quarrington", "Vexley", "Brumhold", "Castellane", "Drovny", "Fennimore", "Hollowbrook", "Ketteridge", "Lyndqvist"}
)

func testMember(i int) member.Record {
	return member.Record{ID: fmt.Sprintf("M%06d", i), Given: testGiven[i%len(testGiven)], Family: testFamily[(i/5)%len(testFamily)],
		BirthDate: fmt.Sprintf("%d-%02d-%02d", 1940+i%61, 1+i%12, 1+(i/7)%28), Sex: []string{"F", "M"}[i%2],
		Street: fmt.Sprintf("%d Wexford Rd", 1+i%400), City: "Brindlemoor", State: "TS", PostalCode: fmt.Sprintf("%05d", 10000+i%89),
		Phone: fmt.Sprintf("555-01%02d-%04d", i%100, i)}
}

// TestIdentityTrain: an empty store is refused; the estimate, then a
// model trained by EM on the members, then one trained on a file of
// queries are stored in turn, each said to replace the one before, and
// nothing the command prints names a member.
func TestIdentityTrain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2p.db")
	db := "--database-url=" + path
	if _, stderr, code := run(t, "identity", "train", db); code != 1 || !strings.Contains(stderr, "member store is empty") {
		t.Fatalf("train on an empty store: exit %d, stderr %q; want 1 and a clear message", code, stderr)
	}

	ctx := context.Background()
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ms := make([]member.Record, 1200)
	for i := range ms {
		ms[i] = testMember(i)
	}
	if err := st.UpsertMembers(ctx, ms); err != nil {
		t.Fatal(err)
	}
	queries := filepath.Join(t.TempDir(), "queries.csv")
	var csv strings.Builder
	csv.WriteString("query_id,member_id,given,family,birth_date,sex,street,city,state,postal_code,phone\n")
	for i := 0; i < 1200; i += 4 {
		m := testMember(i)
		fmt.Fprintf(&csv, "Q%d,,%s,%s,%s,%s,%s,%s,%s,%s,\n", i, m.Given, m.Family[:len(m.Family)-1], m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode)
	}
	csv.WriteString(",,Secretname,Lee,1980-02-03,F,,,,,\n") // no query id: refused
	if err := os.WriteFile(queries, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name   string
		args   []string
		id     int64
		method string
		stdout []string
	}{
		{"estimate", nil, 1, identity.MethodEstimated, []string{"identity model 1 in force: estimated", "on 1200 members", "replaces no model"}},
		{"EM on the members", []string{"--em"}, 2, identity.MethodTrained,
			[]string{"identity model 2 in force: trained", "EM on 1200 of the members", "replaces model 1 (estimated on 1200 members", "change"}},
		{"EM on queries", []string{"--queries", queries, "--by", "ops"}, 3, identity.MethodTrained,
			[]string{"identity model 3 in force: trained", "EM on 300 partner queries", "replaces model 2 (trained"}},
	}
	for _, s := range steps {
		stdout, stderr, code := run(t, append([]string{"identity", "train", db}, s.args...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", s.name, code, stderr)
		}
		for _, want := range s.stdout {
			if !strings.Contains(stdout, want) {
				t.Errorf("%s: stdout does not say %q:\n%s", s.name, want, stdout)
			}
		}
		for _, phi := range append(append(testGiven, testFamily...), "Secretname", "Wexford", "Brindlemoor", "1980-02-03") {
			if strings.Contains(stdout+stderr, phi) {
				t.Errorf("%s: the output names %q:\n%s%s", s.name, phi, stdout, stderr)
			}
		}
		id, p, err := st.LatestIdentityModel(ctx)
		if err != nil || id != s.id || p.Method != s.method || p.TrainingSize != 1200 {
			t.Errorf("%s: model in force %d (%s on %d), %v; want %d, %s on 1200", s.name, id, p.Method, p.TrainingSize, err, s.id, s.method)
		}
		if s.id == 1 { // the estimate is the one a worker would make
			ix, err := activities.LoadIndex(ctx, st, identity.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			want := ix.Model().Params(p.Method, p.TrainingSize, p.TrainedAt)
			if !reflect.DeepEqual(p, want) {
				t.Errorf("stored estimate differs from the index's:\n got %+v\nwant %+v", p, want)
			}
		}
		if s.id == 3 && !strings.Contains(stderr, "line 302") {
			t.Errorf("the refused query row is not reported by its line: %q", stderr)
		}
	}
	if _, stderr, code := run(t, "identity", "train", db, "--em", "--queries", queries); code != 2 || !strings.Contains(stderr, "give one") {
		t.Errorf("--em with --queries: exit %d, stderr %q; want a usage error", code, stderr)
	}
}

// TestSpread: at most the number asked for, spread over the whole batch.
func TestSpread(t *testing.T) {
	for _, tc := range []struct{ n, want, got int }{
		{0, 5000, 0}, {300, 5000, 300}, {5000, 5000, 5000}, {5001, 5000, 2501}, {7000, 5000, 3500}, {12000, 5000, 4000},
	} {
		qs := make([]transfer.Demographics, tc.n)
		for i := range qs {
			qs[i].MemberID = fmt.Sprint(i)
		}
		out := spread(qs, tc.want)
		if len(out) != tc.got {
			t.Errorf("spread(%d, %d) keeps %d, want %d", tc.n, tc.want, len(out), tc.got)
		}
		if len(out) == 0 {
			continue
		}
		step := max(1, (tc.n+tc.want-1)/tc.want)
		for i, q := range out {
			if q.MemberID != fmt.Sprint(i*step) {
				t.Errorf("spread(%d, %d): query %d is %s, want every %dth", tc.n, tc.want, i, q.MemberID, step)
				break
			}
		}
		if last := (len(out) - 1) * step; last < tc.n-step {
			t.Errorf("spread(%d, %d) ends at %d: the tail is left out", tc.n, tc.want, last)
		}
	}
}
