package identity

import (
	"errors"
	"strings"
	"sync"

	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/identity/phonetic"
	"github.com/p2p-payer/p2p/member"
)

// rec is one member in normalised, interned form. Strings are ids into the
// index's string table (0 = missing); 40 bytes a member keeps a million
// members near 40 MB before the string table and blocks.
type rec struct {
	given, family uint32 // normalised names, tokens joined by spaces
	street        uint32 // normalised street
	city, state   uint32
	postal        uint32
	dob           normalize.Date
	phone         uint64 // ten digits as a number; 0 = missing
	sex           byte   // 'F', 'M' or 0
	suffix        byte   // generational suffix code (jr, sr, ii…); 0 = none
	dead          bool   // removed or replaced: skipped by every block walk
}

// place is the string id that stands for where r lives: the postal code, or
// the city where there is none.
func (r *rec) place() uint32 {
	if r.postal != 0 {
		return r.postal
	}
	return r.city
}

// Index is an in-memory member index with blocking keys and a scoring model
// estimated from its own records. It is safe for concurrent Match calls;
// Add, Upsert and Remove may run concurrently with them.
//
// A member that is replaced or removed leaves its row behind, marked dead:
// its blocks no longer count it and no walk returns it. The rows are
// reclaimed when the index is next built whole (at process start).
type Index struct {
	cfg Config

	mu      sync.RWMutex
	strs    []string          // string table; strs[0] = ""
	strID   map[string]uint32 // reverse of strs
	ids     []string          // member id per row
	byID    map[string]int32  // live row per member id
	recs    []rec
	blocks  map[uint64]chain // blocking key → chain of rows
	next    [numKeys][]int32 // next row in the same block, per key kind
	givenN  []uint32         // rows per given-name string id (term frequency)
	familyN []uint32         // rows per family-name string id
	placeN  []uint32         // rows per postal-code string id, or city where there is none
	model   *Model
}

// chain is the newest row with a blocking key and the number of rows.
type chain struct{ head, n int32 }

// Kinds of blocking key.
const (
	keyDOB            = iota // birth date
	keyFamilyYear            // Soundex(family) + birth year
	keyNames                 // Soundex of given and family, in either order
	keyPostalInit            // postal code + given initial
	keyPhone                 // phone
	keyAddress               // house number + street name + postal code or city
	keyGivenYear             // Soundex(canonical given) + birth year
	keyGivenCity             // given name + city (where there is no postal code)
	keyGivenMonthDay         // Soundex(canonical given) + birth month and day
	keyFamilyMonthDay        // Soundex(family) + birth month and day
	keyNamePrefix            // first three letters of family + given initial
	keyFamilyCity            // Soundex of family name and city (where there is no postal code)
	keyYearMonth             // birth year and month: selective only in a small index
	keyNumberPostal          // house number + postal code: the street name may be garbled
	numKeys
)

// wideKey marks the keys used only by a wide search.
var wideKey = [numKeys]bool{keyNames: true, keyGivenYear: true, keyGivenCity: true, keyNamePrefix: true, keyFamilyCity: true, keyYearMonth: true}

// KeyNames names the kinds of blocking key, for blocking-recall reports.
var KeyNames = [numKeys]string{"birth_date", "family_soundex_year", "names_phonetic", "postal_given_initial", "phone", "address", "given_soundex_year", "given_city", "given_soundex_month_day", "family_soundex_month_day", "family_prefix_given_initial", "family_city", "birth_year_month", "house_number_postal"}

// NewIndex builds an index over members and estimates its scoring model
// from them. Records with an empty or duplicate member id are skipped.
func NewIndex(members []member.Record, cfg Config) *Index {
	ix := &Index{
		cfg:    cfg,
		strs:   []string{""},
		strID:  map[string]uint32{"": 0},
		byID:   make(map[string]int32, len(members)),
		recs:   make([]rec, 0, len(members)),
		ids:    make([]string, 0, len(members)),
		blocks: make(map[uint64]chain, len(members)*3),
	}
	for k := range ix.next {
		ix.next[k] = make([]int32, 0, len(members))
	}
	for _, m := range members {
		_ = ix.add(m)
	}
	ix.model = EstimateModel(ix, 0)
	return ix
}

// ErrDuplicateID is returned by Add for a member id already in the index.
var ErrDuplicateID = errors.New("identity: member id already in the index")

// Add appends a member to the index. The model is not re-estimated: call
// Reestimate after many additions.
func (ix *Index) Add(m member.Record) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.add(m)
}

// Reestimate re-estimates the scoring model's u probabilities from the
// current members (after many Adds).
func (ix *Index) Reestimate() {
	ix.mu.RLock()
	m := EstimateModel(ix, 0)
	ix.mu.RUnlock()
	ix.mu.Lock()
	ix.model = m
	ix.mu.Unlock()
}

// Upsert adds m, or replaces the member with m's id: the old record's
// blocking keys and name frequencies are withdrawn and the new record's
// added, so the next Match finds the member by its new fields only. It
// reports whether the index changed (false when m equals, once normalised,
// the record it already holds). The model is not re-estimated.
func (ix *Index) Upsert(m member.Record) (bool, error) {
	id := strings.TrimSpace(m.ID)
	if id == "" {
		return false, errors.New("identity: member id is required")
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if row, ok := ix.byID[id]; ok {
		if ix.sameRecord(row, m) {
			return false, nil
		}
		ix.remove(row)
	}
	return true, ix.add(m)
}

// Remove takes the member with id out of the index; it reports whether
// there was one.
func (ix *Index) Remove(id string) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	row, ok := ix.byID[strings.TrimSpace(id)]
	if ok {
		ix.remove(row)
	}
	return ok
}

// sameRecord reports whether row holds m, once normalised.
func (ix *Index) sameRecord(row int32, m member.Record) bool {
	p := newProbe(m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone)
	r := &ix.recs[row]
	s := ix.strs
	return s[r.given] == p.given && s[r.family] == p.family && s[r.street] == p.street && s[r.city] == p.city &&
		s[r.state] == p.state && s[r.postal] == p.postal && r.dob == p.dob && r.phone == p.phone && r.sex == p.sex && r.suffix == p.suffix
}

// remove marks row dead: it leaves its blocks' counts, the name and place
// frequencies and the id map. It stays linked in its chains, where walks
// skip it.
func (ix *Index) remove(row int32) {
	r := &ix.recs[row]
	if r.dead {
		return
	}
	r.dead = true
	delete(ix.byID, ix.ids[row])
	ix.givenN[r.given]--
	ix.familyN[r.family]--
	ix.placeN[r.place()]--
	s := ix.side(row)
	p := probeOf(&s)
	var keys [numKeys]uint64
	p.blockKeys(&keys)
	for _, key := range keys {
		if key == 0 {
			continue
		}
		if c, ok := ix.blocks[key]; ok {
			c.n--
			ix.blocks[key] = c
		}
	}
}

// Len is the number of members.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byID)
}

// Model is the scoring model in use.
func (ix *Index) Model() *Model {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.model
}

// SetModel replaces the scoring model (for example with one trained by
// Train on a batch of queries).
func (ix *Index) SetModel(m *Model) {
	m.cache()
	ix.mu.Lock()
	ix.model = m
	ix.mu.Unlock()
}

func (ix *Index) add(m member.Record) error {
	id := strings.TrimSpace(m.ID)
	if id == "" {
		return errors.New("identity: member id is required")
	}
	if _, ok := ix.byID[id]; ok {
		return ErrDuplicateID
	}
	p := newProbe(m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone)
	r := rec{
		given: ix.intern(p.given), family: ix.intern(p.family), street: ix.intern(p.street),
		city: ix.intern(p.city), state: ix.intern(p.state), postal: ix.intern(p.postal),
		dob: p.dob, phone: p.phone, sex: p.sex, suffix: p.suffix,
	}
	row := int32(len(ix.recs))
	ix.recs = append(ix.recs, r)
	id = strings.Clone(id) // do not pin the caller's row
	ix.ids = append(ix.ids, id)
	ix.byID[id] = row
	ix.givenN = grow(ix.givenN, len(ix.strs))
	ix.familyN = grow(ix.familyN, len(ix.strs))
	ix.placeN = grow(ix.placeN, len(ix.strs))
	ix.givenN[r.given]++
	ix.familyN[r.family]++
	ix.placeN[r.place()]++
	var keys [numKeys]uint64
	p.blockKeys(&keys)
	for k, key := range keys {
		nx := int32(-1)
		if key != 0 {
			c, ok := ix.blocks[key]
			if ok {
				nx = c.head
			}
			ix.blocks[key] = chain{head: row, n: c.n + 1}
		}
		ix.next[k] = append(ix.next[k], nx)
	}
	return nil
}

// liveRows is every row not removed, in row order.
func (ix *Index) liveRows() []int32 {
	rows := make([]int32, 0, len(ix.byID))
	for r := range ix.recs {
		if !ix.recs[r].dead {
			rows = append(rows, int32(r))
		}
	}
	return rows
}

func grow(s []uint32, n int) []uint32 {
	for len(s) < n {
		s = append(s, 0)
	}
	return s
}

func (ix *Index) intern(s string) uint32 {
	if id, ok := ix.strID[s]; ok {
		return id
	}
	s = strings.Clone(s)
	id := uint32(len(ix.strs))
	ix.strs = append(ix.strs, s)
	ix.strID[s] = id
	return id
}

// candidates appends to dst the rows that share at least one blocking key
// with p (and the row with member id, if any), without duplicates.
//
// Without wide only the selective keys are used: birth date, contact,
// postal code + initial and the keys that pair a phonetic name with part of
// the birth date. With wide the name-only keys join them; they find the
// members whose birth date and address both changed, at the cost of many
// more candidates, so Match uses them only when the narrow set gives no
// confident match.
func (ix *Index) candidates(p *probe, memberID string, dst []int32, wide bool) []int32 {
	if memberID != "" {
		if row, ok := ix.byID[memberID]; ok {
			dst = append(dst, row)
		}
	}
	var keys [numKeys]uint64
	p.blockKeys(&keys)
	for k, key := range keys {
		if !wide && wideKey[k] {
			continue
		}
		dst = ix.walk(k, key, dst)
	}
	// The commonest birth-date error is day and month swapped.
	if p.dob != 0 && p.dob.Day() <= 12 && p.dob.Day() != p.dob.Month() {
		swapped := normalize.Date(p.dob.Year()*10000 + p.dob.Day()*100 + p.dob.Month())
		dst = ix.walk(keyDOB, hashKey(keyDOB, "", uint64(swapped)), dst)
	}
	return dedupe(dst)
}

func (ix *Index) walk(kind int, key uint64, dst []int32) []int32 {
	if key == 0 {
		return dst
	}
	c, ok := ix.blocks[key]
	if !ok || int(c.n) > ix.cfg.MaxBlock {
		return dst
	}
	next := ix.next[kind]
	for row := c.head; row >= 0; row = next[row] {
		if !ix.recs[row].dead {
			dst = append(dst, row)
		}
	}
	return dst
}

// dedupe sorts rows and drops repeats in place.
func dedupe(rows []int32) []int32 {
	if len(rows) < 2 {
		return rows
	}
	sortInt32(rows)
	out := rows[:1]
	for _, r := range rows[1:] {
		if r != out[len(out)-1] {
			out = append(out, r)
		}
	}
	return out
}

func sortInt32(a []int32) {
	// insertion sort for the small case, else a simple quicksort
	if len(a) < 24 {
		for i := 1; i < len(a); i++ {
			for j := i; j > 0 && a[j] < a[j-1]; j-- {
				a[j], a[j-1] = a[j-1], a[j]
			}
		}
		return
	}
	p := a[len(a)/2]
	i, j := 0, len(a)-1
	for i <= j {
		for a[i] < p {
			i++
		}
		for a[j] > p {
			j--
		}
		if i <= j {
			a[i], a[j] = a[j], a[i]
			i++
			j--
		}
	}
	sortInt32(a[:j+1])
	sortInt32(a[i:])
}

// hashKey is the FNV-1a hash of a blocking key's kind, text and number; 0
// is reserved for "no key".
func hashKey(kind int, s string, n uint64) uint64 {
	h := uint64(14695981039346656037)
	h ^= uint64(kind) + 1
	h *= 1099511628211
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	for i := 0; i < 8; i++ {
		h ^= n & 0xff
		h *= 1099511628211
		n >>= 8
	}
	if h == 0 {
		h = 1
	}
	return h
}

// blockKeys fills keys with p's blocking keys (0 where a key's fields are
// missing).
func (p *probe) blockKeys(keys *[numKeys]uint64) {
	*keys = [numKeys]uint64{}
	if p.dob != 0 {
		keys[keyDOB] = hashKey(keyDOB, "", uint64(p.dob))
	}
	famCode := phonetic.Soundex(p.familyCompact)
	if famCode != "" && p.dob != 0 {
		keys[keyFamilyYear] = hashKey(keyFamilyYear, famCode, uint64(p.dob.Year()))
	}
	givenCode := phonetic.Soundex(canonicalGiven(p.givenFirst))
	if famCode != "" && givenCode != "" {
		// In either order, so that swapped names share the key.
		a, b := famCode, givenCode
		if a > b {
			a, b = b, a
		}
		keys[keyNames] = hashKey(keyNames, a+b, 0)
	}
	if givenCode != "" && p.dob != 0 {
		keys[keyGivenYear] = hashKey(keyGivenYear, givenCode, uint64(p.dob.Year()))
	}
	if givenCode != "" && p.dob != 0 {
		keys[keyGivenMonthDay] = hashKey(keyGivenMonthDay, givenCode, uint64(p.dob)%10000)
	}
	if famCode != "" && p.dob != 0 {
		keys[keyFamilyMonthDay] = hashKey(keyFamilyMonthDay, famCode, uint64(p.dob)%10000)
	}
	if givenCode != "" && p.city != "" && p.postal == "" {
		keys[keyGivenCity] = hashKey(keyGivenCity, givenCode+"|"+phonetic.Soundex(p.city), 0)
	}
	if famCode != "" && p.city != "" && p.postal == "" {
		keys[keyFamilyCity] = hashKey(keyFamilyCity, famCode+"|"+phonetic.Soundex(p.city), 0)
	}
	if p.dob != 0 {
		keys[keyYearMonth] = hashKey(keyYearMonth, "", uint64(p.dob)/100)
	}
	if famCode != "" && p.city != "" && p.postal == "" {
		keys[keyFamilyCity] = hashKey(keyFamilyCity, famCode+"|"+phonetic.Soundex(p.city), 0)
	}
	if p.dob != 0 {
		keys[keyYearMonth] = hashKey(keyYearMonth, "", uint64(p.dob)/100)
	}
	if len(p.familyCompact) >= 3 && p.givenFirst != "" {
		keys[keyNamePrefix] = hashKey(keyNamePrefix, p.familyCompact[:3]+p.givenFirst[:1], 0)
	}
	if p.postal != "" && p.givenFirst != "" {
		keys[keyPostalInit] = hashKey(keyPostalInit, p.postal, uint64(p.givenFirst[0]))
	}
	keys[keyPhone] = p.contactKey(keyPhone)
	keys[keyAddress] = p.contactKey(keyAddress)
	if p.streetNumber != "" && p.postal != "" {
		keys[keyNumberPostal] = hashKey(keyNumberPostal, p.streetNumber+"|"+p.postal, 0)
	}
}

// contactKey is p's phone or address blocking key (0 when missing).
func (p *probe) contactKey(kind int) uint64 {
	switch {
	case kind == keyPhone && p.phone != 0:
		return hashKey(keyPhone, "", p.phone)
	case kind == keyAddress && p.streetNumber != "" && p.streetName != "" && (p.postal != "" || p.city != ""):
		return hashKey(keyAddress, p.streetNumber+"|"+firstWord(p.streetName)+"|"+p.postal+"|"+p.city, 0)
	}
	return 0
}

// canonicalGiven maps a nickname to the full name of its first nickname
// group, so Bill and William share a blocking key.
func canonicalGiven(g string) string {
	if c := normalize.CanonicalGiven(g); c != "" {
		return c
	}
	return g
}

// firstWord is the first word of a street name that is not a directional,
// "N Main St" → "main".
func firstWord(s string) string {
	for _, w := range strings.Fields(s) {
		switch w {
		case "n", "s", "e", "w", "ne", "nw", "se", "sw":
			continue
		}
		return w
	}
	return s
}
