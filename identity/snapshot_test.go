package identity

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity/internal/synth"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// snapshotFixture is an index with households, trained, with members
// replaced and removed (dead rows), and queries for it.
func snapshotFixture(t testing.TB) (*Index, []synth.Query) {
	t.Helper()
	pop := synth.GenerateMembers(4000, 0.05, 21)
	members := pop.Index()
	ix := NewIndex(members, DefaultConfig())
	qs := pop.Queries(3000, 4)
	ds := make([]transfer.Demographics, len(qs))
	for i, q := range qs {
		ds[i] = q.Demographics
	}
	ix.SetModel(ix.Train(ds, TrainOptions{}))
	for i := 0; i < 200; i++ {
		m := members[i*7]
		switch i % 3 {
		case 0:
			m.Family += "son" // a new family name: the old row dies
			m.Street = "1 Changed Road"
			if _, err := ix.Upsert(m); err != nil {
				t.Fatal(err)
			}
		case 1:
			ix.Remove(m.ID)
		default:
			m.ID = "NEW" + m.ID // a new member in an existing household
			m.Given = "Zebedee"
			m.BirthDate = "2001-02-03"
			if err := ix.Add(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ix, qs
}

// TestSnapshotRoundTrip: an index read back from its snapshot holds the
// same members and decides every query exactly as the one written, before
// and after the same change is applied to both.
func TestSnapshotRoundTrip(t *testing.T) {
	ix, qs := snapshotFixture(t)
	var buf bytes.Buffer
	if err := ix.WriteSnapshot(&buf, 42); err != nil {
		t.Fatal(err)
	}
	back, version, err := ReadSnapshot(bytes.NewReader(buf.Bytes()), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if version != 42 || back.Len() != ix.Len() {
		t.Fatalf("version %d, %d members; want 42, %d", version, back.Len(), ix.Len())
	}
	if back.nrows != int32(ix.Len()) {
		t.Errorf("restored index has %d rows for %d members: dead rows were written", back.nrows, ix.Len())
	}
	kin := 0
	for r := int32(0); r < back.nrows; r++ {
		if back.livesWithKin(r) {
			kin++
		}
	}
	if kin == 0 {
		t.Error("no member of the restored index lives with kin: the fixture should have households")
	}
	same := func(stage string) {
		t.Helper()
		for i, q := range qs {
			a, b := ix.Match(q.Demographics), back.Match(q.Demographics)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: query %d (%s): written %+v, restored %+v", stage, i, q.Kind, a, b)
			}
		}
	}
	same("restored")
	if !reflect.DeepEqual(ix.Model().Params("", 0, time.Time{}), back.Model().Params("", 0, time.Time{})) {
		t.Error("model parameters differ")
	}
	// The same changes to both: still the same decisions.
	for _, q := range qs[:50] {
		if q.Truth == "" {
			continue
		}
		m := member.Record{ID: q.Truth, Given: q.Demographics.Given, Family: q.Demographics.Family + "-Moved", BirthDate: q.Demographics.BirthDate,
			Street: "9 Elsewhere St", City: "Portland", State: "OR", PostalCode: "97201"}
		c1, err1 := ix.Upsert(m)
		c2, err2 := back.Upsert(m)
		if c1 != c2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("Upsert %s: %v %v vs %v %v", m.ID, c1, err1, c2, err2)
		}
	}
	same("after upserts")
	// A second generation: a snapshot of the restored index reads back too.
	buf.Reset()
	if err := back.WriteSnapshot(&buf, 43); err != nil {
		t.Fatal(err)
	}
	again, version, err := ReadSnapshot(&buf, DefaultConfig())
	if err != nil || version != 43 || again.Len() != back.Len() {
		t.Fatalf("second generation: %v, version %d, %d members", err, version, again.Len())
	}
}

// TestSnapshotRefusesDamage: every single damaged byte and every
// truncation is refused with an error, never a panic or an index.
func TestSnapshotRefusesDamage(t *testing.T) {
	ix := NewIndex(synth.GenerateMembers(300, 0.05, 5).Index(), DefaultConfig())
	var buf bytes.Buffer
	if err := ix.WriteSnapshot(&buf, 7); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	step := max(1, len(good)/3000)
	for i := 0; i < len(good); i += step {
		bad := bytes.Clone(good)
		bad[i] ^= 0x5a
		if back, _, err := ReadSnapshot(bytes.NewReader(bad), DefaultConfig()); err == nil || back != nil {
			t.Fatalf("byte %d of %d damaged: accepted", i, len(good))
		}
	}
	for _, n := range []int{0, 4, 8, 12, 40, len(good) / 2, len(good) - 5, len(good) - 1} {
		_, _, err := ReadSnapshot(bytes.NewReader(good[:n]), DefaultConfig())
		if err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(good))
		}
	}
	_, _, err := ReadSnapshot(bytes.NewReader(good[:len(good)-1]), DefaultConfig())
	if !errors.Is(err, ErrSnapshotCorrupt) {
		t.Errorf("truncated: %v, want ErrSnapshotCorrupt", err)
	}
}

// TestSnapshotRefusesForgery: content that passes the checksum (re-signed
// after the change) but points outside the index is refused by the range
// checks.
func TestSnapshotRefusesForgery(t *testing.T) {
	ix := NewIndex(synth.GenerateMembers(200, 0.05, 9).Index(), DefaultConfig())
	var buf bytes.Buffer
	if err := ix.WriteSnapshot(&buf, 1); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	// The rows end where the blocks (16 bytes each) begin.
	var blocks int
	hdr := good[len(snapshotMagic)+4:]
	for k := range numKeys {
		blocks += int(binary.LittleEndian.Uint32(hdr[32+4*k:]))
	}
	rows := int(binary.LittleEndian.Uint32(hdr[8:]))
	rowsEnd := len(good) - 4 - 16*blocks
	lastRow := rowsEnd - rowBytes
	bodyStart := len(snapshotMagic) + 4 + 32 + 4*numKeys + 4
	resign := func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[bodyStart:len(b)-4], castagnoli))
		return b
	}
	if _, _, err := ReadSnapshot(bytes.NewReader(resign(bytes.Clone(good))), DefaultConfig()); err != nil {
		t.Fatalf("re-signed unchanged: %v", err)
	}
	for name, forge := range map[string]func(b []byte){
		"string id past the table": func(b []byte) { binary.LittleEndian.PutUint32(b[lastRow:], 1<<30) },
		"chain to a newer row":     func(b []byte) { binary.LittleEndian.PutUint32(b[lastRow+36:], uint32(rows-1)) },
		"unknown row flag":         func(b []byte) { b[lastRow+35] = 0x80 },
		"block head past the rows": func(b []byte) { binary.LittleEndian.PutUint32(b[rowsEnd+8:], uint32(rows)) },
		"random pair level":        func(b []byte) { forgeRandom(b, bodyStart) },
	} {
		bad := bytes.Clone(good)
		forge(bad)
		if _, _, err := ReadSnapshot(bytes.NewReader(resign(bad)), DefaultConfig()); !errors.Is(err, ErrSnapshotCorrupt) {
			t.Errorf("%s: %v, want ErrSnapshotCorrupt", name, err)
		}
	}
}

// forgeRandom sets the first random pair's levels to 15.
func forgeRandom(b []byte, bodyStart int) {
	hdr := b[len(snapshotMagic)+4:]
	model := int(binary.LittleEndian.Uint32(hdr[28:]))
	binary.LittleEndian.PutUint32(b[bodyStart+model:], 0xffffffff)
}

// FuzzReadSnapshot: no input makes ReadSnapshot panic.
func FuzzReadSnapshot(f *testing.F) {
	ix := NewIndex(synth.GenerateMembers(50, 0.05, 3).Index(), DefaultConfig())
	var buf bytes.Buffer
	if err := ix.WriteSnapshot(&buf, 1); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, _, err := ReadSnapshot(bytes.NewReader(b), DefaultConfig())
		if err == nil {
			ix.Match(synth.GenerateMembers(1, 0, 1).Queries(1, 1)[0].Demographics)
		}
	})
}
