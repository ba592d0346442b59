package identity

import (
	"errors"
	"hash/maphash"
	"runtime"
	"strings"
	"sync"

	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/identity/phonetic"
	"github.com/p2p-payer/p2p/member"
)

// rec is one member in normalised, interned form. Strings are numbers in
// the index's string table (0 = missing). 36 bytes a member.
type rec struct {
	given, family uint32 // normalised names, tokens joined by spaces
	street        uint32 // normalised street
	city, state   uint32
	postal        uint32
	dob           normalize.Date
	phoneLo       uint32 // the phone number (ten digits, < 2^34) is phoneHi<<32 | phoneLo; 0 = missing
	phoneHi       uint8
	sex           byte // 'F', 'M' or 0
	suffix        byte // generational suffix code (jr, sr, ii…); 0 = none
	flags         byte // flagKin
}

// flagKin marks a member who lives with a relative in the index (see
// Model.Relatives).
const flagKin = 2

func (r *rec) phone() uint64 { return uint64(r.phoneHi)<<32 | uint64(r.phoneLo) }

// place is the string id that stands for where r lives: the postal code, or
// the city where there is none.
func (r *rec) place() uint32 {
	if r.postal != 0 {
		return r.postal
	}
	return r.city
}

// Rows live in pages of pageSize so that the index grows without copying
// what it holds (a slice of ten million rows would be copied whole, under
// the write lock, each time it outgrew its capacity).
const (
	pageBits = 16
	pageSize = 1 << pageBits
	pageMask = pageSize - 1
)

// page is pageSize rows: each row's record and links.
type page struct {
	recs  []rec
	links []links
}

// links is, per kind of blocking key, the next (older) row in the same
// block, or -1; and whether the row is dead (removed or replaced: skipped
// by every block walk). A walk reads both, so they share a 64-byte cache
// line.
type links struct {
	next [numKeys]int32
	dead bool
	_    [64 - 4*numKeys - 1]byte
}

// Index is an in-memory member index with blocking keys and a scoring model
// estimated from its own records. It is safe for concurrent Match calls;
// Add, AddBatch, Upsert and Remove may run concurrently with them.
//
// A member that is replaced or removed leaves its row behind, marked dead:
// its blocks no longer count it and no walk returns it. The rows are
// reclaimed when the index is next built whole or restored from a snapshot
// (WriteSnapshot writes only live rows).
//
// Memory: about 175 bytes a member at ten million members (see
// docs/benchmarks.md), in flat arrays the garbage collector need not scan.
type Index struct {
	cfg Config

	mu      sync.RWMutex
	strs    strTable  // string table; 0 = ""
	strIdx  hashIndex // value → number in strs
	ids     strTable  // member id per row
	byID    hashIndex // live member id → row
	pages   []*page
	nrows   int32 // rows, live and dead
	live    int
	blocks  [numKeys]blockTable // per kind: blocking key → chain of rows
	givenN  []uint32            // rows per given-name string id (term frequency)
	familyN []uint32            // rows per family-name string id
	placeN  []uint32            // rows per postal-code string id, or city where there is none
	model   *Model
	writes  uint64 // changes made, to tell whether the index changed between two locks
	// exhaustive turns off the shortcuts of Match (memoised levels, ordering
	// only the best candidates), for tests that prove them exact.
	exhaustive bool
}

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

// newIndex is an empty index with room for about n members.
func newIndex(cfg Config, n int) *Index {
	ix := &Index{cfg: cfg, strs: strTable{ends: []uint32{0}}}
	seed := maphash.MakeSeed()
	ix.strIdx.seed, ix.byID.seed = seed, seed
	ix.givenN, ix.familyN, ix.placeN = []uint32{0}, []uint32{0}, []uint32{0}
	if n > 0 {
		ix.ids.ends = make([]uint32, 0, n)
		ix.byID.reserve(&ix.ids, n)
	}
	return ix
}

// NewIndex builds an index over members and estimates its scoring model
// from them. Records with an empty or duplicate member id are skipped. The
// members are normalised on every core (see AddBatch).
func NewIndex(members []member.Record, cfg Config) *Index {
	ix := newIndex(cfg, len(members))
	_, _ = ix.AddBatch(members) // only a 4 GiB arena can fail, and then the index holds what fitted
	m, kin := estimateModel(ix, 0)
	ix.setKin(kin)
	ix.model = m
	return ix
}

// ErrDuplicateID is returned by Add for a member id already in the index.
var ErrDuplicateID = errors.New("identity: member id already in the index")

// Add appends a member to the index. The model is not re-estimated: call
// Reestimate after many additions. A member whose address or phone block
// holds a relative (see Model.Relatives) is flagged as living with kin, as
// is the relative.
func (ix *Index) Add(m member.Record) error {
	pr := prepare(m)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.add(&pr)
}

// batchChunk is how many members AddBatch files under one hold of the write
// lock: about 10 ms of work, so matches running alongside wait no longer.
const batchChunk = 4096

// AddBatch adds members in bulk, the way to load an index: it normalises
// them on every core outside the lock, then files them in order, chunk by
// chunk, each kind of blocking key on its own core. Members with an empty
// member id or one already in the index (or earlier in ms) are skipped, as
// by NewIndex; added counts the others. The model and the kin flags are
// left as they are: call Reestimate or SetParams after the last batch. A
// store loader calls it once per page read.
//
// The only error is an index whose text (member ids and distinct values)
// would pass 4 GiB; the members before the one that did not fit are added.
func (ix *Index) AddBatch(ms []member.Record) (added int, err error) {
	workers := runtime.GOMAXPROCS(0)
	preps := make([]prepared, 0, min(len(ms), batchChunk))
	for start := 0; start < len(ms); start += batchChunk {
		chunk := ms[start:min(len(ms), start+batchChunk)]
		preps = preps[:len(chunk)]
		parallelFor(len(chunk), workers, func(i int) { preps[i] = prepare(chunk[i]) })
		ix.mu.Lock()
		n, err := ix.insert(preps, workers)
		ix.mu.Unlock()
		added += n
		if err != nil {
			return added, err
		}
	}
	return added, nil
}

// parallelFor runs f(0..n-1) on workers goroutines, in contiguous runs.
func parallelFor(n, workers int, f func(i int)) {
	if workers <= 1 || n < 64 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				f(i)
			}
		}(lo, min(n, lo+per))
	}
	wg.Wait()
}

// prepared is a member normalised and keyed, ready to be filed.
type prepared struct {
	id   string
	p    probe
	keys [numKeys]uint64
	row  int32 // the row it was filed as; -1 when skipped
}

func prepare(m member.Record) prepared {
	pr := prepared{id: strings.TrimSpace(m.ID)}
	pr.p = newProbe(m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone)
	pr.p.blockKeys(&pr.keys)
	return pr
}

// Reestimate re-estimates the scoring model's u probabilities and the
// relatives (who lives with kin) from the current members (after many
// Adds).
func (ix *Index) Reestimate() {
	ix.mu.RLock()
	m, kin := estimateModel(ix, 0)
	writes := ix.writes
	ix.mu.RUnlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.writes != writes {
		// Members changed meanwhile: the kin flags must be of the rows as
		// they are now.
		_, kin = relatives(ix)
	}
	ix.setKin(kin)
	ix.model = m
}

// setKin sets the kin flag of the rows kin marks, and clears the others'.
// The caller holds the write lock (or is the index's only user).
func (ix *Index) setKin(kin []bool) {
	for row := int32(0); row < ix.nrows; row++ {
		r := ix.rec(row)
		r.flags &^= flagKin
		if int(row) < len(kin) && kin[row] {
			r.flags |= flagKin
		}
	}
}

// Upsert adds m, or replaces the member with m's id: the old record's
// blocking keys and name frequencies are withdrawn and the new record's
// added, so the next Match finds the member by its new fields only. It
// reports whether the index changed (false when m equals, once normalised,
// the record it already holds). The model is not re-estimated; kin flags
// are set as by Add.
func (ix *Index) Upsert(m member.Record) (bool, error) {
	pr := prepare(m)
	if pr.id == "" {
		return false, errors.New("identity: member id is required")
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if row := ix.rowOf(pr.id); row >= 0 {
		if ix.sameRecord(row, &pr.p) {
			return false, nil
		}
		ix.remove(row)
	}
	return true, ix.add(&pr)
}

// Remove takes the member with id out of the index; it reports whether
// there was one.
func (ix *Index) Remove(id string) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	row := ix.rowOf(strings.TrimSpace(id))
	if row >= 0 {
		ix.remove(row)
	}
	return row >= 0
}

// rowOf is the live row of member id, or -1.
func (ix *Index) rowOf(id string) int32 {
	return int32(ix.byID.find(&ix.ids, id))
}

// rec is row's record; the pointer is good while the caller holds the lock.
func (ix *Index) rec(row int32) *rec { return &ix.pages[row>>pageBits].recs[row&pageMask] }

// next is the row after row in its block of kind, or -1.
func (ix *Index) next(kind int, row int32) int32 {
	return ix.pages[row>>pageBits].links[row&pageMask].next[kind]
}

// dead reports whether row was removed or replaced.
func (ix *Index) dead(row int32) bool { return ix.pages[row>>pageBits].links[row&pageMask].dead }

// id is row's member id, sharing the index's memory (see strTable.at).
func (ix *Index) id(row int32) string { return ix.ids.at(uint32(row)) }

// memberID is row's member id as a string of its own, for a caller to keep.
func (ix *Index) memberID(row int32) string { return strings.Clone(ix.id(row)) }

// str is string number i of the string table.
func (ix *Index) str(i uint32) string { return ix.strs.at(i) }

// livesWithKin reports whether row was found living with a relative.
func (ix *Index) livesWithKin(row int32) bool { return ix.rec(row).flags&flagKin != 0 }

// sameRecord reports whether row holds p.
func (ix *Index) sameRecord(row int32, p *probe) bool {
	r := ix.rec(row)
	return ix.str(r.given) == p.given && ix.str(r.family) == p.family && ix.str(r.street) == p.street && ix.str(r.city) == p.city &&
		ix.str(r.state) == p.state && ix.str(r.postal) == p.postal && r.dob == p.dob && r.phone() == p.phone && r.sex == p.sex && r.suffix == p.suffix
}

// remove marks row dead: it leaves its blocks' counts, the name and place
// frequencies and the id table. It stays linked in its chains, where walks
// skip it.
func (ix *Index) remove(row int32) {
	if ix.dead(row) {
		return
	}
	r := ix.rec(row)
	ix.pages[row>>pageBits].links[row&pageMask].dead = true
	ix.live--
	ix.writes++
	ix.byID.remove(&ix.ids, uint32(row))
	ix.givenN[r.given]--
	ix.familyN[r.family]--
	ix.placeN[r.place()]--
	s := ix.side(row)
	p := probeOf(&s)
	var keys [numKeys]uint64
	p.blockKeys(&keys)
	for k, key := range keys {
		if b := ix.blocks[k].get(key); b != nil {
			b.n--
		}
	}
}

// Len is the number of members.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.live
}

// Model is the scoring model in use.
func (ix *Index) Model() *Model {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.model
}

// SetModel replaces the scoring model (for example with one trained by
// Train on a batch of queries). Who lives with kin is the index's, not the
// model's: it stays.
func (ix *Index) SetModel(m *Model) {
	m.cache()
	ix.mu.Lock()
	ix.model = m
	ix.mu.Unlock()
}

// add files one member, and flags it and its relatives as kin.
func (ix *Index) add(pr *prepared) error {
	if pr.id == "" {
		return errors.New("identity: member id is required")
	}
	if ix.rowOf(pr.id) >= 0 {
		return ErrDuplicateID
	}
	if err := ix.file(pr); err != nil {
		return err
	}
	for k := range numKeys {
		ix.link(k, pr)
	}
	ix.markKin(pr.row)
	return nil
}

// insert files the members of preps in order, skipping those without an
// id or whose id is taken, and links them into their blocks with one
// goroutine per group of kinds. It returns how many it filed.
func (ix *Index) insert(preps []prepared, workers int) (int, error) {
	n := 0
	var err error
	for i := range preps {
		pr := &preps[i]
		pr.row = -1
		if err != nil || pr.id == "" || ix.rowOf(pr.id) >= 0 {
			continue
		}
		if err = ix.file(pr); err == nil {
			n++
		}
	}
	linkKinds := func(first, step int) {
		for k := first; k < numKeys; k += step {
			for i := range preps {
				if preps[i].row >= 0 {
					ix.link(k, &preps[i])
				}
			}
		}
	}
	if workers <= 1 || n < 256 {
		linkKinds(0, 1)
		return n, err
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			linkKinds(w, workers)
		}()
	}
	wg.Wait()
	return n, err
}

// file appends pr as a new row (unlinked: every next -1) and sets pr.row.
func (ix *Index) file(pr *prepared) error {
	p := &pr.p
	var r rec
	for _, f := range []struct {
		dst *uint32
		s   string
	}{{&r.given, p.given}, {&r.family, p.family}, {&r.street, p.street}, {&r.city, p.city}, {&r.state, p.state}, {&r.postal, p.postal}} {
		id, err := ix.intern(f.s)
		if err != nil {
			return err
		}
		*f.dst = id
	}
	r.dob, r.phoneLo, r.phoneHi, r.sex, r.suffix = p.dob, uint32(p.phone), uint8(p.phone>>32), p.sex, p.suffix
	if _, err := ix.ids.add(pr.id); err != nil {
		return err
	}
	var none [numKeys]int32
	for k := range none {
		none[k] = -1
	}
	row := ix.newRow(r, none)
	ix.live++
	ix.writes++
	ix.byID.insert(&ix.ids, uint32(row))
	ix.givenN[r.given]++
	ix.familyN[r.family]++
	ix.placeN[r.place()]++
	pr.row = row
	return nil
}

// newRow appends a row and returns its number. The first page grows as
// pages of a small index should; later ones are allocated whole.
func (ix *Index) newRow(r rec, next [numKeys]int32) int32 {
	if len(ix.pages) == 0 || len(ix.pages[len(ix.pages)-1].recs) == pageSize {
		pg := &page{}
		if len(ix.pages) > 0 {
			pg.recs, pg.links = make([]rec, 0, pageSize), make([]links, 0, pageSize)
		}
		ix.pages = append(ix.pages, pg)
	}
	pg := ix.pages[len(ix.pages)-1]
	pg.recs = append(pg.recs, r)
	pg.links = append(pg.links, links{next: next})
	ix.nrows++
	return ix.nrows - 1
}

// link puts pr's row at the head of its block of kind k.
func (ix *Index) link(k int, pr *prepared) {
	key := pr.keys[k]
	if key == 0 {
		return
	}
	b := ix.blocks[k].put(key)
	ix.pages[pr.row>>pageBits].links[pr.row&pageMask].next[k] = b.head
	b.head = pr.row
	b.n++
}

// markKin flags row, and the members it lives with, as kin where they are
// relatives by the rule of relatives (see there): the incremental form of
// what Reestimate finds for the whole index.
func (ix *Index) markKin(row int32) {
	s := ix.side(row)
	p := probeOf(&s)
	var rows []int32
	for _, kind := range []int{keyAddress, keyPhone} {
		b := ix.blocks[kind].get(p.contactKey(kind))
		if b == nil || b.n < 2 || b.n > maxHousehold {
			continue
		}
		rows = ix.walk(kind, b.key, rows[:0])
		for _, other := range rows {
			if other != row && ix.related(row, other) {
				ix.rec(row).flags |= flagKin
				ix.rec(other).flags |= flagKin
			}
		}
	}
}

// liveRows is every row not removed, in row order.
func (ix *Index) liveRows() []int32 {
	rows := make([]int32, 0, ix.live)
	for r := int32(0); r < ix.nrows; r++ {
		if !ix.dead(r) {
			rows = append(rows, r)
		}
	}
	return rows
}

// intern is the number of s in the string table, adding it if new.
func (ix *Index) intern(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	if id := ix.strIdx.find(&ix.strs, s); id >= 0 {
		return uint32(id), nil
	}
	id, err := ix.strs.add(s)
	if err != nil {
		return 0, err
	}
	ix.strIdx.insert(&ix.strs, id)
	ix.givenN = append(ix.givenN, 0)
	ix.familyN = append(ix.familyN, 0)
	ix.placeN = append(ix.placeN, 0)
	return id, nil
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
		if row := ix.rowOf(memberID); row >= 0 {
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
	b := ix.blocks[kind].get(key)
	if b == nil || int(b.n) > ix.cfg.MaxBlock {
		return dst
	}
	for row := b.head; row >= 0; row = ix.next(kind, row) {
		if !ix.dead(row) {
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
