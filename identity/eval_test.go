package identity

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/p2p-payer/p2p/identity/internal/evaldata"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// dataDir holds the evaluation sets: P2P_IDENTITY_DATA (to score sets
// kept outside the repository), else the committed ones (see
// testdata/eval/README.md for origins and licences).
var dataDir = func() string {
	if d := os.Getenv("P2P_IDENTITY_DATA"); d != "" {
		return d
	}
	return "testdata/eval"
}()

// evalResult is one data set's score.
type evalResult struct {
	Name                                   string
	Queries, TruePairs, Predicted, Correct int
	Review, ReviewHit, BlockHit, Linkable  int
	Precision, Recall, F1                  float64
	ReviewRate, RecallWithReview           float64
	BlockingRecall                         float64
}

func (r evalResult) String() string {
	return fmt.Sprintf("%-22s queries %5d  precision %.4f  recall %.4f  F1 %.4f  review %5.2f%%  recall+review %.4f  blocking recall %.4f  (predicted %d, correct %d, true %d)",
		r.Name, r.Queries, r.Precision, r.Recall, r.F1, 100*r.ReviewRate, r.RecallWithReview, r.BlockingRecall, r.Predicted, r.Correct, r.TruePairs)
}

func demographics(l evaldata.Labelled, withID bool) transfer.Demographics {
	r := l.Record
	d := transfer.Demographics{Given: r.Given, Family: r.Family, BirthDate: r.BirthDate, Sex: r.Sex, Phone: r.Phone,
		Address: transfer.Address{Street: r.Street, City: r.City, State: r.State, PostalCode: r.PostalCode}}
	if withID {
		d.MemberID = r.ID
	}
	return d
}

// parallel runs f(i) for i in [0, n) on every core.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	w := runtime.GOMAXPROCS(0)
	for k := 0; k < w; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			for i := k; i < n; i += w {
				f(i)
			}
		}(k)
	}
	wg.Wait()
}

// evalLink scores linking queries to an index: each query has at most one
// true member (the index record of the same entity).
func evalLink(name string, ix *Index, index, queries []evaldata.Labelled, withIDs bool) evalResult {
	truth := map[string]string{} // entity → member id
	for _, l := range index {
		truth[l.Entity] = l.Record.ID
	}
	decisions := make([]Decision, len(queries))
	blocked := make([]bool, len(queries))
	parallel(len(queries), func(i int) {
		q := demographics(queries[i], withIDs)
		decisions[i] = ix.Match(q)
		if want, ok := truth[queries[i].Entity]; ok {
			p := newProbe(q.Given, q.Family, q.BirthDate, q.Sex, q.Address.Street, q.Address.City, q.Address.State, q.Address.PostalCode, q.Phone)
			for _, row := range ix.candidates(&p, q.MemberID, nil, true) {
				if ix.id(row) == want {
					blocked[i] = true
				}
			}
		}
	})
	r := evalResult{Name: name, Queries: len(queries)}
	for i, d := range decisions {
		want, linkable := truth[queries[i].Entity]
		if linkable {
			r.TruePairs++
		}
		if blocked[i] {
			r.BlockHit++
		}
		switch d.Outcome {
		case OutcomeMatch:
			r.Predicted++
			if linkable && d.MemberID == want {
				r.Correct++
			}
		case OutcomeReview:
			r.Review++
			for _, c := range d.Candidates {
				if linkable && c == want {
					r.ReviewHit++
				}
			}
		}
	}
	r.finish()
	return r
}

// evalDedup scores an index deduplicated against itself: every record is
// a query that may not match itself; match decisions are edges, their
// connected components the predicted entities, scored over all pairs.
func evalDedup(name string, ix *Index, recs []evaldata.Labelled) evalResult {
	decisions := make([]Decision, len(recs))
	parallel(len(recs), func(i int) {
		decisions[i] = ix.matchExcluding(demographics(recs[i], false), recs[i].Record.ID)
	})
	pos := map[string]int{}
	for i, l := range recs {
		pos[l.Record.ID] = i
	}
	parent := make([]int, len(recs))
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	r := evalResult{Name: name, Queries: len(recs)}
	for i, d := range decisions {
		switch d.Outcome {
		case OutcomeMatch:
			parent[find(i)] = find(pos[d.MemberID])
			for _, dup := range d.Duplicates {
				parent[find(i)] = find(pos[dup])
			}
		case OutcomeReview:
			r.Review++
		}
	}
	for i := range recs {
		for j := i + 1; j < len(recs); j++ {
			same := recs[i].Entity == recs[j].Entity
			pred := find(i) == find(j)
			if same {
				r.TruePairs++
			}
			if pred {
				r.Predicted++
				if same {
					r.Correct++
				}
			}
		}
	}
	r.finish()
	r.RecallWithReview, r.BlockingRecall = 0, 0
	return r
}

func (r *evalResult) finish() {
	if r.Predicted > 0 {
		r.Precision = float64(r.Correct) / float64(r.Predicted)
	}
	if r.TruePairs > 0 {
		r.Recall = float64(r.Correct) / float64(r.TruePairs)
		r.RecallWithReview = float64(r.Correct+r.ReviewHit) / float64(r.TruePairs)
		r.BlockingRecall = float64(r.BlockHit) / float64(r.TruePairs)
	}
	if r.Precision+r.Recall > 0 {
		r.F1 = 2 * r.Precision * r.Recall / (r.Precision + r.Recall)
	}
	r.ReviewRate = float64(r.Review) / float64(r.Queries)
}

func mustLoad(t testing.TB, f func() ([]evaldata.Labelled, error)) []evaldata.Labelled {
	t.Helper()
	l, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func records(ls []evaldata.Labelled) []member.Record {
	out := make([]member.Record, len(ls))
	for i, l := range ls {
		out[i] = l.Record
	}
	return out
}

func queriesOf(ls []evaldata.Labelled, withIDs bool) []transfer.Demographics {
	out := make([]transfer.Demographics, len(ls))
	for i, l := range ls {
		out[i] = demographics(l, withIDs)
		if !withIDs {
			out[i].MemberID = l.Record.ID // Train's dedup mode needs it to skip self-pairs
		}
	}
	return out
}
