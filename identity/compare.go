package identity

import (
	"strings"

	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/identity/strsim"
)

// probe is one side of a comparison in normalised form: a query, or a
// member being added.
type probe struct {
	given, family               string // normalised, tokens joined by spaces
	givenCompact, familyCompact string
	givenFirst                  string // first token of the given name
	street, city, state, postal string
	streetNumber, streetName    string
	dob                         normalize.Date
	phone                       uint64
	sex, suffix                 byte
}

var suffixCodes = map[string]byte{"jr": 1, "sr": 2, "ii": 3, "iii": 4, "iv": 5}

func newProbe(given, family, dob, sex, street, city, state, postal, phone string) probe {
	var p probe
	var sg, sf string
	p.given, sg = normalize.NameSuffix(given)
	p.family, sf = normalize.NameSuffix(family)
	if sf == "" {
		sf = sg
	}
	p.suffix = suffixCodes[sf]
	p.fillNames()
	p.dob = normalize.BirthDate(dob)
	if s := normalize.Sex(sex); s != "" {
		p.sex = s[0]
	}
	p.street = normalize.Street(street)
	p.streetNumber, p.streetName, _ = splitStreet(p.street)
	p.city = normalize.Fold(city)
	p.state = normalize.State(state)
	p.postal = normalize.PostalCode(postal)
	if ph := normalize.Phone(phone); ph != "" {
		for i := 0; i < len(ph); i++ {
			p.phone = p.phone*10 + uint64(ph[i]-'0')
		}
	}
	return p
}

func (p *probe) fillNames() {
	p.givenCompact = normalize.Compact(p.given)
	p.familyCompact = normalize.Compact(p.family)
	p.givenFirst = p.given
	if i := strings.IndexByte(p.given, ' '); i > 0 {
		p.givenFirst = p.given[:i]
	}
}

// Comparison fields, in the order of a comparison vector.
const (
	fMemberID = iota
	fGiven
	fFamily
	fBirthDate
	fSex
	fAddress
	fPhone
	numFields
)

var fieldNames = [numFields]string{FieldMemberID, FieldGiven, FieldFamily, FieldBirthDate, FieldSex, FieldAddress, FieldPhone}

// Comparison levels, shared by all fields (each field uses a subset).
const (
	lMissing = iota
	lExact
	lNickname
	lClose
	lTransposed
	lInitial
	lPartial
	lFuzzy
	lSwapped
	lDifferent
	lNearby
	lYear   // birth dates within a year
	lDecade // birth dates within ten years
	numLevels
)

var levelNames = [numLevels]string{LevelMissing, LevelExact, LevelNickname, LevelClose, LevelTransposed, LevelInitial, LevelPartial, LevelFuzzy, LevelSwapped, LevelDifferent, LevelNearby, LevelYear, LevelDecade}

// gamma is a comparison vector: one level per field.
type gamma [numFields]uint8

// pack is gamma as one number (4 bits a field), for counting patterns.
func (g gamma) pack() uint32 {
	var v uint32
	for i, l := range g {
		v |= uint32(l) << (4 * i)
	}
	return v
}

func unpack(v uint32) gamma {
	var g gamma
	for i := range g {
		g[i] = uint8(v >> (4 * i) & 0xf)
	}
	return g
}

// side is a member as the comparison functions see it.
type side struct {
	id                          string
	given, family               string
	street, city, state, postal string
	dob                         normalize.Date
	phone                       uint64
	sex, suffix                 byte
	r                           *rec      // the index row, for memo's keys; nil for a member outside the index
	strs                        *strTable // where r's strings are, for load
	loaded                      bool      // the strings are filled in
}

// load fills in the strings of a side made by lightSide.
func (c *side) load() {
	if c.loaded {
		return
	}
	r, t := c.r, c.strs
	c.given, c.family, c.street, c.city, c.state, c.postal = t.at(r.given), t.at(r.family), t.at(r.street), t.at(r.city), t.at(r.state), t.at(r.postal)
	c.loaded = true
}

// lightSide is row as a side whose strings are loaded only when a level is
// not in the query's memo (see compareMemo); the member id only if withID.
func (ix *Index) lightSide(row int32, withID bool) side {
	r := ix.rec(row)
	c := side{dob: r.dob, phone: r.phone(), sex: r.sex, suffix: r.suffix, r: r, strs: &ix.strs}
	if withID {
		c.id = ix.id(row)
	}
	return c
}

func (ix *Index) side(row int32) side {
	r := ix.rec(row)
	return side{
		id: ix.id(row), given: ix.str(r.given), family: ix.str(r.family),
		street: ix.str(r.street), city: ix.str(r.city), state: ix.str(r.state), postal: ix.str(r.postal),
		dob: r.dob, phone: r.phone(), sex: r.sex, suffix: r.suffix, r: r, strs: &ix.strs, loaded: true,
	}
}

// compare computes the comparison vector of query q (with member id qid)
// against member c.
func compare(q *probe, qid string, c *side) gamma { return compareMemo(q, qid, c, nil) }

// compareMemo is compare, remembering in memo (when not nil) the levels
// that depend on one interned value of c's only (given name, family name,
// street, locality): the candidates of one query share them often (a block
// of one family name, one household, one town), and the string comparisons
// are most of a match's time. memo is for one query q.
func compareMemo(q *probe, qid string, c *side, memo *memo) gamma {
	if memo == nil {
		c.load()
	}
	var g gamma
	switch {
	case qid == "" || c.id == "":
		g[fMemberID] = lMissing
	case qid == c.id:
		g[fMemberID] = lExact
	case strsim.OSA(qid, c.id, 1) <= 1:
		g[fMemberID] = lClose
	default:
		g[fMemberID] = lDifferent
	}
	gv, ok := memo.get(memoGiven, c)
	if !ok {
		c.load()
		gv = compareGiven(q.given, q.givenCompact, q.givenFirst, c.given, normalize.Compact(c.given))
		memo.put(memoGiven, c, gv)
	}
	fv, ok := memo.get(memoFamily, c)
	if !ok {
		c.load()
		cFamilyC := normalize.Compact(c.family)
		fv = compareFamily(q.family, q.familyCompact, c.family, cFamilyC)
		if q.givenCompact == cFamilyC {
			fv |= memoSameAsGiven
		}
		memo.put(memoFamily, c, fv)
	}
	g[fGiven], g[fFamily] = gv&memoLevel, fv&memoLevel
	switch {
	case g[fGiven] != lDifferent && g[fFamily] != lDifferent:
	case q.givenCompact != "" && q.familyCompact != "" && memo.similar(memoFamily, fv, q.givenCompact, c) && memo.similar(memoGiven, gv, q.familyCompact, c):
		// Given and family swapped ("Hall Isla" for "Isla Hall").
		g[fGiven], g[fFamily] = lSwapped, lSwapped
	case g[fFamily] == lMissing && q.familyCompact == "" && fv&memoSameAsGiven != 0:
		// A lone name keyed into the wrong field.
		g[fGiven] = lSwapped
	}
	g[fBirthDate] = compareDate(q.dob, c.dob)
	switch {
	case q.sex == 0 || c.sex == 0:
		g[fSex] = lMissing
	case q.sex == c.sex:
		g[fSex] = lExact
	default:
		g[fSex] = lDifferent
	}
	street, ok := memo.get(memoStreet, c)
	if !ok {
		c.load()
		street = compareStreet(q.street, q.streetNumber, q.streetName, c.street)
		memo.put(memoStreet, c, street)
	}
	locality, ok := memo.get(memoLocality, c)
	if !ok {
		c.load()
		locality = compareLocality(q, c)
		memo.put(memoLocality, c, locality)
	}
	g[fAddress] = compareAddress(street, locality)
	switch {
	case q.phone == 0 || c.phone == 0:
		g[fPhone] = lMissing
	case q.phone == c.phone:
		g[fPhone] = lExact
	case q.phone%10000000 == c.phone%10000000 || phoneOneDigit(q.phone, c.phone):
		g[fPhone] = lClose
	default:
		g[fPhone] = lDifferent
	}
	return g
}

// outright reports whether level l is a disagreement, not a slip: different,
// or birth dates more than a few weeks apart.
func outright(l uint8) bool { return l == lDifferent || l == lYear || l == lDecade }

// similar reports whether two names are equal or within the close level.
func similar(a, b string) bool {
	return a == b || (a != "" && b != "" && strsim.JaroWinkler(a, b) >= 0.92)
}

func compareGiven(q, qc, qFirst, c, cc string) uint8 {
	if qc == "" || cc == "" {
		return lMissing
	}
	if qc == cc {
		return lExact
	}
	cFirst := c
	if i := strings.IndexByte(c, ' '); i > 0 {
		cFirst = c[:i]
	}
	if qFirst == cFirst && len(qFirst) > 1 {
		return lClose // same first name, middle name differs or is missing
	}
	if normalize.Nicknames(qFirst, cFirst) {
		return lNickname
	}
	jw := strsim.JaroWinkler(qc, cc)
	if jw >= 0.92 || (len(qc) > 3 && strsim.OSA(qc, cc, 1) <= 1) {
		return lClose
	}
	if (len(qFirst) == 1 || len(cFirst) == 1) && qFirst[0] == cFirst[0] {
		return lInitial
	}
	if jw >= 0.80 || sameLetters(qc, cc) {
		return lFuzzy
	}
	return lDifferent
}

// sameLetters reports whether a and b are spelt with the same letters, one
// more or fewer allowed, in whatever order: keying that scrambled a name
// ("Oievr" for "Oliver").
func sameLetters(a, b string) bool {
	if len(a) < 4 || len(b) < 4 || len(a)-len(b) > 1 || len(b)-len(a) > 1 {
		return false
	}
	var n [256]int8
	for i := 0; i < len(a); i++ {
		n[a[i]]++
	}
	for i := 0; i < len(b); i++ {
		n[b[i]]--
	}
	off := 0
	for _, c := range n {
		if c < 0 {
			off -= int(c)
		} else {
			off += int(c)
		}
	}
	return off <= 1
}

func compareFamily(q, qc, c, cc string) uint8 {
	if qc == "" || cc == "" {
		return lMissing
	}
	if qc == cc {
		return lExact
	}
	jw := strsim.JaroWinkler(qc, cc)
	if jw >= 0.92 || (len(qc) > 3 && strsim.OSA(qc, cc, 1) <= 1) {
		return lClose
	}
	// Double-barrelled and married names: one name is a part of the other.
	if strings.IndexByte(q, ' ') > 0 || strings.IndexByte(c, ' ') > 0 {
		for _, a := range strings.Fields(q) {
			for _, b := range strings.Fields(c) {
				if a == b && len(a) > 1 {
					return lPartial
				}
			}
		}
	}
	if jw >= 0.80 || sameLetters(qc, cc) {
		return lFuzzy
	}
	return lDifferent
}

func compareDate(q, c normalize.Date) uint8 {
	switch {
	case q == 0 || c == 0:
		return lMissing
	case q == c:
		return lExact
	case normalize.Transposed(q, c):
		return lTransposed
	}
	switch normalize.DigitEdits(q, c) {
	case 1:
		return lClose
	}
	days := normalize.DaysApart(q, c)
	if days <= 62 {
		return lNearby // within two months: a date misremembered or misread
	}
	if normalize.DigitEdits(q, c) == 2 {
		return lFuzzy
	}
	if q.Year() == c.Year() && (q.Month() == c.Month() || q.Day() == c.Day()) {
		return lFuzzy
	}
	// Splink's standard birth-date levels go on by a year and ten years:
	// a year misremembered or keyed wrong, and the rest of the date with it.
	switch {
	case days <= 366:
		return lYear
	case days <= 3653:
		return lDecade
	}
	return lDifferent
}

func compareStreet(q, qNum, qName, c string) uint8 {
	if q == "" || c == "" {
		return lMissing
	}
	if q == c {
		return lExact
	}
	if cNum := leadingNumber(c); qNum != cNum && qNum != "" && cNum != "" {
		return lDifferent // another house, whatever the street
	}
	cNum, cName, _ := normalize.StreetParts(c)
	if qNum == cNum && qName == cName {
		return lExact // only the unit differs
	}
	if n, full := prefixNoSpace(q, c); full && n == len(q) {
		return lExact // only the spacing differs
	}
	similarName := qName == cName || strsim.JaroWinkler(qName, cName) >= 0.90
	if !similarName && min(len(qName), len(cName)) >= 5 {
		// One name runs on into the other: a building or locality name
		// added to the street, or spaces dropped.
		_, similarName = prefixNoSpace(qName, cName)
	}
	if similarName || strsim.JaroWinkler(q, c) >= 0.92 {
		return lClose // a typo, a missing house number or a trailing unit or building name
	}
	if qNum != "" && qNum == cNum {
		return lPartial // the house number agrees, the street name does not
	}
	return lDifferent
}

// leadingNumber is the house number normalize.StreetParts would find in a
// normalised street, without the rest of its parsing: most candidates live
// at another number, and that is all compareStreet needs to know of them.
func leadingNumber(street string) string {
	if street == "" || street[0] < '0' || street[0] > '9' {
		return ""
	}
	if i := strings.IndexByte(street, ' '); i >= 0 {
		return street[:i]
	}
	return street
}

// prefixNoSpace compares a and b ignoring spaces: full reports whether one
// is a prefix of the other (or they are equal), n how many bytes of a were
// consumed.
func prefixNoSpace(a, b string) (n int, full bool) {
	i, j := 0, 0
	for {
		for i < len(a) && a[i] == ' ' {
			i++
		}
		for j < len(b) && b[j] == ' ' {
			j++
		}
		if i == len(a) || j == len(b) {
			return i, true
		}
		if a[i] != b[j] {
			return i, false
		}
		i++
		j++
	}
}

// compareAddress combines the street and locality levels into one address
// level: street and town move together, and counting a move twice would
// sink members who moved, as many who change plans have.
func compareAddress(street, locality uint8) uint8 {
	sameStreet := street == lExact || street == lClose
	switch {
	case street == lMissing && locality == lMissing:
		return lMissing
	case street == lExact && (locality == lExact || locality == lMissing):
		return lExact
	case sameStreet && locality != lDifferent:
		return lClose
	case sameStreet:
		return lPartial // the street agrees but the town does not
	case street == lPartial && locality == lExact:
		return lInitial // the house number and town agree, the street name is garbled
	case locality == lExact:
		return lFuzzy // the same town and postal code, another street
	case locality != lDifferent && locality != lMissing:
		return lNearby // the postal code or the town agrees, not both
	}
	return lDifferent // moved
}

// compareLocality compares city, state and postal code as one field: they
// move together. With a postal code on both sides it decides, the city
// confirming; without, the city decides.
func compareLocality(q *probe, c *side) uint8 {
	postal := q.postal != "" && c.postal != ""
	city := q.city != "" && c.city != ""
	cityEq := func() bool { return city && (q.city == c.city || strsim.JaroWinkler(q.city, c.city) >= 0.90) }
	switch {
	case postal:
		postalEq := q.postal == c.postal
		switch {
		case postalEq && (!city || cityEq()):
			return lExact
		case postalEq:
			return lPartial // postal code agrees, city does not
		case cityEq():
			return lFuzzy // city agrees, postal code does not
		case len(q.postal) == len(c.postal) && len(q.postal) >= 4 && strsim.OSA(q.postal, c.postal, 1) <= 1:
			return lInitial // a one-digit slip in the postal code
		}
		return lDifferent
	case city:
		switch {
		case q.city == c.city:
			return lExact
		case cityEq():
			return lClose
		}
		return lDifferent
	case q.state != "" && c.state != "" && q.state != c.state:
		return lDifferent
	}
	return lMissing
}

// phoneOneDigit reports whether two phone numbers differ in one digit or by
// one adjacent swap: an optimal-string-alignment distance of at most one
// between their ten digits, which for strings of one length is no
// difference, one substitution or one adjacent transposition.
func phoneOneDigit(a, b uint64) bool {
	var da, db [10]byte
	for i := 9; i >= 0; i-- {
		da[i], db[i] = byte(a%10), byte(b%10)
		a, b = a/10, b/10
	}
	first, n := -1, 0
	for i := range da {
		if da[i] != db[i] {
			if n == 0 {
				first = i
			}
			n++
		}
	}
	switch n {
	case 0, 1:
		return true
	case 2:
		return first+1 < len(da) && da[first] == db[first+1] && da[first+1] == db[first]
	}
	return false
}

// Kinds of level memo remembers.
const (
	memoGiven = iota
	memoFamily
	memoStreet
	memoLocality
	numMemo
)

// A memo entry is a level in its low bits; the given and family entries
// carry besides what the swap test asks of the value.
const (
	memoLevel       = 0x0f
	memoSimKnown    = 0x10 // memoSimilar is known
	memoSimilar     = 0x20 // the value is similar to the query's other name (given for a family name, family for a given)
	memoSameAsGiven = 0x40 // a family name equal to the query's given name
)

// similar reports whether c's name of kind (given or family) is similar
// to qOther, the query's other name, remembered in v and the memo.
func (m *memo) similar(kind int, v uint8, qOther string, c *side) bool {
	if v&memoSimKnown != 0 {
		return v&memoSimilar != 0
	}
	c.load()
	name := c.family
	if kind == memoGiven {
		name = c.given
	}
	sim := similar(qOther, normalize.Compact(name))
	v |= memoSimKnown
	if sim {
		v |= memoSimilar
	}
	m.put(kind, c, v)
	return sim
}

// memoSlots is the size of each of memo's direct-mapped tables: a slot
// holds the last value that hashed to it.
const memoSlots = 256

// memo remembers, for one query, the level of each given name, family
// name, street and locality (postal code, city and state) seen among its
// candidates, by their numbers in the index's string table.
type memo struct {
	key   [numMemo][memoSlots]memoKey
	level [numMemo][memoSlots]uint8
}

// memoKey is a value's string number(s), plus one so that the zero key is
// an empty slot.
type memoKey struct{ a, b uint64 }

func (m *memo) reset() { clear(m.key[:]) }

func memoKeyOf(kind int, c *side) memoKey {
	r := c.r
	switch kind {
	case memoGiven:
		return memoKey{a: uint64(r.given) + 1}
	case memoFamily:
		return memoKey{a: uint64(r.family) + 1}
	case memoStreet:
		return memoKey{a: uint64(r.street) + 1}
	}
	return memoKey{a: uint64(r.postal)<<32 | uint64(r.city) + 1, b: uint64(r.state) + 1}
}

func memoSlot(k memoKey) int { return int((k.a*0x9e3779b97f4a7c15 ^ k.b*0xc2b2ae3d27d4eb4f) >> 56) }

// get is the remembered level of c's value of kind; ok false if none.
func (m *memo) get(kind int, c *side) (uint8, bool) {
	if m == nil || c.r == nil {
		return 0, false
	}
	k := memoKeyOf(kind, c)
	i := memoSlot(k)
	if m.key[kind][i] == k {
		return m.level[kind][i], true
	}
	return 0, false
}

func (m *memo) put(kind int, c *side, level uint8) {
	if m == nil || c.r == nil {
		return
	}
	k := memoKeyOf(kind, c)
	i := memoSlot(k)
	m.key[kind][i], m.level[kind][i] = k, level
}

func splitStreet(s string) (number, name, unit string) { return normalize.StreetParts(s) }
