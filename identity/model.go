package identity

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Model is a Fellegi–Sunter model: for every field and comparison level the
// probability m of seeing that level when the two records are the same
// person and u when they are not. A level's weight is log2(m/u).
type Model struct {
	M, U [numFields][numLevels]float64
	// N is the number of members the prior is for: the prior log2-odds that
	// one given member is the person sought is -log2(N).
	N int
	// Expected is how many members a query is expected to match: 1 when
	// linking to a deduplicated index, more when the index holds several
	// records of a person. Train estimates it.
	Expected float64
	// Relatives is the share of members who live with a relative in the
	// index: another member with their family name at their address or
	// phone number but another given name and birth date. Where relatives
	// exist, a candidate whose given name or birth date disagrees outright may
	// be the sought member's sibling, twin or parent and is never matched
	// automatically (see Config.RelativesVeto).
	Relatives float64
	// random are the comparison vectors (packed) of the random member pairs
	// u is estimated from.
	random []uint32

	w     [numFields][numLevels]float64 // cached weights, see cache
	prior float64
	ready bool
}

// cache computes the weights once; call after changing M, U, N or Expected.
func (m *Model) cache() *Model {
	for f := range m.w {
		for l := range m.w[f] {
			m.w[f][l] = m.weight(f, l)
		}
	}
	e := m.Expected
	if e <= 0 {
		e = 1
	}
	m.prior = math.Log2(e / float64(max(m.N, 1)))
	m.ready = true
	return m
}

// defaultM are the m probabilities a model starts from: how often each
// level is seen between two records of one person in member data (typos,
// nicknames, moves, married names, missing values). EM refines them.
var defaultM = [numFields][numLevels]float64{
	fMemberID:  {lExact: 0.90, lClose: 0.04, lDifferent: 0.06},
	fGiven:     {lExact: 0.80, lNickname: 0.04, lClose: 0.07, lInitial: 0.02, lFuzzy: 0.02, lSwapped: 0.01, lDifferent: 0.04},
	fFamily:    {lExact: 0.82, lClose: 0.07, lPartial: 0.02, lFuzzy: 0.02, lSwapped: 0.01, lDifferent: 0.06},
	fBirthDate: {lExact: 0.90, lTransposed: 0.01, lClose: 0.05, lNearby: 0.01, lFuzzy: 0.01, lYear: 0.008, lDecade: 0.004, lDifferent: 0.008},
	fSex:       {lExact: 0.97, lDifferent: 0.03},
	fAddress:   {lExact: 0.62, lClose: 0.10, lPartial: 0.02, lInitial: 0.01, lFuzzy: 0.04, lNearby: 0.02, lDifferent: 0.19},
	fPhone:     {lExact: 0.70, lClose: 0.05, lDifferent: 0.25},
}

// uFloor are the least u probabilities of levels that random index pairs
// understate: one name an initial of the other agrees by chance about once
// in 15; a nickname pair, once in a few hundred.
var uFloor = [numFields][numLevels]float64{
	fGiven:  {lInitial: 0.06, lNickname: 0.003, lClose: 0.001, lFuzzy: 0.005},
	fFamily: {lClose: 0.0005, lPartial: 0.0005, lFuzzy: 0.003},
}

// uSamples is how many random member pairs estimate u.
const uSamples = 150_000

// EstimateModel estimates u from random pairs of the index's members and
// starts m from the defaults. seed 0 uses a fixed seed so that the same
// index always yields the same model.
func EstimateModel(ix *Index, seed uint64) *Model {
	m, _ := estimateModel(ix, seed)
	return m
}

// estimateModel is EstimateModel, and which rows live with kin (see
// relatives). The caller holds at least the read lock.
func estimateModel(ix *Index, seed uint64) (*Model, []bool) {
	live := ix.liveRows()
	n := len(live)
	m := &Model{M: defaultM, N: max(n, 1), Expected: 1}
	if n >= 2 {
		rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
		samples := min(uSamples, n*(n-1)/2)
		m.random = make([]uint32, 0, samples)
		for s := 0; s < samples; s++ {
			i, j := rng.IntN(n), rng.IntN(n-1)
			if j >= i {
				j++
			}
			a, b := ix.side(live[i]), ix.side(live[j])
			p := probeOf(&a)
			m.random = append(m.random, compare(&p, a.id, &b).pack())
		}
	}
	m.estimateU(false)
	// Once with every random pair a stranger, then again with the pairs
	// that look like one person set aside (see estimateU).
	m.estimateU(true)
	var kin []bool
	m.Relatives, kin = relatives(ix)
	return m.cache(), kin
}

// estimateU sets u from the random member pairs. With weighted, each pair
// counts by the probability that it is two people under the model's
// current m and prior: an index that holds several records of a person
// (Expected > 1) has some of them among its random pairs, and counting
// those as strangers would make agreement look common (in a set with four
// records a person, a shared birth date looks fifty times likelier than it
// is between strangers).
func (m *Model) estimateU(weighted bool) {
	var counts [numFields][numLevels]float64
	var lo float64
	if weighted {
		m.cache()
		// The prior log-odds that a random pair is one person: a member has
		// Expected records of theirs among the other N-1.
		e := max(m.Expected, 1)
		lo = math.Log(e / float64(max(m.N-1, 1)))
	}
	for _, pat := range m.random {
		g := unpack(pat)
		w := 1.0
		if weighted {
			lb := lo
			for f, l := range g {
				if f != fMemberID { // two members' ids always differ
					lb += m.w[f][l] * math.Ln2
				}
			}
			w = 1 / (1 + math.Exp(lb)) // P(two people)
		}
		for f, l := range g {
			counts[f][l] += w
		}
	}
	for f := range counts {
		total := 0.0
		for l := 1; l < numLevels; l++ {
			total += counts[f][l]
		}
		for l := 1; l < numLevels; l++ {
			if defaultM[f][l] == 0 {
				continue
			}
			// Smoothed so that a level never seen among random pairs (a
			// swapped name) gets a large but finite weight.
			m.U[f][l] = (counts[f][l] + 0.5) / (total + 1)
		}
	}
	// Member ids are unique: a random pair agrees with probability 1/N.
	m.U[fMemberID][lExact] = 1 / float64(m.N)
	// Random pairs of the index cannot show what a query brings: an index
	// without initials or nicknames would make those levels look rare, and
	// so strong. Floors keep them at what they are between strangers.
	for f := range m.U {
		for l, floor := range uFloor[f] {
			m.U[f][l] = max(m.U[f][l], floor)
		}
	}
	// A swap of given and family name is one event: the given field carries
	// its whole weight (both names agree, crosswise), the family field none.
	m.U[fGiven][lSwapped] = m.U[fGiven][lExact] * m.U[fFamily][lExact]
	m.M[fFamily][lSwapped], m.U[fFamily][lSwapped] = 1, 1
	m.ready = false
}

// maxHousehold is the largest address or phone block searched for
// relatives: larger ones are buildings, not households.
const maxHousehold = 20

// relatives is the share of members with a relative in the index (see
// Model.Relatives), and which rows have one: the members of each address
// and phone block of 2 to maxHousehold live members are compared pairwise,
// once per block, newest first. The blocks are shared out among the cores.
// The caller holds at least the read lock.
func relatives(ix *Index) (float64, []bool) {
	if ix.live == 0 {
		return 0, nil
	}
	workers := runtime.GOMAXPROCS(0)
	found := make([][]int32, workers) // per worker: rows found living with kin
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rows []int32
			for _, kind := range []int{keyAddress, keyPhone} {
				slots := ix.blocks[kind].slots
				per := (len(slots) + workers - 1) / workers
				for i := w * per; i < min(len(slots), (w+1)*per); i++ {
					b := &slots[i]
					if b.key == 0 || b.n < 2 || b.n > maxHousehold {
						continue
					}
					rows = ix.walk(kind, b.key, rows[:0])
					for i, a := range rows {
						for _, c := range rows[i+1:] {
							if ix.related(a, c) {
								found[w] = append(found[w], a, c)
							}
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	kin := make([]bool, ix.nrows)
	n := 0
	for _, rows := range found {
		for _, r := range rows {
			if !kin[r] {
				kin[r] = true
				n++
			}
		}
	}
	return float64(n) / float64(ix.live), kin
}

// related reports whether two members of one household are relatives: the
// same family name, but given name and birth date both clearly different
// (a second record of one person rarely differs in both). a is the newer
// row.
func (ix *Index) related(a, b int32) bool {
	ra, rb := ix.rec(a), ix.rec(b)
	if ra.family != rb.family || ra.family == 0 {
		return false
	}
	sa, sb := ix.side(a), ix.side(b)
	pa := probeOf(&sa)
	g := compare(&pa, "", &sb)
	return g[fGiven] == lDifferent && outright(g[fBirthDate])
}

// Weight is the match weight log2(m/u) of a field's level; 0 for missing.
func (m *Model) Weight(field, level int) float64 {
	if m.ready {
		return m.w[field][level]
	}
	return m.weight(field, level)
}

func (m *Model) weight(field, level int) float64 {
	if level == lMissing || m.M[field][level] == 0 || m.U[field][level] == 0 {
		return 0
	}
	return math.Log2(m.M[field][level] / m.U[field][level])
}

// Prior is the prior log2-odds that one member of the index is the person
// sought.
func (m *Model) Prior() float64 {
	if m.ready {
		return m.prior
	}
	e := m.Expected
	if e <= 0 {
		e = 1
	}
	return math.Log2(e / float64(m.N))
}

// probeOf turns an index member back into a probe, to compare two members.
func probeOf(s *side) probe {
	p := probe{given: s.given, family: s.family, street: s.street, city: s.city, state: s.state,
		postal: s.postal, dob: s.dob, phone: s.phone, sex: s.sex, suffix: s.suffix}
	p.fillNames()
	p.streetNumber, p.streetName, _ = splitStreet(s.street)
	return p
}
