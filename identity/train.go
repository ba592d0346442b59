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

// withDefaults is opt with its zero fields set to their defaults.
func (opt TrainOptions) withDefaults() TrainOptions {
	if opt.MaxQueries <= 0 {
		opt.MaxQueries = 5_000
	}
	if opt.Iterations <= 0 {
		opt.Iterations = 40
	}
	if opt.PriorWeight <= 0 {
		opt.PriorWeight = 50
	}
	return opt
}

// Train estimates the m probabilities by expectation–maximisation over the
// blocked pairs of a batch of queries against the index, with u held at its
// random-pair estimate, and returns the trained model (the index keeps its
// model until SetModel). It learns how the queries' source differs from the
// index — how often names are misspelt, birth dates mistyped, addresses
// moved — without labels.
func (ix *Index) Train(queries []transfer.Demographics, opt TrainOptions) *Model {
	opt = opt.withDefaults()
	ix.mu.RLock()
	base := ix.model
	if len(base.random) == 0 {
		// A model loaded from its parameters keeps no random pairs, which
		// Train re-estimates u from: start from the index's own estimate.
		base = EstimateModel(ix, 0)
	}
	perQuery := ix.topPatterns(queries, sampleQueries(len(queries), opt.MaxQueries), base, opt.Dedup)
	ix.mu.RUnlock()

	m := *base
	m.ready = false
	e := newEM(perQuery, opt)
	if e == nil {
		return m.cache()
	}
	// m and u are estimated in turn: u from the random member pairs less
	// those the current model takes for one person (see estimateU), m by EM
	// with u held.
	for round := 0; round < trainRounds; round++ {
		if round > 0 {
			m.estimateU(true)
			m.cache()
		}
		for it := 0; it < opt.Iterations; it++ {
			e.bayesFactors(&m)
			matched := e.expect(&m)
			e.maximise(&m, matched)
		}
	}
	m.keepDefaultsWhereDrifted(base)
	return m.cache()
}

// sampleQueries is the indexes of about most of n queries, evenly spaced
// (all of them when n <= most; up to twice most, as the step rounds down).
func sampleQueries(n, most int) []int {
	step := max(1, n/most)
	sample := make([]int, 0, n/step+1)
	for i := 0; i < n; i += step {
		sample = append(sample, i)
	}
	return sample
}

// topPatterns is, for each sampled query, its best trainTop candidates
// under model base as packed comparison vectors, best first; the rest are
// certain non-matches that only slow EM. The caller holds ix.mu.
func (ix *Index) topPatterns(queries []transfer.Demographics, sample []int, base *Model, dedup bool) [][]uint32 {
	perQuery := make([][]uint32, len(sample))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var sc scratch
			for k := w; k < len(sample); k += workers {
				q := queries[sample[k]]
				p := newProbe(q.Given, q.Family, q.BirthDate, q.Sex, q.Address.Street, q.Address.City, q.Address.State, q.Address.PostalCode, q.Phone)
				// In dedup mode query k is the member with its member id: it is
				// excluded, and its id is not compared.
				qid, exclude := strings.TrimSpace(q.MemberID), ""
				if dedup {
					qid, exclude = "", qid
				}
				ix.scoreCandidates(base, &p, qid, exclude, &sc, true)
				slices.SortFunc(sc.scored, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
				top := sc.scored[:min(len(sc.scored), trainTop)]
				pats := make([]uint32, 0, len(top))
				for _, t := range top {
					pats = append(pats, t.g.pack())
				}
				perQuery[k] = pats
			}
		}(w)
	}
	wg.Wait()
	return perQuery
}

// em is the state of expectation–maximisation over the sampled pairs.
//
// Link mode: each query is one member or none, so a query's candidates
// compete for one match (the odds of each against the others and "none").
// Dedup mode: every pair is judged alone, with a share λ of matching pairs
// also estimated.
//
// (The prior of any pair of the index, e/(N-1), is the textbook choice for
// dedup; measured on fake_1000 and febrl1 it converges to an underconfident
// model: m of outright disagreement a third of the truth, scores of 4 to 8
// all true. λ fitted to the pairs EM sees scores both sets better.)
type em struct {
	pats   []uint32  // packed comparison vectors of every query's candidates
	starts []int     // query k's pairs are pats[starts[k]:starts[k+1]]
	nq     float64   // number of queries
	logBF  []float64 // per pair: the natural-log Bayes factor under the current m
	w      []float64 // per pair: the probability that it is a match
	pIn    float64   // link mode: the share of queries whose member is in the index
	lambda float64   // dedup mode: the share of pairs that match
	dedup  bool
	prior  float64 // TrainOptions.PriorWeight
}

// newEM lays the queries' patterns end to end; nil when there are none.
func newEM(perQuery [][]uint32, opt TrainOptions) *em {
	e := &em{starts: []int{0}, pIn: 0.9, dedup: opt.Dedup, prior: opt.PriorWeight}
	for _, p := range perQuery {
		e.pats = append(e.pats, p...)
		e.starts = append(e.starts, len(e.pats))
	}
	if len(e.pats) == 0 {
		return nil
	}
	e.nq = float64(len(e.starts) - 1)
	e.lambda = math.Min(0.5, e.nq/float64(len(e.pats)))
	e.logBF = make([]float64, len(e.pats))
	e.w = make([]float64, len(e.pats))
	return e
}

// bayesFactors sets each pair's log Bayes factor under m.
func (e *em) bayesFactors(m *Model) {
	for i, pat := range e.pats {
		g := unpack(pat)
		lb := 0.0
		for f, l := range g {
			if l == lMissing || m.M[f][l] == 0 || m.U[f][l] == 0 {
				continue
			}
			lb += math.Log(m.M[f][l] / m.U[f][l])
		}
		e.logBF[i] = lb
	}
}

// expect is the E step: each pair's match probability, and the share of
// matches (λ or pIn) re-estimated from them. It returns the expected
// number of matching pairs.
func (e *em) expect(m *Model) float64 {
	matched := 0.0
	if e.dedup {
		lo := math.Log(e.lambda / (1 - e.lambda))
		for i := range e.pats {
			e.w[i] = 1 / (1 + math.Exp(-(e.logBF[i] + lo)))
			matched += e.w[i]
		}
		e.lambda = math.Min(math.Max(matched/float64(len(e.pats)), 1e-6), 0.999)
		return matched
	}
	lp := math.Log(e.pIn / float64(m.N))
	none := math.Log(1 - e.pIn + 1e-9)
	for k := 0; k+1 < len(e.starts); k++ {
		lo, hi := e.starts[k], e.starts[k+1]
		mx := none
		for i := lo; i < hi; i++ {
			mx = math.Max(mx, e.logBF[i]+lp)
		}
		z := math.Exp(none - mx)
		for i := lo; i < hi; i++ {
			e.w[i] = math.Exp(e.logBF[i] + lp - mx)
			z += e.w[i]
		}
		for i := lo; i < hi; i++ {
			e.w[i] /= z
			matched += e.w[i]
		}
	}
	e.pIn = math.Min(math.Max(matched/e.nq, 0.05), 0.99)
	return matched
}

// maximise is the M step: m's probabilities from the weighted level
// counts, each field smoothed towards the defaults by the prior weight,
// and in dedup mode the expected matches per query.
func (e *em) maximise(m *Model, matched float64) {
	var mc [numFields][numLevels]float64
	for i, pat := range e.pats {
		if e.w[i] < 1e-9 {
			continue
		}
		g := unpack(pat)
		for f, l := range g {
			mc[f][l] += e.w[i]
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
			m.M[f][l] = (mc[f][l] + e.prior*defaultM[f][l]) / (sum + e.prior)
		}
	}
	if e.dedup {
		// The share of pairs that match, times the pairs a query brings,
		// is how many members a query matches: the prior's numerator.
		m.Expected = math.Min(math.Max(matched/e.nq, 1), 20)
	}
}

// keepDefaultsWhereDrifted undoes what EM should not have learnt. A swap
// stays one event carried by the given field. And against EM drifting to a
// household-shaped optimum: a field whose agreeing levels together became
// less likely among matches than outright disagreement keeps base's m.
func (m *Model) keepDefaultsWhereDrifted(base *Model) {
	m.M[fFamily][lSwapped] = 1
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
}
