package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

const (
	ctNDJSON   = "application/fhir+ndjson"
	ctManifest = "application/json"
	ctJWS      = "application/jose"
)

// testRetentionPurge: the PHI payloads (FHIR NDJSON) of transfers that
// ended before the cutoff are purged; their rows, digests, manifests,
// signatures and the audit log are kept; nothing else is touched.
func testRetentionPurge(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	old, recent := base.Add(-40*24*time.Hour), base.Add(-24*time.Hour)
	cases := []struct {
		id    string
		state transfer.State
		at    time.Time
		files int
	}{
		{"done", transfer.StateComplete, old, 2},
		{"failed", transfer.StateFailed, old.Add(time.Hour), 1},
		{"acked", transfer.StateAcknowledged, old.Add(2 * time.Hour), 1},
		{"recent", transfer.StateComplete, recent, 1},     // not yet expired
		{"running", transfer.StateSent, old, 1},           // not ended
		{"manifest-only", transfer.StateComplete, old, 0}, // nothing to purge
		{"withdrawn", transfer.StateFailed, old, 1},       // purged already
	}
	arts := map[string][]store.Artifact{}
	for i, c := range cases {
		create(t, s, newTransfer(c.id, "client-r", "key-r-"+c.id, "p1", old.Add(-time.Hour)))
		if _, err := s.ApplyChange(ctx, c.id, store.Change{State: c.state, Event: transfer.Event{
			At: c.at, State: c.state, Actor: "workflow", Type: "state"}}); err != nil {
			t.Fatal(err)
		}
		for f := range c.files {
			a := artifact(string(rune('a'+i))+string(rune('0'+f))+"-ndjson", c.id, "Patient.ndjson", []byte(`{"resourceType":"Patient"}`), old)
			arts[c.id] = append(arts[c.id], a)
		}
		arts[c.id] = append(arts[c.id],
			store.Artifact{Digest: string(rune('a'+i)) + "-manifest", TransferID: c.id, Name: "manifest.json", ContentType: ctManifest, Size: 2, Data: []byte("{}"), CreatedAt: old},
			store.Artifact{Digest: string(rune('a'+i)) + "-jws", TransferID: c.id, Name: "manifest.jws", ContentType: ctJWS, Size: 3, Data: []byte("a.b"), CreatedAt: old})
		for _, a := range arts[c.id] {
			if err := s.PutArtifact(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.WithdrawArtifacts(ctx, "withdrawn", old); err != nil {
		t.Fatal(err)
	}
	ended := []transfer.State{transfer.StateAcknowledged, transfer.StateComplete, transfer.StateFailed}
	f := store.ArtifactPurge{ContentType: ctNDJSON, States: ended, Before: base.Add(-30 * 24 * time.Hour)}
	got, err := s.ExpiredArtifacts(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.ExpiredArtifacts{
		{TransferID: "done", Artifacts: 2, UpdatedAt: old},
		{TransferID: "failed", Artifacts: 1, UpdatedAt: old.Add(time.Hour)},
		{TransferID: "acked", Artifacts: 1, UpdatedAt: old.Add(2 * time.Hour)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ExpiredArtifacts = %+v, want %+v", got, want)
	}
	lim := f
	lim.Limit = 1
	if got, err := s.ExpiredArtifacts(ctx, lim); err != nil || len(got) != 1 || got[0].TransferID != "done" {
		t.Errorf("ExpiredArtifacts(limit 1) = %+v, %v", got, err)
	}
	if _, err := s.ExpiredArtifacts(ctx, store.ArtifactPurge{ContentType: ctNDJSON}); err == nil {
		t.Error("ExpiredArtifacts without states or cutoff: no error")
	}

	size, err := s.AuditSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	purgedAt := base
	for _, e := range want {
		n, err := s.PurgeArtifacts(ctx, e.TransferID, ctNDJSON, purgedAt)
		if err != nil || n != e.Artifacts {
			t.Fatalf("PurgeArtifacts(%s) = %d, %v; want %d", e.TransferID, n, err, e.Artifacts)
		}
		if n, err := s.PurgeArtifacts(ctx, e.TransferID, ctNDJSON, purgedAt); err != nil || n != 0 {
			t.Errorf("PurgeArtifacts(%s) again = %d, %v; want 0", e.TransferID, n, err)
		}
	}
	if got, err := s.ExpiredArtifacts(ctx, f); err != nil || len(got) != 0 {
		t.Errorf("ExpiredArtifacts after the purge = %+v, %v", got, err)
	}
	if n, _ := s.AuditSize(ctx); n != size {
		t.Errorf("the purge changed the audit log: %d entries, had %d", n, size)
	}
	for _, c := range cases {
		purged := c.id == "done" || c.id == "failed" || c.id == "acked"
		for _, a := range arts[c.id] {
			got, err := s.GetArtifact(ctx, a.Digest)
			phi := a.ContentType == ctNDJSON
			switch {
			case c.id == "withdrawn":
				if !errors.Is(err, store.ErrWithdrawn) {
					t.Errorf("%s/%s: %v, want withdrawn", c.id, a.Name, err)
				}
			case purged && phi:
				if !errors.Is(err, store.ErrWithdrawn) || got.Data != nil || got.Digest != a.Digest || got.Size != a.Size ||
					got.WithdrawnAt == nil || !got.WithdrawnAt.Equal(purgedAt) {
					t.Errorf("%s/%s after the purge: %+v %v; want its metadata, no data, withdrawn at %v", c.id, a.Name, got, err, purgedAt)
				}
			default: // manifests, signatures, and what is not expired keep their payload
				if err != nil || !reflect.DeepEqual(got.Data, a.Data) {
					t.Errorf("%s/%s: %+v %v; want it untouched", c.id, a.Name, got, err)
				}
			}
		}
		if list, err := s.ListArtifacts(ctx, c.id); err != nil || len(list) != len(arts[c.id]) {
			t.Errorf("%s: %d artifacts listed (%v), want every row kept (%d)", c.id, len(list), err, len(arts[c.id]))
		}
	}
}
