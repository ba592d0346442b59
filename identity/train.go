package identity

import (
	"cmp"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/p2p-payer/p2p/transfer"
)

// trainTop is how many of a query's best candidates EM sees.
const trainTop = 10

// trainRounds is how many times Train alternates between EM for m and the
// re-estimation of u.
const trainRounds = 3

// TrainOptions tune Train.
type TrainOptions struct {
	// MaxQueries is how many queries (evenly spaced) feed EM; 0 means 5,000.
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
		opt.MaxQueries = 5_000
	}
	if opt.Iterations <= 0 {
		opt.Iterations = 40
	}
	if opt.PriorWeight <= 0 {
		opt.PriorWeight = 50
	}
	ix.mu.RLock()
	base := ix.model
	step := max(1, len(queries)/opt.MaxQueries)
	sample := make([]int, 0, len(queries)/step+1)
	for i := 0; i < len(queries); i += step {
		sample = append(sample, i)
	}
	// Each sampled query's best candidates (by the current model), as packed
	// comparison vectors; the rest are certain non-matches that only slow EM.
	perQuery := make([][]uint32, len(sample))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var rows []int32
			var top []scored
			for k := w; k < len(sample); k += workers {
				q := queries[sample[k]]
				p := newProbe(q.Given, q.Family, q.BirthDate, q.Sex, q.Address.Street, q.Address.City, q.Address.State, q.Address.PostalCode, q.Phone)
				qid := strings.TrimSpace(q.MemberID)
				id := qid
				if opt.Dedup {
					id = ""
				}
				rows = ix.candidates(&p, id, rows[:0], true)
				top = top[:0]
				for _, row := range rows {
					if opt.Dedup && ix.ids[row] == qid {
						continue
					}
					c := ix.side(row)
					g := compare(&p, id, &c)
					top = append(top, scored{row: row, g: g, score: ix.score(base, row, g)})
				}
				slices.SortFunc(top, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
				pats := make([]uint32, 0, min(len(top), trainTop))
				for _, t := range top[:min(len(top), trainTop)] {
					pats = append(pats, t.g.pack())
				}
				perQuery[k] = pats
			}
		}(w)
	}
	wg.Wait()
	ix.mu.RUnlock()
	var pats []uint32
	starts := []int{0}
	for _, p := range perQuery {
		pats = append(pats, p...)
		starts = append(starts, len(pats))
	}

	m := *base
	m.ready = false
	nq := float64(len(starts) - 1)
	if len(pats) == 0 {
		return m.cache()
	}
	// Link mode: each query is one member or none, so a query's candidates
	// compete for one match (the odds of each against the others and
	// "none"). Dedup mode: every pair is judged alone, with a share λ of
	// matching pairs also estimated.
	//
	// (The prior of any pair of the index, e/(N-1), is the textbook choice
	// for dedup; measured on fake_1000 and febrl1 it converges to an
	// underconfident model: m of outright disagreement a third of the
	// truth, scores of 4 to 8 all true. λ fitted to the pairs EM sees
	// scores both sets better.)
	pIn := 0.9
	lambda := math.Min(0.5, nq/float64(len(pats)))
	logBF := make([]float64, len(pats))
	w := make([]float64, len(pats))
	// m and u are estimated in turn: u from the random member pairs less
	// those the current model takes for one person (see estimateU), m by EM
	// with u held.
	for round := 0; round < trainRounds; round++ {
		if round > 0 {
			m.estimateU(true)
			m.cache()
		}
		for it := 0; it < opt.Iterations; it++ {
			for i, pat := range pats {
				g := unpack(pat)
				lb := 0.0
				for f, l := range g {
					if l == lMissing || m.M[f][l] == 0 || m.U[f][l] == 0 {
						continue
					}
					lb += math.Log(m.M[f][l] / m.U[f][l])
				}
				logBF[i] = lb
			}
			matched := 0.0
			if opt.Dedup {
				lo := math.Log(lambda / (1 - lambda))
				for i := range pats {
					w[i] = 1 / (1 + math.Exp(-(logBF[i] + lo)))
					matched += w[i]
				}
				lambda = math.Min(math.Max(matched/float64(len(pats)), 1e-6), 0.999)
			} else {
				lp := math.Log(pIn / float64(m.N))
				none := math.Log(1 - pIn + 1e-9)
				for k := 0; k+1 < len(starts); k++ {
					lo, hi := starts[k], starts[k+1]
					mx := none
					for i := lo; i < hi; i++ {
						mx = math.Max(mx, logBF[i]+lp)
					}
					z := math.Exp(none - mx)
					for i := lo; i < hi; i++ {
						w[i] = math.Exp(logBF[i] + lp - mx)
						z += w[i]
					}
					for i := lo; i < hi; i++ {
						w[i] /= z
						matched += w[i]
					}
				}
				pIn = math.Min(math.Max(matched/nq, 0.05), 0.99)
			}
			var mc [numFields][numLevels]float64
			for i, pat := range pats {
				if w[i] < 1e-9 {
					continue
				}
				g := unpack(pat)
				for f, l := range g {
					mc[f][l] += w[i]
				}
			}
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
			if opt.Dedup {
				// The share of pairs that match, times the pairs a query brings,
				// is how many members a query matches: the prior's numerator.
				m.Expected = math.Min(math.Max(matched/nq, 1), 20)
			}
		}
	}
	// A swap stays one event carried by the given field.
	m.M[fFamily][lSwapped] = 1
	// Guard against EM drifting to a household-shaped optimum: a field whose
	// agreeing levels together became less likely among matches than
	// outright disagreement keeps its defaults.
	for f := range m.M {
		agree := 0.0
		for l := lExact; l < numLevels; l++ {
			if !outright(uint8(l)) && l != lSwapped {
				agree += m.M[f][l]
			}
		}
		if agree < m.M[f][lDifferent] {
			m.M[f] = base.M[f]
		}
	}
	return m.cache()
}
