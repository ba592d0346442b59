package storetest

import (
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
