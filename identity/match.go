package identity

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/transfer"
)

// scored is one candidate with its comparison vector and score.
type scored struct {
	row   int32
	g     gamma
	score float64
}

// scratch is the per-call working memory of Match, pooled.
type scratch struct {
	rows   []int32
	scored []scored
	more   []int32 // scoreWide's rows
	top    []int   // orderTop's working set
	spare  []scored
	memo   memo
}

var scratchPool = sync.Pool{New: func() any { return &scratch{rows: make([]int32, 0, 256), scored: make([]scored, 0, 256)} }}

// Match finds the member q describes: the member-id rule first, then the
// probabilistic score over the blocked candidates, then the decision bands
// of the index's Config.
func (ix *Index) Match(q transfer.Demographics) Decision {
	p := newProbe(q.Given, q.Family, q.BirthDate, q.Sex, q.Address.Street, q.Address.City, q.Address.State, q.Address.PostalCode, q.Phone)
	return ix.match(&p, strings.TrimSpace(q.MemberID), "")
}

// matchExcluding is Match that ignores the member with id exclude: it
// deduplicates an index against itself.
func (ix *Index) matchExcluding(q transfer.Demographics, exclude string) Decision {
	p := newProbe(q.Given, q.Family, q.BirthDate, q.Sex, q.Address.Street, q.Address.City, q.Address.State, q.Address.PostalCode, q.Phone)
	return ix.match(&p, strings.TrimSpace(q.MemberID), exclude)
}

func (ix *Index) match(p *probe, qid, exclude string) Decision {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	m := ix.model
	// The narrow blocks first; the wide ones only when they leave doubt.
	ix.scoreCandidates(m, p, qid, exclude, sc, false)
	if d := ix.decide(m, p, sc); d.Outcome == OutcomeMatch {
		return d
	}
	if ix.exhaustive {
		ix.scoreCandidates(m, p, qid, exclude, sc, true)
	} else {
		// The narrow candidates keep their scores: only the rows the wide
		// keys add are scored.
		ix.scoreWide(m, p, qid, exclude, sc)
	}
	return ix.decide(m, p, sc)
}

// decide is the decision over the scored candidates in sc.
func (ix *Index) decide(m *Model, p *probe, sc *scratch) Decision {
	cfg := ix.cfg
	if len(sc.scored) == 0 {
		return Decision{Outcome: OutcomeNoMatch, Rationale: transfer.Rationale{Rule: RuleNone, Summary: "no member shares a blocking key with the query"}}
	}
	// Only the best few candidates are looked at below: the best, up to
	// maxDuplicates more for duplicates, the runner-up after them, and
	// MaxReview for review. They are put first, in order; the rest stay
	// unordered.
	sorted := ix.orderTop(sc, max(maxDuplicates+2, cfg.MaxReview+1))
	// The deterministic rule stays in front: the member named by an exact
	// member id with an agreeing birth date is the answer, whatever scores
	// higher.
	for i, c := range sc.scored {
		if c.g[fMemberID] == lExact && c.g[fBirthDate] == lExact {
			copy(sc.scored[1:i+1], sc.scored[:i])
			sc.scored[0] = c
			if i >= sorted {
				sorted++ // from the unordered rest: the ordered prefix moved up by one behind it
			}
			break
		}
	}
	best := sc.scored[0]
	d := Decision{MemberID: ix.memberID(best.row), Score: best.score}
	d.Rationale.Fields = ix.contributions(m, best.row, best.g)

	// The runner-up is the best candidate that is a different person: a
	// second record of the best candidate's person (a duplicate in the index)
	// does not make the query ambiguous.
	var runner *scored
	var dups []string
	// Only an index known to hold several records of a person (Train found
	// Expected > 1) has duplicates to set aside: in a deduplicated index two
	// similar records are two people, namesakes, and that is ambiguity.
	dupsExpected := m.Expected > 1.2
	relatives := m.Relatives >= ix.cfg.RelativesVeto
	var aside []string // set aside as duplicates, too weakly tied to be linked
	for i := 1; dupsExpected && i < len(sc.scored) && i <= maxDuplicates && sc.scored[i].score >= ix.cfg.ReviewThreshold; i++ {
		c := sc.scored[i]
		strong := c.score >= ix.cfg.MatchThreshold && vetoed(c.g, p.suffix, ix.rec(c.row).suffix, relatives) == "" && ix.compatible(m, best.row, c.row)
		switch tie := ix.sameMember(m, best.row, c.row); {
		case strong || tie == tieStrong:
			// Linked: the record matches the query, or the best candidate,
			// as surely as an automatic match requires.
			dups = append(dups, ix.memberID(c.row))
			continue
		case tie == tieWeak:
			// Likely the same person as the best candidate, so no rival;
			// but not sure enough to be linked to the query.
			aside = append(aside, ix.id(c.row))
			continue
		}
		if runner == nil {
			runner = &sc.scored[i]
		}
	}
	if runner == nil {
		for i := 1; i < sorted; i++ {
			if id := ix.id(sc.scored[i].row); !contains(dups, id) && !contains(aside, id) {
				runner = &sc.scored[i]
				break
			}
		}
	}
	runnerScore := math.Inf(-1)
	if runner == nil && len(sc.scored) > sorted {
		// Past the ordered prefix (not seen with the default limits: the
		// runner-up is at most maxDuplicates+1 down): order the rest.
		ix.sortScored(sc.scored[sorted:])
		for i := sorted; i < len(sc.scored); i++ {
			if id := ix.id(sc.scored[i].row); !contains(dups, id) && !contains(aside, id) {
				runner = &sc.scored[i]
				break
			}
		}
	}
	if runner != nil {
		runnerScore = runner.score
		d.Rationale.RunnerUp = &transfer.RunnerUp{MemberID: ix.memberID(runner.row), Score: runner.score}
	}
	veto := vetoed(best.g, p.suffix, ix.rec(best.row).suffix, relatives)
	if veto == "" && relatives && best.g[fGiven] == lClose && (best.g[fBirthDate] == lExact || best.g[fBirthDate] == lTransposed) &&
		ix.livesWithKin(best.row) && ix.knownGiven(p.given) {
		// A member who lives with relatives, the same birth date and a given
		// name one letter off that is itself a name other members bear
		// (Ronald for Donald, Anna for Ann): a twin the index does not hold
		// as likely as a typo. A typo rarely spells another real name.
		veto = "given name within a household"
	}
	switch {
	case best.g[fMemberID] == lExact && best.g[fBirthDate] == lExact:
		d.Outcome = OutcomeMatch
		d.Rationale.Rule = RuleMemberID
		d.Rationale.Summary = "member id and birth date agree exactly"
	case best.score >= cfg.MatchThreshold && best.score-runnerScore >= cfg.Margin && veto == "":
		d.Outcome = OutcomeMatch
		d.Rationale.Rule = RuleProbabilistic
		d.Rationale.Summary = fmt.Sprintf("score %.1f is at or above the match threshold %.1f and %s", best.score, cfg.MatchThreshold, marginText(best.score, runnerScore))
	case best.score >= cfg.ReviewThreshold:
		d.Outcome = OutcomeReview
		d.Rationale.Rule = RuleProbabilistic
		switch {
		case veto != "" && best.score >= cfg.MatchThreshold:
			d.Rationale.Summary = fmt.Sprintf("score %.1f is high but the %s disagrees: a household member, twin or junior needs a person to decide", best.score, veto)
		case best.score >= cfg.MatchThreshold:
			d.Rationale.Summary = fmt.Sprintf("score %.1f is high but %s, less than the required margin %.1f", best.score, marginText(best.score, runnerScore), cfg.Margin)
		default:
			d.Rationale.Summary = fmt.Sprintf("score %.1f is between the review threshold %.1f and the match threshold %.1f", best.score, cfg.ReviewThreshold, cfg.MatchThreshold)
		}
		for i := 0; i < sorted && len(d.Candidates) < cfg.MaxReview; i++ {
			s := sc.scored[i]
			if i > 0 && (s.score < cfg.ReviewThreshold || s.score < best.score-cfg.Margin) {
				break
			}
			d.Candidates = append(d.Candidates, ix.memberID(s.row))
		}
	default:
		d.Outcome = OutcomeNoMatch
		d.MemberID = ""
		d.Rationale.Rule = RuleProbabilistic
		d.Rationale.Summary = fmt.Sprintf("the best candidate's score %.1f is below the review threshold %.1f", best.score, cfg.ReviewThreshold)
	}
	if len(dups)+len(aside) > 0 {
		d.Rationale.Summary += fmt.Sprintf("; %d other record(s) of the same member were set aside as duplicates", len(dups)+len(aside))
		if d.Outcome == OutcomeMatch {
			d.Duplicates = dups
		}
	}
	return d
}

// orderTop puts the k best of sc.scored first, in order (best score
// first, then member id), and returns how many are so ordered: a full sort
// of a thousand candidates, most of them hopeless, was a fifth of a match's
// time at ten million members.
func (ix *Index) orderTop(sc *scratch, k int) int {
	all := sc.scored
	if len(all) <= 2*k || ix.exhaustive {
		ix.sortScored(all)
		return len(all)
	}
	// One pass keeps the indexes of the k best so far, in order; most
	// candidates fall below the k-th at the first comparison.
	top := sc.top[:0]
	for i := range all {
		if len(top) == k && ix.better(&all[top[k-1]], &all[i]) {
			continue
		}
		j := len(top)
		if j < k {
			top = append(top, i)
		} else {
			j = k - 1
		}
		for ; j > 0 && ix.better(&all[i], &all[top[j-1]]); j-- {
			top[j] = top[j-1]
		}
		top[j] = i
	}
	out := sc.spare[:0]
	for _, i := range top {
		out = append(out, all[i])
		all[i].row = -1
	}
	for i := range all {
		if all[i].row >= 0 {
			out = append(out, all[i])
		}
	}
	sc.top, sc.spare, sc.scored = top, all[:0], out
	return k
}

// better reports whether a ranks before b: a higher score, or the same
// score and a smaller member id.
func (ix *Index) better(a, b *scored) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return ix.id(a.row) < ix.id(b.row)
}

// sortScored sorts candidates best first (see better).
func (ix *Index) sortScored(s []scored) {
	slices.SortFunc(s, func(a, b scored) int {
		if a.score != b.score {
			return cmp.Compare(b.score, a.score)
		}
		return strings.Compare(ix.id(a.row), ix.id(b.row))
	})
}

// maxDuplicates bounds how many of the top candidates are checked for being
// other records of the best candidate's person.
const maxDuplicates = 10

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func marginText(best, runner float64) string {
	if math.IsInf(runner, -1) {
		return "there is no runner-up"
	}
	return fmt.Sprintf("%.1f above the runner-up", best-runner)
}

// vetoed names the identity-critical field that disagrees outright, which
// keeps a candidate from being matched automatically however high its score:
// household members share family name, address and phone but not given name
// and birth date; a junior shares his father's name but not his birth date.
func vetoed(g gamma, qSuffix, cSuffix byte, relatives bool) string {
	switch {
	case relatives && (g[fGiven] == lDifferent || g[fGiven] == lFuzzy || g[fGiven] == lInitial):
		// Twins are often given similar names (Mary and Marie, Ana and
		// Hannah): only an exact, nickname or one-typo given name passes.
		return "given name"
	case relatives && (g[fBirthDate] == lDifferent || g[fBirthDate] == lFuzzy || g[fBirthDate] == lNearby || g[fBirthDate] == lYear || g[fBirthDate] == lDecade):
		// Two digits or weeks apart is a junior or a sibling as often as a
		// slip.
		return "birth date"
	case g[fSex] == lDifferent && g[fGiven] != lExact && g[fGiven] != lNickname && g[fGiven] != lMissing:
		// Michael and Michelle: a close given name of the other sex is a
		// twin or sibling far more often than a typo plus a wrong sex.
		return "sex and given name"
	case qSuffix != 0 && cSuffix != 0 && qSuffix != cSuffix:
		return "name suffix"
	}
	return ""
}

// knownGiven reports whether g is a given name and not a misspelling: other
// members of the index bear it, or the built-in nickname table lists it.
func (ix *Index) knownGiven(g string) bool {
	if normalize.KnownGiven(g) {
		return true
	}
	id := ix.strIdx.find(&ix.strs, g)
	return id >= 0 && ix.givenN[id] >= 2
}

// sameMember reports whether two index rows look like two records of one
// person: compatible given name and birth date and a match-level score.
func (ix *Index) sameMember(m *Model, a, b int32) tie {
	sa, sb := ix.side(a), ix.side(b)
	p := probeOf(&sa)
	g := compare(&p, "", &sb)
	if vetoed(g, sa.suffix, sb.suffix, m.Relatives >= ix.cfg.RelativesVeto) != "" || g[fBirthDate] == lMissing {
		return tieNone
	}
	score := ix.score(m, b, g)
	switch {
	case score >= ix.cfg.MatchThreshold:
		return tieStrong
	case vetoed(g, sa.suffix, sb.suffix, true) != "":
		// A given name or birth date that disagrees outright: two records of
		// one person only on the strength of a match.
		return tieNone
	case score < ix.cfg.DuplicateThreshold:
		return tieNone
	case g[fGiven] == lDifferent || g[fFamily] == lDifferent:
		// A name that disagrees outright, carried by the birth date: likely
		// one person, but too weak a tie to link.
		return tieWeak
	}
	return tieStrong
}

// tie is how surely two index records are one person.
type tie uint8

const (
	tieNone   tie = iota // two people, or no telling
	tieWeak              // likely one person: not a rival, but not linked
	tieStrong            // one person as surely as a match requires
)

// compatible reports whether two index rows may be one person: neither
// given name nor birth date disagrees outright.
func (ix *Index) compatible(m *Model, a, b int32) bool {
	sa, sb := ix.side(a), ix.side(b)
	p := probeOf(&sa)
	return vetoed(compare(&p, "", &sb), sa.suffix, sb.suffix, m.Relatives >= ix.cfg.RelativesVeto) == ""
}

// scoreCandidates sets sc.scored to p's blocked candidates (see
// candidates), less the member with id exclude, each with its comparison
// vector and its score under m, in row order. Both Match and Train score
// their candidates here.
func (ix *Index) scoreCandidates(m *Model, p *probe, qid, exclude string, sc *scratch, wide bool) {
	sc.rows = ix.candidates(p, qid, sc.rows[:0], wide)
	sc.scored = sc.scored[:0]
	sc.memo.reset()
	ix.scoreRows(m, p, qid, exclude, sc, sc.rows)
}

// scoreWide adds to sc.scored, scored by scoreCandidates without wide, the
// rows only the wide keys find: together they are the wide candidates.
func (ix *Index) scoreWide(m *Model, p *probe, qid, exclude string, sc *scratch) {
	var keys [numKeys]uint64
	p.blockKeys(&keys)
	more := sc.more[:0]
	for k, key := range keys {
		if wideKey[k] {
			more = ix.walk(k, key, more)
		}
	}
	more = dedupe(more)
	// Less the rows already scored (sc.rows, sorted too).
	out, j := more[:0], 0
	for _, r := range more {
		for j < len(sc.rows) && sc.rows[j] < r {
			j++
		}
		if j < len(sc.rows) && sc.rows[j] == r {
			continue
		}
		out = append(out, r)
	}
	sc.more = out
	ix.scoreRows(m, p, qid, exclude, sc, out)
}

// scoreRows appends rows, less the member with id exclude, to sc.scored
// with their comparison vectors and scores under m.
func (ix *Index) scoreRows(m *Model, p *probe, qid, exclude string, sc *scratch, rows []int32) {
	memo := &sc.memo
	if ix.exhaustive {
		memo = nil
	}
	for _, row := range rows {
		if exclude != "" && ix.id(row) == exclude {
			continue
		}
		c := ix.lightSide(row, qid != "")
		g := compareMemo(p, qid, &c, memo)
		sc.scored = append(sc.scored, scored{row: row, g: g, score: ix.score(m, row, g)})
	}
}

// score is the posterior log2-odds that row is the member whose
// comparison vector with the query is g.
func (ix *Index) score(m *Model, row int32, g gamma) float64 {
	s := m.Prior()
	for f, l := range g {
		s += ix.weight(m, row, f, l)
	}
	return s
}

// weight is a field's match weight, adjusted for how common the agreeing
// value is when Config.TermFrequency is set.
func (ix *Index) weight(m *Model, row int32, f int, l uint8) float64 {
	if l == lMissing {
		return 0
	}
	if ix.cfg.TermFrequency && (l == lExact && f != fAddress || f == fAddress && l == lFuzzy) {
		if n := ix.valueCount(row, f); n > 0 {
			// The chance that someone else has the value: the members with
			// it, less the sought person's own record(s). A value no one
			// else has is not infinitely telling: birth dates and phone
			// numbers, spread evenly, fall back to the level's average u;
			// names and places, which can be far rarer than average, to one
			// member in the index.
			others := math.Max(float64(n)-math.Max(m.Expected, 1), 0)
			floor := 1 / float64(m.N)
			if f == fBirthDate || f == fPhone {
				floor = m.U[f][l]
			}
			u := math.Max(others/float64(m.N), floor)
			return math.Log2(m.M[f][l] / u)
		}
	}
	return m.Weight(f, int(l))
}

// valueCount is how many members share row's value of field f, for the
// fields with a term-frequency adjustment (0 for the others).
func (ix *Index) valueCount(row int32, f int) uint32 {
	r := ix.rec(row)
	switch f {
	case fGiven:
		return ix.givenN[r.given]
	case fFamily:
		return ix.familyN[r.family]
	case fBirthDate:
		return ix.blockSize(keyDOB, hashKey(keyDOB, "", uint64(r.dob)))
	case fPhone:
		return ix.blockSize(keyPhone, hashKey(keyPhone, "", r.phone()))
	case fAddress:
		// Only for the same-town level: how many live in the candidate's
		// postal code (or city); London agrees by chance, Portsmouth not.
		return ix.placeN[r.place()]
	}
	return 0
}

// blockSize is the number of live rows with key, of kind.
func (ix *Index) blockSize(kind int, key uint64) uint32 {
	if b := ix.blocks[kind].get(key); b != nil {
		return uint32(b.n)
	}
	return 0
}

// contributions is the rationale of a score: the prior and each compared
// field's level and weight. They add up to the score.
func (ix *Index) contributions(m *Model, row int32, g gamma) []transfer.FieldContribution {
	out := make([]transfer.FieldContribution, 0, numFields+1)
	out = append(out, transfer.FieldContribution{Field: FieldPrior, Level: fmt.Sprintf("1 in %d", m.N), Weight: m.Prior()})
	for f, l := range g {
		if l == lMissing {
			continue
		}
		out = append(out, transfer.FieldContribution{Field: fieldNames[f], Level: levelName(f, l), Weight: ix.weight(m, row, f, l)})
	}
	return out
}

// levelName is the name a rationale shows for field f's level l.
func levelName(f int, l uint8) string {
	if f == fAddress {
		switch l {
		case lClose:
			return "close"
		case lPartial:
			return "same_street_other_town"
		case lInitial:
			return "same_number_and_town"
		case lFuzzy:
			return "same_town"
		case lDifferent:
			return "different"
		}
	}
	if f == fBirthDate && l == lNearby {
		return "within_two_months"
	}
	return levelNames[l]
}
