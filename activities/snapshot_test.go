package activities

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

func TestIndexSnapshot(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var ms []member.Record
	for i := range 1500 {
		ms = append(ms, benchMember("P", i))
	}
	if err := f.st.UpsertMembers(ctx, ms); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snap", "index.snap")
	first := &IndexMatcher{Store: f.st, Snapshot: path}
	if err := first.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no snapshot after a build from the store: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, want 0600 (it holds PHI)", fi.Mode().Perm())
	}
	v1, _ := f.st.MemberVersion(ctx)

	// Written after the snapshot: the next start reads the snapshot and
	// applies only these.
	late := benchMember("P", 5000)
	if err := f.st.UpsertMembers(ctx, []member.Record{late}); err != nil {
		t.Fatal(err)
	}
	second := &IndexMatcher{Store: f.st, Snapshot: path}
	if err := second.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if !second.snapshotted || second.snapVersion != v1 || second.model != first.model || second.model == 0 {
		t.Fatalf("second start: snapshotted %v at %d (want %d), model %d (first %d)", second.snapshotted, second.snapVersion, v1, second.model, first.model)
	}
	for i, rec := range append(ms[:50:50], late) {
		q := transfer.Demographics{Given: rec.Given, Family: rec.Family, BirthDate: rec.BirthDate, Sex: rec.Sex,
			Address: transfer.Address{Street: rec.Street, PostalCode: rec.PostalCode}}
		a, err1 := first.Resolve(ctx, q)
		b, err2 := second.Resolve(ctx, q)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if a.Outcome != b.Outcome || a.MemberID != b.MemberID || a.Score != b.Score {
			t.Fatalf("query %d: built %s %s %.3f, restored %s %s %.3f", i, a.Outcome, a.MemberID, a.Score, b.Outcome, b.MemberID, b.Score)
		}
		if b.Outcome != identity.OutcomeMatch || b.MemberID != rec.ID {
			t.Fatalf("query %d: %s %s, want %s", i, b.Outcome, b.MemberID, rec.ID)
		}
	}

	// Follow's end writes the index as it left it.
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { second.Follow(fctx, time.Hour); close(done) }()
	cancel()
	<-done
	if v2, _ := f.st.MemberVersion(ctx); second.snapVersion != v2 {
		t.Fatalf("after Follow ended the snapshot is of version %d, want %d", second.snapVersion, v2)
	}

	// A damaged snapshot is not used: the index is built from the store.
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	third := &IndexMatcher{Store: f.st, Snapshot: path}
	if err := third.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := third.Resolve(ctx, transfer.Demographics{Given: late.Given, Family: late.Family, BirthDate: late.BirthDate}); d.MemberID != late.ID {
		t.Fatalf("after a damaged snapshot: %s %s", d.Outcome, d.MemberID)
	}

	// Another store's snapshot is not used either.
	other := newFixture(t)
	if err := other.st.UpsertMembers(ctx, []member.Record{benchMember("Z", 1)}); err != nil {
		t.Fatal(err)
	}
	fourth := &IndexMatcher{Store: other.st, Snapshot: path}
	if err := fourth.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := other.st.CountMembers(ctx); fourth.ix.Len() != n {
		t.Fatalf("over another store the index has %d members, want that store's %d", fourth.ix.Len(), n)
	}
}
