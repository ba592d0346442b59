package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func testMatchGrants(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if gs, err := s.MatchGrants(ctx, "acme"); err != nil || len(gs) != 0 {
		t.Fatalf("MatchGrants of nobody = %v, %v", gs, err)
	}
	exp := base.Add(30 * 24 * time.Hour)
	in := []store.MatchGrant{
		{Requester: "acme", MemberID: "M2", ConsentID: "c1", ConsentScope: transfer.ScopeRegular, ConsentExpires: exp, GrantedAt: base},
		{Requester: "acme", MemberID: "M1", ConsentID: "c2", ConsentScope: transfer.ScopeSensitive, ConsentExpires: exp, GrantedAt: base.Add(time.Second)},
		{Requester: "other", MemberID: "M1", ConsentID: "c3", ConsentScope: transfer.ScopeSensitive, ConsentExpires: exp, GrantedAt: base},
		// A later match of M2 replaces its grant: narrower period, new consent.
		{Requester: "acme", MemberID: "M2", ConsentID: "c4", ConsentScope: transfer.ScopeSensitive, ConsentExpires: base.Add(time.Hour),
			GrantedAt: base.Add(time.Minute).In(time.FixedZone("EST", -5*3600)), TransferID: "t-match-4"},
	}
	var last int64
	for i, g := range in {
		out, err := s.AppendMatchGrant(ctx, g)
		if err != nil || out.Seq <= last {
			t.Fatalf("AppendMatchGrant #%d = %+v, %v", i, out, err)
		}
		last = out.Seq
	}
	gs, err := s.MatchGrants(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 {
		t.Fatalf("MatchGrants(acme) = %+v, want M1 and M2", gs)
	}
	if g := gs[0]; g.MemberID != "M1" || g.ConsentID != "c2" || g.ConsentScope != transfer.ScopeSensitive || g.Requester != "acme" ||
		!g.ConsentExpires.Equal(exp) || !g.GrantedAt.Equal(base.Add(time.Second)) || g.GrantedAt.Location() != time.UTC {
		t.Errorf("grant of M1 = %+v", g)
	}
	if gs[0].TransferID != "" {
		t.Errorf("grant of M1 names transfer %q, recorded with none", gs[0].TransferID)
	}
	if g := gs[1]; g.MemberID != "M2" || g.ConsentID != "c4" || g.TransferID != "t-match-4" || !g.ConsentExpires.Equal(base.Add(time.Hour)) ||
		!g.GrantedAt.Equal(base.Add(time.Minute)) || g.GrantedAt.Location() != time.UTC {
		t.Errorf("grant of M2 = %+v, want the latest (c4)", g)
	}
	if !gs[1].Valid(base.Add(time.Hour)) || gs[1].Valid(base.Add(time.Hour+time.Microsecond)) {
		t.Errorf("Valid must hold up to the consent's last instant and not after")
	}
	if gs, err := s.MatchGrants(ctx, "other"); err != nil || len(gs) != 1 || gs[0].ConsentID != "c3" {
		t.Errorf("MatchGrants(other) = %+v, %v", gs, err)
	}

	for _, bad := range []store.MatchGrant{
		{MemberID: "M1", ConsentScope: transfer.ScopeRegular, ConsentExpires: exp},
		{Requester: "acme", ConsentScope: transfer.ScopeRegular, ConsentExpires: exp},
		{Requester: "acme", MemberID: "M1", ConsentScope: "everything", ConsentExpires: exp},
		{Requester: "acme", MemberID: "M1", ConsentScope: transfer.ScopeRegular},
	} {
		if _, err := s.AppendMatchGrant(ctx, bad); err == nil {
			t.Errorf("AppendMatchGrant(%+v) succeeded", bad)
		}
	}
}

// testMatchFailures: failures are counted per requester, newest first,
// strictly after the time asked, at most the limit; appending forgets the
// requester's old ones and no one else's.
func testMatchFailures(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if fs, err := s.MatchFailures(ctx, "acme", base.Add(-time.Hour), 10); err != nil || len(fs) != 0 {
		t.Fatalf("MatchFailures of nobody = %v, %v", fs, err)
	}
	for i, at := range []time.Time{base, base.Add(time.Minute), base.Add(2 * time.Minute), base.Add(2 * time.Minute)} {
		if err := s.AppendMatchFailure(ctx, "acme", at, base.Add(-time.Hour)); err != nil {
			t.Fatalf("AppendMatchFailure #%d: %v", i+1, err)
		}
	}
	if err := s.AppendMatchFailure(ctx, "other", base.Add(-30*time.Minute), base.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	at := func(fs []time.Time) []time.Duration {
		var out []time.Duration
		for _, f := range fs {
			if f.Location() != time.UTC {
				t.Errorf("time %v is not UTC", f)
			}
			out = append(out, f.Sub(base))
		}
		return out
	}
	cases := []struct {
		name  string
		after time.Time
		limit int
		want  []time.Duration
	}{
		{"all", base.Add(-time.Second), 10, []time.Duration{2 * time.Minute, 2 * time.Minute, time.Minute, 0}},
		{"limit keeps the newest", base.Add(-time.Second), 3, []time.Duration{2 * time.Minute, 2 * time.Minute, time.Minute}},
		{"strictly after", base, 10, []time.Duration{2 * time.Minute, 2 * time.Minute, time.Minute}},
		{"none after", base.Add(2 * time.Minute), 10, nil},
		{"limit 0", base.Add(-time.Second), 0, nil},
	}
	for _, tc := range cases {
		got, err := s.MatchFailures(ctx, "acme", tc.after, tc.limit)
		if err != nil || !reflect.DeepEqual(at(got), tc.want) {
			t.Errorf("%s: MatchFailures = %v, %v; want %v", tc.name, at(got), err, tc.want)
		}
	}
	// A new failure forgets acme's before the time given, not other's.
	if err := s.AppendMatchFailure(ctx, "acme", base.Add(20*time.Minute), base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MatchFailures(ctx, "acme", base.Add(-time.Hour), 10); !reflect.DeepEqual(at(got),
		[]time.Duration{20 * time.Minute, 2 * time.Minute, 2 * time.Minute, time.Minute}) {
		t.Errorf("after forgetting: %v", at(got))
	}
	if got, _ := s.MatchFailures(ctx, "other", base.Add(-time.Hour), 10); len(got) != 1 {
		t.Errorf("other's failures %v: forgotten by acme's", got)
	}
	if err := s.AppendMatchFailure(ctx, "", base, base); err == nil {
		t.Error("a failure without requester was recorded")
	}
}
