package identity

import (
	"math"
	"strings"

	"github.com/p2p-payer/p2p/transfer"
)

// TrainOptions tune Train.
type TrainOptions struct {
	// MaxQueries is how many queries (evenly spaced) feed EM; 0 means 20,000.
	MaxQueries int
	// Iterations of EM; 0 means 40.
	Iterations int
	// PriorWeight is how many pairs' worth of belief the default m
	// probabilities keep against the data; 0 means 50.
	PriorWeight float64
	// Dedup says the queries are the index's own members (query i is the
	// member with the same member id), so a query never pairs with itself.
	Dedup bool
}

// Train estimates the m probabilities by expectation–maximisation over the
// blocked pairs of a batch of queries against the index, with u held at its
// random-pair estimate, and returns the trained model (the index keeps its
// model until SetModel). It learns how the queries' source differs from the
// index — how often names are misspelt, birth dates mistyped, addresses
// moved — without labels.
func (ix *Index) Train(queries []transfer.Demographics, opt TrainOptions) *Model {
	if opt.MaxQueries <= 0 {
		opt.MaxQueries = 20_000
	}
	if opt.Iterations <= 0 {
		opt.Iterations = 40
	}
	if opt.PriorWeight <= 0 {
		opt.PriorWeight = 50
	}
	ix.mu.RLock()
	base := ix.model
	patterns := map[uint32]float64{}
	step := max(1, len(queries)/opt.MaxQueries)
	var rows []int32
	for i := 0; i < len(queries); i += step {
		q := queries[i]
		p := newProbe(q.Given, q.Family, q.BirthDate, q.Sex, q.Address.Street, q.Address.City, q.Address.State, q.Address.PostalCode, q.Phone)
		qid := strings.TrimSpace(q.MemberID)
		lookup := qid
		if opt.Dedup {
			lookup = ""
		}
		rows = ix.candidates(&p, lookup, rows[:0])
		for _, row := range rows {
			if opt.Dedup && ix.ids[row] == qid {
				continue
			}
			c := ix.side(row)
			id := qid
			if opt.Dedup {
				id = ""
			}
			patterns[compare(&p, id, &c).pack()]++
		}
	}
	ix.mu.RUnlock()

	m := *base
	total := 0.0
	for _, n := range patterns {
		total += n
	}
	if total == 0 {
		return &m
	}
	lambda := math.Min(0.5, float64(len(queries)/step)/total)
	for it := 0; it < opt.Iterations; it++ {
		var mc [numFields][numLevels]float64
		matched := 0.0
		for pat, n := range patterns {
			g := unpack(pat)
			lm, lu := math.Log(lambda), math.Log(1-lambda)
			for f, l := range g {
				if l == lMissing || m.M[f][l] == 0 || m.U[f][l] == 0 {
					continue
				}
				lm += math.Log(m.M[f][l])
				lu += math.Log(m.U[f][l])
			}
			w := 1 / (1 + math.Exp(lu-lm))
			matched += w * n
			for f, l := range g {
				mc[f][l] += w * n
			}
		}
		lambda = math.Min(math.Max(matched/total, 1e-6), 0.999)
		for f := range mc {
			sum := 0.0
			for l := 1; l < numLevels; l++ {
				if defaultM[f][l] > 0 {
					sum += mc[f][l]
				}
			}
			for l := 1; l < numLevels; l++ {
				if defaultM[f][l] == 0 {
					continue
				}
				m.M[f][l] = (mc[f][l] + opt.PriorWeight*defaultM[f][l]) / (sum + opt.PriorWeight)
			}
		}
	}
	// A swap stays one event carried by the given field.
	m.M[fFamily][lSwapped] = 1
	// Guard against EM drifting to a household-shaped optimum: a field whose
	// exact level became less likely among matches than outright
	// disagreement keeps its defaults.
	for f := range m.M {
		if m.M[f][lExact] < m.M[f][lDifferent] {
			m.M[f] = base.M[f]
		}
	}
	return &m
}
