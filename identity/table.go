package identity

import (
	"errors"
	"hash/maphash"
	"math"
	"math/bits"
	"unsafe"
)

// The index keeps its data in flat, pointer-free arrays: at ten million
// members Go maps and a string header per value cost more than the data
// (a map entry with its string is 50–80 bytes; here a value is its bytes
// plus 4, and a table slot 4 or 16 bytes), and the garbage collector has
// nothing to scan.

// strTable is an append-only list of strings kept end to end in one byte
// arena; string i is arena[ends[i-1]:ends[i]].
type strTable struct {
	arena []byte
	ends  []uint32
}

// errArenaFull is returned when the strings of an index would pass 4 GiB,
// the reach of a 32-bit offset.
var errArenaFull = errors.New("identity: the index's text passed 4 GiB")

// at is string i. It shares the arena's memory: the arena is only ever
// appended to, so the bytes never change. Copy it before handing it to a
// caller who may keep it, lest it pin the arena.
func (t *strTable) at(i uint32) string {
	var start uint32
	if i > 0 {
		start = t.ends[i-1]
	}
	end := t.ends[i]
	if start == end {
		return ""
	}
	return unsafe.String(&t.arena[start], end-start)
}

// add appends s and returns its number.
func (t *strTable) add(s string) (uint32, error) {
	if uint64(len(t.arena))+uint64(len(s)) > math.MaxUint32 || len(t.ends) >= math.MaxUint32-1 {
		return 0, errArenaFull
	}
	t.arena = append(t.arena, s...)
	t.ends = append(t.ends, uint32(len(t.arena)))
	return uint32(len(t.ends) - 1), nil
}

func (t *strTable) len() int { return len(t.ends) }

// hashIndex finds strings of a strTable by value: an open-addressing table
// with linear probing, whose slots hold a string's number plus one (0 is
// empty, tombstone a deleted entry).
type hashIndex struct {
	slots []uint32
	used  int // live entries and tombstones
	live  int
	seed  maphash.Seed
}

const tombstone = math.MaxUint32

// slotOf maps a 64-bit hash onto n slots (Lemire's multiply-shift; n need
// not be a power of two, so a table grows by half, not double).
func slotOf(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

// find returns the number of the string equal to s, or -1.
func (h *hashIndex) find(t *strTable, s string) int64 {
	if h.live == 0 {
		return -1
	}
	n := len(h.slots)
	for i := slotOf(maphash.String(h.seed, s), n); ; {
		v := h.slots[i]
		switch {
		case v == 0:
			return -1
		case v != tombstone && t.at(v-1) == s:
			return int64(v - 1)
		}
		if i++; i == n {
			i = 0
		}
	}
}

// insert files string number v (whose value is not in the index).
func (h *hashIndex) insert(t *strTable, v uint32) {
	if (h.used+1)*4 > len(h.slots)*3 {
		h.rehash(t, max(16, (h.live+1)*2))
	}
	n := len(h.slots)
	for i := slotOf(maphash.String(h.seed, t.at(v)), n); ; {
		if h.slots[i] == 0 {
			h.slots[i] = v + 1
			h.used++
			h.live++
			return
		}
		if i++; i == n {
			i = 0
		}
	}
}

// remove deletes string number v, leaving a tombstone.
func (h *hashIndex) remove(t *strTable, v uint32) {
	if h.live == 0 {
		return
	}
	n := len(h.slots)
	for i := slotOf(maphash.String(h.seed, t.at(v)), n); ; {
		switch h.slots[i] {
		case 0:
			return
		case v + 1:
			h.slots[i] = tombstone
			h.live--
			return
		}
		if i++; i == n {
			i = 0
		}
	}
}

// reserve sizes the table for n entries without growing.
func (h *hashIndex) reserve(t *strTable, n int) {
	if want := n*4/3 + 1; want > len(h.slots) {
		h.rehash(t, want)
	}
}

func (h *hashIndex) rehash(t *strTable, size int) {
	old := h.slots
	h.slots = make([]uint32, size)
	h.used, h.live = 0, 0
	for _, v := range old {
		if v != 0 && v != tombstone {
			h.insert(t, v-1)
		}
	}
}

// block is one blocking key's chain: the newest row with the key and how
// many live rows have it.
type block struct {
	key  uint64 // 0: empty slot
	head int32
	n    int32
}

// blockTable is an open-addressing table of blocks keyed by their 64-bit
// blocking key (already a hash). Blocks are never deleted: one whose rows
// all died keeps n = 0 until the index is rebuilt or snapshotted.
type blockTable struct {
	slots []block
	used  int
}

// mix spreads a blocking key's bits before slotOf takes the high ones.
func mix(key uint64) uint64 { return key * 0x9e3779b97f4a7c15 }

// get is the block with key, or nil.
func (t *blockTable) get(key uint64) *block {
	n := len(t.slots)
	if n == 0 || key == 0 {
		return nil
	}
	for i := slotOf(mix(key), n); ; {
		s := &t.slots[i]
		switch s.key {
		case key:
			return s
		case 0:
			return nil
		}
		if i++; i == n {
			i = 0
		}
	}
}

// put is the block with key, added empty (head -1, n 0) if missing. The
// pointer is good until the next put.
func (t *blockTable) put(key uint64) *block {
	if (t.used+1)*4 > len(t.slots)*3 {
		t.rehash(max(64, len(t.slots)*3/2))
	}
	n := len(t.slots)
	for i := slotOf(mix(key), n); ; {
		s := &t.slots[i]
		switch s.key {
		case key:
			return s
		case 0:
			*s = block{key: key, head: -1}
			t.used++
			return s
		}
		if i++; i == n {
			i = 0
		}
	}
}

func (t *blockTable) rehash(size int) {
	old := t.slots
	t.slots = make([]block, size)
	t.used = 0
	for _, b := range old {
		if b.key != 0 {
			*t.put(b.key) = b
		}
	}
}
