package identity

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity/internal/synth"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// TestRemoveWithdrawsTheKeysAddAdded: the blocking keys a row is withdrawn
// from, computed back from its stored form, are the keys it was filed
// under from the record it came from; otherwise a removed member would
// still count in its blocks.
func TestRemoveWithdrawsTheKeysAddAdded(t *testing.T) {
	members := synth.GenerateMembers(3000, 0.05, 7).Index()
	ix := NewIndex(members, DefaultConfig())
	for i, m := range members {
		p := newProbe(m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone)
		s := ix.side(ix.rowOf(m.ID))
		q := probeOf(&s)
		var a, b [numKeys]uint64
		p.blockKeys(&a)
		q.blockKeys(&b)
		if a != b {
			t.Fatalf("member %d: keys from the record %x, from the index %x", i, a, b)
		}
	}
}

func TestUpsertAndRemove(t *testing.T) {
	ix := NewIndex(synth.GenerateMembers(3000, 0.05, 11).Index(), DefaultConfig())
	before := ix.Len()
	garcia := member.Record{ID: "G1", Given: "Maria", Family: "Garcia", BirthDate: "1971-03-14", Sex: "F",
		Street: "40 Birch Lane", City: "Peoria", State: "IL", PostalCode: "61602", Phone: "309-555-0144"}
	q := transfer.Demographics{Given: "Maria", Family: "Garcia", BirthDate: "1971-03-14", Sex: "F",
		Address: transfer.Address{Street: "40 Birch Lane", City: "Peoria", State: "IL", PostalCode: "61602"}, Phone: "309-555-0144"}

	if d := ix.Match(q); d.Outcome == OutcomeMatch {
		t.Fatalf("before the member is added: %+v", d)
	}
	if changed, err := ix.Upsert(garcia); err != nil || !changed {
		t.Fatalf("Upsert new: %v %v", changed, err)
	}
	if d := ix.Match(q); d.Outcome != OutcomeMatch || d.MemberID != "G1" {
		t.Fatalf("after Upsert: %+v", d)
	}
	if ix.Len() != before+1 {
		t.Fatalf("Len %d, want %d", ix.Len(), before+1)
	}
	// The same record again changes nothing.
	if changed, err := ix.Upsert(garcia); err != nil || changed {
		t.Fatalf("Upsert same: %v %v", changed, err)
	}

	// A new family name (and address): found by the new, not by the old.
	moved := garcia
	moved.Family, moved.Street, moved.City, moved.PostalCode, moved.Phone = "Okonkwo", "9 Lake Drive", "Duluth", "55802", "218-555-0199"
	if changed, err := ix.Upsert(moved); err != nil || !changed {
		t.Fatalf("Upsert changed: %v %v", changed, err)
	}
	if ix.Len() != before+1 {
		t.Fatalf("Len after update %d, want %d", ix.Len(), before+1)
	}
	nq := transfer.Demographics{Given: "Maria", Family: "Okonkwo", BirthDate: "1971-03-14", Sex: "F",
		Address: transfer.Address{Street: "9 Lake Drive", City: "Duluth", State: "MN", PostalCode: "55802"}}
	if d := ix.Match(nq); d.Outcome != OutcomeMatch || d.MemberID != "G1" {
		t.Fatalf("new name: %+v", d)
	}
	// Given name and birth date still agree: at most a review, never a match.
	if d := ix.Match(q); d.Outcome == OutcomeMatch {
		t.Fatalf("old name and address still matched: %+v", d)
	}
	for _, key := range blockKeysOf(garcia) {
		for _, row := range ix.walk(keyPhone, key, nil) {
			if ix.id(row) == "G1" {
				t.Fatalf("the old phone block still holds G1")
			}
		}
	}

	if !ix.Remove("G1") || ix.Remove("G1") {
		t.Fatal("Remove: want true then false")
	}
	if d := ix.Match(nq); d.MemberID == "G1" || slices.Contains(d.Candidates, "G1") {
		t.Fatalf("removed member found: %+v", d)
	}
	if ix.Len() != before {
		t.Fatalf("Len after remove %d, want %d", ix.Len(), before)
	}
	// Removed rows leave the model's estimate alone.
	_ = EstimateModel(ix, 0)
}

func blockKeysOf(m member.Record) []uint64 {
	p := newProbe(m.Given, m.Family, m.BirthDate, m.Sex, m.Street, m.City, m.State, m.PostalCode, m.Phone)
	var k [numKeys]uint64
	p.blockKeys(&k)
	return []uint64{k[keyPhone]}
}

// TestParamsRoundTrip: a model stored as data and loaded back decides as
// the original did.
func TestParamsRoundTrip(t *testing.T) {
	pop := synth.GenerateMembers(5000, 0.05, 3)
	ix := NewIndex(pop.Index(), DefaultConfig())
	p := ix.Model().Params(MethodEstimated, ix.Len(), time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back ModelParams
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	other := NewIndex(pop.Index(), DefaultConfig())
	if err := other.SetParams(back); err != nil {
		t.Fatal(err)
	}
	for _, q := range pop.Queries(500, 5) {
		a, b := ix.Match(q.Demographics), other.Match(q.Demographics)
		if a.Outcome != b.Outcome || a.MemberID != b.MemberID || a.Score != b.Score {
			t.Fatalf("query %s: %+v vs %+v", q.ID, a, b)
		}
	}
	for name, bad := range map[string]func(*ModelParams){
		"unknown field": func(p *ModelParams) { p.M["shoe_size"] = map[string]float64{"exact": 0.5} },
		"unknown level": func(p *ModelParams) { p.U["given"]["telepathic"] = 0.5 },
		"not a prob":    func(p *ModelParams) { p.M["given"]["exact"] = 1.5 },
		"no members":    func(p *ModelParams) { p.N = 0 },
	} {
		var c ModelParams
		_ = json.Unmarshal(raw, &c)
		bad(&c)
		if _, err := c.Model(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestIncrementalKinMatchesFullScan: members added one by one flag
// themselves and their relatives as kin exactly as a scan of the whole
// index finds them.
func TestIncrementalKinMatchesFullScan(t *testing.T) {
	members := synth.GenerateMembers(6000, 0.05, 13).Index()
	half := len(members) / 2
	ix := NewIndex(members[:half], DefaultConfig())
	for _, m := range members[half:] {
		if _, err := ix.Upsert(m); err != nil {
			t.Fatal(err)
		}
	}
	_, kin := relatives(ix)
	flagged, late := 0, 0
	for r := int32(0); r < ix.nrows; r++ {
		if ix.livesWithKin(r) != kin[r] {
			t.Fatalf("row %d: flagged %v, full scan %v", r, ix.livesWithKin(r), kin[r])
		}
		if kin[r] {
			flagged++
			if int(r) >= half {
				late++
			}
		}
	}
	if late == 0 {
		t.Fatalf("no member added by Upsert lives with kin (%d flagged): the test proves nothing", flagged)
	}
}

// TestAddBatchEqualsAdd: an index loaded in batches (with empty and
// repeated ids among them) decides as one built a member at a time.
func TestAddBatchEqualsAdd(t *testing.T) {
	pop := synth.GenerateMembers(5000, 0.05, 17)
	members := pop.Index()
	members = append(members, member.Record{ID: " ", Given: "No", Family: "Id"}, members[10])
	one := newIndex(DefaultConfig(), 0)
	for _, m := range members {
		_ = one.Add(m) // the empty and the repeated id are refused
	}
	one.Reestimate()
	batch := newIndex(DefaultConfig(), 0)
	for i := 0; i < len(members); i += 1000 {
		if _, err := batch.AddBatch(members[i:min(len(members), i+1000)]); err != nil {
			t.Fatal(err)
		}
	}
	batch.Reestimate()
	if one.Len() != len(members)-2 || batch.Len() != one.Len() {
		t.Fatalf("Len: one by one %d, batched %d, want %d", one.Len(), batch.Len(), len(members)-2)
	}
	for i, q := range pop.Queries(2000, 9) {
		if a, b := one.Match(q.Demographics), batch.Match(q.Demographics); !reflect.DeepEqual(a, b) {
			t.Fatalf("query %d: one by one %+v, batched %+v", i, a, b)
		}
	}
}
