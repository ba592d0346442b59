package identity

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2p-payer/p2p/identity/internal/evaldata"
	"github.com/p2p-payer/p2p/identity/internal/synth"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// TestEvaluation scores the matcher on the public sets with floors, so a
// regression fails CI. P2P_IDENTITY_EVAL=1 (make eval) prints the report.
func TestEvaluation(t *testing.T) {
	report := os.Getenv("P2P_IDENTITY_EVAL") != ""
	path := func(f string) string { return filepath.Join(dataDir, f) }
	type floor struct{ precision, recall, f1, maxReview float64 }
	check := func(r evalResult, f floor) {
		t.Helper()
		if report || testing.Verbose() {
			t.Log(r)
		}
		if r.Precision < f.precision || r.Recall < f.recall || r.F1 < f.f1 || r.ReviewRate > f.maxReview {
			t.Errorf("%s below its floor %+v: %v", r.Name, f, r)
		}
	}

	idx := mustLoad(t, func() ([]evaldata.Labelled, error) { return evaldata.ReadFEBRL(path("febrl4a.csv"), true) })
	qs4 := mustLoad(t, func() ([]evaldata.Labelled, error) { return evaldata.ReadFEBRL(path("febrl4b.csv"), true) })
	// As `p2p identity match` does: the model is trained by EM on the batch.
	ix := NewIndex(records(idx), DefaultConfig())
	ix.SetModel(ix.Train(queriesOf(qs4, true), TrainOptions{}))
	check(evalLink("febrl4 member ids", ix, idx, qs4, true), floor{precision: 0.999, recall: 0.995, maxReview: 1})
	ix = NewIndex(records(idx), DefaultConfig())
	ix.SetModel(ix.Train(queriesOf(qs4, false), TrainOptions{}))
	check(evalLink("febrl4 ids blanked", ix, idx, qs4, false), floor{precision: 0.995, recall: 0.97, maxReview: 0.03})

	fake := mustLoad(t, func() ([]evaldata.Labelled, error) { return evaldata.ReadFake1000(path("fake_1000.csv")) })
	ix = NewIndex(records(fake), DefaultConfig())
	ix.SetModel(ix.Train(queriesOf(fake, false), TrainOptions{Dedup: true}))
	// The issue asks F1 0.88 (Splink's best over all pairs, with the email
	// column this CSV has no place for, is 0.862). A third of the true pairs
	// have birth dates a year to ten years apart and most miss a name or the
	// town: the report shows the figure at other thresholds.
	check(evalDedup("fake_1000 dedup", ix, fake), floor{precision: 0.995, f1: 0.88, maxReview: 1})
	if report {
		for _, thr := range []float64{8, 7, 5} {
			cfg := DefaultConfig()
			cfg.MatchThreshold = thr
			ix := NewIndex(records(fake), cfg)
			ix.SetModel(ix.Train(queriesOf(fake, false), TrainOptions{Dedup: true}))
			t.Log(evalDedup(fmt.Sprintf("  at threshold %.0f", thr), ix, fake))
		}
	}

	f1 := mustLoad(t, func() ([]evaldata.Labelled, error) { return evaldata.ReadFEBRL(path("febrl1.csv"), false) })
	ix = NewIndex(records(f1), DefaultConfig())
	ix.SetModel(ix.Train(queriesOf(f1, false), TrainOptions{Dedup: true}))
	check(evalDedup("febrl1 dedup", ix, f1), floor{precision: 0.995, f1: 0.98, maxReview: 1})

	if report {
		// The generated US-style set, as TestSyntheticUS scores it, in the report.
		pop := synth.Generate(50_000, 0.02, 7)
		qs := pop.Queries(5_000, 11)
		r := evalUS(NewIndex(pop.Index(), DefaultConfig()), pop, qs)
		t.Log("US-style generated set (50,000 members, 5,000 queries), by kind:")
		r.report(t)
		// What `p2p identity train --em` stores: m trained by EM on the
		// index's own members. Not the default (docs/identity.md): on this
		// file of households it takes relatives for duplicates.
		ix := NewIndex(pop.Index(), DefaultConfig())
		ix.SetModel(ix.Train(ownMembers(pop.Index()), TrainOptions{Dedup: true}))
		t.Logf("the same with m trained by EM on the index's own members (expected matches %.2f):", ix.Model().Expected)
		evalUS(ix, pop, qs).report(t)
		ix = NewIndex(records(idx), DefaultConfig())
		ix.SetModel(ix.Train(ownMembers(records(idx)), TrainOptions{Dedup: true}))
		t.Log(evalLink("febrl4 ids blanked, m trained on the index's own members", ix, idx, qs4, false))
	}
}

// ownMembers are an index's members as queries for Train's dedup mode, as
// `p2p identity train --em` passes them: each with its member id, so it is
// never paired with itself.
func ownMembers(ms []member.Record) []transfer.Demographics {
	out := make([]transfer.Demographics, len(ms))
	for i, r := range ms {
		out[i] = transfer.Demographics{MemberID: r.ID, Given: r.Given, Family: r.Family, BirthDate: r.BirthDate, Sex: r.Sex, Phone: r.Phone,
			Address: transfer.Address{Street: r.Street, City: r.City, State: r.State, PostalCode: r.PostalCode}}
	}
	return out
}
