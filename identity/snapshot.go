package identity

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/p2p-payer/p2p/identity/normalize"
)

// A snapshot is an index as bytes, so that a process restarts by reading
// it instead of normalising and filing every member again. Layout, all
// integers little-endian:
//
//	magic        8 bytes "p2pindex"
//	format       uint32 (snapshotFormat)
//	header       snapshotHeader, fixed size
//	header CRC   uint32, CRC-32C of format and header
//	body         model JSON, random pairs, strings, member ids, rows, blocks
//	body CRC     uint32, CRC-32C of the body
//
// The header's CRC is checked before anything is allocated from its counts;
// the body's, once it is read, before the index is returned. Only live rows
// are written (renumbered in order, their chains relinked past dead rows),
// and only blocks with live rows: a restored index has no dead rows.

const (
	snapshotMagic  = "p2pindex"
	snapshotFormat = 1
)

// snapshotHeader holds the caller's version and the size of every section.
type snapshotHeader struct {
	Version   int64
	Rows      uint32
	Strings   uint32
	StrBytes  uint32
	IDBytes   uint32
	Random    uint32
	ModelJSON uint32
	Blocks    [numKeys]uint32
}

// snapshotModel is the model as the snapshot keeps it: its parameters
// (exact: JSON writes a float64 so that it reads back bit for bit).
type snapshotModel struct {
	Params ModelParams `json:"params"`
}

// rowBytes is a row's size in a snapshot: its record and its next rows.
const rowBytes = 36 + 4*numKeys

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrSnapshotCorrupt is returned (wrapped) by ReadSnapshot for a snapshot
// that is torn, damaged or not a snapshot.
var ErrSnapshotCorrupt = errors.New("identity: index snapshot is corrupt")

// WriteSnapshot writes the index's live members, its model and kin flags
// and version (the member-store version the index reflects) to w. An index
// read back by ReadSnapshot decides exactly as this one. Matches go on
// while it writes; changes wait. The caller owns the file: its path,
// permissions and any encryption (the snapshot holds members' names, birth
// dates, addresses and phone numbers in the clear).
func (ix *Index) WriteSnapshot(w io.Writer, version int64) error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	model, err := json.Marshal(snapshotModel{Params: ix.model.Params("", 0, time.Time{})})
	if err != nil {
		return fmt.Errorf("identity: snapshot model: %w", err)
	}
	// Live rows, renumbered in order.
	renum := make([]int32, ix.nrows)
	var rows uint32
	var idBytes uint64
	for r := int32(0); r < ix.nrows; r++ {
		renum[r] = -1
		if !ix.dead(r) {
			renum[r] = int32(rows)
			rows++
			idBytes += uint64(len(ix.id(r)))
		}
	}
	h := snapshotHeader{Version: version, Rows: rows, Strings: uint32(ix.strs.len()), StrBytes: uint32(len(ix.strs.arena)),
		IDBytes: uint32(idBytes), Random: uint32(len(ix.model.random)), ModelJSON: uint32(len(model))}
	for k := range numKeys {
		for i := range ix.blocks[k].slots {
			if b := &ix.blocks[k].slots[i]; b.key != 0 && b.n > 0 {
				h.Blocks[k]++
			}
		}
	}

	sw := &snapWriter{w: bufio.NewWriterSize(w, 1<<20)}
	sw.raw([]byte(snapshotMagic))
	sw.crc = 0
	sw.u32(snapshotFormat)
	sw.header(&h)
	sw.raw(binary.LittleEndian.AppendUint32(nil, sw.crc))
	sw.crc = 0

	sw.bytes(model)
	for _, v := range ix.model.random {
		sw.u32(v)
	}
	for _, e := range ix.strs.ends {
		sw.u32(e)
	}
	sw.bytes(ix.strs.arena)
	var end uint32
	for r := int32(0); r < ix.nrows; r++ {
		if renum[r] >= 0 {
			end += uint32(len(ix.id(r)))
			sw.u32(end)
		}
	}
	for r := int32(0); r < ix.nrows; r++ {
		if renum[r] >= 0 {
			sw.bytes(unsafeBytes(ix.id(r)))
		}
	}
	// liveFrom is the first live row of a chain from row on, renumbered.
	liveFrom := func(k int, row int32) int32 {
		for row >= 0 && renum[row] < 0 {
			row = ix.next(k, row)
		}
		if row < 0 {
			return -1
		}
		return renum[row]
	}
	for r := int32(0); r < ix.nrows; r++ {
		if renum[r] < 0 {
			continue
		}
		rc := ix.rec(r)
		for _, v := range [...]uint32{rc.given, rc.family, rc.street, rc.city, rc.state, rc.postal, uint32(rc.dob), rc.phoneLo} {
			sw.u32(v)
		}
		sw.bytes([]byte{rc.phoneHi, rc.sex, rc.suffix, rc.flags})
		for k := range numKeys {
			sw.u32(uint32(liveFrom(k, ix.next(k, r))))
		}
	}
	for k := range numKeys {
		for i := range ix.blocks[k].slots {
			if b := &ix.blocks[k].slots[i]; b.key != 0 && b.n > 0 {
				sw.u64(b.key)
				sw.u32(uint32(liveFrom(k, b.head)))
				sw.u32(uint32(b.n))
			}
		}
	}
	sw.raw(binary.LittleEndian.AppendUint32(nil, sw.crc))
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return fmt.Errorf("identity: writing snapshot: %w", sw.err)
	}
	return nil
}

// snapWriter writes through a buffer, keeping a running CRC-32C; the first
// error sticks.
type snapWriter struct {
	w   *bufio.Writer
	crc uint32
	err error
	b   [8]byte
}

func (s *snapWriter) raw(p []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
}

func (s *snapWriter) bytes(p []byte) {
	s.crc = crc32.Update(s.crc, castagnoli, p)
	s.raw(p)
}

func (s *snapWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(s.b[:4], v)
	s.bytes(s.b[:4])
}

func (s *snapWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(s.b[:], v)
	s.bytes(s.b[:])
}

func (s *snapWriter) header(h *snapshotHeader) {
	s.u64(uint64(h.Version))
	for _, v := range []uint32{h.Rows, h.Strings, h.StrBytes, h.IDBytes, h.Random, h.ModelJSON} {
		s.u32(v)
	}
	for _, v := range h.Blocks {
		s.u32(v)
	}
}

// ReadSnapshot reads an index written by WriteSnapshot, to decide with cfg,
// and the version it was written with. A snapshot that is torn, damaged or
// of another format is refused with an error (wrapping ErrSnapshotCorrupt
// for damage); it never yields a partial index.
func ReadSnapshot(r io.Reader, cfg Config) (*Index, int64, error) {
	sr := &snapReader{r: bufio.NewReaderSize(r, 256<<10)}
	magic := sr.raw(len(snapshotMagic))
	if sr.err != nil || string(magic) != snapshotMagic {
		return nil, 0, errors.New("identity: not an index snapshot")
	}
	sr.crc = 0
	if f := sr.u32(); sr.err == nil && f != snapshotFormat {
		return nil, 0, fmt.Errorf("identity: index snapshot format %d; this build reads format %d", f, snapshotFormat)
	}
	var h snapshotHeader
	h.Version = int64(sr.u64())
	for _, p := range []*uint32{&h.Rows, &h.Strings, &h.StrBytes, &h.IDBytes, &h.Random, &h.ModelJSON} {
		*p = sr.u32()
	}
	for k := range h.Blocks {
		h.Blocks[k] = sr.u32()
	}
	sum := sr.crc
	if got := binary.LittleEndian.Uint32(sr.raw(4)); sr.err != nil || got != sum {
		return nil, 0, fmt.Errorf("%w: header checksum mismatch", ErrSnapshotCorrupt)
	}
	if h.Rows >= math.MaxInt32 || h.Strings == 0 || h.Random > 1<<24 || h.ModelJSON > 1<<24 {
		return nil, 0, fmt.Errorf("%w: header out of range", ErrSnapshotCorrupt)
	}
	sr.crc = 0

	ix, model, blocks, err := sr.body(&h, cfg)
	if err != nil {
		return nil, 0, err
	}
	sum = sr.crc
	if got := binary.LittleEndian.Uint32(sr.raw(4)); sr.err != nil || got != sum {
		return nil, 0, fmt.Errorf("%w: content checksum mismatch (a damaged or truncated file)", ErrSnapshotCorrupt)
	}
	ix.restore(model, blocks)
	return ix, h.Version, nil
}

// snapReader reads with a running CRC-32C; the first error sticks, and a
// short read is reported as corruption.
type snapReader struct {
	r   *bufio.Reader
	crc uint32
	err error
	buf []byte
}

// raw reads n bytes without adding them to the CRC. The slice is good
// until the next read.
func (s *snapReader) raw(n int) []byte {
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	if s.err != nil {
		clear(b)
		return b
	}
	if _, err := io.ReadFull(s.r, b); err != nil {
		s.err = fmt.Errorf("%w: truncated (%v)", ErrSnapshotCorrupt, err)
		clear(b)
	}
	return b
}

func (s *snapReader) bytes(n int) []byte {
	b := s.raw(n)
	s.crc = crc32.Update(s.crc, castagnoli, b)
	return b
}

func (s *snapReader) u32() uint32 { return binary.LittleEndian.Uint32(s.bytes(4)) }
func (s *snapReader) u64() uint64 { return binary.LittleEndian.Uint64(s.bytes(8)) }

// readChunk is how much a section is read at a time: memory is allocated
// as the data arrives, never up front from a count, so a torn file fails
// at its end instead of allocating what the header promised.
const readChunk = 1 << 20

// u32s reads n uint32s.
func (s *snapReader) u32s(n uint32) []uint32 {
	out := make([]uint32, 0, min(n, readChunk))
	for left := int(n); left > 0 && s.err == nil; {
		c := min(left, readChunk/4)
		b := s.bytes(4 * c)
		for i := 0; i < c; i++ {
			out = append(out, binary.LittleEndian.Uint32(b[4*i:]))
		}
		left -= c
	}
	return out
}

// arena reads n bytes.
func (s *snapReader) arena(n uint32) []byte {
	out := make([]byte, 0, min(n, readChunk))
	for left := int(n); left > 0 && s.err == nil; {
		c := min(left, readChunk)
		out = append(out, s.bytes(c)...)
		left -= c
	}
	return out
}

// body reads the sections after the header into an index whose hash
// tables and counts are not built yet (see restore), checking every number
// that indexes something.
func (s *snapReader) body(h *snapshotHeader, cfg Config) (*Index, *Model, *[numKeys][]block, error) {
	corrupt := func(what string) error { return fmt.Errorf("%w: %s", ErrSnapshotCorrupt, what) }
	var sm snapshotModel
	if err := json.Unmarshal(s.bytes(int(h.ModelJSON)), &sm); s.err == nil && err != nil {
		return nil, nil, nil, corrupt("model: " + err.Error())
	}
	random := s.u32s(h.Random)
	ix := newIndex(cfg, 0)
	ix.strs.ends = s.u32s(h.Strings)
	ix.strs.arena = s.arena(h.StrBytes)
	ix.ids.ends = s.u32s(h.Rows)
	ix.ids.arena = s.arena(h.IDBytes)
	if s.err != nil {
		return nil, nil, nil, s.err
	}
	if !ascending(ix.strs.ends, len(ix.strs.arena)) || ix.strs.ends[0] != 0 || !ascending(ix.ids.ends, len(ix.ids.arena)) {
		return nil, nil, nil, corrupt("string offsets out of order")
	}
	nstr := uint32(len(ix.strs.ends))
	for row := int32(0); row < int32(h.Rows) && s.err == nil; row++ {
		b := s.bytes(rowBytes)
		u := func(i int) uint32 { return binary.LittleEndian.Uint32(b[4*i:]) }
		r := rec{given: u(0), family: u(1), street: u(2), city: u(3), state: u(4), postal: u(5), dob: normalize.Date(int32(u(6))), phoneLo: u(7),
			phoneHi: b[32], sex: b[33], suffix: b[34], flags: b[35]}
		if max(r.given, r.family, r.street, r.city, r.state, r.postal) >= nstr || r.flags&^flagKin != 0 {
			return nil, nil, nil, corrupt(fmt.Sprintf("row %d out of range", row))
		}
		var next [numKeys]int32
		for k := range next {
			next[k] = int32(u(9 + k))
			if next[k] < -1 || next[k] >= row {
				return nil, nil, nil, corrupt(fmt.Sprintf("row %d: chain out of order", row))
			}
		}
		ix.appendRow(r, next)
	}
	var blocks [numKeys][]block
	for k := range numKeys {
		for i := uint32(0); i < h.Blocks[k] && s.err == nil; i++ {
			b := s.bytes(16)
			blk := block{key: binary.LittleEndian.Uint64(b), head: int32(binary.LittleEndian.Uint32(b[8:])), n: int32(binary.LittleEndian.Uint32(b[12:]))}
			if blk.key == 0 || blk.head < 0 || blk.head >= int32(h.Rows) || blk.n < 1 || blk.n > int32(h.Rows) {
				return nil, nil, nil, corrupt("block out of range")
			}
			blocks[k] = append(blocks[k], blk)
		}
	}
	if s.err != nil {
		return nil, nil, nil, s.err
	}
	m, err := sm.Params.Model()
	if err != nil {
		return nil, nil, nil, corrupt(err.Error())
	}
	for _, pat := range random {
		for _, l := range unpack(pat) {
			if l >= numLevels {
				return nil, nil, nil, corrupt("random pairs out of range")
			}
		}
		if pat>>(4*numFields) != 0 {
			return nil, nil, nil, corrupt("random pairs out of range")
		}
	}
	m.random = random
	return ix, m, &blocks, nil
}

// unsafeBytes is s's bytes, shared: only to be read.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func ascending(ends []uint32, size int) bool {
	prev := uint32(0)
	for _, e := range ends {
		if e < prev {
			return false
		}
		prev = e
	}
	return len(ends) == 0 || int(prev) == size
}

// appendRow appends a row read back from a snapshot.
func (ix *Index) appendRow(r rec, next [numKeys]int32) {
	ix.newRow(r, next)
}

// restore builds what a snapshot leaves out, its hash tables and counts,
// each table on a core of its own, and installs model. The checksum vouches
// for the content; body's range checks keep even a forged snapshot from
// reading outside the index.
func (ix *Index) restore(model *Model, blocks *[numKeys][]block) {
	ix.live = int(ix.nrows)
	ix.givenN = make([]uint32, ix.strs.len())
	ix.familyN = make([]uint32, ix.strs.len())
	ix.placeN = make([]uint32, ix.strs.len())
	tasks := []func(){
		func() {
			ix.strIdx.reserve(&ix.strs, ix.strs.len())
			for i := 1; i < ix.strs.len(); i++ {
				ix.strIdx.insert(&ix.strs, uint32(i))
			}
		},
		func() {
			ix.byID.reserve(&ix.ids, int(ix.nrows))
			for r := uint32(0); r < uint32(ix.nrows); r++ {
				ix.byID.insert(&ix.ids, r)
			}
		},
		func() {
			for r := int32(0); r < ix.nrows; r++ {
				rc := ix.rec(r)
				ix.givenN[rc.given]++
				ix.familyN[rc.family]++
				ix.placeN[rc.place()]++
			}
		},
	}
	for k := range numKeys {
		tasks = append(tasks, func() {
			t := &ix.blocks[k]
			t.slots = make([]block, len(blocks[k])*4/3+64)
			for _, b := range blocks[k] {
				*t.put(b.key) = b
			}
			blocks[k] = nil
		})
	}
	var wg sync.WaitGroup
	work := make(chan func())
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f()
			}
		}()
	}
	for _, f := range tasks {
		work <- f
	}
	close(work)
	wg.Wait()
	ix.model = model.cache()
}
