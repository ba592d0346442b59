package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/audit/audittest"
	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/internal/rfc6962"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/storetest"
	"github.com/p2p-payer/p2p/transfer"
)

// tamperServer is an API server over a store an attacker can write to past
// the triggers, with a witness directory.
type tamperServer struct {
	db      audittest.DB
	srv     *Server
	witness string
	now     time.Time
}

func (ts *tamperServer) get(t *testing.T, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Authorization", bearer("auditor-test", "", caller.AuditRead))
	ts.srv.Handler().ServeHTTP(w, r)
	return w
}

// tamperBackends are the stores the tamper tests run on: SQLite, and
// PostgreSQL where it is configured (CI: always).
func tamperBackends() []struct {
	name string
	open func(*testing.T) audittest.DB
} {
	out := []struct {
		name string
		open func(*testing.T) audittest.DB
	}{{"sqlite", audittest.OpenSQLite}}
	if os.Getenv("P2P_TEST_DATABASE_URL") != "" || os.Getenv("CI") == "true" {
		out = append(out, struct {
			name string
			open func(*testing.T) audittest.DB
		}{"postgres", audittest.OpenPostgres})
	}
	return out
}

// newTamperServer records 3 transfers of 4 events each through the store,
// with a checkpoint (and its witness copy) signed through the API after
// each transfer.
func newTamperServer(t *testing.T, open func(*testing.T) audittest.DB) *tamperServer {
	t.Helper()
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ts := &tamperServer{db: open(t), witness: t.TempDir(), now: auditT0.Add(24 * time.Hour)}
	ts.srv, err = NewServer(Deps{Store: ts.db.Store, Engine: &fakeEngine{}, Keys: signer, Auth: testAuth,
		AuditWitness: audit.DirWitness{Dir: ts.witness}, Now: func() time.Time { return ts.now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, id := range []string{"a", "b", "c"} {
		at := auditT0.Add(time.Duration(i) * time.Hour)
		if _, err := ts.db.Store.CreateTransfer(ctx, store.NewTransfer{
			ClientID: "client-x", IdempotencyKey: "key-" + id, Fingerprint: "fp",
			Transfer: transfer.Transfer{ID: id, ClientID: "client-x", PartnerID: "p" + id, State: transfer.StateInitiated, CreatedAt: at, UpdatedAt: at},
			Event:    transfer.Event{At: at, State: transfer.StateInitiated, Actor: "client:client-x", Type: "state"},
		}); err != nil {
			t.Fatal(err)
		}
		for k, st := range []transfer.State{transfer.StateIdentityPending, transfer.StateConsentVerified, transfer.StateFailed} {
			if _, err := ts.db.Store.ApplyChange(ctx, id, store.Change{State: st, Event: transfer.Event{
				At: at.Add(time.Duration(k+1) * time.Minute), State: st, Actor: "workflow", Type: "state",
				Detail: map[string]any{"member_id": fmt.Sprintf("M10000%d", k)}}}); err != nil {
				t.Fatal(err)
			}
		}
		ts.now = ts.now.Add(time.Hour)
		if w := ts.get(t, "/v1/audit/checkpoint"); w.Code != http.StatusOK {
			t.Fatalf("checkpoint: %d %s", w.Code, w.Body)
		}
	}
	return ts
}

// TestAuditAPIRefusesToSignAForgedLog: after an attacker with database
// access rewrote an event, rebuilt the tree and deleted the checkpoints
// that covered it, the API refuses to sign, with a problem that says why,
// for as long as the log stays forged; and `verify` with the witness's
// checkpoints fails. Tampering that leaves the signed tree whole is
// signed as the genuine head.
func TestAuditAPIRefusesToSignAForgedLog(t *testing.T) {
	ev := func(pos int) string { return fmt.Sprintf("(SELECT event_id FROM audit_log WHERE position = %d)", pos) }
	cases := []struct {
		name   string
		tamper func(t *testing.T, db audittest.DB)
		refuse bool
	}{
		{"untouched", func(*testing.T, audittest.DB) {}, false},
		{"alter an event, leave the tree", func(_ *testing.T, db audittest.DB) {
			db.Exec("UPDATE timeline_events SET actor = 'x' WHERE id = " + ev(5))
		}, false},
		{"rewrite an event, rebuild the tree, delete the covering checkpoints", func(t *testing.T, db audittest.DB) {
			db.Exec(`UPDATE timeline_events SET detail = '{"member_id":"M999999"}' WHERE id = ` + ev(5))
			audittest.RebuildTree(t, db)
			db.Exec("DELETE FROM audit_checkpoints WHERE size > 5")
		}, true},
		{"rewrite an event, rebuild the tree, delete every checkpoint", func(t *testing.T, db audittest.DB) {
			db.Exec(`UPDATE timeline_events SET detail = '{"member_id":"M999999"}' WHERE id = ` + ev(1))
			audittest.RebuildTree(t, db)
			db.Exec("DELETE FROM audit_checkpoints")
		}, true},
	}
	for _, b := range tamperBackends() {
		for _, tc := range cases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				ts := newTamperServer(t, b.open)
				tc.tamper(t, ts.db)
				// A new event, so that a new checkpoint is asked for.
				if _, err := ts.db.Store.ApplyChange(context.Background(), "c", store.Change{Event: transfer.Event{
					At: auditT0.Add(5 * time.Hour), Type: "note", Actor: "ops", Key: "later"}}); err != nil {
					t.Fatal(err)
				}
				ts.now = ts.now.Add(time.Hour)
				for range 2 { // and again: a refusal is not a one-off
					w := ts.get(t, "/v1/audit/checkpoint")
					if !tc.refuse {
						if w.Code != http.StatusOK {
							t.Fatalf("%d %s", w.Code, w.Body)
						}
						continue
					}
					problem(t, w, http.StatusInternalServerError, ProblemAuditInconsistent)
					if !strings.Contains(w.Body.String(), "the stored tree at size 12 differs from the checkpoint") {
						t.Errorf("problem %s", w.Body)
					}
				}
				// Nor does the proof endpoint sign the forged head.
				if w := ts.get(t, "/v1/audit/proof?seq=12"); tc.refuse && w.Code != http.StatusInternalServerError {
					t.Errorf("proof of the new entry: %d %s", w.Code, w.Body)
				}
				var trusted []audit.Trusted
				files, _ := audit.DirWitness{Dir: ts.witness}.Files()
				for _, f := range files {
					tr, err := audit.ReadTrusted(f)
					if err != nil {
						t.Fatal(err)
					}
					trusted = append(trusted, tr)
				}
				jwks, _ := ts.srv.keys.PublicJWKS()
				rep, err := audit.VerifyWith(context.Background(), ts.db.Store, jwks, audit.Options{Trusted: trusted})
				if err != nil {
					t.Fatal(err)
				}
				if (tc.name == "untouched") != rep.OK() {
					t.Errorf("verify with the witness: OK %v, %+v %v", rep.OK(), rep.FirstBad, rep.Problems)
				}
			})
		}
	}
}

// TestAuditExportCoversThePartner: the partner an entry shows is the one
// its event recorded and its leaf covers; changing the transfer's row
// changes neither what the export shows nor what verifies.
func TestAuditExportCoversThePartner(t *testing.T) {
	ts := newTamperServer(t, audittest.OpenSQLite)
	ts.db.Exec("UPDATE transfers SET partner_id = 'p9' WHERE id = 'a'")
	w := ts.get(t, "/v1/audit/events?transfer_id=a")
	lines := bytes.Split(bytes.TrimSpace(w.Body.Bytes()), []byte("\n"))
	if w.Code != http.StatusOK || len(lines) != 4 {
		t.Fatalf("%d, %d lines", w.Code, len(lines))
	}
	for _, line := range lines {
		var l wireAuditEvent
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatal(err)
		}
		if h := recomputeLeaf(t, l); *l.PartnerID != "pa" || !bytes.Equal(h[:], l.Hash) {
			t.Errorf("position %d: partner %s, hash recomputes %v", l.Position, *l.PartnerID, bytes.Equal(h[:], l.Hash))
		}
	}
	// The event's own copy is what an attacker must change, and then the
	// leaf no longer matches.
	ts.db.Exec("UPDATE timeline_events SET partner_id = 'p9' WHERE transfer_id = 'a' AND seq = 2")
	jwks, _ := ts.srv.keys.PublicJWKS()
	rep, err := audit.Verify(context.Background(), ts.db.Store, jwks, 0)
	if err != nil || rep.FirstBad == nil || rep.FirstBad.Position != 1 {
		t.Fatalf("verify after changing the recorded partner: %+v, %v", rep.FirstBad, err)
	}
}

// TestAuditConsistency: the proof between every pair of sizes verifies,
// with code written from RFC 9162 §2.1.4.2, against the roots of the
// exported leaves, and carries the checkpoint that signs its newer size.
func TestAuditConsistency(t *testing.T) {
	e := auditEnv(t)
	leaves := leavesOf(t, e)
	latest := decode[Checkpoint](t, e.do(http.MethodGet, "/v1/audit/checkpoint", ""))
	n := len(leaves)
	for to := 1; to <= n; to++ {
		for from := 1; from <= to; from++ {
			w := e.do(http.MethodGet, fmt.Sprintf("/v1/audit/consistency?from=%d&to=%d", from, to), "")
			if w.Code != http.StatusOK {
				t.Fatalf("%d..%d: %d %s", from, to, w.Code, w.Body)
			}
			p := decode[ConsistencyProof](t, w)
			r1, r2 := rfc6962.MTH(leaves[:from]), rfc6962.MTH(leaves[:to])
			if p.From != int64(from) || p.To != int64(to) || !bytes.Equal(p.FromRoot, r1[:]) || !bytes.Equal(p.ToRoot, r2[:]) {
				t.Fatalf("%d..%d: %+v", from, to, p)
			}
			path := make([][32]byte, len(p.Path))
			for i, h := range p.Path {
				path[i] = [32]byte(h)
			}
			if !rfc6962.VerifyConsistency(uint64(from), uint64(to), r1, r2, path) {
				t.Fatalf("%d..%d: the proof does not verify", from, to)
			}
			if from < to && rfc6962.VerifyConsistency(uint64(from), uint64(to), rfc6962.MTH(leaves[1:from+1]), r2, path) {
				t.Fatalf("%d..%d: the proof verifies another old root", from, to)
			}
			if (to == n) != (p.Checkpoint != nil) || (p.Checkpoint != nil && p.Checkpoint.Jws != latest.Jws) {
				t.Errorf("%d..%d: checkpoint %+v", from, to, p.Checkpoint)
			}
		}
	}
	// to defaults to the latest checkpoint.
	p := decode[ConsistencyProof](t, e.do(http.MethodGet, "/v1/audit/consistency?from=3", ""))
	if p.To != latest.Size || p.Checkpoint == nil || p.Checkpoint.Jws != latest.Jws {
		t.Errorf("default to: %+v", p)
	}
	for _, q := range []string{"from=0", "from=5&to=4", fmt.Sprintf("from=1&to=%d", n+1), "", "from=x", "to=3"} {
		problem(t, e.do(http.MethodGet, "/v1/audit/consistency?"+q, ""), http.StatusBadRequest, ProblemValidation)
	}
}

// TestAuditVersion1EntriesStillVerify: a log written before leaf version 2
// (seeded as such), then grown by version 2 entries, verifies, is signed,
// and exports lines that each recompute to their hash; version 1 lines
// show no partner, which their leaves do not cover.
func TestAuditVersion1EntriesStillVerify(t *testing.T) {
	ctx := context.Background()
	db := audittest.OpenSQLite(t)
	if err := storetest.SeedAuditSQLite(ctx, db.URL, 20, auditT0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Store.ApplyChange(ctx, "seed-0000001", store.Change{Event: transfer.Event{
		At: auditT0.Add(time.Hour), Type: "note", Actor: "ops", Key: "later"}}); err != nil {
		t.Fatal(err)
	}
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Deps{Store: db.Store, Engine: &fakeEngine{}, Keys: signer, Auth: testAuth})
	if err != nil {
		t.Fatal(err)
	}
	ts := &tamperServer{db: db, srv: srv}
	if w := ts.get(t, "/v1/audit/checkpoint"); w.Code != http.StatusOK {
		t.Fatalf("checkpoint: %d %s", w.Code, w.Body)
	}
	w := ts.get(t, "/v1/audit/events")
	lines := bytes.Split(bytes.TrimSpace(w.Body.Bytes()), []byte("\n"))
	versions := map[int]int{}
	for _, line := range lines {
		var l wireAuditEvent
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatal(err)
		}
		versions[l.LeafVersion]++
		if h := recomputeLeaf(t, l); !bytes.Equal(h[:], l.Hash) {
			t.Errorf("position %d (version %d): the line does not recompute to its hash", l.Position, l.LeafVersion)
		}
	}
	if versions[1] != 20 || versions[2] != 1 {
		t.Fatalf("leaf versions %v, want 20 of 1 and 1 of 2", versions)
	}
	// The FHIR form shows no partner where the leaf does not cover one.
	fw := ts.get(t, "/v1/audit/events?format=fhir")
	if n := strings.Count(fw.Body.String(), `"type":"partner_id"`); n != 1 {
		t.Errorf("%d FHIR AuditEvents name a partner, want 1 (the version 2 entry)", n)
	}
	jwks, _ := signer.PublicJWKS()
	if rep, err := audit.Verify(ctx, db.Store, jwks, 0); err != nil || !rep.OK() || rep.Size != 21 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
