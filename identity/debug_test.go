package identity

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity/internal/evaldata"
	"github.com/p2p-payer/p2p/identity/internal/synth"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

func TestDebugFEBRL(t *testing.T) {
	if os.Getenv("DEBUG_ID") == "" {
		t.Skip()
	}
	idx, _ := evaldata.ReadFEBRL(filepath.Join(dataDir, "febrl4a.csv"), true)
	qs, _ := evaldata.ReadFEBRL(filepath.Join(dataDir, "febrl4b.csv"), true)
	ix := NewIndex(records(idx), DefaultConfig())
	ix.SetModel(ix.Train(queriesOf(qs, false), TrainOptions{}))
	m := ix.model
	t.Log("expected", m.Expected)
	for f := 0; f < numFields; f++ {
		s := fieldNames[f] + ":"
		for l := 1; l < numLevels; l++ {
			if m.M[f][l] > 0 {
				s += fmt.Sprintf(" %s=%.2f(u%.5f)", levelNames[l], m.Weight(f, l), m.U[f][l])
			}
		}
		t.Log(s)
	}
	truth := map[string]int32{}
	for i, l := range idx {
		truth[l.Entity] = int32(i)
	}
	pat := map[string]int{}
	for _, q := range qs {
		d := ix.Match(demographics(q, false))
		row := truth[q.Entity]
		if d.Outcome == OutcomeMatch && d.MemberID == ix.ids[row] {
			continue
		}
		p := newProbe(q.Record.Given, q.Record.Family, q.Record.BirthDate, "", q.Record.Street, q.Record.City, q.Record.State, q.Record.PostalCode, "")
		c := ix.side(row)
		g := compare(&p, "", &c)
		k := d.Outcome + " "
		for f := 1; f < numFields; f++ {
			k += levelName(f, g[f]) + ","
		}
		k += fmt.Sprintf(" best=%v %.0f", d.MemberID == ix.ids[row], d.Score)
		pat[k]++
	}
	type kv struct {
		k string
		n int
	}
	var l []kv
	for k, n := range pat {
		l = append(l, kv{k, n})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n })
	for _, x := range l[:min(40, len(l))] {
		t.Log(x.n, x.k)
	}
}

func TestDebugFake(t *testing.T) {
	if os.Getenv("DEBUG_ID") == "" {
		t.Skip()
	}
	fake, _ := evaldata.ReadFake1000(filepath.Join(dataDir, "fake_1000.csv"))
	cfg := DefaultConfig()
	cfg.MatchThreshold, cfg.Margin = 0, 2
	ix := NewIndex(records(fake), cfg)
	t.Log("relatives", ix.model.Relatives)
	for i := 0; i < 60; i++ {
		d := ix.matchExcluding(demographics(fake[i], false), fake[i].Record.ID)
		ru := 0.0
		if d.Rationale.RunnerUp != nil {
			ru = d.Rationale.RunnerUp.Score
		}
		t.Logf("%v -> %s %s %.1f ru %.1f %s %v", fake[i].Record, d.Outcome, d.MemberID, d.Score, ru, d.Rationale.Summary, d.Rationale.Fields)
	}
}

func TestDebugSweep(t *testing.T) {
	if os.Getenv("DEBUG_ID") == "" {
		t.Skip()
	}
	fake, _ := evaldata.ReadFake1000(filepath.Join(dataDir, "fake_1000.csv"))
	for _, th := range []float64{8, 4, 2, 0} {
		for _, mg := range []float64{6, 3} {
			for _, dt := range []float64{-6, 2} {
				cfg := DefaultConfig()
				cfg.MatchThreshold, cfg.Margin, cfg.DuplicateThreshold = th, mg, dt
				ixf := NewIndex(records(fake), cfg)
				ixf.SetModel(ixf.Train(queriesOf(fake, false), TrainOptions{Dedup: true}))
				t.Logf("th %v margin %v dup %v expected %.2f: %v", th, mg, dt, ixf.Model().Expected, evalDedup("fake", ixf, fake))
			}
		}
	}
}

func TestDebugFakeHist(t *testing.T) {
	if os.Getenv("DEBUG_ID") == "" {
		t.Skip()
	}
	fake, _ := evaldata.ReadFake1000(filepath.Join(dataDir, "fake_1000.csv"))
	ent := map[string]string{}
	size := map[string]int{}
	for _, l := range fake {
		ent[l.Record.ID] = l.Entity
		size[l.Entity]++
	}
	cfg := DefaultConfig()
	cfg.MatchThreshold, cfg.Margin, cfg.DuplicateThreshold = 8, 6, 2
	ix := NewIndex(records(fake), cfg)
	ix.SetModel(ix.Train(queriesOf(fake, false), TrainOptions{Dedup: true}))
	m := ix.model
	for f := 0; f < numFields; f++ {
		s := fieldNames[f] + ":"
		for l := 1; l < numLevels; l++ {
			if m.M[f][l] > 0 {
				s += fmt.Sprintf(" %s=%.2f(m%.3f)", levelNames[l], m.Weight(f, l), m.M[f][l])
			}
		}
		t.Log(s)
	}
	hist := map[string]int{}
	n := 0
	for _, l := range fake {
		d := ix.matchExcluding(demographics(l, false), l.Record.ID)
		k := d.Outcome
		if size[l.Entity] == 1 {
			k += " single"
		} else if d.MemberID != "" {
			k += fmt.Sprintf(" best-true=%v", ent[d.MemberID] == l.Entity)
		}
		if strings.Contains(d.Rationale.Summary, "margin") {
			k += " margin"
		}
		if strings.Contains(d.Rationale.Summary, "blocking") {
			k += " noblock"
		}
		if d.Outcome == OutcomeReview && !strings.Contains(d.Rationale.Summary, "margin") && n < 25 {
			n++
			var fs []string
			for _, f := range d.Rationale.Fields {
				fs = append(fs, fmt.Sprintf("%s:%s:%.1f", f.Field, f.Level, f.Weight))
			}
			t.Logf("%v | best %v (true %v) %.1f %v", l.Record, fake[mustAtoi(d.MemberID)].Record, ent[d.MemberID] == l.Entity, d.Score, fs)
		}
		hist[k]++
	}
	var ks []string
	for k := range hist {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		t.Log(k, hist[k])
	}
}

func mustAtoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func TestDebugFakeNone(t *testing.T) {
	if os.Getenv("DEBUG_ID") == "" {
		t.Skip()
	}
	fake, _ := evaldata.ReadFake1000(filepath.Join(dataDir, "fake_1000.csv"))
	byEnt := map[string][]string{}
	for _, l := range fake {
		byEnt[l.Entity] = append(byEnt[l.Entity], fmt.Sprint(l.Record.Given, "|", l.Record.Family, "|", l.Record.BirthDate, "|", l.Record.City))
	}
	ix := NewIndex(records(fake), DefaultConfig())
	n := 0
	for _, l := range fake {
		d := ix.matchExcluding(demographics(l, false), l.Record.ID)
		if d.MemberID == "" && d.Score == 0 && len(byEnt[l.Entity]) > 1 && n < 25 {
			n++
			t.Log(byEnt[l.Entity])
			t.Log("   ", l.Record.Given, "|", l.Record.Family, "|", l.Record.BirthDate, "|", l.Record.City, d.Rationale.Summary)
		}
	}
}

func TestDebugUS(t *testing.T) {
	if os.Getenv("DEBUG_ID") == "" {
		t.Skip()
	}
	pop := synth.Generate(100_000, 0.02, 7)
	ix := NewIndex(pop.Index(), DefaultConfig())
	qs := pop.Queries(10_000, 11)
	recs := map[string]synth.Person{}
	for _, p := range pop.People {
		recs[p.Record.ID] = p
	}
	n := 0
	for _, q := range qs {
		d := ix.Match(q.Demographics)
		bad := (d.Outcome == OutcomeMatch && d.MemberID != q.Truth) || (q.Kind == os.Getenv("DEBUG_KIND") && d.Outcome != OutcomeMatch)
		if bad && n < 20 {
			n++
			t.Logf("%s %+v", q.Kind, q.Demographics)
			t.Logf("   truth %+v", recs[q.Truth])
			t.Logf("   got %s %+v %s", d.Outcome, recs[d.MemberID], d.Rationale.Summary)
			t.Logf("   %v ru %+v", d.Rationale.Fields, d.Rationale.RunnerUp)
			if d.Rationale.RunnerUp != nil {
				t.Logf("   ru %+v", recs[d.Rationale.RunnerUp.MemberID])
			}
		}
	}
}

func TestDebugScale(t *testing.T) {
	if os.Getenv("DEBUG_SCALE") == "" {
		t.Skip()
	}
	benchIndex(nil)
	ix, qs := bench.ix, bench.queries[:3000]
	t.Logf("build %v heap %d MiB", bench.build, bench.heap>>20)
	for _, mb := range []int{2000, 500, 200} {
		ix.cfg.MaxBlock = mb
		var per [numKeys]int
		total := 0
		start := time.Now()
		for _, q := range qs {
			p := newProbe(q.Demographics.Given, q.Demographics.Family, q.Demographics.BirthDate, q.Demographics.Sex, q.Demographics.Address.Street, q.Demographics.Address.City, q.Demographics.Address.State, q.Demographics.Address.PostalCode, q.Demographics.Phone)
			var keys [numKeys]uint64
			p.blockKeys(&keys)
			for k, key := range keys {
				per[k] += len(ix.walk(k, key, nil))
			}
			total += len(ix.candidates(&p, "", nil, true))
		}
		el := time.Since(start)
		start = time.Now()
		for _, q := range qs {
			ix.Match(q.Demographics)
		}
		t.Logf("maxblock %d: candidates/query %.0f (keys %v) blocking %v/query match %v/query", mb, float64(total)/float64(len(qs)), per, el/time.Duration(len(qs)), time.Since(start)/time.Duration(len(qs)))
	}
}

func TestDebugScaleWrong(t *testing.T) {
	if os.Getenv("DEBUG_SCALE") == "" {
		t.Skip()
	}
	benchIndex(nil)
	ix, qs := bench.ix, bench.queries
	recs := map[string]member.Record{}
	pop := synth.Generate(benchN(), 0.02, 1)
	for _, p := range pop.People {
		recs[p.Record.ID] = p.Record
	}
	wrong, matched, review := 0, 0, 0
	for _, q := range qs {
		d := ix.Match(q.Demographics)
		if d.Outcome == OutcomeReview {
			review++
		}
		if d.Outcome != OutcomeMatch {
			continue
		}
		matched++
		if d.MemberID != q.Truth {
			wrong++
			if wrong < 15 {
				t.Logf("%s %+v", q.Kind, q.Demographics)
				t.Logf("   truth %+v", recs[q.Truth])
				t.Logf("   got %+v %s", recs[d.MemberID], d.Rationale.Summary)
				t.Logf("   %v ru %+v", d.Rationale.Fields, d.Rationale.RunnerUp)
			}
		}
	}
	t.Logf("%d matched, %d wrong, %d review of %d", matched, wrong, review, len(qs))
}

func TestDebugSweepAll(t *testing.T) {
	if os.Getenv("DEBUG_ID") == "" {
		t.Skip()
	}
	fake, _ := evaldata.ReadFake1000(filepath.Join(dataDir, "fake_1000.csv"))
	idx, _ := evaldata.ReadFEBRL(filepath.Join(dataDir, "febrl4a.csv"), true)
	qs, _ := evaldata.ReadFEBRL(filepath.Join(dataDir, "febrl4b.csv"), true)
	pop := synth.Generate(100_000, 0.02, 7)
	uq := pop.Queries(10_000, 11)
	for _, c := range [][3]float64{{8, 6, 2}, {6, 5, 2}, {5, 4, 2}, {4, 4, 2}, {4, 3, 2}, {3, 3, 2}} {
		cfg := DefaultConfig()
		cfg.MatchThreshold, cfg.Margin, cfg.DuplicateThreshold = c[0], c[1], c[2]
		ixf := NewIndex(records(fake), cfg)
		ixf.SetModel(ixf.Train(queriesOf(fake, false), TrainOptions{Dedup: true}))
		t.Logf("%v %v", c, evalDedup("fake", ixf, fake))
		ix4 := NewIndex(records(idx), cfg)
		ix4.SetModel(ix4.Train(queriesOf(qs, false), TrainOptions{}))
		t.Logf("%v %v", c, evalLink("febrl4 blank", ix4, idx, qs, false))
		ixu := NewIndex(pop.Index(), cfg)
		r := evalUS(ixu, pop, uq)
		t.Logf("%v US 100k untrained: matches %d false %d relatives %d review %.2f%%", c, r.matches, r.falseMatches, r.relativeMatches, 100*float64(r.review)/float64(r.queries))
		dq := make([]transfer.Demographics, len(uq))
		for i, q := range uq {
			dq[i] = q.Demographics
		}
		ixu.SetModel(ixu.Train(dq, TrainOptions{}))
		r = evalUS(ixu, pop, uq)
		t.Logf("%v US 100k trained: matches %d false %d relatives %d review %.2f%%", c, r.matches, r.falseMatches, r.relativeMatches, 100*float64(r.review)/float64(r.queries))
	}
}
