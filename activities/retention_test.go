package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func TestPurgePHI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	exports := map[string]Prepared{}
	for i, id := range []string{"old", "recent", "running"} {
		f.create(t, id, transfer.Demographics{MemberID: "M1", BirthDate: "1985-04-12"}, activeConsent)
		p, err := f.acts.PrepareExport(ctx, PrepareInput{TransferID: id, MemberID: "M1"})
		if err != nil {
			t.Fatal(err)
		}
		exports[id] = p
		st := transfer.StateComplete
		if id == "running" {
			st = transfer.StateSent
		}
		if _, err := f.st.ApplyChange(ctx, id, store.Change{State: st, Event: transfer.Event{
			At: t0.Add(time.Duration(i*20) * 24 * time.Hour), State: st, Actor: "workflow", Type: "state"}}); err != nil {
			t.Fatal(err)
		}
	}
	// 31 days after "old" ended, 11 after "recent"; "running" never ended.
	now := t0.Add(31 * 24 * time.Hour)
	f.maint.Now = func() time.Time { return now }
	res, err := f.maint.PurgePHI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := exports["old"]
	if res.Transfers != 1 || res.Artifacts != len(old.Export.Files) || !res.Cutoff.Equal(now.Add(-DefaultPHIRetention)) {
		t.Fatalf("purge %+v, want the %d files of one transfer", res, len(old.Export.Files))
	}
	for id, p := range exports {
		// The same member gives the same files: each transfer holds its own
		// copy, and only the old transfer's are purged.
		arts, err := f.st.ListArtifacts(ctx, id)
		if err != nil || len(arts) != len(p.Export.Files)+2 {
			t.Fatalf("%s: %d artifacts (%v), want every row kept", id, len(arts), err)
		}
		for _, a := range arts {
			phi := a.ContentType == contentTypeNDJSON
			if purged := a.WithdrawnAt != nil; purged != (phi && id == "old") {
				t.Errorf("%s: %s purged = %v", id, a.Name, purged)
			}
		}
		// The signed manifest stays, as evidence of what was sent.
		m, err := f.st.GetArtifact(ctx, p.Export.ManifestSHA256)
		if err != nil {
			t.Fatalf("%s: manifest: %v", id, err)
		}
		if sum := sha256.Sum256(m.Data); hex.EncodeToString(sum[:]) != p.Export.ManifestSHA256 {
			t.Errorf("%s: the manifest's digest does not match", id)
		}
		if _, err := f.st.GetArtifact(ctx, p.SignatureSHA256); err != nil {
			t.Errorf("%s: manifest signature: %v", id, err)
		}
	}
	// Again: nothing left to purge, no second event.
	if res, err := f.maint.PurgePHI(ctx); err != nil || res.Transfers != 0 {
		t.Fatalf("second purge %+v %v", res, err)
	}
	tl, _ := f.st.Timeline(ctx, "old")
	purges := 0
	for _, e := range tl {
		if e.Type == transfer.EventPHIPurged {
			purges++
			if e.Actor != "retention" || e.Detail["artifacts"] != float64(len(old.Export.Files)) {
				t.Errorf("purge event %+v", e)
			}
		}
	}
	if purges != 1 {
		t.Errorf("%d phi_purged events, want 1", purges)
	}
	jwks, _ := f.maint.Signer.(interface{ PublicJWKS() ([]byte, error) }).PublicJWKS()
	if rep, err := audit.Verify(ctx, f.st, jwks, 0); err != nil || !rep.OK() {
		t.Errorf("audit log after the purge: %+v %v", rep, err)
	}
}

func TestAuditCheckpointActivity(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.create(t, "t1", transfer.Demographics{MemberID: "M1"}, activeConsent)
	first, err := f.maint.AuditCheckpoint(ctx)
	if err != nil || !first.Signed || first.Size != 1 || first.KID != f.maint.Signer.KID() {
		t.Fatalf("first checkpoint %+v %v", first, err)
	}
	// The log did not grow: nothing new to sign.
	if again, err := f.maint.AuditCheckpoint(ctx); err != nil || again.Signed || again.Size != 1 {
		t.Fatalf("unchanged log: %+v %v", again, err)
	}
	f.create(t, "t2", transfer.Demographics{MemberID: "M1"}, activeConsent)
	grown, err := f.maint.AuditCheckpoint(ctx)
	if err != nil || !grown.Signed || grown.Size != 2 {
		t.Fatalf("grown log: %+v %v", grown, err)
	}
	cp, err := f.st.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := f.maint.Signer.(interface{ PublicJWKS() ([]byte, error) }).PublicJWKS()
	h, _, _, err := audit.OpenCheckpoint(cp.JWS, jwks)
	if err != nil || h.Size != 2 {
		t.Fatalf("stored checkpoint %+v %v", h, err)
	}
	if cps, _ := f.st.Checkpoints(ctx); len(cps) != 2 {
		t.Errorf("%d checkpoints, want 2", len(cps))
	}
}
